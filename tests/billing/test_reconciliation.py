"""Hourly reconciliation: what we sent per customer and meter against Stripe's summaries."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import MeterEventOutbox, ReconciliationReport, UsageEvent
from billing.selectors import hour_floor
from billing.services import Measurement, meter_events_push, reconcile_window, usage_record
from generation.services import JobRequest, job_create
from tests import factories

pytestmark = pytest.mark.django_db


def _usage_in(tenant, window_start, ms_list):
    job = job_create(
        tenant=tenant,
        request=JobRequest(template=factories.make_template(tenant), values={"name": "Ada"}),
    ).job
    usage_record(
        tenant=tenant,
        job_id=job.id,
        measurements=[
            Measurement(
                stage="generate", shot_index=i, hardware_class="h100", model="m", milliseconds=ms
            )
            for i, ms in enumerate(ms_list)
        ],
    )
    at = window_start + timedelta(minutes=10)
    UsageEvent.objects.filter(job=job).update(created_at=at)
    MeterEventOutbox.objects.filter(usage_event__job=job).update(occurred_at=at)
    return job


def test_reconciliation_matches_and_then_flags_injected_drift(
    tenant, other_tenant, fake_stripe, caplog
):
    window_start = hour_floor(timezone.now()) - timedelta(hours=1)
    window_end = window_start + timedelta(hours=1)
    _usage_in(tenant, window_start, [1234, 766])
    assert meter_events_push().sent == 2

    clean = reconcile_window(window_start=window_start, window_end=window_end)
    meter = next(iter(fake_stripe.objects["billing.meter"].values()))
    customer = tenant.billing_subscription_set.get().stripe_customer_id
    fake_stripe.add_phantom_usage(
        meter_id=meter["id"],
        customer_id=customer,
        value=500,
        timestamp=int((window_start + timedelta(minutes=30)).timestamp()),
    )
    with caplog.at_level(logging.WARNING, logger="billing.services"):
        drifted = reconcile_window(window_start=window_start, window_end=window_end)

    assert [
        (r.hardware_class, r.status, r.ledger_ms, r.sent_ms, r.stripe_ms, r.drift_ms) for r in clean
    ] == [("h100", "ok", 2000, 2000, 2000, 0)]
    assert [(r.status, r.sent_ms, r.stripe_ms, r.drift_ms) for r in drifted] == [
        ("drift", 2000, 2500, 500)
    ]
    report = ReconciliationReport.objects.get()
    assert (report.tenant_id, report.status, report.drift_ms) == (tenant.pk, "drift", 500)
    assert report.detail == "Stripe has 2500 ms, we sent 2000 ms"
    assert any("meter drift" in r.getMessage() and "+500" in r.getMessage() for r in caplog.records)


def test_rows_still_pending_are_reported_but_are_not_drift(tenant, fake_stripe):
    window_start = hour_floor(timezone.now()) - timedelta(hours=2)
    window_end = window_start + timedelta(hours=1)
    _usage_in(tenant, window_start, [300])
    meter_events_push()
    _usage_in(tenant, window_start, [40])  # recorded, not pushed yet

    [report] = reconcile_window(window_start=window_start, window_end=window_end)

    assert (
        report.status,
        report.ledger_ms,
        report.sent_ms,
        report.pending_ms,
        report.stripe_ms,
        report.drift_ms,
    ) == ("ok", 340, 300, 40, 300, 0)


def test_with_stripe_down_reconciliation_records_that_it_could_not_compare(tenant, fake_stripe):
    window_start = hour_floor(timezone.now()) - timedelta(hours=1)
    _usage_in(tenant, window_start, [300])
    meter_events_push()
    fake_stripe.down()

    [report] = reconcile_window(
        window_start=window_start, window_end=window_start + timedelta(hours=1)
    )

    assert (report.status, report.stripe_ms, report.sent_ms) == ("error", None, 300)
    assert report.detail.startswith("Stripe summary unavailable:")
