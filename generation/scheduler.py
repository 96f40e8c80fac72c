"""Which queued job runs next, and on which pool.

Jobs wait in the database, not in the broker: a pool is sent a job only when it has a free slot,
so the broker never holds more than a pool can run and the order stays ours:

1. effective priority class, highest first (interactive > standard > bulk), where a job gains one
   class for every REELCAST_PRIORITY_AGING_S it has waited, so nothing starves;
2. weighted fair share between tenants: the tenant with the least recent GPU use per unit of
   weight goes first (recent = usage rows in the fair-share window plus jobs it has in flight);
   ties go to the tenant that was served least recently;
3. age, oldest first.

Per-tenant caps (Tenant.max_concurrent_jobs, and a pool's optional ``tenant_cap``) are never
exceeded. Each claim holds the pool's lock row (so slots are counted and filled in one step),
skips job rows another transaction has locked (``SELECT … FOR UPDATE SKIP LOCKED`` on
PostgreSQL) and is a conditional update, so several dispatchers can run at once without
over-filling a pool or handing out a job twice; on SQLite the write lock serialises them
(correct, if serial).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from billing.models import UsageEvent
from billing.selectors import effective_plan_for
from generation.models import Job, JobState, PoolLock, Priority, WorkerHeartbeat
from tenants.models import Tenant

logger = logging.getLogger(__name__)

IN_FLIGHT_STATES = (JobState.QUEUED, JobState.RUNNING)
# A dispatched job still counts against its pool until generation ends (post-processing runs on
# the CPU cluster and does not hold a GPU).


@dataclass(frozen=True)
class Pool:
    name: str
    hardware_class: str
    capacity: int
    models: tuple[str, ...]
    tenant_cap: int | None = None
    autoscale: bool = False  # slots = live workers (by heartbeat), at most ``capacity``


def pools() -> list[Pool]:
    return [
        Pool(
            name=name,
            hardware_class=spec.get("hardware_class", "cpu"),
            capacity=int(spec.get("capacity", 1)),
            models=tuple(spec.get("models", [])),
            tenant_cap=spec.get("tenant_cap"),
            autoscale=bool(spec.get("autoscale", False)),
        )
        for name, spec in settings.REELCAST_POOLS.items()
    ]


def pool_for_model(model: str) -> Pool | None:
    for pool in pools():
        if model in pool.models:
            return pool
    return None


def _in_flight(pool: Pool):
    return Job.objects.filter(
        pool=pool.name, dispatched_at__isnull=False, state__in=IN_FLIGHT_STATES
    )


def slots(pool: Pool) -> int:
    """How many jobs the pool can run at once.

    A fixed pool has ``capacity`` slots. An autoscaled pool (GPU pods added and removed on
    queue depth) has one slot per live worker, so a pool scaled to zero takes nothing (and its
    queue depth makes the autoscaler add a pod), and a new pod's first heartbeat opens a slot.
    """
    if not pool.autoscale:
        return pool.capacity
    fresh = timezone.now() - timedelta(seconds=3 * settings.REELCAST_HEARTBEAT_S)
    alive = WorkerHeartbeat.objects.filter(pool=pool.name, last_seen__gte=fresh).count()
    return min(pool.capacity, alive * settings.REELCAST_POOL_WORKERS)


def free_slots(pool: Pool) -> int:
    return max(0, slots(pool) - _in_flight(pool).count())


def effective_priority(job_priority: int, created_at: datetime, now: datetime) -> int:
    aging = settings.REELCAST_PRIORITY_AGING_S
    bonus = int((now - created_at).total_seconds() // aging) if aging > 0 else 0
    return job_priority + bonus


@dataclass(frozen=True)
class _Candidate:
    job_id: object
    tenant_id: object
    sort_key: tuple


def _candidates(pool: Pool, now: datetime) -> list[_Candidate]:
    waiting = Job.objects.filter(
        state=JobState.QUEUED,
        dispatched_at__isnull=True,
        cancel_requested_at__isnull=True,
        model__in=pool.models,
    )
    tenant_ids = list(waiting.values_list("tenant_id", flat=True).distinct())
    if not tenant_ids:
        return []
    in_flight_all = dict(
        Job.objects.filter(
            tenant_id__in=tenant_ids, dispatched_at__isnull=False, state__in=IN_FLIGHT_STATES
        )
        .values_list("tenant_id")
        .annotate(n=Count("id"))
    )
    in_flight_pool = dict(
        _in_flight(pool)
        .filter(tenant_id__in=tenant_ids)
        .values_list("tenant_id")
        .annotate(n=Count("id"))
    )
    window_start = now - timedelta(seconds=settings.REELCAST_FAIR_SHARE_WINDOW_S)
    recent_ms = dict(
        UsageEvent.objects.filter(tenant_id__in=tenant_ids, created_at__gte=window_start)
        .values_list("tenant_id")
        .annotate(ms=Sum("milliseconds"))
    )
    last_served = dict(
        Job.objects.filter(tenant_id__in=tenant_ids, dispatched_at__isnull=False)
        .values_list("tenant_id")
        .annotate(at=Max("dispatched_at"))
    )
    tenants = {t.id: t for t in Tenant.objects.filter(id__in=tenant_ids, status="active")}
    in_flight_cost = settings.REELCAST_FAIR_SHARE_IN_FLIGHT_MS
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    out: list[_Candidate] = []
    for tenant_id in tenant_ids:
        tenant = tenants.get(tenant_id)
        if tenant is None:
            continue  # suspended tenants' jobs wait
        plan = effective_plan_for(tenant=tenant)
        cap = plan.max_concurrent_jobs if plan is not None else tenant.max_concurrent_jobs
        if in_flight_all.get(tenant_id, 0) >= cap:
            continue
        if pool.tenant_cap is not None and in_flight_pool.get(tenant_id, 0) >= pool.tenant_cap:
            continue
        mine = waiting.filter(tenant_id=tenant_id)
        heads = [
            j
            for j in (
                mine.order_by("-priority", "created_at", "id").first(),
                mine.order_by("created_at", "id").first(),
            )
            if j is not None
        ]
        head = max(
            heads,
            key=lambda j: (
                effective_priority(j.priority, j.created_at, now),
                -j.created_at.timestamp(),
            ),
        )
        usage = recent_ms.get(tenant_id, 0) + in_flight_all.get(tenant_id, 0) * in_flight_cost
        share = usage / max(1, tenant.fair_share_weight)
        out.append(
            _Candidate(
                job_id=head.id,
                tenant_id=tenant_id,
                sort_key=(
                    -effective_priority(head.priority, head.created_at, now),
                    share,
                    last_served.get(tenant_id) or epoch,
                    head.created_at,
                    str(head.id),
                ),
            )
        )
    out.sort(key=lambda c: c.sort_key)
    return out


def _claim(job_id: object, pool: Pool, now: datetime) -> bool:
    rows = Job.objects.filter(
        pk=job_id,
        state=JobState.QUEUED,
        dispatched_at__isnull=True,
        cancel_requested_at__isnull=True,
    )
    locked_elsewhere = (
        connection.features.has_select_for_update_skip_locked
        and not rows.select_for_update(skip_locked=True).exists()
    )
    if locked_elsewhere:
        return False  # another transaction holds this job row
    return rows.update(dispatched_at=now, pool=pool.name) == 1


def dispatch_pool(pool: Pool, *, limit: int | None = None) -> list[object]:
    """Claim jobs for ``pool``'s free slots; returns the claimed job ids (enqueue them)."""
    claimed: list[object] = []
    PoolLock.objects.get_or_create(name=pool.name)
    for _ in range(limit if limit is not None else pool.capacity):
        with transaction.atomic():
            # Counting free slots and claiming must be one step per pool, or two dispatchers
            # both see the last free slot and over-fill the pool.
            PoolLock.objects.select_for_update().get(name=pool.name)
            if free_slots(pool) <= 0:
                break
            now = timezone.now()
            picked = None
            for candidate in _candidates(pool, now):
                if _claim(candidate.job_id, pool, now):
                    picked = candidate.job_id
                    break
            if picked is None:
                break
            claimed.append(picked)
    return claimed


def jobs_ahead(job: Job, *, now: datetime | None = None):
    """The waiting jobs the dispatcher hands out before ``job``, as one indexed filter.

    Exact dispatch order also depends on fair share, tenant caps and suspended tenants, which
    change with every dispatch and would mean replaying the dispatcher; this counts what can be
    known from the rows themselves: waiting jobs of the same pool whose *effective* priority
    (class plus one per REELCAST_PRIORITY_AGING_S waited, as the dispatcher ages them) is
    higher, or equal and older. Fair share can still move a job ahead of another tenant's of the
    same class; a later interactive job does count as ahead of an earlier bulk one.

    A job of class p created at c has effective priority p + floor((now - c) / aging), so "at
    least e" is "created at or before now - (e - p) * aging": one created_at range per class.
    """
    now = now or timezone.now()
    pool = pool_for_model(job.model)
    models = pool.models if pool else (job.model,)
    mine = effective_priority(job.priority, job.created_at, now)
    aging = timedelta(seconds=settings.REELCAST_PRIORITY_AGING_S)
    ahead = Q()
    for priority in Priority.values:
        if aging.total_seconds() <= 0:
            higher = Q(pk__in=[]) if priority <= mine else Q()
            equal = Q() if priority == mine else Q(pk__in=[])
        else:
            higher = Q(created_at__lte=now - (mine + 1 - priority) * aging)
            equal = Q(created_at__lte=now - (mine - priority) * aging)
        ahead |= Q(priority=priority) & (higher | (equal & Q(created_at__lt=job.created_at)))
    return (
        Job.objects.filter(  # unscoped: a count across tenants, no rows are shown
            state=JobState.QUEUED,
            dispatched_at__isnull=True,
            cancel_requested_at__isnull=True,
            model__in=models,
        )
        .filter(ahead)
        .exclude(pk=job.pk)
    )


def queue_position(job: Job, *, now: datetime | None = None) -> int | None:
    """How many jobs the pool takes before this one (0: it is next, or already handed to a
    worker); None once it left the queue."""
    if job.state != JobState.QUEUED:
        return None
    if job.dispatched_at is not None:
        return 0
    return jobs_ahead(job, now=now).count()
