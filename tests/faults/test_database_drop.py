"""PostgreSQL drops the worker's connections mid-job (pg_terminate_backend, as a failover or a
restart of PostgreSQL does), once while it generates and once while it post-processes.

The generation survives in place (the progress and cancel checks reconnect), the
post-processing that died is resent once its lease lapses, and nothing is billed twice.
"""

from __future__ import annotations

import os
import time

import pytest
from django.db import connection

from billing.models import UsageEvent
from generation import tasks
from generation.models import Job
from generation.services import JobRequest, job_create
from tests import factories
from tests.support import faults

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _drop_connections(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            [application_name],
        )
        return cursor.fetchone()[0]


def _wait_for(job: Job, until, log, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not until(job):
        if time.monotonic() > deadline:
            pytest.fail(f"{job.state} {job.progress}\n{faults.tail(log)}")
        time.sleep(0.05)
        job.refresh_from_db()


def test_dropped_database_connections_mid_job_neither_lose_the_job_nor_bill_it_twice(
    settings, tmp_path, queue_redis_url
):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no server connection to drop")
    application_name = f"reelcast-faults-{os.getpid()}"
    settings.REELCAST_LEASE_S = 2
    # The reaper resends a post-processing task nobody took within the broker's retry window.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "retry": 4}
    log = tmp_path / "worker.log"
    worker = faults.start_worker(
        faults.worker_env(
            queue_redis_url or "",
            tmp_path,
            APPLICATION_NAME=application_name,
            REELCAST_LEASE_S="2",
            REELCAST_HEARTBEAT_S="0.5",
            REELCAST_PROGRESS_WRITE_INTERVAL_S="0.1",
            REELCAST_QUEUE_POLL_S="0.1",
        ),
        log,
    )
    tenant = factories.make_tenant()
    # Long enough (many frames) that each drop lands while the worker is busy.
    template = factories.make_template(
        tenant,
        prompt="{name} waves.\n\n{name} smiles.",
        width=640,
        height=360,
        fps=24,
        duration_s=10.0,
    )
    started = time.monotonic()
    try:
        with faults.broker(queue_redis_url), faults.ResendCounter() as resends:
            job = job_create(
                tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
            ).job
            _wait_for(job, lambda j: j.state == "running" and 0 < j.progress < 80, log)
            during_generation = _drop_connections(application_name)
            _wait_for(job, lambda j: j.state != "running", log)
            progress_at_hand_over = job.progress
            during_postprocessing = 0
            if job.state == "postprocessing":
                time.sleep(0.3)  # into the encode
                during_postprocessing = _drop_connections(application_name)
            deadline = time.monotonic() + 90
            while not job.is_terminal:
                if time.monotonic() > deadline:
                    pytest.fail(f"{faults.audit([job.pk])}\n{faults.tail(log)}")
                tasks.reap_lost_jobs()  # the schedule's work, at the pace of the short lease
                time.sleep(0.5)
                job.refresh_from_db()
    finally:
        faults.stop_worker(worker)

    counts = faults.audit([job.pk])
    faults.report(
        "database_drop",
        {
            "backends_dropped_during_generation": during_generation,
            "backends_dropped_during_postprocessing": during_postprocessing,
            "tasks_resent": resends.count,
            **counts,
            "wall_s": round(time.monotonic() - started, 1),
        },
    )
    assert during_generation >= 1 and during_postprocessing >= 1
    assert (job.state, job.attempts) == ("succeeded", 1), (job.error_code, job.error_message)
    assert progress_at_hand_over >= 90  # generation went on after its connection was dropped
    assert sorted(UsageEvent.objects.filter(job=job).values_list("id", flat=True)) == [
        f"job:{job.id}:generate:0",
        f"job:{job.id}:generate:1",
    ]
    faults.assert_clean(counts)
