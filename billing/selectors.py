"""Reads for billing: plans, periods, usage totals and cost, always for one tenant at a time.

Period totals read whole rolled-up hours from UsageRollup and only the tail since the last
rolled-up hour from the ledger, so a quota check costs a few indexed queries however old the
period is.
"""

from __future__ import annotations

import calendar
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from billing.models import (
    Invoice,
    Plan,
    PlanRate,
    RollupHour,
    Subscription,
    UsageAlert,
    UsageEvent,
    UsageReservation,
    UsageRollup,
)
from tenants.models import Tenant

HOUR = timedelta(hours=1)


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def hardware_class_for_model(model: str) -> str:
    """The hardware class of the pool that runs ``model`` (the default pool's otherwise)."""
    pools: dict = getattr(settings, "REELCAST_POOLS", {}) or {}
    for pool in pools.values():
        if model in pool.get("models", []):
            return str(pool.get("hardware_class", "cpu"))
    default = pools.get("default") or {}
    return str(default.get("hardware_class", "cpu"))


# --- plans and subscriptions ------------------------------------------------------------------


def subscription_for(*, tenant: Tenant) -> Subscription | None:
    return (
        Subscription.objects.for_tenant(tenant)
        .select_related("plan")
        .prefetch_related("plan__rates")
        .first()
    )


def default_plan() -> Plan | None:
    slug = getattr(settings, "BILLING_DEFAULT_PLAN", "")
    if not slug:
        return None
    return Plan.objects.prefetch_related("rates").filter(slug=slug).first()


def effective_plan(*, subscription: Subscription | None) -> Plan | None:
    """The plan whose limits apply: the subscribed one while the subscription is live."""
    if subscription is not None and subscription.plan is not None and subscription.is_live:
        return subscription.plan
    return default_plan()


def effective_plan_for(*, tenant: Tenant) -> Plan | None:
    """The plan whose limits apply to ``tenant`` now (priority class, retention, limits)."""
    return effective_plan(subscription=subscription_for(tenant=tenant))


def plan_rates(plan: Plan | None) -> dict[str, PlanRate]:
    return {rate.hardware_class: rate for rate in plan.rates.all()} if plan else {}


def plan_list() -> QuerySet[Plan]:
    return (
        Plan.objects.filter(is_public=True)
        .prefetch_related("rates")
        .order_by("monthly_fee_cents", "slug")
    )


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


def current_period(*, subscription: Subscription | None, now: datetime | None = None) -> Period:
    """The subscription's billing period, or the calendar month (UTC) without one."""
    now = now or timezone.now()
    if (
        subscription is not None
        and subscription.current_period_start
        and subscription.current_period_end
        and subscription.current_period_start <= now < subscription.current_period_end
    ):
        return Period(subscription.current_period_start, subscription.current_period_end)
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(start.year, start.month)[1]
    return Period(start, start + timedelta(days=days))


# --- usage totals -----------------------------------------------------------------------------


def _rolled_until(first: datetime, end: datetime) -> datetime:
    """The end of the unbroken run of rolled-up hours that starts at ``first`` (an hour)."""
    cursor = first
    hours = RollupHour.objects.filter(hour__gte=first, hour__lte=end - HOUR).order_by("hour")
    for hour in hours.values_list("hour", flat=True):
        if hour != cursor:
            break
        cursor += HOUR
    return cursor


def usage_ms_by_class(*, tenant: Tenant, start: datetime, end: datetime) -> dict[str, int]:
    """Net milliseconds (usage, corrections and refunds) per hardware class in [start, end).

    Whole hours that are rolled up come from UsageRollup; the part of the first hour before it
    and everything after the last rolled-up hour come from the ledger.
    """
    first = hour_floor(start)
    if first != start:
        first += HOUR
    split = _rolled_until(first, end) if first < end else first
    totals: dict[str, int] = {}

    def add(rows) -> None:
        for row in rows.values("hardware_class").annotate(ms=Sum("milliseconds")):
            totals[row["hardware_class"]] = totals.get(row["hardware_class"], 0) + row["ms"]

    ledger = UsageEvent.objects.for_tenant(tenant)
    if split > first:
        add(UsageRollup.objects.for_tenant(tenant).filter(hour__gte=first, hour__lt=split))
        add(ledger.filter(created_at__gte=start, created_at__lt=first))
        add(ledger.filter(created_at__gte=split, created_at__lt=end))
    else:
        add(ledger.filter(created_at__gte=start, created_at__lt=end))
    return totals


def usage_breakdown(*, tenant: Tenant, start: datetime, end: datetime, by: str) -> list[dict]:
    """Usage in [start, end) grouped by ``day``, ``template``, ``end_user`` or ``hardware_class``."""
    rows = UsageEvent.objects.for_tenant(tenant).filter(created_at__gte=start, created_at__lt=end)
    if by == "day":
        grouped = (
            rows.annotate(day=TruncDay("created_at", tzinfo=UTC))
            .values("day")
            .annotate(ms=Sum("milliseconds"), events=Count("id"))
            .order_by("day")
        )
        return [
            {
                "key": row["day"].date().isoformat(),
                "milliseconds": row["ms"],
                "events": row["events"],
            }
            for row in grouped
        ]
    column = {
        "template": "job__template_id",
        "end_user": "end_user",
        "hardware_class": "hardware_class",
    }[by]
    grouped = (
        rows.values(column)
        .annotate(ms=Sum("milliseconds"), events=Count("id"))
        .order_by("-ms", column)
    )
    return [
        {
            "key": str(row[column]) if row[column] is not None else "",
            "milliseconds": row["ms"],
            "events": row["events"],
        }
        for row in grouped
    ]


# --- money ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassCost:
    hardware_class: str
    used_ms: int
    included_ms: int
    overage_ms: int
    overage_cents: Decimal


@dataclass(frozen=True)
class CostSummary:
    currency: str
    period: Period
    fee_cents: int
    classes: list[ClassCost] = field(default_factory=list)
    so_far_cents: int = 0
    projected_cents: int = 0


def overage_cents(rate: PlanRate | None, used_ms: int) -> tuple[int, Decimal]:
    if rate is None:
        return 0, Decimal(0)
    over = max(0, used_ms - rate.included_gpu_seconds * 1000)
    return over, rate.overage_cents_per_gpu_second * over / 1000


def _cents(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def cost_summary(*, tenant: Tenant, now: datetime | None = None) -> CostSummary:
    """What the period has cost so far from our own ledger, and where it is heading.

    The projection scales each class's usage so far linearly to the end of the period.
    """
    now = now or timezone.now()
    subscription = subscription_for(tenant=tenant)
    plan = effective_plan(subscription=subscription)
    period = current_period(subscription=subscription, now=now)
    used = usage_ms_by_class(tenant=tenant, start=period.start, end=min(now, period.end))
    rates = plan_rates(plan)
    elapsed = max((now - period.start).total_seconds(), 1.0)
    scale = Decimal(str(max((period.end - period.start).total_seconds() / elapsed, 1.0)))
    fee = plan.monthly_fee_cents if plan else 0
    classes: list[ClassCost] = []
    so_far = projected = Decimal(fee)
    for hardware_class in sorted(set(used) | set(rates)):
        used_ms = used.get(hardware_class, 0)
        rate = rates.get(hardware_class)
        over_ms, over_cents = overage_cents(rate, used_ms)
        classes.append(
            ClassCost(
                hardware_class,
                used_ms,
                rate.included_gpu_seconds * 1000 if rate else 0,
                over_ms,
                over_cents,
            )
        )
        so_far += over_cents
        projected += overage_cents(rate, int(used_ms * scale))[1]
    return CostSummary(
        currency=plan.currency if plan else "usd",
        period=period,
        fee_cents=fee,
        classes=classes,
        so_far_cents=_cents(so_far),
        projected_cents=_cents(projected),
    )


# --- the rest the billing page shows ------------------------------------------------------------


def invoice_list(*, tenant: Tenant) -> QuerySet[Invoice]:
    return Invoice.objects.for_tenant(tenant).order_by("-stripe_created")


def alert_list(*, tenant: Tenant, since: datetime) -> QuerySet[UsageAlert]:
    return (
        UsageAlert.objects.for_tenant(tenant).filter(period_start__gte=since).order_by("created_at")
    )


def active_job_count(*, tenant: Tenant) -> int:
    from generation.models import Job, JobState

    return (
        Job.objects.for_tenant(tenant)
        .filter(
            state__in=(
                JobState.QUEUED,
                JobState.RUNNING,
                JobState.POSTPROCESSING,
                JobState.MODERATING,
            )
        )
        .count()
    )


def reserved_ms(*, tenant: Tenant, hardware_class: str) -> int:
    """Milliseconds of ``hardware_class`` held by the tenant's jobs not yet finished (an
    indexed sum over live reservations only)."""
    total = (
        UsageReservation.objects.for_tenant(tenant)
        .filter(hardware_class=hardware_class)
        .aggregate(ms=Sum("milliseconds"))["ms"]
    )
    return int(total or 0)


def end_user_jobs_since(*, tenant: Tenant, end_user: str, since: datetime) -> QuerySet:
    from generation.models import Job

    return Job.objects.for_tenant(tenant).filter(end_user=end_user, created_at__gte=since)


# --- measured device time ----------------------------------------------------------------------

DEFAULT_MS_PER_FRAME_MEGAPIXEL = {"preview": 5.0, "default": 2000.0}


def ms_per_frame_megapixel(*, model: str, width: int, height: int) -> tuple[float, int]:
    """Median device ms per frame per megapixel of recent shots of ``model``, and how many
    measured shots it comes from (0: the configured BILLING_QUOTE_FALLBACK rate).

    Shots of the same size are preferred when there are enough of them; other sizes are
    normalised per pixel. This is a platform-wide rate (the same GPU does the same work for
    every tenant), cached for BILLING_QUOTE_CACHE_S. Quotes, hard-cap checks and job ETAs all
    read it, so a price and a wait are estimated from the same measurements.
    """
    cache_key = f"billing:quote-rate:{model}:{width}x{height}"
    ttl = int(getattr(settings, "BILLING_QUOTE_CACHE_S", 300))
    if ttl > 0 and (hit := cache.get(cache_key)) is not None:
        return hit
    rows = (
        UsageEvent.objects.filter(  # unscoped: a platform-wide rate, no tenant data leaves
            model=model,
            kind=UsageEvent.Kind.USAGE,
            job__isnull=False,
            shot_index__isnull=False,
            milliseconds__gt=0,
        )
        .order_by("-created_at")
        .values_list("milliseconds", "shot_index", "job__width", "job__height", "job__shots")[
            : int(getattr(settings, "BILLING_QUOTE_SAMPLES", 200))
        ]
    )
    same: list[float] = []
    other: list[float] = []
    for ms, shot_index, w, h, shots in rows:
        try:
            frames = int(shots[shot_index]["num_frames"])
        except (IndexError, KeyError, TypeError, ValueError):
            continue
        if frames <= 0 or not w or not h:
            continue
        rate = ms / (frames * w * h / 1e6)
        (same if (w, h) == (width, height) else other).append(rate)
    enough = int(getattr(settings, "BILLING_QUOTE_MIN_SAMPLES", 5))
    samples = same if len(same) >= enough else same + other
    if samples:
        result = (float(statistics.median(samples)), len(samples))
    else:
        fallback = {
            **DEFAULT_MS_PER_FRAME_MEGAPIXEL,
            **getattr(settings, "BILLING_QUOTE_FALLBACK", {}),
        }
        result = (float(fallback.get(model, fallback["default"])), 0)
    if ttl > 0:
        cache.set(cache_key, result, ttl)
    return result
