"""One job through a real django-q2 cluster process on Redis, as production runs it."""

from __future__ import annotations

import os
import signal
import time

import pytest

from generation.models import Job
from generation.postprocess.encode import probe_mp4
from generation.services import JobRequest, job_create
from generation.storage import get_bytes
from tests import factories
from tests.support.qcluster import redis_broker, start_qcluster, stop, worker_env


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_qcluster_on_redis_runs_a_job_to_succeeded(redis_url, tmp_path):
    from django.db import transaction

    tenant = factories.make_tenant()
    template = factories.make_template(tenant)
    worker = start_qcluster(worker_env(redis_url, tmp_path))
    try:
        with redis_broker(redis_url), transaction.atomic():
            job = job_create(
                tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
            ).job
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.is_terminal:
                break
            time.sleep(0.3)
        if job.state != "succeeded":
            os.killpg(worker.pid, signal.SIGTERM)
            output = worker.communicate(timeout=20)[0].decode(errors="replace")[-4000:]
            pytest.fail(f"job ended {job.state} {job.error_code} {job.error_message}\n{output}")
        info = probe_mp4(get_bytes(job.video_key))
        # the 2 s title card, then the 1 s shot, at 8 fps
        assert (info["width"], info["height"], info["frames"]) == (128, 96, 16 + 8)
        assert Job.objects.get(pk=job.pk).usage_events.count() == 1
        from generation.models import WorkerHeartbeat

        beats = WorkerHeartbeat.objects.filter(pool="default")
        assert beats.exists() and beats.first().pid != os.getpid()
    finally:
        stop(worker)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_job_is_replaced_and_the_job_finishes_once(redis_url, tmp_path):
    from billing.models import UsageEvent
    from generation import tasks

    tenant = factories.make_tenant()
    # Long enough (many frames) that the kill lands while the first worker renders.
    template = factories.make_template(tenant, width=640, height=360, fps=24, duration_s=20.0)
    env = worker_env(redis_url, tmp_path, REELCAST_LEASE_S="3", REELCAST_HEARTBEAT_S="1")
    first = start_qcluster(env)
    second = None
    try:
        with redis_broker(redis_url):
            from django.db import transaction

            with transaction.atomic():
                job = job_create(
                    tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
                ).job
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.state == "running" and job.progress > 0:
                break
            time.sleep(0.1)
        assert job.state == "running", job.state
        victim = job.lease_owner
        stop(first, signal.SIGKILL)  # kill -9: no cleanup, no lease release
        second = start_qcluster(env)
        time.sleep(3.5)  # the dead worker's lease lapses
        with redis_broker(redis_url):
            assert tasks.reap_lost_jobs() == 1  # the scheduled reaper's work, run now
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.is_terminal:
                break
            time.sleep(0.3)
        assert job.state == "succeeded", (job.state, job.error_code, job.error_message)
        assert job.attempts == 2
        assert job.transitions.filter(to_state="running").count() == 2
        assert victim in job.transitions.get(from_state="running", to_state="queued").reason
        assert list(
            UsageEvent.objects.filter(job=job).values_list("id", flat=True).order_by("id")
        ) == [f"job:{job.id}:generate:{i}" for i in range(len(job.shots))]
    finally:
        stop(first, signal.SIGKILL)
        if second is not None:
            stop(second)
