from django.contrib import admin

from generation.models import Job, JobTransition, Template, TemplateVersion


class TemplateVersionInline(admin.TabularInline):
    model = TemplateVersion
    extra = 0
    can_delete = False
    readonly_fields = (
        "number",
        "model",
        "width",
        "height",
        "fps",
        "duration_s",
        "prompt",
        "created_at",
    )
    fields = readonly_fields


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "kind", "created_at", "archived_at")
    list_filter = ("kind",)
    inlines = [TemplateVersionInline]


class JobTransitionInline(admin.TabularInline):
    model = JobTransition
    extra = 0
    can_delete = False
    readonly_fields = ("from_state", "to_state", "at", "reason")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "tenant", "template", "state", "progress", "created_at")
    list_filter = ("state", "model")
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [JobTransitionInline]

    def has_add_permission(self, request):
        return False
