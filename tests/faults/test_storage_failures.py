"""Storage that fails writes (a full disk: half the bytes land, then ENOSPC).

A job is retried or fails with the reason, never stays stuck, is never billed twice, and no
half-written file is left at a key, let alone registered on the job.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.storage import storages

from billing.models import UsageEvent
from generation.models import Job
from generation.postprocess.encode import probe_mp4
from generation.services import JobRequest, job_create
from generation.storage import get_bytes, job_key
from tests import factories
from tests.support import faults

pytestmark = pytest.mark.django_db


@pytest.fixture
def failing_storage(settings):
    def configure(*, fail_writes: int, fail_matching: str) -> faults.FailingStorage:
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "tests.support.faults.FailingStorage",
                "OPTIONS": {
                    "location": settings.MEDIA_ROOT,
                    "fail_writes": fail_writes,
                    "fail_matching": fail_matching,
                },
            },
        }
        storage = storages["default"]
        assert isinstance(storage, faults.FailingStorage)
        return storage

    return configure


def _run_job(run_on_commit) -> Job:
    tenant = factories.make_tenant()
    template = factories.make_template(tenant, prompt="{name} waves.\n\n{name} smiles.")
    job = run_on_commit(
        job_create, tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job
    job.refresh_from_db()
    return job


def _billed(job: Job) -> list[str]:
    return sorted(UsageEvent.objects.filter(job=job, kind="usage").values_list("id", flat=True))


def _refunded(job: Job) -> list[str]:
    return sorted(UsageEvent.objects.filter(job=job, kind="refund").values_list("id", flat=True))


def _exists(key: str) -> bool:
    return (Path(storages["default"].location) / key).exists()


def test_a_failed_write_of_the_generated_frames_is_retried_and_billed_once(
    failing_storage, run_on_commit
):
    storage = failing_storage(fail_writes=1, fail_matching="/raw/frames")

    job = _run_job(run_on_commit)

    counts = faults.audit([job.pk])
    faults.report("storage_write_failures/raw_frames_once", {"failed_writes": 1, **counts})
    assert (job.state, job.attempts) == ("succeeded", 2)
    retry = job.transitions.get(from_state="running", to_state="queued")
    assert retry.reason.startswith("storage_error, retrying: The generated frames could not")
    assert "No space left on device" in retry.reason
    assert storage.failed == [job_key(job, "raw/frames-1.mkv")]
    assert not _exists(storage.failed[0])  # the half-written file was removed
    assert _billed(job) == [f"job:{job.id}:generate:0", f"job:{job.id}:generate:1"]
    assert probe_mp4(get_bytes(job.video_key))["frames"] > 0
    faults.assert_clean(counts)


def test_storage_that_keeps_failing_fails_the_job_with_the_reason_and_bills_each_shot_once(
    failing_storage, run_on_commit
):
    storage = failing_storage(fail_writes=100, fail_matching="/raw/frames")

    job = _run_job(run_on_commit)

    counts = faults.audit([job.pk])
    faults.report("storage_write_failures/raw_frames_always", {"failed_writes": 2, **counts})
    assert (job.state, job.error_code, job.attempts) == ("failed", "storage_error", 2)
    assert job.error_message.startswith("The generated frames could not be stored: OSError")
    assert (job.frames_key, job.video_key) == ("", "")
    assert storage.failed == [job_key(job, f"raw/frames-{n}.mkv") for n in (1, 2)]
    assert not any(_exists(key) for key in storage.failed)
    # The device time was spent, twice; each shot was billed once, and refunded once when the
    # job failed: a platform fault is not billed.
    assert _billed(job) == [f"job:{job.id}:generate:0", f"job:{job.id}:generate:1"]
    assert _refunded(job) == [f"refund:{pk}:job_failed" for pk in _billed(job)]
    faults.assert_clean(counts)  # including: no failed job still billed


def test_a_failed_write_of_the_video_fails_the_job_and_registers_no_half_written_video(
    failing_storage, run_on_commit
):
    storage = failing_storage(fail_writes=1, fail_matching="/video.mp4")

    job = _run_job(run_on_commit)

    counts = faults.audit([job.pk])
    faults.report("storage_write_failures/video", {"failed_writes": 1, **counts})
    assert (job.state, job.error_code) == ("failed", "postprocess_error")
    assert "No space left on device" in job.error_message
    assert job.video_key == ""
    assert storage.failed == [job_key(job, "video.mp4")]
    assert not _exists(job_key(job, "video.mp4"))
    assert _billed(job) == [f"job:{job.id}:generate:0", f"job:{job.id}:generate:1"]
    faults.assert_clean(counts)
