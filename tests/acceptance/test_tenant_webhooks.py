"""The school's webhook endpoint receives its job's events, each signed so that the Standard
Webhooks reference library (the ``standardwebhooks`` package) verifies it with the secret the
API showed once."""

from __future__ import annotations

import json

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.acceptance.harness import wait_until


def test_job_events_arrive_signed_per_standard_webhooks(
    platform_server, owner, tenant_webhook, walkthrough
):
    receiver = tenant_webhook["receiver"]
    job_id = walkthrough.created.json()["id"]
    verifier = Webhook(tenant_webhook["secret"])

    def events_of_the_job() -> list[dict]:
        mine = []
        for message in list(receiver.requests):
            payload = verifier.verify(message.body, message.headers)
            if payload["data"].get("id") == job_id:
                mine.append(payload)
        return mine

    def until_succeeded() -> list[dict] | None:
        events = events_of_the_job()
        return events if "job.succeeded" in [e["type"] for e in events] else None

    events = wait_until(
        until_succeeded,
        timeout_s=60,
        what=f"job.succeeded for job {job_id} at the tenant's receiver",
        explain=lambda: json.dumps([r.body.decode()[:300] for r in receiver.requests])[:3000],
    )
    types = [e["type"] for e in events]
    assert types[0] == "job.queued" and "job.started" in types
    assert types.count("job.succeeded") == 1
    succeeded = next(e for e in events if e["type"] == "job.succeeded")
    assert succeeded["data"]["state"] == "succeeded"

    # Each delivery carries the scheme's headers; a changed body or a wrong secret fails.
    message = receiver.requests[0]
    assert set(message.headers) >= {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert message.headers["webhook-signature"].startswith("v1,")
    for wrong in (
        lambda: verifier.verify(message.body + b" ", message.headers),
        lambda: Webhook("whsec_" + "A" * 32).verify(message.body, message.headers),
    ):
        try:
            wrong()
        except WebhookVerificationError:
            continue
        raise AssertionError("a tampered delivery verified")

    # The delivery log says the same: every attempt answered 200 by the receiver.
    deliveries = owner.get(
        f"{platform_server.url}/api/v1/webhooks/deliveries/",
        params={"endpoint": tenant_webhook["endpoint"]["id"]},
        timeout=30,
    ).json()
    assert deliveries["results"] and {d["status_code"] for d in deliveries["results"]} == {200}
