"""Reads for templates and jobs; every one takes the tenant."""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, F, FloatField, QuerySet, Sum
from django.utils import timezone

from generation.models import (
    DeletionReceipt,
    Job,
    JobState,
    JobTag,
    JobTransition,
    Template,
    TemplateVersion,
)
from tenants.models import Tenant

TAG_CATEGORIES = ("subject", "action", "environment", "style", "character")


@dataclass(frozen=True)
class JobFilters:
    state: str | None = None
    template_id: str | None = None
    template_slug: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    batch_id: str | None = None
    tags: tuple[str, ...] = ()  # "value" or "category:value"; every one must match


def job_list(*, tenant: Tenant, filters: JobFilters | None = None) -> QuerySet[Job]:
    jobs = Job.objects.for_tenant(tenant).select_related("template", "template_version")
    filters = filters or JobFilters()
    if filters.state:
        jobs = jobs.filter(state=filters.state)
    if filters.template_id:
        jobs = jobs.filter(template_id=filters.template_id)
    if filters.template_slug:  # the job's template is the tenant's own: the slug is unique
        jobs = jobs.filter(template__slug=filters.template_slug)
    if filters.created_after:
        jobs = jobs.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        jobs = jobs.filter(created_at__lt=filters.created_before)
    if filters.batch_id:
        jobs = jobs.filter(batch_id=filters.batch_id)
    for tag in filters.tags:
        category, sep, value = tag.partition(":")
        rows = JobTag.objects.for_tenant(tenant)
        if sep and category in TAG_CATEGORIES:
            rows = rows.filter(category=category, value=value.strip().lower())
        else:
            rows = rows.filter(value=tag.strip().lower())
        jobs = jobs.filter(pk__in=rows.values("job_id"))
    return jobs


def template_list(*, tenant: Tenant, include_archived: bool = False) -> QuerySet[Template]:
    templates = Template.objects.for_tenant(tenant)
    if not include_archived:
        templates = templates.filter(archived_at__isnull=True)
    return templates.order_by("-created_at")


def template_latest_version(*, template: Template) -> TemplateVersion | None:
    return template.versions.order_by("-number").first()


def queue_position(*, job: Job) -> int | None:
    """Jobs the pool takes before this one (0: next, or already handed to a worker); None
    once the job left the queue. See ``generation.scheduler.jobs_ahead`` for the order."""
    from generation.scheduler import queue_position as position

    return position(job)


# --- estimated time of arrival --------------------------------------------------------------------

FINISHING_SAMPLES = 50  # recent succeeded jobs whose post-processing and moderation are timed


@dataclass(frozen=True)
class JobEta:
    """When a job's video should be ready: ``eta_s`` seconds from ``now`` (at ``eta_at``), and
    its place in the queue. ``eta_s`` is None for a job that will not finish by itself (final,
    or waiting for an operator's review)."""

    eta_s: float | None
    eta_at: datetime | None
    queue_position: int | None


@dataclass(frozen=True)
class FinishingRates:
    """Median post-processing and moderation milliseconds per frame-megapixel of video."""

    postprocess_ms: float
    moderation_ms: float
    samples: int  # timed jobs; 0 = the configured fallback


def _frame_megapixels(frames: float, width: int, height: int) -> float:
    return max(frames, 1.0) * width * height / 1e6


def finishing_rates() -> FinishingRates:
    """Post-processing and moderation time per frame-megapixel, measured from the recorded
    transitions (postprocessing → moderating → succeeded) of the last FINISHING_SAMPLES
    succeeded jobs; the configured REELCAST_ETA_POSTPROCESS_MS_PER_FRAME_MEGAPIXEL and
    REELCAST_ETA_MODERATION_MS_PER_FRAME_MEGAPIXEL while there are none. Platform-wide (the CPU
    cluster does the same work for every tenant), cached for REELCAST_ETA_CACHE_S.

    Two indexed reads: the newest succeeded jobs by (state, created_at), then their
    transitions by job.
    """
    cache_key = "generation:eta:finishing-rates"
    ttl = settings.REELCAST_ETA_CACHE_S
    if ttl > 0 and (hit := cache.get(cache_key)) is not None:
        return hit
    jobs = {
        job_id: _frame_megapixels(duration_s * fps, width, height)
        for job_id, duration_s, fps, width, height in (
            Job.objects.filter(state=JobState.SUCCEEDED)  # unscoped: a platform-wide rate
            .order_by("-created_at")
            .values_list("id", "duration_s", "fps", "width", "height")[:FINISHING_SAMPLES]
        )
    }
    entered: dict[object, dict[str, datetime]] = {}
    for job_id, state, at in (
        JobTransition.objects.filter(
            job_id__in=list(jobs),
            to_state__in=(JobState.POSTPROCESSING, JobState.MODERATING, JobState.SUCCEEDED),
        )
        .order_by("id")
        .values_list("job_id", "to_state", "at")
    ):
        entered.setdefault(job_id, {})[state] = at  # the last time it entered each state
    postprocess: list[float] = []
    moderation: list[float] = []
    for job_id, times in entered.items():
        post_at = times.get(JobState.POSTPROCESSING)
        moderating_at = times.get(JobState.MODERATING)
        succeeded_at = times.get(JobState.SUCCEEDED)
        if not (post_at and moderating_at and succeeded_at):
            continue  # e.g. a job from before post-processing was a state of its own
        work = jobs[job_id]
        postprocess.append((moderating_at - post_at).total_seconds() * 1000 / work)
        moderation.append((succeeded_at - moderating_at).total_seconds() * 1000 / work)
    if postprocess:
        rates = FinishingRates(
            postprocess_ms=statistics.median(postprocess),
            moderation_ms=statistics.median(moderation),
            samples=len(postprocess),
        )
    else:
        rates = FinishingRates(
            postprocess_ms=settings.REELCAST_ETA_POSTPROCESS_MS_PER_FRAME_MEGAPIXEL,
            moderation_ms=settings.REELCAST_ETA_MODERATION_MS_PER_FRAME_MEGAPIXEL,
            samples=0,
        )
    if ttl > 0:
        cache.set(cache_key, rates, ttl)
    return rates


def _shot_frames(job: Job) -> float:
    frames = 0
    for shot in job.shots or []:
        try:
            frames += int(shot["num_frames"])
        except (KeyError, TypeError, ValueError):
            continue
    return float(frames) if frames > 0 else job.duration_s * job.fps


@dataclass(frozen=True)
class _PoolSnapshot:
    busy_ms: float  # generation time left of the jobs the pool holds now
    slots: int


class EtaEstimator:
    """Estimates ETAs for the jobs of one request.

    eta = (generation work ahead of the job in its pool ÷ the pool's slots)
        + the job's own generation time + its post-processing + its moderation,

    where generation time is the measured device ms per frame-megapixel of its model and size
    (``billing.selectors.ms_per_frame_megapixel``, the rate quotes use) and work ahead is what
    the pool's running jobs have left plus every waiting job that dispatches first
    (``scheduler.jobs_ahead``). A running job uses its worker's own ETA when it reported one.
    Pools are read once per estimator, so a page of jobs costs one query per queued job.
    """

    def __init__(self, *, now: datetime | None = None):
        self.now = now or timezone.now()
        self._pools: dict[str, _PoolSnapshot] = {}
        self._finishing: FinishingRates | None = None

    def _generation_ms(self, model: str, width: int, height: int, frames: float) -> float:
        from billing.selectors import ms_per_frame_megapixel

        rate, _ = ms_per_frame_megapixel(model=model, width=width, height=height)
        return rate * _frame_megapixels(frames, width, height)

    def _generation_left_ms(self, job: Job) -> float:
        total = self._generation_ms(job.model, job.width, job.height, _shot_frames(job))
        if job.state != JobState.RUNNING:
            return total
        if job.eta_s is not None:  # the worker's measure, as of its last progress write
            since = (self.now - job.updated_at).total_seconds()
            return max(0.0, (job.eta_s - since) * 1000)
        if job.started_at is not None:
            return max(0.0, total - (self.now - job.started_at).total_seconds() * 1000)
        return total

    def _finishing_ms(self, job: Job) -> tuple[float, float]:
        if self._finishing is None:
            self._finishing = finishing_rates()
        work = _frame_megapixels(_shot_frames(job), job.width, job.height)
        return self._finishing.postprocess_ms * work, self._finishing.moderation_ms * work

    def _pool(self, job: Job) -> _PoolSnapshot:
        from generation import scheduler

        pool = scheduler.pool_for_model(job.model)
        name = pool.name if pool else ""
        if name not in self._pools:
            busy = 0.0
            slots = 1
            if pool is not None:
                slots = max(1, scheduler.slots(pool))  # scaled to zero: as if one pod came up
                held = Job.objects.filter(  # unscoped: the pool's load, no rows are shown
                    pool=pool.name,
                    dispatched_at__isnull=False,
                    state__in=scheduler.IN_FLIGHT_STATES,
                ).only(
                    "model", "width", "height", "fps", "duration_s", "shots", "state",
                    "eta_s", "updated_at", "started_at",
                )  # fmt: skip
                busy = sum(self._generation_left_ms(other) for other in held)
            self._pools[name] = _PoolSnapshot(busy_ms=busy, slots=slots)
        return self._pools[name]

    def _waiting_ms(self, job: Job) -> tuple[float, int]:
        """Generation time the pool spends before it takes ``job``, and the jobs ahead."""
        from generation import scheduler

        ahead_ms = 0.0
        position = 0
        groups = (
            scheduler.jobs_ahead(job, now=self.now)
            .values_list("model", "width", "height")
            .annotate(
                n=Count("id"),
                frames=Sum(F("duration_s") * F("fps"), output_field=FloatField()),
            )
            .order_by()
        )
        for model, width, height, n, frames in groups:
            position += n
            ahead_ms += self._generation_ms(model, width, height, frames or 0.0)
        pool = self._pool(job)
        return (pool.busy_ms + ahead_ms) / pool.slots, position

    def estimate(self, job: Job) -> JobEta:
        position = None
        if job.state == JobState.QUEUED:
            if job.dispatched_at is None:
                waiting_ms, position = self._waiting_ms(job)
            else:
                waiting_ms, position = 0.0, 0
            postprocess_ms, moderation_ms = self._finishing_ms(job)
            left_ms = waiting_ms + self._generation_left_ms(job) + postprocess_ms + moderation_ms
        elif job.state == JobState.RUNNING:
            postprocess_ms, moderation_ms = self._finishing_ms(job)
            left_ms = self._generation_left_ms(job) + postprocess_ms + moderation_ms
        elif job.state in (JobState.POSTPROCESSING, JobState.MODERATING):
            postprocess_ms, moderation_ms = self._finishing_ms(job)
            entered = (
                job.transitions.filter(to_state=job.state)
                .order_by("-id")
                .values_list("at", flat=True)
                .first()
            )
            spent_ms = (self.now - entered).total_seconds() * 1000 if entered else 0.0
            if job.state == JobState.POSTPROCESSING:
                left_ms = max(0.0, postprocess_ms - spent_ms) + moderation_ms
            else:
                left_ms = max(0.0, moderation_ms - spent_ms)
        else:
            return JobEta(eta_s=None, eta_at=None, queue_position=None)
        eta_s = float(math.ceil(left_ms / 1000))
        eta_at = (self.now + timedelta(seconds=eta_s)).replace(microsecond=0)
        return JobEta(eta_s=eta_s, eta_at=eta_at, queue_position=position)


def job_eta(*, job: Job, now: datetime | None = None) -> JobEta:
    """When ``job``'s video should be ready, and its place in the queue; see EtaEstimator."""
    return EtaEstimator(now=now).estimate(job)


_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_JOB_FILE = re.compile(rf"tenants/(?P<tenant>{_UUID})/jobs/(?P<job>{_UUID})/.+")


def deletion_receipt_for_key(*, key: str) -> DeletionReceipt | None:
    """The receipt that lists ``key`` among the files it removed (a job's files, deleted on
    request, by retention or by a consent's end), or None: a file never deleted that way.

    ``key`` comes from a signed download token: the tenant it names is the caller's."""
    match = _JOB_FILE.fullmatch(key)
    if match is None:
        return None
    tenant = Tenant.objects.filter(pk=match["tenant"]).first()
    if tenant is None:
        return None
    receipts = DeletionReceipt.objects.for_tenant(tenant).filter(job_id=match["job"])
    for receipt in receipts.order_by("created_at"):
        if any(isinstance(f, dict) and f.get("key") == key for f in receipt.files):
            return receipt
    return None
