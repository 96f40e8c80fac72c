"""The job pipeline on django-q2. The only module that enqueues.

Tasks take ids, re-read the job, and return quietly when there is nothing (left) to do, so a
task delivered twice, or again after a worker died, is harmless: state moves are conditional
updates, a running job is held by a lease, and usage rows have deterministic ids.

    dispatch ─► run_job (pool cluster: generate, bill, hand raw frames over, free the slot)
             ─► postprocess_job (CPU cluster: encode, store, moderate, finish)
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import replace
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from billing.services import Measurement, usage_record
from config.logging import log_context
from generation import registry, scheduler, workers
from generation.backends import get_backend
from generation.backends.base import (
    GenerationCanceled,
    GenerationRequest,
    PlatformFault,
    ShotSpec,
)
from generation.finishing import (
    finish_spec_for,
    split_shots,
    store_outputs,
    store_variant,
    variant_specs,
)
from generation.models import Job, JobState
from generation.postprocess.finish import finish
from generation.rawframes import pack, unpack
from generation.services import (
    IllegalTransition,
    job_fail,
    job_set_progress,
    job_transition,
)
from generation.storage import delete_keys, get_bytes, job_key, put_bytes
from generation.tryon import tryon_inputs
from moderation.models import ModerationDecision
from moderation.provenance_service import provenance_hooks, provenance_record, seal
from moderation.services import moderation_judge_frames

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
GENERATION_SHARE = 90  # percent of the progress bar that generation fills
CPU_CLUSTER = "default"


def _enqueue(func: str, job_id: object, cluster: str) -> None:
    # Always name the cluster: inside a pool worker django-q2 defaults to that pool's own queue,
    # and CPU work sent from a GPU worker must not land there.
    async_task(func, str(job_id), task_name=f"{func.rsplit('.', 1)[-1]}-{job_id}", cluster=cluster)


def dispatch(pool_name: str | None = None) -> int:
    """Fill free slots of one pool (or all) with the jobs the scheduler picks; returns how many."""
    count = 0
    for pool in scheduler.pools():
        if pool_name is not None and pool.name != pool_name:
            continue
        for job_id in scheduler.dispatch_pool(pool):
            _enqueue("generation.tasks.run_job", job_id, pool.name)
            count += 1
    return count


def enqueue_job(job_id: object) -> None:
    """Called on commit of a new job: the job waits in the database until a slot is free."""
    model = Job.objects.values_list("model", flat=True).get(pk=job_id)
    pool = scheduler.pool_for_model(model)
    if pool is None:
        _fail_quietly(
            Job.objects.get(pk=job_id), "no_pool", f"No worker pool serves the model {model}."
        )
        return
    dispatch(pool.name)


class _Progress:
    """Backend progress -> throttled job progress and ETA writes (which also renew the lease)."""

    def __init__(self, job_id: object):
        self.job_id = job_id
        self.started = time.monotonic()
        self.last_write = 0.0
        self.last_value = -1
        self.interval = settings.REELCAST_PROGRESS_WRITE_INTERVAL_S

    def __call__(self, done: int, total: int) -> None:
        value = int(GENERATION_SHARE * done / max(1, total))
        now = time.monotonic()
        if value > self.last_value and (now - self.last_write >= self.interval or done >= total):
            elapsed = now - self.started
            eta = elapsed / done * (total - done) if done else None
            try:
                job_set_progress(job_id=self.job_id, progress=value, eta_s=eta)
            except (OperationalError, InterfaceError) as exc:
                _drop_broken_connection(exc)  # progress is best-effort; the next write retries
                return
            self.last_write, self.last_value = now, value


class _CancelCheck:
    """Reads the cancel flag from the database, at most every REELCAST_CANCEL_POLL_S."""

    def __init__(self, job_id: object):
        self.job_id = job_id
        self.interval = settings.REELCAST_CANCEL_POLL_S
        self.next_read = 0.0
        self.canceled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.canceled and now >= self.next_read:
            self.next_read = now + self.interval
            try:
                self.canceled = Job.objects.filter(
                    pk=self.job_id, cancel_requested_at__isnull=False
                ).exists()
            except (OperationalError, InterfaceError) as exc:
                _drop_broken_connection(exc)  # read again at the next poll
        return self.canceled


def _drop_broken_connection(exc: Exception) -> None:
    """A database connection dropped mid-generation (failover, restart, pg_terminate_backend)
    must not throw the device work away: forget the broken connection so that the next query
    opens a new one. Inside a transaction there is nothing to save; the error stands."""
    if connection.in_atomic_block:
        raise exc
    logger.warning("database connection lost during generation (%s); reconnecting", exc)
    connection.close_if_unusable_or_obsolete()


def _reference_inputs(job: Job) -> tuple[bytes | None, tuple[bytes, ...]]:
    """The job's images as the model takes them: (reference_image, reference_images).

    A person (the end user's photo, else the template's character sheet) with product images
    is a try-on: reference-to-video (VACE) where the model has it, else image-to-video from a
    composed first frame (generation/tryon.py says why VACE is preferred). Otherwise several
    images go to a reference-to-video model as references, and one image starts an
    image-to-video shot.
    """
    photos = [
        get_bytes(value["key"])
        for value in job.values.values()
        if isinstance(value, dict) and value.get("key")
    ]
    assets = job.template_version.assets
    characters = [get_bytes(a["key"]) for a in assets if a["role"] == "character"]
    products = [get_bytes(a["key"]) for a in assets if a["role"] == "product"]
    spec = registry.get_model(job.model)
    person = (photos or characters or [None])[0]
    if products and person is not None:
        _, reference, references = tryon_inputs(
            spec, person=person, products=products, width=job.width, height=job.height
        )
        return reference, references
    images = photos + characters + products
    if not images:
        return None, ()
    if "r2v" in spec.modes and (len(images) > 1 or "i2v" not in spec.modes):
        return None, tuple(images[:4])
    return images[0], ()


def _build_request(job: Job) -> GenerationRequest:
    reference, references = _reference_inputs(job)
    shots = tuple(
        ShotSpec(
            index=s["index"],
            prompt=s["prompt"],
            negative_prompt=s["negative_prompt"],
            num_frames=s["num_frames"],
            seed=s["seed"],
            scene_text=s.get("scene_text", ""),
        )
        for s in job.shots
    )
    return GenerationRequest(
        model=job.model,
        width=job.width,
        height=job.height,
        fps=job.fps,
        shots=shots,
        title=job.title,
        reference_image=reference,
        reference_images=references,
    )


def _claim(job: Job) -> bool:
    """Take the job for this worker: a dispatched queued job, or a running one whose lease lapsed.

    Counts the attempt; a job started more than MAX_ATTEMPTS times fails as worker_lost.
    """
    now = timezone.now()
    me = workers.worker_id()
    free = (
        Q(state=JobState.QUEUED)
        | Q(state=JobState.RUNNING, lease_expires_at__lt=now)
        | Q(state=JobState.RUNNING, lease_expires_at__isnull=True)
    )
    job.refresh_from_db()
    if job.state == JobState.QUEUED and job.cancel_requested_at is not None:
        _cancel_quietly(job, "canceled before start")
        return False
    if job.attempts >= MAX_ATTEMPTS:
        _fail_quietly(
            job,
            "worker_lost",
            f"The job was started {MAX_ATTEMPTS} times and lost its worker each time.",
        )
        return False
    taken = Job.objects.filter(free, pk=job.pk).update(
        lease_owner=me, lease_expires_at=workers.lease_expiry(), attempts=job.attempts + 1
    )
    if not taken:
        return False  # someone alive holds it, or it moved on
    job.refresh_from_db()
    if job.state == JobState.QUEUED:
        try:
            job_transition(
                job=job, to_state=JobState.RUNNING, reason=f"attempt {job.attempts} on {me}"
            )
        except IllegalTransition:
            return False
    return True


def run_job(job_id: str) -> None:
    """Generate on this pool's device, bill each shot, hand the raw frames to the CPU cluster."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.state not in (JobState.QUEUED, JobState.RUNNING):
        return
    with log_context(job_id=job.id, tenant_id=job.tenant_id):
        _run_job(job)


def _run_job(job: Job) -> None:
    if not _claim(job):
        return
    workers.set_current_job(job.id)
    try:
        _generate(job)
    except BaseException:
        # The process is going down (timeout, SIGTERM) or broke in a way _generate did not
        # expect: keep the lease, so the job is requeued once it lapses, exactly as if this
        # worker had been killed.
        workers.set_current_job(None)
        raise
    workers.set_current_job(None)
    Job.objects.filter(pk=job.pk, lease_owner=workers.worker_id()).update(
        lease_owner="", lease_expires_at=None
    )
    dispatch(job.pool or None)  # our slot is free: the next job, please


def _generate(job: Job) -> None:
    spec = registry.get_model(job.model)
    backend = get_backend(spec.backend)
    cancel_check = _CancelCheck(job.id)
    try:
        result = backend.generate(
            _build_request(job), on_progress=_Progress(job.id), should_cancel=cancel_check
        )
    except GenerationCanceled as canceled:
        hardware = backend.hardware_class
        measurements = _measurements(job, canceled.completed, hardware)
        if canceled.partial_shot_index is not None:
            measurements.append(
                Measurement(
                    stage="generate",
                    shot_index=canceled.partial_shot_index,
                    hardware_class=hardware,
                    model=job.model,
                    milliseconds=round(canceled.partial_device_seconds * 1000),
                )
            )
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
    # One hand-over file per attempt: a worker whose lease lapsed while it still ran (a stall
    # longer than the lease) must never overwrite or delete the file of the attempt after it.
    frames_name = f"raw/frames-{job.attempts}.mkv"
    try:
        frames_key = put_bytes(job_key(job, frames_name), pack(result.frames, fps=result.fps))
    except Exception as exc:
        # Storage down or full: nothing was handed over. The job is retried like one whose
        # worker was lost (its usage rows keep their ids, so a retry bills nothing twice),
        # then failed with the reason; left running, it would wait for its lease to lapse.
        logger.exception("job %s: the generated frames could not be stored", job.id)
        _retry_or_fail(
            job,
            "storage_error",
            f"The generated frames could not be stored: {type(exc).__name__}: {exc}",
        )
        return
    try:
        with transaction.atomic():
            # Only the lease holder hands over: once the lease lapsed the job may have been
            # requeued and taken by another worker, whose attempt is the one that counts.
            held = (
                Job.objects.select_for_update()
                .filter(pk=job.pk, state=JobState.RUNNING, lease_owner=workers.worker_id())
                .exists()
            )
            if not held:
                raise IllegalTransition(job.pk, JobState.RUNNING, JobState.POSTPROCESSING)
            job_transition(
                job=job,
                to_state=JobState.POSTPROCESSING,
                reason="generated",
                frames_key=frames_key,
                # The hand-over ends this worker's lease: the CPU worker takes its own.
                lease_owner="",
                lease_expires_at=None,
                hardware_class=result.hardware_class,
                model_load_ms=round(result.model_load_seconds * 1000),
                device_ms=sum(round(s.device_seconds * 1000) for s in result.shots),
                eta_s=None,
            )
    except IllegalTransition:
        delete_keys([frames_key])
        return
    _enqueue("generation.tasks.postprocess_job", job.id, CPU_CLUSTER)


def postprocess_job(job_id: str) -> None:
    """On the CPU cluster: finish (one pass: cards, subtitles, logo, AI label, encode), store,
    moderate. Safe to run twice: a lease, renewed by the heartbeat, keeps a second delivery off
    a job that a live worker is finishing, and lets the reaper resend the task of one whose
    worker died (or whose task the broker lost)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.state != JobState.POSTPROCESSING:
        return
    with log_context(job_id=job.id, tenant_id=job.tenant_id):
        _postprocess_job(job)


def _postprocess_job(job: Job) -> None:
    me = workers.worker_id()
    free = (
        Q(lease_owner="")
        | Q(lease_owner=me)
        | Q(lease_expires_at__lt=timezone.now())
        | Q(lease_expires_at__isnull=True)
    )
    taken = Job.objects.filter(free, pk=job.pk, state=JobState.POSTPROCESSING).update(
        lease_owner=me, lease_expires_at=workers.lease_expiry()
    )
    if not taken:
        return  # a live worker is finishing it
    workers.set_current_job(job.id)
    try:
        _postprocess(job)
    finally:
        # On an unexpected error the lease is kept and lapses, and the reaper resends the task.
        workers.set_current_job(None)
    Job.objects.filter(pk=job.pk, lease_owner=me).update(lease_owner="", lease_expires_at=None)


def _postprocess(job: Job) -> None:
    try:
        frames = unpack(get_bytes(job.frames_key))
        shots = split_shots(job, frames)
        # Watermark and fingerprint run as the pass's last frame hooks; the C2PA signature is
        # the very last write, after every other byte of the MP4 is final.
        hooks = provenance_hooks(job)
        spec = finish_spec_for(job, frame_hooks=hooks.frame_hooks())
        finished = finish(shots, spec)
        variants, variant_hashes = {}, []
        for orientation, variant_spec in variant_specs(job, spec).items():
            variant_hooks = provenance_hooks(job)
            variant = finish(shots, replace(variant_spec, frame_hooks=variant_hooks.frame_hooks()))
            variants[orientation] = store_variant(
                job, orientation, variant, mp4=seal(job, variant.mp4, variant_hooks)
            )
            variant_hashes.append(variant_hooks.hasher.hashes())
        job_set_progress(job_id=job.id, progress=95)
        if _cancel_requested(job):
            _cancel_quietly(job, "canceled during post-processing")
            return
        stored = store_outputs(job, finished, mp4=seal(job, finished.mp4, hooks))
        with transaction.atomic():
            job_transition(
                job=job,
                to_state=JobState.MODERATING,
                reason="finished",
                video_key=stored.video_key,
                poster_key=stored.poster_key,
                video_bytes=stored.video_bytes,
                variant_keys=variants,
            )
            provenance_record(job=job, hooks=hooks, extra_hashes=variant_hashes)
    except IllegalTransition:
        return
    except Exception as exc:
        logger.exception("job %s: post-processing failed", job.id)
        _fail_quietly(job, "postprocess_error", f"{type(exc).__name__}: {exc}")
        return
    decision = moderation_judge_frames(job=job, frames=frames)
    target = {
        ModerationDecision.Verdict.PASS: JobState.SUCCEEDED,
        ModerationDecision.Verdict.REVIEW: JobState.IN_REVIEW,
        ModerationDecision.Verdict.BLOCK: JobState.BLOCKED,
    }[ModerationDecision.Verdict(decision.verdict)]
    blocked = {}
    if target == JobState.BLOCKED:  # the tenant sees why (categories, not lexicon internals)
        blocked = {"error_code": "content_blocked", "error_message": decision.summary()[:1000]}
    with contextlib.suppress(IllegalTransition):
        job_transition(
            job=job, to_state=target, reason=f"moderation: {decision.verdict}", **blocked
        )
        delete_keys([job.frames_key])
        Job.objects.filter(pk=job.pk).update(frames_key="")


def reap_lost_jobs() -> int:
    """Jobs whose worker stopped renewing its lease go back to the queue (or fail after the
    last attempt), and tasks that were lost are sent again (see ``_resend_lost_tasks``). Runs
    on a schedule; returns how many jobs it moved or sent again."""
    now = timezone.now()
    moved = 0
    for job in Job.objects.filter(state=JobState.RUNNING, lease_expires_at__lt=now):
        if job.attempts >= MAX_ATTEMPTS:
            _fail_quietly(
                job,
                "worker_lost",
                f"The job was started {MAX_ATTEMPTS} times and lost its worker each time.",
            )
        else:
            with contextlib.suppress(IllegalTransition):
                job_transition(
                    job=job,
                    to_state=JobState.QUEUED,
                    reason=f"worker {job.lease_owner} lost; retrying with the same seed",
                    dispatched_at=None,
                    lease_owner="",
                    lease_expires_at=None,
                    progress=0,
                    eta_s=None,
                )
        moved += 1
    resent = _resend_lost_tasks(now)
    if moved:
        dispatch()
    return moved + resent


def _resend_lost_tasks(now) -> int:
    """The database, not the broker, says what is owed: send again the task of a job that
    waits for one that will never come.

    A broker can lose tasks (a Redis restarted without persistence; a worker killed after it
    took a task and before it claimed the job; an enqueue that failed while Redis was down).
    A dispatched job holds a pool slot, so its task is taken within a lease unless it was
    lost. A job handed over to post-processing is resent when its worker's lease lapsed, or
    when nobody claimed it within the broker's retry window (after which django-q would hand
    out an unacknowledged task again). A duplicate delivery is harmless: claims are
    conditional. Each resend moves the job's clock, so one lost task is resent once a window.
    """
    resent = 0
    lease = timedelta(seconds=settings.REELCAST_LEASE_S)
    waiting = Job.objects.filter(state=JobState.QUEUED, dispatched_at__lt=now - lease)
    for job_id, pool, dispatched_at in waiting.values_list("pk", "pool", "dispatched_at"):
        if Job.objects.filter(pk=job_id, state=JobState.QUEUED, dispatched_at=dispatched_at).update(
            dispatched_at=now
        ):
            logger.warning("job %s: dispatched %s and never claimed; resending", job_id, pool)
            _enqueue("generation.tasks.run_job", job_id, pool)
            resent += 1
    retry = timedelta(seconds=settings.Q_CLUSTER.get("retry", settings.REELCAST_LEASE_S))
    stale = Q(lease_expires_at__lt=now) | Q(lease_owner="", updated_at__lt=now - retry)
    handed_over = Job.objects.filter(stale, state=JobState.POSTPROCESSING)
    for job_id, updated_at in handed_over.values_list("pk", "updated_at"):
        if Job.objects.filter(
            pk=job_id, state=JobState.POSTPROCESSING, updated_at=updated_at
        ).update(lease_owner="", lease_expires_at=None, updated_at=now):
            logger.warning("job %s: post-processing lost its worker or task; resending", job_id)
            _enqueue("generation.tasks.postprocess_job", job_id, CPU_CLUSTER)
            resent += 1
    return resent


def enqueue_batch_chunk(batch_id: object) -> None:
    _enqueue("generation.tasks.batch_chunk", batch_id, CPU_CLUSTER)


def batch_chunk(batch_id: str) -> None:
    """Make the next chunk of a roster's rows into jobs, then queue the chunk after it."""
    from generation.batches import batch_process_chunk

    if batch_process_chunk(batch_id=batch_id):
        enqueue_batch_chunk(batch_id)


def resume_stalled_batches() -> int:
    from generation.batches import resume_stalled_batches as resume

    return resume()


def sweep_consents() -> int:
    from generation.consents import consent_sweep

    return consent_sweep()


def sweep_retention() -> int:
    from generation.services import retention_sweep

    return retention_sweep()


def sweep_idempotency_keys() -> int:
    from generation.services import idempotency_sweep

    return idempotency_sweep()


def _measurements(job: Job, shots, hardware_class: str) -> list[Measurement]:
    return [
        Measurement(
            stage="generate",
            shot_index=shot.index,
            hardware_class=hardware_class,
            model=job.model,
            milliseconds=round(shot.device_seconds * 1000),
        )
        for shot in shots
    ]


def _bill(job: Job, measurements: list[Measurement]) -> None:
    usage_record(tenant=job.tenant, job_id=job.id, measurements=measurements, end_user=job.end_user)


def _retry_or_fail(job: Job, code: str, message: str) -> None:
    """A platform fault ended this attempt: queue the job again (same seeds) while it has
    attempts left, else fail it with ``code``."""
    if job.attempts >= MAX_ATTEMPTS:
        _fail_quietly(job, code, message)
        return
    with contextlib.suppress(IllegalTransition):
        job_transition(
            job=job,
            to_state=JobState.QUEUED,
            reason=f"{code}, retrying: {message}",
            dispatched_at=None,
            lease_owner="",
            lease_expires_at=None,
            progress=0,
            eta_s=None,
        )


def _cancel_requested(job: Job) -> bool:
    return Job.objects.filter(pk=job.pk, cancel_requested_at__isnull=False).exists()


def _cancel_quietly(job: Job, reason: str) -> None:
    with contextlib.suppress(IllegalTransition):  # it reached a final state another way
        job_transition(job=job, to_state=JobState.CANCELED, reason=reason)


def _fail_quietly(job: Job, code: str, message: str) -> None:
    with contextlib.suppress(IllegalTransition):
        job_fail(job=job, code=code, message=message)
