"""A failed job is a platform fault, and platform faults are not billed: whatever an attempt
billed before the job failed is refunded, in full, exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.db.models import Sum
from django.utils import timezone

from billing.models import LedgerAdjustment, MeterEventOutbox, UsageEvent
from billing.services import (
    Measurement,
    meter_events_push,
    usage_correct,
    usage_record,
    usage_refund,
    usage_refund_job,
)
from generation import tasks
from generation.models import Job, JobState
from generation.services import JobRequest, job_cancel, job_create, job_fail, job_transition
from tests import factories

pytestmark = pytest.mark.django_db


def _job(tenant) -> Job:
    template = factories.make_template(tenant)
    return job_create(
        tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job


def _bill(job: Job, ms_by_shot: dict[int, int]) -> None:
    usage_record(
        tenant=job.tenant,
        job_id=job.id,
        measurements=[
            Measurement(
                stage="generate",
                shot_index=shot,
                hardware_class="h100",
                model=job.model,
                milliseconds=ms,
            )
            for shot, ms in ms_by_shot.items()
        ],
    )


def _net_ms(job: Job) -> int:
    return UsageEvent.objects.filter(job=job).aggregate(ms=Sum("milliseconds"))["ms"] or 0


def _ledger(job: Job) -> list[tuple[str, str, int]]:
    return sorted(UsageEvent.objects.filter(job=job).values_list("id", "kind", "milliseconds"))


def _running(job: Job) -> Job:
    return job_transition(job=job, to_state=JobState.RUNNING, reason="attempt 1")


def test_a_job_that_billed_its_shots_and_then_lost_its_worker_nets_zero(tenant, api, monkeypatch):
    job = _job(tenant)

    def killed_after_billing(frames, *, fps):
        raise SystemExit("kill -9")  # the usage rows are committed, the hand-over never comes

    def lease_lapses() -> None:
        Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    monkeypatch.setattr(tasks, "pack", killed_after_billing)
    with pytest.raises(SystemExit):
        tasks.run_job(str(job.id))  # attempt 1 bills its shot and dies
    lease_lapses()
    with pytest.raises(SystemExit):
        tasks.reap_lost_jobs()  # requeued and dispatched at once: attempt 2 dies the same way
    lease_lapses()
    tasks.reap_lost_jobs()  # no attempts left: failed as worker_lost
    job.refresh_from_db()

    usage = list(UsageEvent.objects.filter(job=job, kind="usage").values_list("id", "milliseconds"))
    assert (job.state, job.error_code, job.attempts) == ("failed", "worker_lost", 2)
    assert [pk for pk, _ in usage] == [f"job:{job.id}:generate:0"]
    assert usage[0][1] > 0
    assert _ledger(job) == sorted(
        [(pk, "usage", ms) for pk, ms in usage]
        + [(f"refund:{pk}:job_failed", "refund", -ms) for pk, ms in usage]
    )
    assert _net_ms(job) == 0
    assert list(
        LedgerAdjustment.objects.filter(adjusts__job=job).values_list("reason", "actor")
    ) == [("job failed: worker_lost", "")]
    by_template = api.get("/api/v1/billing/usage/?group_by=template").json()["results"]
    assert by_template == [{"key": str(job.template_id), "milliseconds": 0, "events": 2}]


def test_a_platform_fault_after_billed_shots_refunds_every_shot(tenant):
    job = _running(_job(tenant))
    _bill(job, {0: 1200, 1: 3400})

    job_fail(job=job, code="gpu_out_of_memory", message="CUDA out of memory")

    assert _ledger(job) == [
        (f"job:{job.id}:generate:0", "usage", 1200),
        (f"job:{job.id}:generate:1", "usage", 3400),
        (f"refund:job:{job.id}:generate:0:job_failed", "refund", -1200),
        (f"refund:job:{job.id}:generate:1:job_failed", "refund", -3400),
    ]
    assert _net_ms(job) == 0


def test_a_failure_without_usage_writes_nothing_to_the_ledger(tenant):
    job = _job(tenant)

    job_fail(job=job, code="storage_error", message="No space left on device")

    job.refresh_from_db()
    assert job.state == "failed"
    assert UsageEvent.objects.count() == 0
    assert LedgerAdjustment.objects.count() == 0
    assert usage_refund_job(job_id=job.id, reason="again") == []


def test_refunding_a_failed_job_twice_refunds_nothing_twice(tenant):
    job = _running(_job(tenant))
    _bill(job, {0: 500, 1: 700})
    job_fail(job=job, code="postprocess_error", message="ffmpeg exited 1")
    after_failure = _ledger(job)

    again = usage_refund_job(job_id=job.id, reason="job failed: postprocess_error")
    and_again = usage_refund_job(job_id=job.id, reason="a different reason")

    assert (again, and_again) == ([], [])
    assert _ledger(job) == after_failure
    assert len(after_failure) == 4
    assert _net_ms(job) == 0


def test_a_failure_refunds_only_what_an_earlier_partial_refund_left(tenant):
    job = _running(_job(tenant))
    _bill(job, {0: 3000, 1: 1000})
    shot_0, shot_1 = UsageEvent.objects.filter(job=job).order_by("shot_index")
    usage_refund(usage_event=shot_0, reason="slow shot", milliseconds=1000, key="ticket-7")
    usage_refund(usage_event=shot_1, reason="bad shot")  # already refunded in full

    job_fail(job=job, code="generation_error", message="RuntimeError: NaN latents")

    assert _ledger(job) == [
        (shot_0.pk, "usage", 3000),
        (shot_1.pk, "usage", 1000),
        (f"refund:{shot_0.pk}:job_failed", "refund", -2000),
        (f"refund:{shot_0.pk}:ticket-7", "refund", -1000),
        (f"refund:{shot_1.pk}:full", "refund", -1000),
    ]
    assert _net_ms(job) == 0


def test_a_failure_refunds_a_row_net_of_its_corrections(tenant):
    job = _running(_job(tenant))
    _bill(job, {0: 1000, 1: 1000})
    shot_0, shot_1 = UsageEvent.objects.filter(job=job).order_by("shot_index")
    usage_correct(usage_event=shot_0, milliseconds_delta=-400, reason="clock skew", key="t-1")
    usage_correct(usage_event=shot_1, milliseconds_delta=300, reason="undercount", key="t-2")

    created = usage_refund_job(job_id=job.id, reason="job failed: worker_lost")
    again = usage_refund_job(job_id=job.id, reason="job failed: worker_lost")

    assert sorted((row.pk, row.milliseconds) for row in created) == [
        (f"correction:{shot_1.pk}:job_failed", -300),
        (f"refund:{shot_0.pk}:job_failed", -600),
        (f"refund:{shot_1.pk}:job_failed", -1000),
    ]
    assert again == []
    assert _net_ms(job) == 0


def test_usage_billed_after_the_job_failed_is_refunded_at_once(tenant):
    # A worker whose lease lapsed and was failed without it finishes and bills late.
    job = _running(_job(tenant))
    _bill(job, {0: 800})
    job_fail(job=job, code="worker_lost", message="lost twice")

    _bill(job, {0: 800, 1: 900})

    assert _ledger(job) == [
        (f"job:{job.id}:generate:0", "usage", 800),
        (f"job:{job.id}:generate:1", "usage", 900),
        (f"refund:job:{job.id}:generate:0:job_failed", "refund", -800),
        (f"refund:job:{job.id}:generate:1:job_failed", "refund", -900),
    ]


@pytest.mark.parametrize("ending", ["canceled", "blocked"])
def test_a_canceled_or_blocked_job_keeps_its_usage(tenant, ending):
    job = _running(_job(tenant))
    _bill(job, {0: 1500, 1: 2500})

    if ending == "canceled":
        Job.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())
        job_transition(job=job, to_state=JobState.CANCELED, reason="canceled while running")
    else:
        for state in (JobState.POSTPROCESSING, JobState.MODERATING):
            job_transition(job=job, to_state=state, reason="on its way")
        job_transition(
            job=job, to_state=JobState.BLOCKED, reason="moderation: block", error_code="blocked"
        )
    job.refresh_from_db()

    assert job.state == ending
    assert _ledger(job) == [
        (f"job:{job.id}:generate:0", "usage", 1500),
        (f"job:{job.id}:generate:1", "usage", 2500),
    ]
    assert LedgerAdjustment.objects.count() == 0


def test_a_job_canceled_while_queued_keeps_what_it_was_billed(tenant):
    job = _job(tenant)
    _bill(job, {0: 250})

    job_cancel(job=job)

    job.refresh_from_db()
    assert job.state == "canceled"
    assert _net_ms(job) == 250


def test_the_refund_rows_reach_stripe_exactly_once(tenant, fake_stripe):
    job = _running(_job(tenant))
    _bill(job, {0: 1200, 1: 3400})
    job_fail(job=job, code="worker_lost", message="lost twice")
    usage_refund_job(job_id=job.id, reason="job failed: worker_lost")

    first = meter_events_push()
    second = meter_events_push(now=timezone.now() + timedelta(hours=1))

    refunds = {
        f"refund:job:{job.id}:generate:0:job_failed": -1200,
        f"refund:job:{job.id}:generate:1:job_failed": -3400,
    }
    assert (first.sent, second.sent) == (4, 0)
    assert (
        dict(MeterEventOutbox.objects.filter(value__lt=0).values_list("usage_event_id", "value"))
        == refunds
    )
    assert set(MeterEventOutbox.objects.values_list("status", flat=True)) == {"sent"}
    assert sorted((e["identifier"], e["value"]) for e in fake_stripe.meter_events) == sorted(
        [
            (f"job:{job.id}:generate:0", 1200),
            (f"job:{job.id}:generate:1", 3400),
            *refunds.items(),
        ]
    )


@pytest.mark.django_db(transaction=True)
def test_two_refunds_at_once_refund_each_row_once(tenant):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: SQLite serialises writers before either reads")
    job = _job(tenant)  # committed, so it runs on the sync cluster and bills its shots
    usage_ids = sorted(UsageEvent.objects.filter(job=job).values_list("pk", flat=True))
    assert usage_ids
    barrier = threading.Barrier(2)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def refund() -> None:
        try:
            barrier.wait()
            rows = usage_refund_job(job_id=job.id, reason="job failed: worker_lost")
            results.append(sorted(row.pk for row in rows))
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=refund) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(results) == [[], [f"refund:{pk}:job_failed" for pk in usage_ids]]
    assert _net_ms(job) == 0
