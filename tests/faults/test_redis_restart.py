"""Redis restarted mid-run, under a real `qcluster` worker.

The Redis is this test's own (a private `redis-server` on a free port, without persistence,
as CI's is): restarting it loses every queued task, and the worker's enqueues fail while it is
down. Jobs wait in the database, not in the broker, so the schedules' dispatch and reaper
(called here as the schedules would call them) resend what was lost, and every job ends.
"""

from __future__ import annotations

import os
import time

import pytest
import redis

from generation import tasks
from generation.models import Job
from generation.services import JobRequest, job_create
from tests import factories
from tests.support import faults

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JOBS = 6


def test_a_redis_restart_mid_run_loses_no_job_and_bills_no_shot_twice(settings, tmp_path):
    if not os.environ.get("REDIS_URL"):
        pytest.skip("the Redis broker runs in the PostgreSQL + Redis pass (REDIS_URL is unset)")
    if not faults.PrivateRedis.available():
        pytest.fail("redis-server is not installed; the Redis pass needs it")
    settings.REELCAST_LEASE_S = 2
    # The reaper resends a post-processing task nobody took within the broker's retry window.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "retry": 4}
    server = faults.PrivateRedis(tmp_path / "redis").start()
    log = tmp_path / "worker.log"
    worker = faults.start_worker(
        faults.worker_env(
            server.url(),
            tmp_path,
            REELCAST_LEASE_S="2",
            REELCAST_HEARTBEAT_S="0.5",
            REELCAST_QUEUE_POLL_S="0.1",
        ),
        log,
    )
    tenant = factories.make_tenant()
    template = factories.make_template(tenant, prompt="{name} waves.\n\n{name} smiles.")
    started = time.monotonic()
    try:
        with faults.broker(server.url()), faults.ResendCounter() as resends:
            job_ids = [
                job_create(
                    tenant=tenant,
                    request=JobRequest(template=template, values={"name": f"Kid {n}"}),
                ).job.pk
                for n in range(JOBS)
            ]
            deadline = time.monotonic() + 60
            while not Job.objects.filter(pk__in=job_ids, state="succeeded").exists():
                assert time.monotonic() < deadline, faults.tail(log)
                time.sleep(0.1)
            in_flight_at_restart = dict(
                Job.objects.filter(pk__in=job_ids)
                .exclude(state__in=faults.RESTING_STATES)
                .values_list("pk", "state")
            )
            server.restart(down_for_s=1.0)  # SIGTERM, and back empty on the same port
            schedule_errors = 0
            deadline = time.monotonic() + 90
            while (
                Job.objects.filter(pk__in=job_ids).exclude(state__in=faults.RESTING_STATES).exists()
            ):
                if time.monotonic() > deadline:
                    pytest.fail(f"{faults.audit(job_ids)}\n{faults.tail(log)}")
                try:  # what the every-minute schedules do, a little faster
                    tasks.reap_lost_jobs()
                    tasks.dispatch()
                except redis.exceptions.ConnectionError:
                    schedule_errors += 1
                time.sleep(0.5)
    finally:
        faults.stop_worker(worker)
        server.stop()

    counts = faults.audit(job_ids)
    faults.report(
        "redis_restart",
        {
            "restarts": server.restarts,
            "in_flight_at_restart": len(in_flight_at_restart),
            "tasks_resent": resends.count,
            "schedule_runs_failed": schedule_errors,
            **counts,
            "wall_s": round(time.monotonic() - started, 1),
        },
    )
    assert len(in_flight_at_restart) > 0
    faults.assert_clean(counts)
    assert counts["succeeded"] == JOBS, counts
