"""The Stripe-compatible server is down for the whole run: nothing listens at its address.

Jobs still succeed (nothing on a job's path calls Stripe), usage is recorded once in the
ledger, and the outbox holds one meter event per usage row, backing off on every scheduled
drain. Once a server answers at that address, the outbox drains, and each event reaches it
exactly once.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import MeterEventOutbox, UsageEvent
from billing.services import meter_events_push
from generation.services import JobRequest, job_create
from tests import factories
from tests.support import faults
from tests.support.fake_stripe import FakeStripe

pytestmark = pytest.mark.django_db

METER_EVENTS = "/v1/billing/meter_events"


def test_with_stripe_down_for_the_whole_run_usage_waits_in_the_outbox_and_drains_once(
    settings, run_on_commit
):
    port = faults.free_port()  # nothing listens here until the end
    fake = FakeStripe()
    settings.STRIPE_SECRET_KEY = fake.api_key
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{port}"
    settings.STRIPE_WEBHOOK_SECRET = fake.webhook_secret
    settings.STRIPE_TIMEOUT_S = 1.0
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.BILLING_METER_PUSH_BACKOFF_S = 30
    settings.BILLING_QUOTE_CACHE_S = 0
    jobs = []
    for tenant in (factories.make_tenant(), factories.make_tenant()):
        template = factories.make_template(tenant, prompt="{name} waves.\n\n{name} smiles.")
        for name in ("Ada", "Ben"):
            jobs.append(
                run_on_commit(
                    job_create,
                    tenant=tenant,
                    request=JobRequest(template=template, values={"name": name}),
                ).job
            )

    usage = dict(UsageEvent.objects.values_list("id", "milliseconds"))
    assert len(usage) == 8  # 4 jobs x 2 shots, once each
    # The drain runs every minute while Stripe stays away: each run tries the row that is due
    # first, fails to connect, pushes it back (30 s, doubling, jittered) and stops.
    start = timezone.now()
    drains = [meter_events_push(now=start + timedelta(minutes=minute)) for minute in range(1, 9)]
    rows = list(MeterEventOutbox.objects.order_by("pk"))
    attempts_while_down = sum(row.attempts for row in rows)
    longest_backoff = max(row.next_attempt_at - start for row in rows)
    assert {row.pk for row in rows} == set(usage)
    assert {row.status for row in rows} == {"pending"}
    assert all(row.last_error.startswith("unavailable:") for row in rows if row.attempts)
    assert [(d.sent, d.retrying) for d in drains] == [(0, 1)] * len(drains)
    assert attempts_while_down >= len(drains)
    assert longest_backoff > timedelta(minutes=8)  # backed off past the last drain

    fake.port = port
    fake.start()
    try:
        recovered = meter_events_push(now=start + timedelta(hours=3))
        again = meter_events_push(now=start + timedelta(hours=4))
        sent = {e["identifier"]: e["value"] for e in fake.meter_events}
        posts = fake.request_count("POST", METER_EVENTS)
    finally:
        fake.close()

    counts = faults.audit([job.pk for job in jobs])
    faults.report(
        "stripe_down",
        {
            "usage_rows": len(usage),
            "outbox_rows": len(rows),
            "push_attempts_while_down": attempts_while_down,
            "longest_backoff_s": round(longest_backoff.total_seconds()),
            "sent_after_recovery": recovered.sent,
            "sent_by_a_second_drain": again.sent,
            "meter_event_posts": posts,
            "duplicates_at_stripe": posts - len(sent),
            **counts,
        },
    )
    assert counts["succeeded"] == len(jobs) == 4
    faults.assert_clean(counts)
    assert (recovered.sent, recovered.duplicates, recovered.retrying) == (8, 0, 0)
    assert (again.sent, again.retrying) == (0, 0)
    assert set(MeterEventOutbox.objects.values_list("status", flat=True)) == {"sent"}
    assert sent == usage  # every row, with its value, under its own identifier
    assert posts == len(usage)  # exactly once each
