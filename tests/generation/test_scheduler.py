"""The dispatcher on a simulated load: fair share, priorities, aging, caps, routing, races."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from billing.services import Measurement, usage_record
from generation import scheduler, tasks
from generation.models import Job, JobState, Priority
from generation.services import JobRequest, job_create
from tests import factories

pytestmark = pytest.mark.django_db

POOLS = {"gpu": {"hardware_class": "h100", "capacity": 2, "models": ["preview"]}}


def _queue(tenant, template, n, **request):
    return [
        job_create(
            tenant=tenant, request=JobRequest(template=template, values={"name": "A"}, **request)
        ).job.id
        for _ in range(n)
    ]


def _finish(job_ids, ms=10_000):
    """Stand-in for a worker: the dispatched jobs ran (and used the GPU) and ended."""
    for job in Job.objects.filter(pk__in=job_ids):
        usage_record(
            tenant=job.tenant,
            job_id=job.id,
            measurements=[
                Measurement(
                    stage="generate",
                    shot_index=0,
                    hardware_class="h100",
                    model=job.model,
                    milliseconds=ms,
                )
            ],
        )
    Job.objects.filter(pk__in=job_ids).update(state=JobState.SUCCEEDED)


def _run(pool, rounds):
    order = []
    for _ in range(rounds):
        claimed = scheduler.dispatch_pool(pool)
        if not claimed:
            break
        order.extend(claimed)
        _finish(claimed)
    return order


@override_settings(REELCAST_POOLS=POOLS)
def test_a_small_tenant_is_not_stuck_behind_a_big_one():
    big, small = factories.make_tenant(), factories.make_tenant()
    big.max_concurrent_jobs = small.max_concurrent_jobs = 50
    big.save(), small.save()
    big_jobs = _queue(big, factories.make_template(big), 500)
    small_jobs = _queue(small, factories.make_template(small), 5)
    order = _run(scheduler.pools()[0], rounds=12)
    positions = sorted(order.index(j) for j in small_jobs)
    # Each of the small tenant's jobs starts within the next couple of free slots.
    assert positions == [1, 3, 5, 7, 9]
    assert order[0] == big_jobs[0]  # the big tenant queued first and was served first


@override_settings(REELCAST_POOLS=POOLS)
def test_priority_classes_go_first_and_waiting_jobs_age_upwards():
    tenant = factories.make_tenant()
    tenant.max_concurrent_jobs = 50
    tenant.save()
    template = factories.make_template(tenant)
    standard = _queue(tenant, template, 3)
    bulk_old = _queue(tenant, template, 1, priority=Priority.BULK)
    interactive = _queue(tenant, template, 1, priority=Priority.INTERACTIVE)
    order = _run(scheduler.pools()[0], rounds=1)
    assert order == [interactive[0], standard[0]]
    # A bulk job that has waited two aging periods outranks fresh standard work.
    Job.objects.filter(pk=bulk_old[0]).update(created_at=timezone.now() - timedelta(seconds=1300))
    with override_settings(REELCAST_PRIORITY_AGING_S=600):
        order = _run(scheduler.pools()[0], rounds=1)
    assert order[0] == bulk_old[0]


@override_settings(REELCAST_POOLS=POOLS)
def test_the_tenant_cap_holds_even_with_free_slots():
    tenant = factories.make_tenant()
    tenant.max_concurrent_jobs = 1
    tenant.save()
    _queue(tenant, factories.make_template(tenant), 4)
    pool = scheduler.pools()[0]
    assert len(scheduler.dispatch_pool(pool)) == 1
    assert scheduler.dispatch_pool(pool) == []
    assert scheduler.free_slots(pool) == 1


@override_settings(REELCAST_POOLS={"gpu": {**POOLS["gpu"], "capacity": 4, "tenant_cap": 2}})
def test_a_pool_tenant_cap_holds():
    tenant = factories.make_tenant()
    tenant.max_concurrent_jobs = 10
    tenant.save()
    _queue(tenant, factories.make_template(tenant), 5)
    assert len(scheduler.dispatch_pool(scheduler.pools()[0])) == 2


@override_settings(REELCAST_POOLS=POOLS)
def test_weights_share_the_pool_in_proportion():
    heavy, light = factories.make_tenant(), factories.make_tenant()
    for tenant, weight in ((heavy, 3), (light, 1)):
        tenant.fair_share_weight, tenant.max_concurrent_jobs = weight, 50
        tenant.save()
    heavy_jobs = set(_queue(heavy, factories.make_template(heavy), 60))
    _queue(light, factories.make_template(light), 60)
    order = _run(scheduler.pools()[0], rounds=20)
    share = sum(1 for j in order if j in heavy_jobs) / len(order)
    assert 0.70 <= share <= 0.80  # 3 : 1


@override_settings(REELCAST_POOLS=POOLS)
def test_a_suspended_tenant_waits():
    tenant = factories.make_tenant()
    _queue(tenant, factories.make_template(tenant), 2)
    tenant.status = "suspended"
    tenant.save()
    assert scheduler.dispatch_pool(scheduler.pools()[0]) == []


@override_settings(
    REELCAST_POOLS={
        "default": {"hardware_class": "cpu", "capacity": 1, "models": ["preview"]},
        "gpu-h100": {"hardware_class": "h100", "capacity": 1, "models": ["wan2.2-ti2v-5b"]},
    }
)
def test_jobs_go_to_the_pool_that_serves_their_model(monkeypatch):
    tenant = factories.make_tenant()
    preview = factories.make_template(tenant)
    wan = factories.make_template(
        tenant, model="wan2.2-ti2v-5b", width=1280, height=704, fps=24, duration_s=5.0
    )
    sent = []
    monkeypatch.setattr(
        tasks,
        "async_task",
        lambda func, job_id, **kw: sent.append((func, job_id, kw["cluster"])),
    )
    a = _queue(tenant, preview, 1)[0]
    b = _queue(tenant, wan, 1)[0]
    tasks.enqueue_job(a)
    tasks.enqueue_job(b)
    assert sent == [
        ("generation.tasks.run_job", str(a), "default"),
        ("generation.tasks.run_job", str(b), "gpu-h100"),
    ]
    assert Job.objects.get(pk=b).pool == "gpu-h100"


@override_settings(REELCAST_POOLS=POOLS)
def test_queue_positions_count_the_jobs_ahead():
    tenant = factories.make_tenant()
    jobs = _queue(tenant, factories.make_template(tenant), 3)
    positions = [scheduler.queue_position(Job.objects.get(pk=j)) for j in jobs]
    assert positions == [0, 1, 2]


@pytest.mark.django_db(transaction=True)
@override_settings(REELCAST_POOLS={"gpu": {**POOLS["gpu"], "capacity": 6}})
def test_concurrent_dispatchers_never_hand_out_a_job_twice(monkeypatch):
    monkeypatch.setattr(tasks, "enqueue_job", lambda job_id: None)  # we dispatch by hand here
    tenants = [factories.make_tenant() for _ in range(3)]
    for tenant in tenants:
        tenant.max_concurrent_jobs = 50
        tenant.save()
        _queue(tenant, factories.make_template(tenant), 10)
    pool = scheduler.pools()[0]
    claimed: list = []
    errors: list = []

    def dispatcher():
        try:
            claimed.extend(scheduler.dispatch_pool(pool, limit=6))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(claimed) == len(set(claimed)) == 6
    assert Job.objects.filter(dispatched_at__isnull=False).count() == 6


@override_settings(
    REELCAST_POOLS={
        "default": {"hardware_class": "cpu", "capacity": 1, "models": ["preview"]},
        "gpu-h100": {"hardware_class": "h100", "capacity": 2, "models": ["wan2.2-ti2v-5b"]},
    }
)
def test_metrics_report_queue_depth_per_pool_without_a_known_host(client):
    tenant = factories.make_tenant()
    _queue(tenant, factories.make_template(tenant), 3)
    _queue(
        tenant,
        factories.make_template(
            tenant, model="wan2.2-ti2v-5b", width=1280, height=704, fps=24, duration_s=5.0
        ),
        2,
    )
    scheduler.dispatch_pool(scheduler.pools()[0])
    body = client.get("/metrics", HTTP_HOST="10.1.2.3:8000").content.decode()
    assert 'reelcast_queue_depth{pool="default"} 2.0' in body
    assert 'reelcast_queue_depth{pool="gpu-h100"} 2.0' in body
    assert 'reelcast_pool_busy_slots{pool="default"} 1.0' in body
    assert 'reelcast_jobs{state="queued"} 5.0' in body


def test_metrics_can_require_a_token(client, settings):
    settings.REELCAST_METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


def test_a_worker_heartbeat_names_its_pool_and_current_job():
    from generation import workers
    from generation.models import WorkerHeartbeat

    tenant = factories.make_tenant()
    job_id = _queue(tenant, factories.make_template(tenant), 1)[0]
    Job.objects.filter(pk=job_id).update(
        state="running", lease_owner=workers.worker_id(), lease_expires_at=timezone.now()
    )
    workers.set_current_job(job_id)
    try:
        workers.beat()
    finally:
        workers.set_current_job(None)
    beat = WorkerHeartbeat.objects.get(worker=workers.worker_id())
    assert (beat.pool, beat.hardware_class, beat.current_job) == ("default", "cpu", job_id)
    assert Job.objects.get(pk=job_id).lease_expires_at > timezone.now() + timedelta(seconds=30)


def test_the_periodic_schedules_are_registered_once():
    from django.core.management import call_command
    from django_q.models import Schedule

    call_command("setup_schedules")
    count = Schedule.objects.count()
    call_command("setup_schedules")
    funcs = set(Schedule.objects.values_list("func", flat=True))
    assert Schedule.objects.count() == count == len(funcs)
    assert {
        "generation.tasks.dispatch",
        "generation.tasks.reap_lost_jobs",
        "generation.tasks.sweep_idempotency_keys",
    } <= funcs
    assert any(func.startswith("billing.tasks.") for func in funcs)


@override_settings(
    REELCAST_POOLS={"gpu": {**POOLS["gpu"], "capacity": 3, "autoscale": True}},
    REELCAST_POOL_WORKERS=1,
)
def test_an_autoscaled_pool_has_one_slot_per_live_worker_up_to_its_capacity():
    from generation.models import WorkerHeartbeat

    tenant = factories.make_tenant()
    tenant.max_concurrent_jobs = 10
    tenant.save()
    _queue(tenant, factories.make_template(tenant), 6)
    pool = scheduler.pools()[0]
    assert scheduler.dispatch_pool(pool) == []  # scaled to zero: nothing is handed out

    def worker(n, seen):
        WorkerHeartbeat.objects.create(
            worker=f"pod-{n}:1",
            pool="gpu",
            host=f"pod-{n}",
            pid=1,
            hardware_class="h100",
            started_at=seen,
            last_seen=seen,
        )

    now = timezone.now()
    worker(1, now)
    worker(2, now)
    worker(3, now - timedelta(minutes=5))  # a pod that went away
    assert len(scheduler.dispatch_pool(pool)) == 2
    for n in range(4, 8):
        worker(n, now)
    assert len(scheduler.dispatch_pool(pool)) == 1  # capacity 3 caps the pool


def test_metrics_report_how_long_finished_jobs_spent_in_each_stage(client):
    from generation.models import JobTransition

    tenant = factories.make_tenant()
    template = factories.make_template(tenant)
    start = timezone.now() - timedelta(minutes=10)
    for queued_s, running_s in ((2, 10), (4, 30), (6, 20)):
        job = job_create(
            tenant=tenant, request=JobRequest(template=template, values={"name": "A"})
        ).job
        JobTransition.objects.filter(job=job).update(at=start)
        for to_state, offset in (
            ("running", queued_s),
            ("postprocessing", queued_s + running_s),
            ("moderating", queued_s + running_s + 1),
            ("succeeded", queued_s + running_s + 2),
        ):
            JobTransition.objects.create(
                job=job, from_state="", to_state=to_state, at=start + timedelta(seconds=offset)
            )
        Job.objects.filter(pk=job.pk).update(
            state="succeeded", finished_at=start + timedelta(seconds=queued_s + running_s + 2)
        )

    body = client.get("/metrics").content.decode()

    assert 'reelcast_job_stage_seconds{quantile="0.5",stage="queued"} 4.0' in body
    assert 'reelcast_job_stage_seconds{quantile="1",stage="running"} 30.0' in body
    assert 'reelcast_job_stage_count{stage="running"} 3.0' in body
