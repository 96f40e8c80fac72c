"""One job through a real django-q2 cluster process on Redis, as production runs it."""

from __future__ import annotations

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


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_qcluster_on_redis_runs_a_job_to_succeeded(redis_url, tmp_path):
    tenant = factories.make_tenant()
    template = factories.make_template(tenant)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "REELCAST_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "REELCAST_VAR_DIR": str(tmp_path),
        "REELCAST_QUEUE_POLL_S": "0.2",
    }
    connection.close()  # SQLite: let the worker take the write lock freely
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # Enqueue through the same Redis broker the worker reads (the suite's own Conf is the
        # synchronous one, so point it at Redis for this one call).
        from django.db import transaction
        from django_q.brokers import get_broker
        from django_q.conf import Conf

        previous = (Conf.SYNC, Conf.REDIS, Conf.ORM)
        Conf.SYNC, Conf.REDIS, Conf.ORM = False, redis_url, None
        try:
            assert get_broker().__class__.__name__ == "Redis"
            with transaction.atomic():
                job = job_create(
                    tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
                ).job
        finally:
            Conf.SYNC, Conf.REDIS, Conf.ORM = previous
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
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
