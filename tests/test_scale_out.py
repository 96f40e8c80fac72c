"""Two pools as separate django-q2 cluster processes on Redis: each job runs where its model is.

Production runs one qcluster per pool (compose: one container each; Kubernetes: one Deployment
each) plus the CPU cluster for post-processing. Here the same, as subprocesses of this machine:
``gpu-a`` serves ``preview``, ``gpu-b`` serves ``preview-b`` (the preview backend registered a
second time through REELCAST_MODELS, so both run on the CPU), ``default`` serves no model and
finishes every job.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from django.db import connection

from generation.models import Job, WorkerHeartbeat
from generation.services import JobRequest, job_create
from tests import factories
from tests.support.qcluster import redis_broker, start_qcluster, stop, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.services]

POOLS = {
    "default": {"hardware_class": "cpu", "capacity": 1, "models": []},
    "gpu-a": {"hardware_class": "cpu", "capacity": 1, "models": ["preview"]},
    "gpu-b": {"hardware_class": "cpu", "capacity": 1, "models": ["preview-b"]},
}
MODELS = {
    "preview-b": {
        "backend": "preview",
        "title": "Storyboard preview, second pool",
        "modes": ["t2v", "i2v", "r2v"],
        "hardware_classes": ["cpu"],
    }
}
POOL_OF_MODEL = {"preview": "gpu-a", "preview-b": "gpu-b"}


def _start_cluster(name: str, redis_url: str, tmp_path: Path):
    env = worker_env(
        redis_url,
        tmp_path,
        REELCAST_POOLS=json.dumps(POOLS),
        REELCAST_MODELS=json.dumps(MODELS),
        Q_CLUSTER_NAME=name,
    )
    return start_qcluster(env, tmp_path / f"{name}.log")


def _wait_for(predicate, timeout_s: float, clusters: dict, tmp_path: Path, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        dead = [name for name, process in clusters.items() if process.poll() is not None]
        if dead:
            break
        time.sleep(0.2)
    logs = "\n".join(
        f"--- {name}.log\n" + (tmp_path / f"{name}.log").read_text(errors="replace")[-2000:]
        for name in clusters
    )
    pytest.fail(f"timed out waiting for {what}\n{logs}")


@pytest.mark.django_db(transaction=True)
def test_each_job_runs_on_a_worker_of_the_pool_that_serves_its_model(redis_url, tmp_path, settings):
    from django_q.models import Task

    settings.REELCAST_POOLS = POOLS
    settings.REELCAST_MODELS = MODELS
    tenant = factories.make_tenant()
    template = factories.make_template(tenant)  # preview, 128x96, 8 frames
    connection.close()  # SQLite: the workers take the write lock freely
    clusters = {name: _start_cluster(name, redis_url, tmp_path) for name in POOLS}
    try:
        # Each worker process writes its heartbeat (pool, host, pid) once it is ready.
        _wait_for(
            lambda: set(WorkerHeartbeat.objects.values_list("pool", flat=True)) == set(POOLS),
            30,
            clusters,
            tmp_path,
            "a heartbeat from every cluster",
        )
        with redis_broker(redis_url):
            jobs = [
                job_create(
                    tenant=tenant,
                    request=JobRequest(template=template, values={"name": f"Ada {n}"}, model=model),
                ).job
                for n, model in enumerate(["preview", "preview-b", "preview", "preview-b"])
            ]
        ids = [job.id for job in jobs]

        _wait_for(
            lambda: all(job.is_terminal for job in Job.objects.filter(pk__in=ids)),
            60,
            clusters,
            tmp_path,
            "every job to finish",
        )
        _wait_for(
            lambda: Task.objects.filter(name__startswith="postprocess_job-").count() == 4,
            10,
            clusters,
            tmp_path,
            "the cluster results",
        )

        heartbeats = {beat.worker: beat for beat in WorkerHeartbeat.objects.all()}
        for job in Job.objects.filter(pk__in=ids).order_by("created_at"):
            expected = POOL_OF_MODEL[job.model]
            assert (job.state, job.error_code) == ("succeeded", ""), job.error_message
            assert job.pool == expected
            # The worker that moved it to running names itself (host:pid) in the transition.
            running = job.transitions.get(to_state="running")
            worker = re.fullmatch(r"attempt 1 on (\S+)", running.reason).group(1)
            assert heartbeats[worker].pool == expected
            assert os.getpgid(heartbeats[worker].pid) == clusters[expected].pid
            assert Task.objects.get(name=f"run_job-{job.id}").cluster == expected
            assert Task.objects.get(name=f"postprocess_job-{job.id}").cluster == "default"
            assert list(job.usage_events.values_list("hardware_class", "model")) == [
                ("cpu", job.model)
            ]
    finally:
        for process in clusters.values():
            stop(process)
