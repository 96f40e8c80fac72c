"""One job through a real django-q2 cluster process on Redis, as production runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from generation.models import Job
from generation.postprocess.encode import probe_mp4
from generation.services import JobRequest, job_create
from generation.storage import get_bytes
from tests import factories

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return (
        f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )


def _worker_env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "REELCAST_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "REELCAST_VAR_DIR": str(tmp_path),
        "REELCAST_QUEUE_POLL_S": "0.2",
        **extra,
    }


def _start_worker(env: dict[str, str]) -> subprocess.Popen:
    connection.close()  # SQLite: let the worker take the write lock freely
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(worker: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    # The worker's work is checked through the database; how it shuts down is not under test.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, sig)
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


@contextlib.contextmanager
def _broker(redis_url: str):
    """The suite's own Conf is synchronous; point this process at Redis to enqueue."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    previous = (Conf.SYNC, Conf.REDIS, Conf.ORM)
    Conf.SYNC, Conf.REDIS, Conf.ORM = False, redis_url, None
    try:
        assert get_broker().__class__.__name__ == "Redis"
        yield
    finally:
        Conf.SYNC, Conf.REDIS, Conf.ORM = previous


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_qcluster_on_redis_runs_a_job_to_succeeded(redis_url, tmp_path):
    from django.db import transaction

    tenant = factories.make_tenant()
    template = factories.make_template(tenant)
    worker = _start_worker(_worker_env(redis_url, tmp_path))
    try:
        with _broker(redis_url), transaction.atomic():
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
        assert (info["width"], info["height"], info["frames"]) == (128, 96, 8)
        assert Job.objects.get(pk=job.pk).usage_events.count() == 1
        from generation.models import WorkerHeartbeat

        beats = WorkerHeartbeat.objects.filter(pool="default")
        assert beats.exists() and beats.first().pid != os.getpid()
    finally:
        _stop(worker)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_job_is_replaced_and_the_job_finishes_once(redis_url, tmp_path):
    from billing.models import UsageEvent
    from generation import tasks

    tenant = factories.make_tenant()
    # Long enough (many frames) that the kill lands while the first worker renders.
    template = factories.make_template(tenant, width=640, height=360, fps=24, duration_s=20.0)
    env = _worker_env(redis_url, tmp_path, REELCAST_LEASE_S="3", REELCAST_HEARTBEAT_S="1")
    first = _start_worker(env)
    second = None
    try:
        with _broker(redis_url):
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
        _stop(first, signal.SIGKILL)  # kill -9: no cleanup, no lease release
        second = _start_worker(env)
        time.sleep(3.5)  # the dead worker's lease lapses
        with _broker(redis_url):
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
        _stop(first, signal.SIGKILL)
        if second is not None:
            _stop(second)
