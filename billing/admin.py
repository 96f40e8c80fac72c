"""Operators' view of billing: plans are edited here; the ledger and Stripe's records are read-only."""

from __future__ import annotations

from django.contrib import admin, messages

from billing import services
from billing.models import (
    BillingMeter,
    Invoice,
    LedgerAdjustment,
    MeterEventOutbox,
    Plan,
    PlanRate,
    ProcessedStripeEvent,
    ReconciliationReport,
    Subscription,
    UsageAlert,
    UsageEvent,
    UsageRollup,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services: visible to operators, never edited by hand."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    """The ledger is append-only: visible here, never edited (refunds are new rows)."""

    list_display = (
        "id",
        "tenant",
        "kind",
        "stage",
        "hardware_class",
        "model",
        "milliseconds",
        "created_at",
    )
    list_filter = ("hardware_class", "stage", "kind")
    search_fields = ("id", "end_user")


class PlanRateInline(admin.TabularInline):
    model = PlanRate
    extra = 0
    fields = (
        "hardware_class",
        "included_gpu_seconds",
        "overage_cents_per_gpu_second",
        "hard_cap_gpu_seconds",
        "stripe_price_id",
    )
    readonly_fields = ("stripe_price_id",)


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    """Plans and their per-class rates. Changing terms creates new Stripe prices on the next
    ``stripe_sync_catalog`` (Stripe prices are immutable); live subscriptions keep theirs."""

    list_display = (
        "slug",
        "name",
        "monthly_fee_cents",
        "currency",
        "max_concurrent_jobs",
        "priority_class",
        "is_public",
        "stripe_price_id",
    )
    readonly_fields = (
        "stripe_product_id",
        "stripe_price_id",
        "stripe_lookup_key",
        "created_at",
        "updated_at",
    )
    inlines = [PlanRateInline]
    actions = ["sync_to_stripe"]

    @admin.action(description="Create or update the plans' products and prices in Stripe")
    def sync_to_stripe(self, request, queryset):
        try:
            result = services.stripe_catalog_sync()
        except Exception as exc:  # shown to the operator; nothing is half-written locally
            self.message_user(request, f"Stripe sync failed: {exc}", messages.ERROR)
            return
        self.message_user(request, f"Synced {result.plans} plans, meters {result.meters}.")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "tenant",
        "plan",
        "status",
        "current_period_end",
        "past_due_since",
        "suspended_for_nonpayment",
        "stripe_customer_id",
    )
    list_filter = ("status", "plan", "suspended_for_nonpayment")
    search_fields = ("tenant__name", "stripe_customer_id", "stripe_subscription_id")
    readonly_fields = (
        "tenant",
        "stripe_customer_id",
        "stripe_subscription_id",
        "status",
        "current_period_start",
        "current_period_end",
        "cancel_at_period_end",
        "past_due_since",
        "suspended_for_nonpayment",
        "stripe_event_at",
        "created_at",
        "updated_at",
    )


@admin.register(MeterEventOutbox)
class MeterEventOutboxAdmin(ReadOnlyAdmin):
    list_display = (
        "usage_event",
        "tenant",
        "hardware_class",
        "value",
        "status",
        "attempts",
        "next_attempt_at",
        "duplicate",
        "last_error",
    )
    list_filter = ("status", "hardware_class", "duplicate")
    actions = ["requeue"]

    @admin.action(description="Send failed rows again")
    def requeue(self, request, queryset):
        count = services.outbox_requeue(usage_event_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} rows queued again.")


@admin.register(ReconciliationReport)
class ReconciliationReportAdmin(ReadOnlyAdmin):
    list_display = (
        "window_start",
        "tenant",
        "hardware_class",
        "status",
        "sent_ms",
        "stripe_ms",
        "drift_ms",
        "pending_ms",
        "ledger_ms",
    )
    list_filter = ("status", "hardware_class")


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = (
        "stripe_invoice_id",
        "tenant",
        "number",
        "status",
        "total",
        "amount_paid",
        "currency",
        "stripe_created",
    )
    list_filter = ("status",)


@admin.register(ProcessedStripeEvent)
class ProcessedStripeEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "type", "tenant", "source", "stripe_created", "processed_at")
    list_filter = ("type", "source")


admin.site.register(BillingMeter, ReadOnlyAdmin)
admin.site.register(UsageRollup, ReadOnlyAdmin)
admin.site.register(UsageAlert, ReadOnlyAdmin)
admin.site.register(LedgerAdjustment, ReadOnlyAdmin)
