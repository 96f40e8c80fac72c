"""The usage ledger: what each tenant's jobs cost in device time, recorded exactly once."""

from __future__ import annotations

from django.db import models

from tenants.models import TenantOwnedModel


class UsageEvent(TenantOwnedModel):
    """One measurement of device time, append-only.

    The primary key is deterministic (``<job>:<stage>:<shot>``), so a task that runs again after
    a crash or a retry records nothing new; it is also the identifier a billing provider
    deduplicates on. Corrections are new rows with their own kind, never edits.
    """

    class Kind(models.TextChoices):
        USAGE = "usage", "Usage"
        CORRECTION = "correction", "Correction"
        REFUND = "refund", "Refund"

    id = models.CharField(primary_key=True, max_length=120)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.USAGE)
    job = models.ForeignKey(
        "generation.Job",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="usage_events",
    )
    stage = models.CharField(max_length=32)
    shot_index = models.IntegerField(null=True, blank=True)
    hardware_class = models.CharField(max_length=32)
    model = models.CharField(max_length=64)
    milliseconds = models.BigIntegerField()
    end_user = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="usage_tenant_created"),
            models.Index(
                fields=["tenant", "hardware_class", "created_at"], name="usage_tenant_hw_created"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.milliseconds} ms"


# --- plans and subscriptions ------------------------------------------------------------------


class Plan(models.Model):
    """What a tenant pays for and what it may do: the fee, limits and the Stripe prices for them.

    Operators edit plans in the admin; ``seed_plans`` creates the examples. Stripe prices are
    immutable, so a change of terms makes ``stripe_sync_catalog`` create new prices (found again
    through their lookup keys); subscriptions keep the prices they were sold until changed.
    """

    class PriorityClass(models.IntegerChoices):
        # Mirrors generation.scheduler.Priority (not imported: the scheduler imports billing).
        BULK = 0, "Bulk"
        STANDARD = 1, "Standard"
        INTERACTIVE = 2, "Interactive"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    is_public = models.BooleanField(default=True, help_text="Offered on the billing page.")
    currency = models.CharField(max_length=3, default="usd")
    monthly_fee_cents = models.PositiveIntegerField(default=0)
    max_concurrent_jobs = models.PositiveSmallIntegerField(
        default=4, help_text="Jobs on GPUs at once; the scheduler holds the rest in the queue."
    )
    max_queued_jobs = models.PositiveIntegerField(
        default=10_000,
        help_text="Jobs waiting or running at once; more are refused with 429 (a backlog cap).",
    )
    priority_class = models.SmallIntegerField(
        choices=PriorityClass.choices, default=PriorityClass.STANDARD
    )
    max_width = models.PositiveIntegerField(default=1280)
    max_height = models.PositiveIntegerField(default=720)
    max_duration_s = models.FloatField(default=30.0)
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Model names; empty allows every model."
    )
    storage_retention_days = models.PositiveIntegerField(default=30)
    end_user_jobs_per_day = models.PositiveIntegerField(
        default=0, help_text="Storefront jobs per end user per rolling 24 h; 0 is unlimited."
    )
    stripe_product_id = models.CharField(max_length=64, blank=True)
    stripe_price_id = models.CharField(
        max_length=64, blank=True, help_text="The licensed monthly-fee price."
    )
    stripe_lookup_key = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models

    def allows_size(self, width: int, height: int) -> bool:
        """Either orientation fits: a 1280x720 plan takes 720x1280 portrait videos too."""
        long_side, short_side = max(width, height), min(width, height)
        return long_side <= max(self.max_width, self.max_height) and short_side <= min(
            self.max_width, self.max_height
        )


class PlanRate(models.Model):
    """A plan's terms for one hardware class: included GPU-seconds, overage price, hard cap.

    In Stripe this is one metered price on the class's meter, graduated: the included
    milliseconds at 0, the rest at the overage price per millisecond.
    """

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="rates")
    hardware_class = models.CharField(max_length=32)
    included_gpu_seconds = models.PositiveIntegerField(default=0)
    overage_cents_per_gpu_second = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    hard_cap_gpu_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="No new jobs past this many GPU-seconds in a period."
    )
    stripe_price_id = models.CharField(max_length=64, blank=True)
    stripe_lookup_key = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "hardware_class"], name="planrate_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.plan.slug}/{self.hardware_class}"


class BillingMeter(models.Model):
    """The Stripe Billing Meter for one hardware class (aggregation: sum of milliseconds)."""

    hardware_class = models.CharField(max_length=32, unique=True)
    event_name = models.CharField(max_length=100, unique=True)
    stripe_meter_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.event_name


class Subscription(TenantOwnedModel):
    """A tenant's Stripe customer, its plan and the state of its Stripe subscription.

    One per tenant. ``past_due_since`` starts the dunning clock; the tenant is suspended when it
    runs past BILLING_DUNNING_GRACE_S, and ``suspended_for_nonpayment`` marks that suspension as
    billing's own, so a payment reinstates only what billing suspended. ``stripe_event_at`` is
    the creation time of the last subscription event applied, so an older event delivered late
    never overwrites a newer state.
    """

    class Status(models.TextChoices):
        NONE = "none", "No subscription"
        INCOMPLETE = "incomplete", "Incomplete"
        INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete, expired"
        TRIALING = "trialing", "Trialing"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        UNPAID = "unpaid", "Unpaid"
        CANCELED = "canceled", "Canceled"
        PAUSED = "paused", "Paused"

    plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="subscriptions"
    )
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    stripe_subscription_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.NONE)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    past_due_since = models.DateTimeField(null=True, blank=True)
    suspended_for_nonpayment = models.BooleanField(default=False)
    stripe_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    LIVE_STATUSES = (Status.ACTIVE, Status.TRIALING, Status.PAST_DUE)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="subscription_one_per_tenant"),
            models.UniqueConstraint(
                fields=["stripe_customer_id"],
                condition=~models.Q(stripe_customer_id=""),
                name="subscription_unique_customer",
            ),
        ]
        indexes = [
            models.Index(fields=["stripe_subscription_id"], name="subscription_stripe_sub"),
            models.Index(fields=["past_due_since"], name="subscription_past_due"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} on {self.plan or 'no plan'} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE_STATUSES


# --- the ledger around UsageEvent -------------------------------------------------------------


class LedgerAdjustment(models.Model):
    """Why a correction or refund row exists, and which usage row it adjusts.

    The adjusting UsageEvent carries the amount; this row carries the reason, so the ledger row
    itself stays a plain measurement.
    """

    usage_event = models.OneToOneField(
        UsageEvent, primary_key=True, on_delete=models.CASCADE, related_name="adjustment"
    )
    adjusts = models.ForeignKey(
        UsageEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="adjustments"
    )
    reason = models.CharField(max_length=300)
    actor = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.usage_event_id}: {self.reason}"


class MeterEventOutbox(TenantOwnedModel):
    """A usage row waiting to reach Stripe as a meter event; written with the row it carries.

    Its primary key is the usage row's id, which is also the meter event's ``identifier``:
    Stripe rejects a second event with the same identifier, so a push that is retried after a
    timeout (when the first attempt may have landed) counts once. Rows are claimed by moving
    ``next_attempt_at`` forward, so two drains never push the same row at the same time.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (Stripe refused it)"
        EXPIRED = "expired", "Expired (older than Stripe accepts)"

    usage_event = models.OneToOneField(
        UsageEvent, primary_key=True, on_delete=models.CASCADE, related_name="outbox"
    )
    hardware_class = models.CharField(max_length=32)
    value = models.BigIntegerField(help_text="Whole milliseconds; negative for refunds.")
    occurred_at = models.DateTimeField(help_text="The meter event's timestamp.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    duplicate = models.BooleanField(
        default=False, help_text="Stripe already had it (an earlier attempt landed)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="outbox_due"),
            models.Index(
                fields=["tenant", "hardware_class", "occurred_at"], name="outbox_tenant_hw_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.usage_event_id} {self.status}"


class UsageRollup(TenantOwnedModel):
    """Net milliseconds per tenant, hour, hardware class and end user ('' for none).

    Recomputed whole for an hour by ``usage_rollup_hour``, so running it again is harmless.
    """

    hour = models.DateTimeField()
    hardware_class = models.CharField(max_length=32)
    end_user = models.CharField(max_length=128, blank=True)
    milliseconds = models.BigIntegerField()
    events = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "hour", "hardware_class", "end_user"], name="rollup_unique"
            ),
        ]
        indexes = [models.Index(fields=["hour"], name="rollup_hour")]

    def __str__(self) -> str:
        return (
            f"{self.tenant_id} {self.hour:%Y-%m-%d %H}h {self.hardware_class} {self.milliseconds}"
        )


class RollupHour(models.Model):
    """Marks an hour as rolled up: readers may take it from UsageRollup instead of the ledger."""

    hour = models.DateTimeField(unique=True)
    computed_at = models.DateTimeField()
    rows = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h"


class UsageAlert(TenantOwnedModel):
    """An 80% or 100% usage alert; the unique constraint makes each fire once per period."""

    period_start = models.DateTimeField()
    hardware_class = models.CharField(max_length=32)
    threshold_percent = models.PositiveSmallIntegerField()
    used_ms = models.BigIntegerField()
    included_ms = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "period_start", "hardware_class", "threshold_percent"],
                name="usagealert_once_per_period",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.hardware_class} {self.threshold_percent}%"


# --- Stripe's side ------------------------------------------------------------------------------


class ProcessedStripeEvent(models.Model):
    """A Stripe event that has been applied; inserted in the same transaction as its effects."""

    id = models.CharField(primary_key=True, max_length=100)
    type = models.CharField(max_length=100)
    stripe_created = models.DateTimeField()
    source = models.CharField(max_length=16, default="webhook")  # webhook | catch_up
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["stripe_created"], name="stripeevent_created")]

    def __str__(self) -> str:
        return f"{self.id} {self.type}"


class Invoice(TenantOwnedModel):
    """A Stripe invoice as the tenant sees it, kept from invoice.* events."""

    STATUS_RANK = {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}

    stripe_invoice_id = models.CharField(max_length=64, unique=True)
    number = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=24)
    currency = models.CharField(max_length=3)
    amount_due = models.BigIntegerField(default=0)
    amount_paid = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
    hosted_invoice_url = models.URLField(max_length=500, blank=True)
    invoice_pdf = models.URLField(max_length=500, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    stripe_created = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "-stripe_created"], name="invoice_tenant_created")
        ]

    def __str__(self) -> str:
        return self.number or self.stripe_invoice_id


class ReconciliationReport(TenantOwnedModel):
    """Our total for one meter, customer and hour against Stripe's meter event summary.

    ``drift_ms`` is Stripe's value minus what we have sent; pending rows are not drift (they are
    on their way). Recomputing a window overwrites its row.
    """

    class Status(models.TextChoices):
        OK = "ok", "Matches"
        DRIFT = "drift", "Drift"
        ERROR = "error", "Could not compare"

    hardware_class = models.CharField(max_length=32)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    ledger_ms = models.BigIntegerField(default=0)
    sent_ms = models.BigIntegerField(default=0)
    pending_ms = models.BigIntegerField(default=0)
    stripe_ms = models.BigIntegerField(null=True, blank=True)
    drift_ms = models.BigIntegerField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "hardware_class", "window_start"],
                name="reconciliation_unique_window",
            ),
        ]
        indexes = [models.Index(fields=["status", "window_start"], name="reconciliation_status")]

    def __str__(self) -> str:
        return (
            f"{self.tenant_id} {self.hardware_class} {self.window_start:%Y-%m-%d %H}h {self.status}"
        )


class BillingCursor(models.Model):
    """A named point in time a periodic task resumes from (the nightly Stripe events catch-up)."""

    name = models.CharField(max_length=64, primary_key=True)
    value = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}={self.value.isoformat()}"


class UsageReservation(TenantOwnedModel):
    """Device time a job not yet finished may still use, held against its class's hard cap.

    Written in the transaction that admits the job, under the tenant's admission lock; reduced
    by each usage row the job records in that class (that time is in the ledger now); deleted
    when the job reaches a final state. Admission counts recorded usage plus these rows, so a
    queue of admitted jobs can never run the tenant past the cap it pays for. Only live
    reservations are kept: the table stays as small as the tenants' backlogs.
    """

    job = models.OneToOneField(
        "generation.Job", on_delete=models.CASCADE, related_name="usage_reservation"
    )
    hardware_class = models.CharField(max_length=32)
    milliseconds = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "hardware_class"], name="reservation_tenant_hw"),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id}: {self.milliseconds} ms of {self.hardware_class} held"
