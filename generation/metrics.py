"""Prometheus metrics, computed from the database at scrape time.

Every web process answers the same numbers (they come from PostgreSQL), so autoscalers can
query ``max(reelcast_queue_depth{pool="…"})`` across pods.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from billing.models import UsageEvent
from generation.models import Job, JobState, JobTransition, WorkerHeartbeat
from generation.scheduler import pools

STAGE_WINDOW = timedelta(hours=1)


class _DatabaseCollector:
    def collect(self):
        now = timezone.now()
        depth = GaugeMetricFamily(
            "reelcast_queue_depth", "Jobs waiting for a slot in each pool", labels=["pool"]
        )
        slots = GaugeMetricFamily(
            "reelcast_pool_busy_slots", "Jobs a pool is running or about to run", labels=["pool"]
        )
        for pool in pools():
            waiting = Job.objects.filter(
                state=JobState.QUEUED, dispatched_at__isnull=True, model__in=pool.models
            ).count()
            busy = Job.objects.filter(
                pool=pool.name,
                dispatched_at__isnull=False,
                state__in=[JobState.QUEUED, JobState.RUNNING],
            ).count()
            depth.add_metric([pool.name], waiting)
            slots.add_metric([pool.name], busy)
        yield depth
        yield slots

        states = GaugeMetricFamily("reelcast_jobs", "Jobs by state", labels=["state"])
        counts = dict(Job.objects.values_list("state").annotate(n=Count("id")))
        for state in JobState.values:
            states.add_metric([state], counts.get(state, 0))
        yield states

        failures = GaugeMetricFamily(
            "reelcast_job_failures_last_hour", "Jobs failed in the last hour", labels=["code"]
        )
        recent = (
            Job.objects.filter(state=JobState.FAILED, finished_at__gte=now - timedelta(hours=1))
            .values_list("error_code")
            .annotate(n=Count("id"))
        )
        for code, n in recent:
            failures.add_metric([code or "unknown"], n)
        yield failures

        gpu = CounterMetricFamily(
            "reelcast_gpu_seconds", "Metered device seconds", labels=["hardware_class"]
        )
        for hardware, ms in UsageEvent.objects.values_list("hardware_class").annotate(
            ms=Sum("milliseconds")
        ):
            gpu.add_metric([hardware], (ms or 0) / 1000)
        yield gpu

        yield from _stage_durations(now)

        workers = GaugeMetricFamily(
            "reelcast_workers_alive", "Workers with a heartbeat in the last minute", labels=["pool"]
        )
        alive = (
            WorkerHeartbeat.objects.filter(last_seen__gte=now - timedelta(minutes=1))
            .values_list("pool")
            .annotate(n=Count("id"))
        )
        for pool_name, n in alive:
            workers.add_metric([pool_name], n)
        yield workers


def _stage_durations(now):
    """How long jobs that finished in the last hour spent in each state they passed through
    (queued, running, postprocessing, moderating, in_review): p50, p95 and max, from the
    recorded transitions, so every web process reports the same figures."""
    import numpy as np

    spent: dict[str, list[float]] = {}
    last: tuple[object, str, object] | None = None
    rows = (
        JobTransition.objects.filter(job__finished_at__gte=now - STAGE_WINDOW)
        .order_by("job_id", "id")
        .values_list("job_id", "to_state", "at")
    )
    for job_id, state, at in rows.iterator(chunk_size=2000):
        if last is not None and last[0] == job_id:
            spent.setdefault(last[1], []).append((at - last[2]).total_seconds())
        last = (job_id, state, at)
    family = GaugeMetricFamily(
        "reelcast_job_stage_seconds",
        "Seconds jobs finished in the last hour spent in each stage",
        labels=["stage", "quantile"],
    )
    count = GaugeMetricFamily(
        "reelcast_job_stage_count",
        "Jobs finished in the last hour that passed each stage",
        labels=["stage"],
    )
    for stage, seconds in sorted(spent.items()):
        values = np.asarray(seconds)
        for label, q in (("0.5", 50), ("0.95", 95), ("1", 100)):
            family.add_metric([stage, label], float(np.percentile(values, q)))
        count.add_metric([stage], len(values))
    yield family
    yield count


def render() -> bytes:
    registry = CollectorRegistry()
    registry.register(_DatabaseCollector())
    return generate_latest(registry)
