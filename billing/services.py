"""Writes for billing: the usage ledger and its outbox to Stripe, quotas and quotes, alerts,
roll-ups, the Stripe catalogue, checkout, webhooks, dunning and reconciliation.

The rules that keep a GPU-second from being lost or counted twice:

- a usage row has a deterministic id; inserting it again does nothing;
- its outbox row is written in the same transaction, keyed by the same id;
- the outbox pushes the row with ``identifier`` = that id, and Stripe's "already exists"
  answer to a retry is success;
- a Stripe event is applied in the same transaction that records its id as processed.

Stripe being down never blocks a job: nothing on the job's path calls Stripe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Sum
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.module_loading import import_string

from billing import selectors
from billing import stripe_gateway as gateway
from billing.models import (
    BillingCursor,
    BillingMeter,
    Invoice,
    LedgerAdjustment,
    MeterEventOutbox,
    Plan,
    PlanRate,
    ProcessedStripeEvent,
    ReconciliationReport,
    RollupHour,
    Subscription,
    UsageAlert,
    UsageEvent,
    UsageReservation,
    UsageRollup,
)
from config.problems import PaymentRequired, Problem
from tenants.models import Membership, Role, Tenant

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
# Stripe accepts meter events up to 35 days old; leave an hour for the request to get there.
METER_EVENT_MAX_AGE = timedelta(days=35) - HOUR
ALERT_THRESHOLDS = (80, 100)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- the ledger -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    stage: str
    shot_index: int | None
    hardware_class: str
    model: str
    milliseconds: int


def usage_event_id(*, job_id: object, stage: str, shot_index: int | None) -> str:
    shot = "all" if shot_index is None else str(shot_index)
    return f"job:{job_id}:{stage}:{shot}"


def usage_record(
    *, tenant: Tenant, job_id: object, measurements: list[Measurement], end_user: str = ""
) -> int:
    """Record each measurement once; returns how many rows were new.

    Inserts ignore rows whose deterministic id already exists, so retries and re-deliveries
    can never double-count. New rows get their Stripe outbox rows in the same transaction, and
    on commit the outbox push and the usage alerts are queued (neither can fail the caller).
    """
    rows = [
        UsageEvent(
            id=usage_event_id(job_id=job_id, stage=m.stage, shot_index=m.shot_index),
            tenant=tenant,
            job_id=job_id,
            stage=m.stage,
            shot_index=m.shot_index,
            hardware_class=m.hardware_class,
            model=m.model,
            milliseconds=max(0, int(m.milliseconds)),
            end_user=end_user,
        )
        for m in measurements
    ]
    if not rows:
        return 0
    ids = [r.id for r in rows]
    with transaction.atomic():
        failed = _failed_job_error(job_id)
        existing = set(UsageEvent.objects.filter(pk__in=ids).values_list("pk", flat=True))
        UsageEvent.objects.bulk_create(rows, ignore_conflicts=True)
        new_ids = [r.id for r in rows if r.id not in existing]
        if new_ids:
            outbox_enqueue_for(usage_event_ids=new_ids)
            _reservation_spend(job_id, [r for r in rows if r.id in set(new_ids)])
            _after_usage_commit(tenant.pk)
            if failed is not None:
                # A worker whose lease lapsed billed after the job was failed without it.
                usage_refund_job(job_id=job_id, reason=f"job failed: {failed}")
    return len(new_ids)


def _reservation_spend(job_id: object, recorded: list[UsageEvent]) -> None:
    """What the job just recorded is in the ledger now: hold that much less for it."""
    by_class: dict[str, int] = {}
    for row in recorded:
        by_class[row.hardware_class] = by_class.get(row.hardware_class, 0) + row.milliseconds
    for hardware_class, ms in by_class.items():
        UsageReservation.objects.filter(  # unscoped: the job's own reservation, by job id
            job_id=job_id, hardware_class=hardware_class
        ).update(milliseconds=Greatest(F("milliseconds") - ms, 0))


def _failed_job_error(job_id: object) -> str | None:
    """The error code of ``job_id`` if it has failed, else None; locks the job's row.

    The lock orders this against ``job_fail`` (which holds the row from its state change to
    its refund): usage recorded first is refunded by the failure, usage recorded after it
    sees the failure here.
    """
    if job_id is None:
        return None
    from generation.models import Job, JobState

    row = (
        Job.objects.select_for_update()  # unscoped: by id, for the ledger
        .filter(pk=job_id)
        .values_list("state", "error_code")
        .first()
    )
    if row is None or row[0] != JobState.FAILED:
        return None
    return row[1] or "failed"


def outbox_enqueue_for(*, usage_event_ids: list[str]) -> int:
    """Queue these ledger rows for Stripe; call inside the transaction that wrote them.

    A row already queued (or already sent) is left alone, so calling this twice is harmless.
    Nothing is queued while Stripe is not configured, and rows of 0 ms carry nothing to bill.
    """
    if not usage_event_ids or not gateway.is_configured():
        return 0
    now = timezone.now()
    events = (
        UsageEvent.objects.filter(pk__in=usage_event_ids)
        .exclude(milliseconds=0)
        .values_list("pk", "tenant_id", "hardware_class", "milliseconds", "created_at")
    )
    rows = [
        MeterEventOutbox(
            usage_event_id=pk,
            tenant_id=tenant_id,
            hardware_class=hw,
            value=int(ms),
            occurred_at=created_at,
            next_attempt_at=now,
        )
        for pk, tenant_id, hw, ms, created_at in events
    ]
    MeterEventOutbox.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _after_usage_commit(tenant_id: object) -> None:
    from billing.tasks import enqueue_usage_followups

    transaction.on_commit(lambda: enqueue_usage_followups(tenant_id), robust=True)


def _adjust(
    *, original: UsageEvent, kind: str, milliseconds: int, key: str, reason: str, actor: str
) -> UsageEvent:
    adjustment_id = f"{kind}:{original.pk}:{key}"
    if len(adjustment_id) > 120:
        raise ValueError("The adjustment key is too long for a ledger id.")
    with transaction.atomic():
        existing = UsageEvent.objects.filter(pk=adjustment_id).first()  # unscoped: by id
        if existing is not None:
            return existing
        row = UsageEvent.objects.create(
            id=adjustment_id,
            tenant_id=original.tenant_id,
            kind=kind,
            job_id=original.job_id,
            stage=original.stage,
            shot_index=original.shot_index,
            hardware_class=original.hardware_class,
            model=original.model,
            milliseconds=milliseconds,
            end_user=original.end_user,
        )
        LedgerAdjustment.objects.create(
            usage_event=row, adjusts=original, reason=reason, actor=actor
        )
        outbox_enqueue_for(usage_event_ids=[row.pk])
        _after_usage_commit(original.tenant_id)
    return row


def usage_refund(
    *,
    usage_event: UsageEvent,
    reason: str,
    milliseconds: int | None = None,
    key: str = "full",
    actor: str = "",
) -> UsageEvent:
    """Give back some or all of a usage row as a new row of negative milliseconds.

    Idempotent per ``key``; refunds of one row can never add up to more than the row.
    """
    if usage_event.kind != UsageEvent.Kind.USAGE:
        raise ValueError("Only usage rows are refunded.")
    amount = usage_event.milliseconds if milliseconds is None else int(milliseconds)
    refunded = -(
        UsageEvent.objects.filter(  # unscoped: by the original's id
            adjustment__adjusts=usage_event, kind=UsageEvent.Kind.REFUND
        )
        .exclude(pk=f"refund:{usage_event.pk}:{key}")
        .aggregate(ms=Sum("milliseconds"))["ms"]
        or 0
    )
    if amount <= 0 or refunded + amount > usage_event.milliseconds:
        raise ValueError(
            f"Cannot refund {amount} ms of {usage_event.pk}: "
            f"{usage_event.milliseconds} ms recorded, {refunded} ms refunded."
        )
    return _adjust(
        original=usage_event,
        kind=UsageEvent.Kind.REFUND,
        milliseconds=-amount,
        key=key,
        reason=reason,
        actor=actor,
    )


def usage_correct(
    *, usage_event: UsageEvent, milliseconds_delta: int, reason: str, key: str, actor: str = ""
) -> UsageEvent:
    """Correct a usage row by a signed amount, as a new row; idempotent per ``key``."""
    if int(milliseconds_delta) == 0:
        raise ValueError("A correction of 0 ms changes nothing.")
    return _adjust(
        original=usage_event,
        kind=UsageEvent.Kind.CORRECTION,
        milliseconds=int(milliseconds_delta),
        key=key,
        reason=reason,
        actor=actor,
    )


JOB_FAILED_KEY = "job_failed"


def usage_refund_job(*, job_id: object, reason: str, actor: str = "") -> list[UsageEvent]:
    """Give back all a job's usage still stands at: a failed job is a platform fault, and
    platform faults are not billed. Returns the adjustment rows written (none on a repeat).

    Each usage row is brought to 0 ms net of its earlier refunds and corrections: by a refund
    under the key ``job_failed`` (``usage_refund`` never refunds more than the row itself), and
    by a correction under the same key for what positive corrections added beyond it. Rows
    already at 0 are skipped, so a second call writes nothing. The usage rows are locked first,
    so a concurrent call waits and then finds nothing left, and the adjustment ids are
    deterministic, so no refund can be written twice even where the lock is a no-op (SQLite
    takes its write lock up front instead).
    """
    created: list[UsageEvent] = []
    with transaction.atomic():
        originals = list(
            UsageEvent.objects.select_for_update()  # unscoped: a job's rows, by job id
            .filter(job_id=job_id, kind=UsageEvent.Kind.USAGE)
            .order_by("pk")
        )
        if not originals:
            return created
        adjustments = UsageEvent.objects.filter(  # unscoped: adjustments of these rows
            adjustment__adjusts__in=originals
        ).values_list("pk", "kind", "milliseconds", "adjustment__adjusts_id")
        net = {row.pk: row.milliseconds for row in originals}
        refunded = dict.fromkeys(net, 0)
        existing: set[str] = set()
        for pk, kind, milliseconds, adjusts_id in adjustments:
            net[adjusts_id] += milliseconds
            if kind == UsageEvent.Kind.REFUND:
                refunded[adjusts_id] -= milliseconds
            existing.add(pk)
        for original in originals:
            remaining = net[original.pk]
            if remaining <= 0:
                continue
            refund_id = f"{UsageEvent.Kind.REFUND}:{original.pk}:{JOB_FAILED_KEY}"
            refund_ms = 0
            if refund_id not in existing:
                refund_ms = min(remaining, original.milliseconds - refunded[original.pk])
            if refund_ms > 0:
                created.append(
                    usage_refund(
                        usage_event=original,
                        reason=reason,
                        milliseconds=refund_ms,
                        key=JOB_FAILED_KEY,
                        actor=actor,
                    )
                )
            rest = remaining - refund_ms
            correction_id = f"{UsageEvent.Kind.CORRECTION}:{original.pk}:{JOB_FAILED_KEY}"
            if rest > 0 and correction_id not in existing:
                created.append(
                    usage_correct(
                        usage_event=original,
                        milliseconds_delta=-rest,
                        reason=reason,
                        key=JOB_FAILED_KEY,
                        actor=actor,
                    )
                )
    return created


# --- quotes and quotas ------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """An estimate of a job's device time, and what it would add to the bill.

    ``cost_estimate`` is in cents of ``currency``: the overage the job would cause after what
    is left of the period's included GPU-seconds (0 while it fits in them).
    """

    gpu_ms_estimate: int
    cost_estimate: Decimal
    based_on: str  # "history" (measured shots) or "config" (BILLING_QUOTE_FALLBACK)
    samples: int
    hardware_class: str
    currency: str = "usd"


def _estimate_ms(
    *, model: str, width: int, height: int, frames_total: int, steps: int | None = None
) -> tuple[int, int]:
    """A job's device milliseconds from the platform-wide rate, and how many shots it rests on."""
    rate_ms, samples = selectors.ms_per_frame_megapixel(model=model, width=width, height=height)
    estimate = rate_ms * max(frames_total, 1) * width * height / 1e6
    if steps:
        from generation import registry

        try:
            default_steps = registry.get_model(model).steps
        except KeyError:
            default_steps = 0
        if default_steps:
            estimate *= steps / default_steps
    return math.ceil(estimate - 1e-6), samples  # 1999.9999999 from float noise is 2000, not 2001


def quote(
    *,
    tenant: Tenant,
    model: str,
    width: int,
    height: int,
    frames_total: int,
    steps: int | None = None,
    now: datetime | None = None,
) -> Quote:
    """Estimate a job's GPU milliseconds from measured history (or config) and price it."""
    gpu_ms, samples = _estimate_ms(
        model=model, width=width, height=height, frames_total=frames_total, steps=steps
    )
    hardware_class = selectors.hardware_class_for_model(model)
    subscription = selectors.subscription_for(tenant=tenant)
    plan = selectors.effective_plan(subscription=subscription)
    rate = selectors.plan_rates(plan).get(hardware_class)
    cost = Decimal(0)
    if rate is not None:
        period = selectors.current_period(subscription=subscription, now=now)
        used = selectors.usage_ms_by_class(
            tenant=tenant, start=period.start, end=now or timezone.now()
        ).get(hardware_class, 0)
        left = max(0, rate.included_gpu_seconds * 1000 - used)
        cost = rate.overage_cents_per_gpu_second * max(0, gpu_ms - left) / 1000
    return Quote(
        gpu_ms_estimate=gpu_ms,
        cost_estimate=cost.quantize(Decimal("0.0001")),
        based_on="history" if samples else "config",
        samples=samples,
        hardware_class=hardware_class,
        currency=plan.currency if plan else "usd",
    )


def _frames_for(model: str, duration_s: float) -> int:
    from generation import registry

    try:
        fps = registry.get_model(model).default_fps
    except KeyError:
        fps = 24
    return max(1, round(duration_s * fps))


@dataclass(frozen=True)
class Admission:
    """What an admitted job holds against its tenant's caps until it finishes: ``reserve_ms``
    of ``hardware_class`` (0 where that class has no hard cap)."""

    hardware_class: str
    reserve_ms: int


def quota_check(
    *,
    tenant: Tenant,
    model: str,
    width: int,
    height: int,
    duration_s: float,
    end_user: str = "",
    frames_total: int | None = None,
    now: datetime | None = None,
) -> None:
    """Refuse a job before it is queued, with the reason; a pure read.

    402 (``PaymentRequired``): the tenant is suspended, has no plan where one is required, the
    plan does not include the model, size or length, or the class's hard cap is reached (or
    this job, on top of what the tenant's unfinished jobs hold, would pass it). 429 with
    ``Retry-After``: too many jobs in flight, or the end user's storefront quota for the last
    24 h is used up.

    Without a lock this is advice (a quote, a form): two requests may both see the last place
    free. ``quota_admit`` runs the same checks where they hold.
    """
    _admission(
        tenant=tenant,
        model=model,
        width=width,
        height=height,
        duration_s=duration_s,
        end_user=end_user,
        frames_total=frames_total,
        now=now,
    )


def _admission(
    *,
    tenant: Tenant,
    model: str,
    width: int,
    height: int,
    duration_s: float,
    end_user: str,
    frames_total: int | None,
    now: datetime | None,
) -> Admission:
    now = now or timezone.now()
    if not tenant.is_active:
        raise PaymentRequired(
            f"The tenant is suspended: {tenant.suspended_reason or 'contact your administrator'}.",
            code="tenant_suspended",
        )
    subscription = selectors.subscription_for(tenant=tenant)
    plan = selectors.effective_plan(subscription=subscription)
    hardware_class = selectors.hardware_class_for_model(model)
    if plan is None:
        if _setting("BILLING_REQUIRE_PLAN", False):
            raise PaymentRequired(
                "There is no active plan; subscribe to one to create jobs.", code="no_plan"
            )
        return Admission(hardware_class=hardware_class, reserve_ms=0)
    if not plan.allows_model(model):
        raise PaymentRequired(
            f"The {plan.name} plan does not include the model {model!r} "
            f"(it includes {', '.join(plan.allowed_models)}).",
            code="model_not_in_plan",
        )
    if not plan.allows_size(width, height):
        raise PaymentRequired(
            f"{width}x{height} is larger than the {plan.name} plan allows "
            f"({plan.max_width}x{plan.max_height}).",
            code="resolution_over_plan",
        )
    if duration_s > plan.max_duration_s + 1e-9:
        raise PaymentRequired(
            f"{duration_s:g} s is longer than the {plan.name} plan allows "
            f"({plan.max_duration_s:g} s).",
            code="duration_over_plan",
        )

    reserve_ms = 0
    rate = selectors.plan_rates(plan).get(hardware_class)
    if rate is not None and rate.hard_cap_gpu_seconds is not None:
        period = selectors.current_period(subscription=subscription, now=now)
        # Reservations before usage, in that order: a job's usage and the matching cut in its
        # reservation commit together, so a commit between the two reads is counted twice
        # (refusing early), never missed (which would let a job past the cap). Usage is read
        # to the period's end for the same reason: a row stamped just after ``now`` counts.
        held = selectors.reserved_ms(tenant=tenant, hardware_class=hardware_class)
        used = selectors.usage_ms_by_class(
            tenant=tenant, start=period.start, end=max(now, period.end)
        ).get(hardware_class, 0)
        cap_ms = rate.hard_cap_gpu_seconds * 1000
        resets = period.end.strftime("%Y-%m-%d %H:%M UTC")
        if used >= cap_ms:
            raise PaymentRequired(
                f"The {hardware_class} hard cap of {rate.hard_cap_gpu_seconds} GPU-seconds for "
                f"this period is used up ({used / 1000:.1f} s); it resets at {resets}.",
                code="hard_cap_reached",
            )
        frames = frames_total or _frames_for(model, duration_s)
        reserve_ms, _ = _estimate_ms(model=model, width=width, height=height, frames_total=frames)
        if used + held + reserve_ms > cap_ms:
            left = max(0, cap_ms - used - held)
            also = f" ({held / 1000:.1f} s more are held for jobs not yet finished)" if held else ""
            raise PaymentRequired(
                f"This job needs about {reserve_ms / 1000:.1f} GPU-seconds but only "
                f"{left / 1000:.1f} of the {hardware_class} hard cap are left this "
                f"period{also}; it resets at {resets}.",
                code="hard_cap_would_exceed",
            )

    # How many run at once is the scheduler's business (plan.max_concurrent_jobs); here only
    # the backlog is capped, so a roster of thousands can be queued but not an unbounded flood.
    active = selectors.active_job_count(tenant=tenant)
    if active >= plan.max_queued_jobs:
        retry = int(_setting("BILLING_CONCURRENCY_RETRY_AFTER_S", 30))
        raise Problem(
            f"{active} jobs are queued or running; the {plan.name} plan allows "
            f"{plan.max_queued_jobs} at once. Retry when some finish.",
            code="too_many_queued_jobs",
            status_code=429,
            headers={"Retry-After": str(retry)},
        )

    if end_user and plan.end_user_jobs_per_day:
        window = timedelta(days=1)
        jobs = selectors.end_user_jobs_since(tenant=tenant, end_user=end_user, since=now - window)
        count = jobs.count()
        if count >= plan.end_user_jobs_per_day:
            times = list(jobs.order_by("created_at").values_list("created_at", flat=True))
            frees_at = times[count - plan.end_user_jobs_per_day] + window
            retry_after = max(1, math.ceil((frees_at - now).total_seconds()))
            raise Problem(
                f"This shopper has made {count} videos in the last 24 hours; the limit is "
                f"{plan.end_user_jobs_per_day}.",
                code="end_user_quota_exceeded",
                status_code=429,
                headers={"Retry-After": str(retry_after)},
            )
    return Admission(hardware_class=hardware_class, reserve_ms=reserve_ms)


def quota_admit(
    *,
    tenant: Tenant,
    model: str,
    width: int,
    height: int,
    duration_s: float,
    end_user: str = "",
    frames_total: int | None = None,
) -> Admission:
    """``quota_check`` where it holds: call it first in the transaction that inserts the job,
    then ``reservation_hold`` for that job.

    It takes the tenant's admission lock, a row lock on the tenant (SQLite: the IMMEDIATE
    transaction already holds the database's write lock), so one tenant's admissions run one
    after another, each counting the jobs, shopper videos and reservations that the ones
    before it committed. The lock is ``FOR NO KEY UPDATE``: inserts of rows that point at the
    tenant (usage, other tables) do not wait for it. Everything is read after the lock,
    ``now`` and the tenant's status included.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("quota_admit runs inside the transaction that creates the job")
    locked = Tenant.objects.select_for_update(no_key=True).filter(pk=tenant.pk).first() or tenant
    return _admission(
        tenant=locked,
        model=model,
        width=width,
        height=height,
        duration_s=duration_s,
        end_user=end_user,
        frames_total=frames_total,
        now=None,
    )


def reservation_hold(*, tenant: Tenant, job_id: object, admission: Admission) -> None:
    """Hold the admitted job's estimate against its class's hard cap (see UsageReservation)."""
    if admission.reserve_ms > 0:
        UsageReservation.objects.create(
            tenant=tenant,
            job_id=job_id,
            hardware_class=admission.hardware_class,
            milliseconds=admission.reserve_ms,
        )


def reservation_release(*, job_id: object) -> None:
    """The job is final: what it used is in the ledger, the rest of its estimate is free."""
    UsageReservation.objects.filter(job_id=job_id).delete()  # unscoped: by job id


# --- usage alerts -----------------------------------------------------------------------------


def usage_alerts_check(*, tenant: Tenant, now: datetime | None = None) -> list[UsageAlert]:
    """Fire the 80% and 100% alerts of included GPU-seconds not yet fired this period.

    The unique constraint makes each fire once per period even when two checks race; the
    notification (email, and the tenant webhook through BILLING_USAGE_ALERT_HOOK) is queued on
    commit.
    """
    now = now or timezone.now()
    subscription = selectors.subscription_for(tenant=tenant)
    plan = selectors.effective_plan(subscription=subscription)
    rates = {hw: r for hw, r in selectors.plan_rates(plan).items() if r.included_gpu_seconds}
    if not rates:
        return []
    period = selectors.current_period(subscription=subscription, now=now)
    used = selectors.usage_ms_by_class(tenant=tenant, start=period.start, end=now)
    fired: list[UsageAlert] = []
    for hardware_class, rate in sorted(rates.items()):
        included_ms = rate.included_gpu_seconds * 1000
        used_ms = used.get(hardware_class, 0)
        for threshold in ALERT_THRESHOLDS:
            if used_ms * 100 < included_ms * threshold:
                continue
            try:
                with transaction.atomic():
                    fired.append(
                        UsageAlert.objects.create(
                            tenant=tenant,
                            period_start=period.start,
                            hardware_class=hardware_class,
                            threshold_percent=threshold,
                            used_ms=used_ms,
                            included_ms=included_ms,
                        )
                    )
            except IntegrityError:
                continue  # fired already this period
    if fired:
        from billing.tasks import enqueue_alert_notifications

        ids = [alert.pk for alert in fired]
        transaction.on_commit(lambda: enqueue_alert_notifications(ids), robust=True)
    return fired


def usage_alert_notify(*, alert: UsageAlert) -> bool:
    """Email the tenant's owners and admins about one alert, once; then call the hook."""
    claimed = UsageAlert.objects.filter(pk=alert.pk, notified_at__isnull=True).update(
        notified_at=timezone.now()
    )
    if not claimed:
        return False
    recipients = sorted(
        {
            m.user.email
            for m in Membership.objects.for_tenant(alert.tenant)
            .filter(role__in=(Role.OWNER, Role.ADMIN))
            .select_related("user")
            if m.user.email
        }
    )
    used_s, included_s = alert.used_ms / 1000, alert.included_ms / 1000
    if recipients:
        send_mail(
            subject=f"[Reelcast] {alert.tenant.name}: {alert.threshold_percent}% of included "
            f"{alert.hardware_class} GPU time used",
            message=(
                f"{alert.tenant.name} has used {used_s:.0f} of its {included_s:.0f} "
                f"included {alert.hardware_class} GPU-seconds this billing period "
                f"({alert.threshold_percent}%). Usage beyond the included amount is "
                f"billed at the plan's overage price."
            ),
            from_email=None,
            recipient_list=recipients,
        )
    hook = _setting("BILLING_USAGE_ALERT_HOOK", "")
    if hook:
        hook_fn: Callable[..., Any] = import_string(hook)
        hook_fn(alert=alert)
    return True


# --- roll-ups ---------------------------------------------------------------------------------


def usage_rollup_hour(*, hour: datetime) -> int:
    """Recompute one hour's UsageRollup rows from the ledger (all tenants); returns row count.

    The hour is replaced whole in one transaction, so running it again gives the same rows.
    """
    hour = selectors.hour_floor(hour)
    grouped = (
        UsageEvent.objects.filter(  # unscoped: a task over every tenant
            created_at__gte=hour, created_at__lt=hour + HOUR
        )
        .values("tenant_id", "hardware_class", "end_user")
        .annotate(ms=Sum("milliseconds"), events=Count("id"))
    )
    rows = [
        UsageRollup(
            tenant_id=g["tenant_id"],
            hour=hour,
            hardware_class=g["hardware_class"],
            end_user=g["end_user"],
            milliseconds=g["ms"],
            events=g["events"],
        )
        for g in grouped
    ]
    with transaction.atomic():
        UsageRollup.objects.filter(hour=hour).delete()  # unscoped: the hour, all tenants
        UsageRollup.objects.bulk_create(rows)
        RollupHour.objects.update_or_create(
            hour=hour, defaults={"computed_at": timezone.now(), "rows": len(rows)}
        )
    return len(rows)


def usage_rollup_recent(*, now: datetime | None = None, hours: int = 3) -> int:
    """Roll up the last ``hours`` whole hours that ended at least BILLING_ROLLUP_DELAY_S ago."""
    now = now or timezone.now()
    last = (
        selectors.hour_floor(now - timedelta(seconds=int(_setting("BILLING_ROLLUP_DELAY_S", 300))))
        - HOUR
    )
    return sum(usage_rollup_hour(hour=last - i * HOUR) for i in range(hours))


# --- the Stripe catalogue ----------------------------------------------------------------------


def meter_event_name(hardware_class: str) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in hardware_class.lower())
    return f"gpu_ms_{safe}"


def meter_ensure(*, hardware_class: str) -> BillingMeter:
    """The class's Billing Meter, found by event name in Stripe or created there (sum of ms)."""
    meter, _ = BillingMeter.objects.get_or_create(
        hardware_class=hardware_class, defaults={"event_name": meter_event_name(hardware_class)}
    )
    if not meter.stripe_meter_id:
        found = gateway.meter_find(event_name=meter.event_name) or gateway.meter_create(
            event_name=meter.event_name, display_name=f"GPU milliseconds ({hardware_class})"
        )
        meter.stripe_meter_id = found["id"]
        meter.save(update_fields=["stripe_meter_id"])
    return meter


def _lookup_key(plan: Plan, part: str, terms: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(terms, sort_keys=True).encode()).hexdigest()[:12]
    return f"reelcast_{plan.slug}_{part}_{digest}"


def _decimal_string(value: Decimal) -> str:
    text = format(value.quantize(Decimal("1e-12")).normalize(), "f")
    return text if text not in ("-0", "") else "0"


def _price_ensure(params: dict[str, Any]) -> str:
    found = gateway.price_find(lookup_key=params["lookup_key"])
    return (found or gateway.price_create(params))["id"]


@dataclass
class CatalogSync:
    plans: int = 0
    prices_created_or_found: int = 0
    meters: list[str] = field(default_factory=list)


def stripe_catalog_sync() -> CatalogSync:
    """Make Stripe hold a product per plan, its monthly fee price, a meter per hardware class
    and one graduated metered price per plan and class (included ms free, then the overage
    price per ms). Idempotent: prices are found again by lookup keys derived from their terms.
    """
    result = CatalogSync()
    for plan in Plan.objects.prefetch_related("rates").order_by("slug"):
        if not plan.stripe_product_id:
            plan.stripe_product_id = gateway.product_create(name=plan.name, plan_slug=plan.slug)[
                "id"
            ]
        fee_terms = {
            "currency": plan.currency,
            "unit_amount": plan.monthly_fee_cents,
            "interval": "month",
            "product": plan.stripe_product_id,
        }
        key = _lookup_key(plan, "fee", fee_terms)
        if key != plan.stripe_lookup_key or not plan.stripe_price_id:
            plan.stripe_price_id = _price_ensure(
                {
                    "currency": plan.currency,
                    "product": plan.stripe_product_id,
                    "unit_amount": plan.monthly_fee_cents,
                    "recurring": {"interval": "month"},
                    "lookup_key": key,
                    "nickname": f"{plan.name} monthly fee",
                    "metadata": {"plan": plan.slug, "part": "fee"},
                }
            )
            plan.stripe_lookup_key = key
            result.prices_created_or_found += 1
        plan.save(
            update_fields=[
                "stripe_product_id",
                "stripe_price_id",
                "stripe_lookup_key",
                "updated_at",
            ]
        )
        for rate in plan.rates.all():
            meter = meter_ensure(hardware_class=rate.hardware_class)
            if meter.event_name not in result.meters:
                result.meters.append(meter.event_name)
            included_ms = rate.included_gpu_seconds * 1000
            per_ms = _decimal_string(rate.overage_cents_per_gpu_second / 1000)
            terms = {
                "currency": plan.currency,
                "included_ms": included_ms,
                "per_ms": per_ms,
                "meter": meter.stripe_meter_id,
                "product": plan.stripe_product_id,
            }
            key = _lookup_key(plan, meter.event_name, terms)
            if key == rate.stripe_lookup_key and rate.stripe_price_id:
                continue
            params: dict[str, Any] = {
                "currency": plan.currency,
                "product": plan.stripe_product_id,
                "lookup_key": key,
                "nickname": f"{plan.name} {rate.hardware_class} GPU time",
                "recurring": {
                    "interval": "month",
                    "usage_type": "metered",
                    "meter": meter.stripe_meter_id,
                },
                "metadata": {"plan": plan.slug, "hardware_class": rate.hardware_class},
            }
            if included_ms:
                params.update(
                    billing_scheme="tiered",
                    tiers_mode="graduated",
                    tiers=[
                        {"up_to": included_ms, "unit_amount_decimal": "0"},
                        {"up_to": "inf", "unit_amount_decimal": per_ms},
                    ],
                )
            else:
                params["unit_amount_decimal"] = per_ms
            rate.stripe_price_id = _price_ensure(params)
            rate.stripe_lookup_key = key
            rate.save(update_fields=["stripe_price_id", "stripe_lookup_key"])
            result.prices_created_or_found += 1
        result.plans += 1
    return result


# --- customers, checkout and the portal -------------------------------------------------------


def subscription_ensure(*, tenant: Tenant) -> Subscription:
    try:
        with transaction.atomic():
            subscription, _ = Subscription.objects.get_or_create(tenant=tenant)
    except IntegrityError:  # created by a concurrent call
        subscription = Subscription.objects.for_tenant(tenant).get()
    return subscription


def customer_ensure(*, tenant: Tenant) -> Subscription:
    """The tenant's Subscription row with a Stripe customer (created once, with an
    idempotency key, so two racing calls get the same customer)."""
    subscription = subscription_ensure(tenant=tenant)
    if subscription.stripe_customer_id:
        return subscription
    owner = (
        Membership.objects.for_tenant(tenant)
        .filter(role=Role.OWNER)
        .select_related("user")
        .order_by("created_at")
        .first()
    )
    customer = gateway.customer_create(
        tenant_id=str(tenant.pk), name=tenant.name, email=owner.user.email if owner else ""
    )
    Subscription.objects.filter(pk=subscription.pk, stripe_customer_id="").update(
        stripe_customer_id=customer["id"]
    )
    subscription.refresh_from_db()
    return subscription


@dataclass(frozen=True)
class CheckoutResult:
    url: str  # where to send the user ('' when the plan was changed in place)
    changed: bool  # True when an existing subscription was moved to the plan


def _stripe_problem(exc: Exception) -> Problem:
    if isinstance(exc, gateway.StripeUnavailable):
        return Problem(
            "The payment provider is unavailable; try again shortly.",
            code="payments_unavailable",
            status_code=503,
            headers={"Retry-After": "30"},
        )
    return Problem(
        f"The payment provider refused the request: {exc}", code="payments_refused", status_code=502
    )


def _payments_configured() -> None:
    if not gateway.is_configured():
        raise Problem(
            "Payments are not configured on this installation.",
            code="payments_not_configured",
            status_code=503,
        )


def checkout_start(*, tenant: Tenant, plan: Plan) -> CheckoutResult:
    """Subscribe through a Checkout Session, or move a live subscription to another plan."""
    _payments_configured()
    if not plan.stripe_price_id:
        raise Problem(
            f"The {plan.name} plan is not available for purchase yet.",
            code="plan_not_in_stripe",
            status_code=409,
        )
    metered = [r.stripe_price_id for r in plan.rates.all() if r.stripe_price_id]
    public = settings.REELCAST_PUBLIC_URL
    try:
        subscription = customer_ensure(tenant=tenant)
        if subscription.stripe_subscription_id and subscription.is_live:
            if subscription.plan_id == plan.pk:
                raise Problem(
                    f"The tenant is already on the {plan.name} plan.",
                    code="already_on_plan",
                    status_code=409,
                )
            since = int((subscription.stripe_event_at or subscription.created_at).timestamp())
            updated = gateway.subscription_change_prices(
                subscription_id=subscription.stripe_subscription_id,
                plan_slug=plan.slug,
                price_ids=[plan.stripe_price_id],
                metered_price_ids=metered,
                idempotency_key=(
                    f"reelcast-plan-{subscription.stripe_subscription_id}-"
                    f"{plan.stripe_lookup_key}-{since}"
                ),
            )
            with transaction.atomic():
                _subscription_apply(subscription, updated, at=timezone.now(), deleted=False)
            return CheckoutResult(url="", changed=True)
        session = gateway.checkout_session_create(
            customer_id=subscription.stripe_customer_id,
            tenant_id=str(tenant.pk),
            plan_slug=plan.slug,
            price_ids=[plan.stripe_price_id],
            metered_price_ids=metered,
            success_url=_setting(
                "BILLING_CHECKOUT_SUCCESS_URL", f"{public}/app/billing/?checkout=success"
            ),
            cancel_url=_setting(
                "BILLING_CHECKOUT_CANCEL_URL", f"{public}/app/billing/?checkout=canceled"
            ),
        )
    except (gateway.StripeUnavailable, gateway.StripeRejected) as exc:
        raise _stripe_problem(exc) from exc
    return CheckoutResult(url=session["url"], changed=False)


def portal_link(*, tenant: Tenant) -> str:
    """A Customer Portal session URL (payment methods, invoices, cancel)."""
    _payments_configured()
    public = settings.REELCAST_PUBLIC_URL
    try:
        subscription = customer_ensure(tenant=tenant)
        session = gateway.portal_session_create(
            customer_id=subscription.stripe_customer_id,
            return_url=_setting("BILLING_PORTAL_RETURN_URL", f"{public}/app/billing/"),
        )
    except (gateway.StripeUnavailable, gateway.StripeRejected) as exc:
        raise _stripe_problem(exc) from exc
    return session["url"]


# --- meter events: the outbox drain -----------------------------------------------------------


@dataclass
class PushResult:
    sent: int = 0
    duplicates: int = 0  # sent earlier by an attempt whose answer we never got
    retrying: int = 0
    failed: int = 0
    expired: int = 0
    stopped: str = ""  # why the drain stopped early (Stripe unavailable), if it did


def _backoff(attempts: int) -> timedelta:
    base = float(_setting("BILLING_METER_PUSH_BACKOFF_S", 30))
    ceiling = float(_setting("BILLING_METER_PUSH_BACKOFF_MAX_S", 3600))
    delay = min(ceiling, base * 2 ** max(0, attempts - 1))
    return timedelta(seconds=delay * random.uniform(0.5, 1.0))  # jitter spreads retries


def meter_events_push(
    *, limit: int = 500, now: datetime | None = None, tenant_id: object | None = None
) -> PushResult:
    """Send due outbox rows to Stripe as meter events, oldest first.

    Each row is claimed by pushing its ``next_attempt_at`` past a lease, so concurrent drains
    skip it. 429, 5xx, timeouts and refused connections put the row back with exponential
    backoff and stop the drain (Stripe is unwell: the rest wait for the next run); "already
    exists" is success; any other refusal marks the row failed for an operator. Rows older
    than Stripe accepts are marked expired (reconciliation reports them).
    """
    result = PushResult()
    if not gateway.is_configured():
        result.stopped = "Stripe is not configured"
        return result
    now = now or timezone.now()
    due = MeterEventOutbox.objects.filter(  # unscoped: a task over every tenant
        status=MeterEventOutbox.Status.PENDING, next_attempt_at__lte=now
    )
    if tenant_id is not None:
        due = due.filter(tenant_id=tenant_id)
    lease = timedelta(seconds=int(_setting("BILLING_METER_PUSH_LEASE_S", 120)))
    customers: dict[object, str] = {}
    meters: dict[str, BillingMeter] = {}
    for pk in list(due.order_by("occurred_at").values_list("pk", flat=True)[:limit]):
        claimed = MeterEventOutbox.objects.filter(  # unscoped: by id
            pk=pk,
            status=MeterEventOutbox.Status.PENDING,
            next_attempt_at__lte=now,
        ).update(next_attempt_at=now + lease, attempts=F("attempts") + 1)
        if not claimed:
            continue
        row = MeterEventOutbox.objects.select_related("tenant").get(pk=pk)  # unscoped: by id
        if row.occurred_at < now - METER_EVENT_MAX_AGE:
            row.status = MeterEventOutbox.Status.EXPIRED
            row.last_error = "Older than Stripe accepts meter events (35 days)."
            row.save(update_fields=["status", "last_error"])
            logger.error("meter event %s expired unsent (%s ms)", row.pk, row.value)
            result.expired += 1
            continue
        try:
            if row.tenant_id not in customers:
                customers[row.tenant_id] = customer_ensure(tenant=row.tenant).stripe_customer_id
            if row.hardware_class not in meters:
                meters[row.hardware_class] = meter_ensure(hardware_class=row.hardware_class)
            outcome = gateway.meter_event_create(
                event_name=meters[row.hardware_class].event_name,
                customer_id=customers[row.tenant_id],
                value=int(row.value),
                identifier=row.pk,
                timestamp=int(row.occurred_at.timestamp()),
            )
        except gateway.StripeUnavailable as exc:
            row.next_attempt_at = now + _backoff(row.attempts)
            row.last_error = f"unavailable: {exc}"[:500]
            row.save(update_fields=["next_attempt_at", "last_error"])
            logger.warning("meter push paused: %s (row %s, attempt %s)", exc, row.pk, row.attempts)
            result.retrying += 1
            result.stopped = str(exc)[:200]
            break
        except gateway.StripeRejected as exc:
            row.status = MeterEventOutbox.Status.FAILED
            row.last_error = f"refused: {exc}"[:500]
            row.save(update_fields=["status", "last_error"])
            logger.error("meter event %s refused by Stripe: %s", row.pk, exc)
            result.failed += 1
            continue
        row.status = MeterEventOutbox.Status.SENT
        row.sent_at = timezone.now()
        row.duplicate = outcome == "duplicate"
        row.last_error = ""
        row.save(update_fields=["status", "sent_at", "duplicate", "last_error"])
        result.sent += 1
        result.duplicates += int(row.duplicate)
    return result


def outbox_requeue(*, usage_event_ids: list[str]) -> int:
    """Put failed rows back in the queue (an operator's action after fixing the cause)."""
    return MeterEventOutbox.objects.filter(  # unscoped: by id, operator action
        pk__in=usage_event_ids,
        status=MeterEventOutbox.Status.FAILED,
    ).update(status=MeterEventOutbox.Status.PENDING, next_attempt_at=timezone.now(), last_error="")


# --- reconciliation ---------------------------------------------------------------------------


def reconcile_window(*, window_start: datetime, window_end: datetime) -> list[ReconciliationReport]:
    """Compare, per customer and meter, what we sent for [start, end) with Stripe's summary.

    Drift is Stripe's total minus what we sent: a non-zero value is logged and kept as a
    ``drift`` report. Rows still pending are reported beside it, not counted as drift.
    """
    meters = list(BillingMeter.objects.exclude(stripe_meter_id="").order_by("hardware_class"))
    customers = list(
        Subscription.objects.exclude(stripe_customer_id="")  # unscoped: a task
        .select_related("tenant")
        .order_by("tenant_id")
    )
    if not meters or not customers or not gateway.is_configured():
        return []
    window = {"created_at__gte": window_start, "created_at__lt": window_end}
    ledger = {
        (r["tenant_id"], r["hardware_class"]): r["ms"]
        for r in UsageEvent.objects.filter(**window)  # unscoped: a task over every tenant
        .values("tenant_id", "hardware_class")
        .annotate(ms=Sum("milliseconds"))
    }
    outbox: dict[tuple[object, str, str], int] = {}
    for r in (
        MeterEventOutbox.objects.filter(  # unscoped: a task over every tenant
            occurred_at__gte=window_start, occurred_at__lt=window_end
        )
        .values("tenant_id", "hardware_class", "status")
        .annotate(ms=Sum("value"))
    ):
        outbox[(r["tenant_id"], r["hardware_class"], r["status"])] = r["ms"]
    reports = []
    unavailable = ""
    for subscription in customers:
        for meter in meters:
            key = (subscription.tenant_id, meter.hardware_class)
            sent = outbox.get((*key, MeterEventOutbox.Status.SENT), 0)
            pending = outbox.get((*key, MeterEventOutbox.Status.PENDING), 0)
            values: dict[str, Any] = {
                "window_end": window_end,
                "ledger_ms": ledger.get(key, 0),
                "sent_ms": sent,
                "pending_ms": pending,
            }
            stripe_ms = None
            if not unavailable:
                try:
                    stripe_ms = gateway.meter_event_summary_total(
                        meter_id=meter.stripe_meter_id,
                        customer_id=subscription.stripe_customer_id,
                        start=int(window_start.timestamp()),
                        end=int(window_end.timestamp()),
                    )
                except (gateway.StripeUnavailable, gateway.StripeRejected) as exc:
                    unavailable = str(exc)[:400]
            if stripe_ms is None:
                values.update(
                    status=ReconciliationReport.Status.ERROR,
                    stripe_ms=None,
                    drift_ms=0,
                    detail=f"Stripe summary unavailable: {unavailable}",
                )
            else:
                drift = stripe_ms - sent
                values.update(
                    stripe_ms=stripe_ms,
                    drift_ms=drift,
                    status=(
                        ReconciliationReport.Status.DRIFT
                        if drift
                        else ReconciliationReport.Status.OK
                    ),
                    detail=(f"Stripe has {stripe_ms} ms, we sent {sent} ms" if drift else ""),
                )
                if drift:
                    logger.warning(
                        "meter drift: tenant %s %s %s..%s: Stripe %s ms, sent %s ms "
                        "(drift %+d ms, pending %s ms)",
                        subscription.tenant_id,
                        meter.event_name,
                        window_start.isoformat(),
                        window_end.isoformat(),
                        stripe_ms,
                        sent,
                        drift,
                        pending,
                    )
            report, _ = ReconciliationReport.objects.update_or_create(
                tenant_id=subscription.tenant_id,
                hardware_class=meter.hardware_class,
                window_start=window_start,
                defaults=values,
            )
            reports.append(report)
    return reports


# --- Stripe events (webhooks and the catch-up) -----------------------------------------------


def _from_unix(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def _id_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _subscription_by_stripe(
    *, subscription_id: str = "", customer_id: str = "", tenant_id: str = ""
) -> Subscription | None:
    rows = Subscription.objects.select_for_update()  # unscoped: found by Stripe's ids
    if subscription_id and (found := rows.filter(stripe_subscription_id=subscription_id).first()):
        return found
    if customer_id and (found := rows.filter(stripe_customer_id=customer_id).first()):
        return found
    try:
        tenant = Tenant.objects.filter(pk=uuid.UUID(tenant_id)).first() if tenant_id else None
    except ValueError:  # metadata someone else wrote; not one of our tenant ids
        tenant = None
    if tenant is None:
        return None
    subscription_ensure(tenant=tenant)
    return rows.filter(tenant=tenant).first()


def _plan_from_subscription(obj: dict[str, Any]) -> Plan | None:
    prices = [_id_of(item.get("price")) for item in (obj.get("items") or {}).get("data", [])]
    prices = [p for p in prices if p]
    if prices:
        plan = Plan.objects.filter(stripe_price_id__in=prices).first()
        if plan is None:
            rate = (
                PlanRate.objects.filter(stripe_price_id__in=prices).select_related("plan").first()
            )
            plan = rate.plan if rate else None
        if plan is not None:
            return plan
    slug = (obj.get("metadata") or {}).get("plan")
    return Plan.objects.filter(slug=slug).first() if slug else None


def _subscription_apply(
    subscription: Subscription, obj: dict[str, Any], *, at: datetime, deleted: bool
) -> None:
    """Copy a Stripe subscription object onto our row (its period lives on the items since
    API version 2025-03-31; older objects carry it at the top)."""
    items = (obj.get("items") or {}).get("data") or [{}]
    status = Subscription.Status.CANCELED if deleted else obj.get("status", subscription.status)
    subscription.status = status if status in Subscription.Status.values else subscription.status
    subscription.stripe_subscription_id = obj.get("id") or subscription.stripe_subscription_id
    subscription.stripe_customer_id = subscription.stripe_customer_id or _id_of(obj.get("customer"))
    start = items[0].get("current_period_start") or obj.get("current_period_start")
    end = items[0].get("current_period_end") or obj.get("current_period_end")
    subscription.current_period_start = _from_unix(start) or subscription.current_period_start
    subscription.current_period_end = _from_unix(end) or subscription.current_period_end
    subscription.cancel_at_period_end = bool(obj.get("cancel_at_period_end"))
    plan = _plan_from_subscription(obj)
    if plan is not None:
        subscription.plan = plan
    subscription.stripe_event_at = max(at, subscription.stripe_event_at or at)
    subscription.save()


def _on_checkout_completed(obj: dict[str, Any], at: datetime) -> Tenant | None:
    if obj.get("mode") != "subscription":
        return None
    metadata = obj.get("metadata") or {}
    subscription = _subscription_by_stripe(
        customer_id=_id_of(obj.get("customer")),
        tenant_id=obj.get("client_reference_id") or metadata.get("tenant_id", ""),
    )
    if subscription is None:
        logger.warning("checkout %s: no tenant for customer %s", obj.get("id"), obj.get("customer"))
        return None
    subscription.stripe_customer_id = subscription.stripe_customer_id or _id_of(obj.get("customer"))
    subscription.stripe_subscription_id = _id_of(obj.get("subscription"))
    if subscription.status in (
        Subscription.Status.NONE,
        Subscription.Status.CANCELED,
        Subscription.Status.INCOMPLETE_EXPIRED,
    ):
        subscription.status = Subscription.Status.INCOMPLETE  # until subscription.* says more
    if metadata.get("plan") and (
        subscription.plan is None or subscription.plan.slug != metadata["plan"]
    ):
        subscription.plan = Plan.objects.filter(slug=metadata["plan"]).first() or subscription.plan
    subscription.save()
    return subscription.tenant


def _on_subscription(obj: dict[str, Any], at: datetime, *, deleted: bool) -> Tenant | None:
    subscription = _subscription_by_stripe(
        subscription_id=obj.get("id", ""),
        customer_id=_id_of(obj.get("customer")),
        tenant_id=(obj.get("metadata") or {}).get("tenant_id", ""),
    )
    if subscription is None:
        logger.warning(
            "subscription %s: no tenant for customer %s", obj.get("id"), obj.get("customer")
        )
        return None
    other = subscription.stripe_subscription_id and subscription.stripe_subscription_id != obj.get(
        "id"
    )
    if other and (deleted or obj.get("status") not in Subscription.LIVE_STATUSES):
        return subscription.tenant  # news of an old subscription; the current one stands
    if subscription.stripe_event_at and at < subscription.stripe_event_at:
        return subscription.tenant  # older than what we have applied
    _subscription_apply(subscription, obj, at=at, deleted=deleted)
    return subscription.tenant


def _invoice_upsert(subscription: Subscription, obj: dict[str, Any], at: datetime) -> Invoice:
    invoice = Invoice.objects.filter(stripe_invoice_id=obj["id"]).first()  # unscoped: by id
    status = obj.get("status") or "open"
    if invoice is not None and (
        Invoice.STATUS_RANK.get(status, 0) < Invoice.STATUS_RANK.get(invoice.status, 0)
    ):
        status = invoice.status  # a late invoice.finalized never reopens a paid invoice
    values = {
        "tenant_id": subscription.tenant_id,
        "number": obj.get("number") or "",
        "status": status,
        "currency": obj.get("currency") or "usd",
        "amount_due": obj.get("amount_due") or 0,
        "amount_paid": obj.get("amount_paid") or 0,
        "total": obj.get("total") or 0,
        "hosted_invoice_url": obj.get("hosted_invoice_url") or "",
        "invoice_pdf": obj.get("invoice_pdf") or "",
        "period_start": _from_unix(obj.get("period_start")),
        "period_end": _from_unix(obj.get("period_end")),
        "stripe_created": _from_unix(obj.get("created")) or at,
    }
    invoice, _ = Invoice.objects.update_or_create(stripe_invoice_id=obj["id"], defaults=values)
    return invoice


def _on_invoice(obj: dict[str, Any], at: datetime, *, outcome: str) -> Tenant | None:
    subscription = _subscription_by_stripe(customer_id=_id_of(obj.get("customer")))
    if subscription is None:
        logger.warning("invoice %s: no tenant for customer %s", obj.get("id"), obj.get("customer"))
        return None
    _invoice_upsert(subscription, obj, at)
    if outcome == "failed":
        if subscription.past_due_since is None:
            subscription.past_due_since = at
        if subscription.status in (Subscription.Status.ACTIVE, Subscription.Status.TRIALING):
            subscription.status = Subscription.Status.PAST_DUE
        subscription.save(update_fields=["past_due_since", "status", "updated_at"])
    elif outcome == "paid":
        subscription.past_due_since = None
        if subscription.status == Subscription.Status.PAST_DUE:
            subscription.status = Subscription.Status.ACTIVE
        subscription.save(update_fields=["past_due_since", "status", "updated_at"])
        _reinstate_if_ours(subscription)
    return subscription.tenant


_HANDLERS: dict[str, Callable[[dict[str, Any], datetime], Tenant | None]] = {
    "checkout.session.completed": _on_checkout_completed,
    "customer.subscription.created": lambda o, at: _on_subscription(o, at, deleted=False),
    "customer.subscription.updated": lambda o, at: _on_subscription(o, at, deleted=False),
    "customer.subscription.deleted": lambda o, at: _on_subscription(o, at, deleted=True),
    "invoice.finalized": lambda o, at: _on_invoice(o, at, outcome="finalized"),
    "invoice.paid": lambda o, at: _on_invoice(o, at, outcome="paid"),
    "invoice.payment_failed": lambda o, at: _on_invoice(o, at, outcome="failed"),
}
HANDLED_EVENT_TYPES = sorted(_HANDLERS)


def stripe_event_process(*, event: dict[str, Any], source: str = "webhook") -> bool:
    """Apply one verified Stripe event exactly once; False when it was applied before.

    The ProcessedStripeEvent row and the event's effects commit together: a failure in a
    handler rolls both back, so Stripe's redelivery (or the catch-up) applies it later.
    """
    at = _from_unix(event["created"]) or timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = ProcessedStripeEvent.objects.create(
                    id=event["id"], type=event["type"], stripe_created=at, source=source
                )
        except IntegrityError:
            return False
        handler = _HANDLERS.get(event["type"])
        tenant = handler(event["data"]["object"], at) if handler else None
        if tenant is not None:
            record.tenant = tenant
            record.save(update_fields=["tenant"])
    return True


CATCH_UP_CURSOR = "stripe_events"


def stripe_events_catch_up(*, now: datetime | None = None) -> int:
    """Apply events that never arrived as webhooks: list them from Stripe since the last run
    (less an hour, for events created while it ran) and process the ones not yet seen.

    With Stripe off there is nothing to catch up: one INFO line, and the cursor stays where it
    is (when Stripe is turned on, the first run reads back as far as Stripe keeps events)."""
    if not gateway.is_configured():
        logger.info("Stripe off (STRIPE_SECRET_KEY is not set): no Stripe events to catch up")
        return 0
    now = now or timezone.now()
    cursor = BillingCursor.objects.filter(name=CATCH_UP_CURSOR).first()
    oldest = now - timedelta(days=30)  # Stripe keeps events for 30 days
    since = max(cursor.value - HOUR, oldest) if cursor else oldest
    applied = 0
    for event in gateway.events_since(
        created_after=int(since.timestamp()), types=HANDLED_EVENT_TYPES
    ):
        if stripe_event_process(event=event, source="catch_up"):
            applied += 1
    BillingCursor.objects.update_or_create(name=CATCH_UP_CURSOR, defaults={"value": now})
    if applied:
        logger.warning("Stripe catch-up applied %s events that no webhook delivered", applied)
    return applied


# --- dunning ----------------------------------------------------------------------------------

NONPAYMENT_REASON = (
    "Payment overdue since {since:%Y-%m-%d}: update the payment method in the "
    "billing portal to resume."
)


def dunning_enforce(*, now: datetime | None = None) -> int:
    """Suspend tenants whose payment has been overdue longer than BILLING_DUNNING_GRACE_S.

    Only active tenants are suspended (an operator's suspension is left as it is), and the
    suspension is marked as billing's, so ``invoice.paid`` lifts exactly this one.
    """
    now = now or timezone.now()
    grace = timedelta(seconds=int(_setting("BILLING_DUNNING_GRACE_S", 7 * 24 * 3600)))
    overdue = Subscription.objects.filter(  # unscoped: a task over every tenant
        past_due_since__isnull=False,
        past_due_since__lte=now - grace,
        suspended_for_nonpayment=False,
    ).values_list("pk", flat=True)
    suspended = 0
    for pk in list(overdue):
        with transaction.atomic():
            subscription = (
                Subscription.objects.select_for_update()  # unscoped: by id
                .filter(pk=pk, past_due_since__lte=now - grace, suspended_for_nonpayment=False)
                .first()
            )
            if subscription is None:
                continue
            changed = Tenant.objects.filter(
                pk=subscription.tenant_id, status=Tenant.Status.ACTIVE
            ).update(
                status=Tenant.Status.SUSPENDED,
                suspended_reason=NONPAYMENT_REASON.format(since=subscription.past_due_since),
            )
            if changed:
                subscription.suspended_for_nonpayment = True
                subscription.save(update_fields=["suspended_for_nonpayment", "updated_at"])
                logger.warning("tenant %s suspended for non-payment", subscription.tenant_id)
                suspended += 1
    return suspended


def _reinstate_if_ours(subscription: Subscription) -> None:
    if not subscription.suspended_for_nonpayment:
        return
    Tenant.objects.filter(pk=subscription.tenant_id, status=Tenant.Status.SUSPENDED).update(
        status=Tenant.Status.ACTIVE, suspended_reason=""
    )
    subscription.suspended_for_nonpayment = False
    subscription.save(update_fields=["suspended_for_nonpayment", "updated_at"])
    logger.info("tenant %s reinstated after payment", subscription.tenant_id)


# --- plans ------------------------------------------------------------------------------------


def plan_upsert(
    *, slug: str, fields: dict[str, Any], rates: dict[str, dict[str, Any]], overwrite: bool = False
) -> tuple[Plan, bool]:
    """Create a plan with its per-class rates; an existing plan is left as the operators
    edited it unless ``overwrite``. Returns (plan, created)."""
    with transaction.atomic():
        plan = Plan.objects.filter(slug=slug).first()
        created = plan is None
        if plan is None:
            plan = Plan.objects.create(slug=slug, **fields)
        elif overwrite:
            for name, value in fields.items():
                setattr(plan, name, value)
            plan.save()
        if created or overwrite:
            for hardware_class, terms in rates.items():
                PlanRate.objects.update_or_create(
                    plan=plan, hardware_class=hardware_class, defaults=terms
                )
            if overwrite:
                plan.rates.exclude(hardware_class__in=list(rates)).delete()
    return plan, created


def subscription_assign(
    *,
    tenant: Tenant,
    plan: Plan | None,
    status: str = Subscription.Status.ACTIVE,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
) -> Subscription:
    """Put a tenant on a plan without Stripe (an operator's decision: a school paying by
    purchase order, a trial). A Stripe subscription's own events overwrite this later."""
    subscription = subscription_ensure(tenant=tenant)
    subscription.plan = plan
    subscription.status = status
    subscription.current_period_start = period_start
    subscription.current_period_end = period_end
    subscription.save()
    return subscription
