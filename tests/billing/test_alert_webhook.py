"""Usage alerts reach the tenant twice: by email and as a `usage.alert` webhook event."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.management import call_command

from billing.models import Plan, UsageAlert
from billing.services import Measurement, subscription_assign, usage_record
from generation.services import JobRequest, job_create
from tenants.models import WebhookEvent
from tenants.webhooks import webhook_endpoint_create
from tests import factories

pytestmark = pytest.mark.django_db


def test_crossing_80_percent_sends_one_email_and_one_webhook_event(tenant, run_on_commit, settings):
    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = True
    call_command("seed_plans")
    subscription_assign(tenant=tenant, plan=Plan.objects.get(slug="school"))
    owner = factories.make_member(tenant, role="owner")
    owner.email = "owner@school.example"
    owner.save()
    webhook_endpoint_create(
        tenant=tenant, url="http://127.0.0.1:9/alerts", event_types=["usage.alert"]
    )
    job = job_create(
        tenant=tenant,
        request=JobRequest(template=factories.make_template(tenant), values={"name": "Ada"}),
    ).job
    included_ms = 3600 * 1000  # the school plan includes 3,600 h100 GPU-seconds
    run_on_commit(
        usage_record,
        tenant=tenant,
        job_id=job.id,
        measurements=[
            Measurement(
                stage="generate",
                shot_index=0,
                hardware_class="h100",
                model="wan2.2-ti2v-5b",
                milliseconds=int(included_ms * 0.85),
            )
        ],
    )
    assert list(UsageAlert.objects.values_list("hardware_class", "threshold_percent")) == [
        ("h100", 80)
    ]
    [event] = WebhookEvent.objects.filter(tenant=tenant, type="usage.alert")
    assert event.payload["data"]["threshold_percent"] == 80
    assert len(mail.outbox) == 1 and "owner@school.example" in mail.outbox[0].to
