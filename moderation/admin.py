from django.contrib import admin

from moderation.models import ModerationDecision


@admin.register(ModerationDecision)
class ModerationDecisionAdmin(admin.ModelAdmin):
    list_display = ("job", "tenant", "stage", "verdict", "created_at")
    list_filter = ("stage", "verdict")
    readonly_fields = [f.name for f in ModerationDecision._meta.fields]
