from django.contrib import admin

from billing.models import UsageEvent


@admin.register(UsageEvent)
class UsageEventAdmin(admin.ModelAdmin):
    """The ledger is append-only: visible here, never edited."""

    list_display = ("id", "tenant", "stage", "hardware_class", "model", "milliseconds", "created_at")
    list_filter = ("hardware_class", "stage", "kind")
    readonly_fields = [f.name for f in UsageEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
