"""A job's life reaches the tenant's webhook endpoint, signed, through the real pipeline."""

from __future__ import annotations

import json

import pytest

from generation import tasks
from tenants import webhooks
from tests.support.webhook_receiver import WebhookReceiver
from tests.tenants.test_webhooks import verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = True  # the receiver is on loopback
    with WebhookReceiver() as server:
        yield server


def _events(receiver, count, secret):
    received = receiver.wait_for(count)
    for message in received:
        assert verify(secret, message.headers, message.body)
    return [json.loads(m.body) for m in received]


def test_a_job_that_succeeds_sends_queued_started_and_succeeded(
    api, tenant, template, receiver, run_on_commit
):
    issued = webhooks.webhook_endpoint_create(tenant=tenant, url=receiver.url())
    response = run_on_commit(
        api.post,
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": "Ada"}},
        format="json",
    )
    job_id = response.json()["id"]
    events = _events(receiver, 3, issued.secret)
    lifecycle = [e["type"] for e in events if e["type"] != "job.progress"]
    assert lifecycle == ["job.queued", "job.started", "job.succeeded"]
    assert {e["data"]["id"] for e in events} == {job_id}
    assert events[-1]["data"]["state"] == "succeeded"


def test_a_failed_job_sends_job_failed_with_the_reason(
    api, tenant, template, receiver, monkeypatch, run_on_commit
):
    from generation.backends.preview import PreviewBackend

    issued = webhooks.webhook_endpoint_create(
        tenant=tenant, url=receiver.url(), event_types=["job.failed"]
    )

    def explode(self, request, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(PreviewBackend, "generate", explode)
    job_id = api.post(
        "/api/v1/jobs/", {"template": str(template.id), "values": {"name": "A"}}, format="json"
    ).json()["id"]
    run_on_commit(tasks.run_job, job_id)
    (event,) = _events(receiver, 1, issued.secret)
    assert event["type"] == "job.failed"
    assert event["data"]["error"]["code"] == "generation_error"
