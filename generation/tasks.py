"""The job pipeline on django-q2. The only module that enqueues.

Tasks take ids, re-read the job, and return quietly when there is nothing (left) to do, so a
task delivered twice, or again after a worker died, is harmless: state moves are conditional,
and usage rows have deterministic ids.
"""

from __future__ import annotations

import contextlib
import logging
import time

from django.conf import settings
from django_q.tasks import async_task

from billing.services import Measurement, usage_record
from generation import registry
from generation.backends import get_backend
from generation.backends.base import (
    GenerationCanceled,
    GenerationRequest,
    GenerationResult,
    PlatformFault,
    ShotSpec,
)
from generation.models import Job, JobState
from generation.postprocess.encode import encode_mp4, poster_jpeg
from generation.services import (
    IllegalTransition,
    job_fail,
    job_record_attempt,
    job_set_progress,
    job_transition,
)
from generation.storage import get_bytes, job_key, put_bytes
from moderation.models import ModerationDecision
from moderation.services import moderation_judge_frames

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
GENERATION_SHARE = 90  # percent of the progress bar that generation fills


def pool_for_model(model: str) -> str:
    """The django-q2 cluster that serves ``model`` (the default cluster if no pool names it)."""
    for name, pool in settings.REELCAST_POOLS.items():
        if model in pool.get("models", []):
            return name
    return "default"


def enqueue_job(job_id: object) -> None:
    cluster = pool_for_model(Job.objects.values_list("model", flat=True).get(pk=job_id))
    kwargs = {"task_name": f"job-{job_id}"}
    if cluster != settings.Q_CLUSTER["name"]:
        kwargs["cluster"] = cluster
    async_task("generation.tasks.run_job", str(job_id), **kwargs)


class _Progress:
    """Turns backend progress into throttled job progress writes."""

    def __init__(self, job_id: object):
        self.job_id = job_id
        self.last_write = 0.0
        self.last_value = -1
        self.interval = settings.REELCAST_PROGRESS_WRITE_INTERVAL_S

    def __call__(self, done: int, total: int) -> None:
        value = int(GENERATION_SHARE * done / max(1, total))
        now = time.monotonic()
        if value > self.last_value and (now - self.last_write >= self.interval or done >= total):
            job_set_progress(job_id=self.job_id, progress=value)
            self.last_write, self.last_value = now, value


class _CancelCheck:
    """Reads the cancel flag from the database, at most every ``interval`` seconds."""

    def __init__(self, job_id: object):
        self.job_id = job_id
        self.interval = settings.REELCAST_CANCEL_POLL_S
        self.next_read = 0.0
        self.canceled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.canceled and now >= self.next_read:
            self.next_read = now + self.interval
            self.canceled = Job.objects.filter(pk=self.job_id,
                                               cancel_requested_at__isnull=False).exists()
        return self.canceled


def _measurements(job: Job, shots, hardware_class: str) -> list[Measurement]:
    return [
        Measurement(stage="generate", shot_index=shot.index, hardware_class=hardware_class,
                    model=job.model, milliseconds=round(shot.device_seconds * 1000))
        for shot in shots
    ]


def _build_request(job: Job) -> GenerationRequest:
    reference = None
    for value in job.values.values():
        if isinstance(value, dict) and value.get("key"):
            reference = get_bytes(value["key"])
            break
    shots = tuple(
        ShotSpec(index=s["index"], prompt=s["prompt"], negative_prompt=s["negative_prompt"],
                 num_frames=s["num_frames"], seed=s["seed"], scene_text=s.get("scene_text", ""))
        for s in job.shots
    )
    return GenerationRequest(model=job.model, width=job.width, height=job.height, fps=job.fps,
                             shots=shots, title=job.title, reference_image=reference)


def run_job(job_id: str) -> None:
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.is_terminal:
        return
    if job.state not in (JobState.QUEUED, JobState.RUNNING):
        return  # already past generation: a duplicate delivery
    attempt = job_record_attempt(job=job)
    if attempt > MAX_ATTEMPTS:
        _fail_quietly(job, "worker_lost", f"The job was started {MAX_ATTEMPTS} times and its "
                      "worker was lost each time.")
        return
    if job.state == JobState.QUEUED:
        if job.cancel_requested_at is not None:
            _cancel_quietly(job, "canceled before start")
            return
        try:
            job_transition(job=job, to_state=JobState.RUNNING, reason=f"attempt {attempt}")
        except IllegalTransition:
            return  # canceled (or taken) meanwhile

    spec = registry.get_model(job.model)
    cancel_check = _CancelCheck(job.id)
    backend = get_backend(spec.backend)
    try:
        result = backend.generate(_build_request(job), on_progress=_Progress(job.id),
                                  should_cancel=cancel_check)
    except GenerationCanceled as canceled:
        hardware = backend.hardware_class
        measurements = _measurements(job, canceled.completed, hardware)
        if canceled.partial_shot_index is not None:
            measurements.append(Measurement(
                stage="generate", shot_index=canceled.partial_shot_index, hardware_class=hardware,
                model=job.model, milliseconds=round(canceled.partial_device_seconds * 1000)))
        _bill(job, measurements)
        _cancel_quietly(job, "canceled while running")
        return
    except PlatformFault as fault:
        logger.warning("job %s: platform fault %s: %s", job.id, fault.code, fault)
        _fail_quietly(job, fault.code, str(fault))  # platform faults are not billed
        return
    except Exception as exc:
        logger.exception("job %s: generation failed", job.id)
        _fail_quietly(job, "generation_error", f"{type(exc).__name__}: {exc}")
        return

    _bill(job, _measurements(job, result.shots, result.hardware_class))
    if cancel_check.canceled or _cancel_requested(job):
        _cancel_quietly(job, "canceled after generation")
        return
    try:
        job_transition(job=job, to_state=JobState.POSTPROCESSING, reason="generated")
        _finish(job, result)
    except IllegalTransition:
        return
    except Exception as exc:
        logger.exception("job %s: post-processing failed", job.id)
        _fail_quietly(job, "postprocess_error", f"{type(exc).__name__}: {exc}")


def _finish(job: Job, result: GenerationResult) -> None:
    frames = result.frames
    video = encode_mp4(iter(frames), fps=result.fps, width=job.width, height=job.height)
    poster = poster_jpeg(frames[min(len(frames) - 1, result.fps // 2)])
    job_set_progress(job_id=job.id, progress=95)
    if _cancel_requested(job):
        _cancel_quietly(job, "canceled during post-processing")
        return
    video_key = put_bytes(job_key(job, "video.mp4"), video)
    poster_key = put_bytes(job_key(job, "poster.jpg"), poster)
    job_transition(job=job, to_state=JobState.MODERATING, reason="encoded",
                   video_key=video_key, poster_key=poster_key, video_bytes=len(video),
                   device_ms=sum(round(s.device_seconds * 1000) for s in result.shots))
    decision = moderation_judge_frames(job=job, frames=frames)
    target = {
        ModerationDecision.Verdict.PASS: JobState.SUCCEEDED,
        ModerationDecision.Verdict.REVIEW: JobState.IN_REVIEW,
        ModerationDecision.Verdict.BLOCK: JobState.BLOCKED,
    }[ModerationDecision.Verdict(decision.verdict)]
    job_transition(job=job, to_state=target, reason=f"moderation: {decision.verdict}")


def _bill(job: Job, measurements: list[Measurement]) -> None:
    usage_record(tenant=job.tenant, job_id=job.id, measurements=measurements,
                 end_user=job.end_user)


def _cancel_requested(job: Job) -> bool:
    return Job.objects.filter(pk=job.pk, cancel_requested_at__isnull=False).exists()


def _cancel_quietly(job: Job, reason: str) -> None:
    with contextlib.suppress(IllegalTransition):  # it reached a final state another way
        job_transition(job=job, to_state=JobState.CANCELED, reason=reason)


def _fail_quietly(job: Job, code: str, message: str) -> None:
    with contextlib.suppress(IllegalTransition):
        job_fail(job=job, code=code, message=message)


def sweep_idempotency_keys() -> int:
    from generation.services import idempotency_sweep

    return idempotency_sweep()

