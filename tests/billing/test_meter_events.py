"""Usage reaches Stripe exactly once, through the outbox, whatever the network does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import MeterEventOutbox, UsageEvent
from billing.services import Measurement, meter_events_push, usage_record, usage_refund
from generation.models import Job, JobState
from generation.services import JobRequest, job_create
from tests import factories

pytestmark = pytest.mark.django_db

METER_EVENTS = "/v1/billing/meter_events"


def _job(tenant):
    template = factories.make_template(tenant)
    return job_create(
        tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job


def _measure(ms=1234, shot=0, hardware="h100"):
    return [
        Measurement(
            stage="generate",
            shot_index=shot,
            hardware_class=hardware,
            model="wan2.2-ti2v-5b",
            milliseconds=ms,
        )
    ]


def test_a_usage_recording_retried_three_times_is_one_row_and_one_meter_event(
    tenant, fake_stripe, run_on_commit
):
    job = _job(tenant)

    counts = [
        run_on_commit(usage_record, tenant=tenant, job_id=job.id, measurements=_measure(1234))
        for _ in range(3)
    ]

    event_id = f"job:{job.id}:generate:0"
    assert counts == [1, 0, 0]
    assert list(UsageEvent.objects.values_list("id", "milliseconds")) == [(event_id, 1234)]
    outbox = MeterEventOutbox.objects.get()
    assert (outbox.pk, outbox.status, outbox.attempts, outbox.duplicate) == (
        event_id,
        "sent",
        1,
        False,
    )
    assert [(e["identifier"], e["event_name"], e["value"]) for e in fake_stripe.meter_events] == [
        (event_id, "gpu_ms_h100", 1234)
    ]
    assert fake_stripe.request_count("POST", METER_EVENTS) == 1
    customer = fake_stripe.meter_events[0]["customer"]
    assert tenant.billing_subscription_set.get().stripe_customer_id == customer


def test_a_meter_push_that_timed_out_is_retried_and_counted_once(
    tenant, fake_stripe, settings, run_on_commit
):
    settings.STRIPE_TIMEOUT_S = 0.3
    fake_stripe.slow_next(1, seconds=1.0, path=METER_EVENTS)  # applied, answered too late
    job = _job(tenant)

    run_on_commit(usage_record, tenant=tenant, job_id=job.id, measurements=_measure(5000))

    row = MeterEventOutbox.objects.get()
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error.startswith("unavailable:")
    assert len(fake_stripe.meter_events) == 1  # the first attempt landed after all

    result = meter_events_push(now=timezone.now() + timedelta(hours=1))

    row.refresh_from_db()
    assert (result.sent, result.duplicates, result.retrying) == (1, 1, 0)
    assert (row.status, row.attempts, row.duplicate) == ("sent", 2, True)
    assert fake_stripe.request_count("POST", METER_EVENTS) == 2
    assert [(e["identifier"], e["value"]) for e in fake_stripe.meter_events] == [(row.pk, 5000)]


def test_429_and_500_are_retried_with_growing_backoff(tenant, fake_stripe, settings):
    settings.BILLING_METER_PUSH_BACKOFF_S = 10
    job = _job(tenant)
    usage_record(tenant=tenant, job_id=job.id, measurements=_measure(700))
    fake_stripe.fail_next(1, status=429, path=METER_EVENTS)
    fake_stripe.fail_next(1, status=500, path=METER_EVENTS)
    start = timezone.now()

    first = meter_events_push(now=start)
    row = MeterEventOutbox.objects.get()
    first_delay = row.next_attempt_at - start
    assert (first.retrying, first.sent, row.attempts) == (1, 0, 1)
    assert timedelta(seconds=5) <= first_delay <= timedelta(seconds=10)
    assert meter_events_push(now=start).sent == 0  # not due yet: nothing is sent

    second_at = row.next_attempt_at
    second = meter_events_push(now=second_at)
    row.refresh_from_db()
    assert (second.retrying, row.attempts) == (1, 2)
    assert timedelta(seconds=10) <= row.next_attempt_at - second_at <= timedelta(seconds=20)

    third = meter_events_push(now=row.next_attempt_at)
    row.refresh_from_db()
    assert (third.sent, row.status, row.attempts) == (1, "sent", 3)
    assert [e["value"] for e in fake_stripe.meter_events] == [700]


def test_with_stripe_down_for_the_whole_run_jobs_succeed_and_usage_is_pushed_when_it_returns(
    tenant, template, api, fake_stripe, run_on_commit
):
    fake_stripe.down()

    created = [
        run_on_commit(
            api.post,
            "/api/v1/jobs/",
            {"template": str(template.id), "values": {"name": name}},
            format="json",
        )
        for name in ("Ada", "Ben", "Cai")
    ]

    assert [r.status_code for r in created] == [201, 201, 201]
    assert set(Job.objects.values_list("state", flat=True)) == {JobState.SUCCEEDED}
    usage = dict(UsageEvent.objects.values_list("id", "milliseconds"))
    assert len(usage) >= 3
    assert set(MeterEventOutbox.objects.values_list("status", flat=True)) == {"pending"}
    assert fake_stripe.requests == []  # nothing got through

    fake_stripe.up()
    result = meter_events_push(now=timezone.now() + timedelta(hours=2))

    assert (result.sent, result.retrying, result.failed) == (len(usage), 0, 0)
    assert set(MeterEventOutbox.objects.values_list("status", flat=True)) == {"sent"}
    assert {e["identifier"]: e["value"] for e in fake_stripe.meter_events} == usage
    assert fake_stripe.request_count("POST", METER_EVENTS) == len(usage)


def test_while_stripe_is_down_each_drain_tries_one_row_and_stops(tenant, fake_stripe):
    job = _job(tenant)
    usage_record(
        tenant=tenant, job_id=job.id, measurements=_measure(100, shot=0) + _measure(200, shot=1)
    )
    fake_stripe.down()

    result = meter_events_push()

    assert (result.sent, result.retrying) == (0, 1)
    assert result.stopped
    assert sorted(MeterEventOutbox.objects.values_list("attempts", flat=True)) == [0, 1]


def test_a_refund_is_a_new_negative_row_pushed_once(tenant, fake_stripe):
    job = _job(tenant)
    usage_record(tenant=tenant, job_id=job.id, measurements=_measure(3000))
    original = UsageEvent.objects.get()

    first = usage_refund(usage_event=original, reason="platform fault in shot 0")
    again = usage_refund(usage_event=original, reason="platform fault in shot 0")
    meter_events_push()

    assert first.pk == again.pk == f"refund:{original.pk}:full"
    assert (first.kind, first.milliseconds) == ("refund", -3000)
    assert first.adjustment.reason == "platform fault in shot 0"
    assert sorted(e["value"] for e in fake_stripe.meter_events) == [-3000, 3000]
    with pytest.raises(ValueError, match="Cannot refund"):
        usage_refund(usage_event=original, reason="twice", key="second")
    assert UsageEvent.objects.count() == 2


def test_a_row_older_than_stripe_accepts_is_marked_expired_not_sent(tenant, fake_stripe):
    job = _job(tenant)
    usage_record(tenant=tenant, job_id=job.id, measurements=_measure(100))
    MeterEventOutbox.objects.update(occurred_at=timezone.now() - timedelta(days=36))

    result = meter_events_push()

    assert (result.expired, result.sent) == (1, 0)
    assert MeterEventOutbox.objects.get().status == "expired"
    assert fake_stripe.meter_events == []


def test_a_refused_event_is_failed_for_an_operator_and_requeued_once_fixed(tenant, fake_stripe):
    from billing.services import outbox_requeue

    job = _job(tenant)
    usage_record(tenant=tenant, job_id=job.id, measurements=_measure(100))
    meter_events_push()  # creates the customer and the meter, sends the first row
    usage_record(tenant=tenant, job_id=job.id, measurements=_measure(200, shot=1))
    meter = next(iter(fake_stripe.objects["billing.meter"].values()))
    meter["status"] = "inactive"

    refused = meter_events_push()
    meter["status"] = "active"
    failed = MeterEventOutbox.objects.get(status="failed")
    assert refused.failed == 1
    assert "No active meter" in failed.last_error

    assert outbox_requeue(usage_event_ids=[failed.pk]) == 1
    assert meter_events_push().sent == 1
    assert sorted(e["value"] for e in fake_stripe.meter_events) == [100, 200]


def test_without_stripe_configured_nothing_is_queued(tenant, settings):
    settings.STRIPE_SECRET_KEY = ""
    job = _job(tenant)

    assert usage_record(tenant=tenant, job_id=job.id, measurements=_measure(100)) == 1
    assert MeterEventOutbox.objects.count() == 0
