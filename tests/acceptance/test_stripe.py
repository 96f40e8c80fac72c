"""Billing against the Stripe-compatible server the platform reaches through STRIPE_API_BASE:
Checkout offered and completed, Stripe's signed webhooks applied once, and GPU time arriving as
meter events whose sum is what the tenant's usage API says."""

from __future__ import annotations

import json
import secrets
import time

import requests
import stripe

from tests.acceptance.harness import wait_until


def test_checkout_subscribes_the_tenant_through_stripe_s_webhooks(
    platform_server, owner, subscribed, fake_stripe
):
    overview = subscribed["overview"]
    assert overview["plan"]["slug"] == "school"
    assert overview["subscription"]["current_period_end"] is not None
    # Stripe's own signed deliveries, each answered 200.
    assert fake_stripe.deliveries and {outcome for _, outcome in fake_stripe.deliveries} == {200}
    invoices = owner.get(f"{platform_server.url}/api/v1/billing/invoices/", timeout=30).json()
    assert [i["status"] for i in invoices] == ["paid"]
    assert invoices[0]["hosted_invoice_url"].startswith(f"{fake_stripe.url}/i/in_")
    # The owner can manage payment in Stripe's Customer Portal.
    portal = owner.post(f"{platform_server.url}/api/v1/billing/portal/", timeout=30)
    assert portal.status_code == 200, portal.text
    assert portal.json()["url"].startswith(f"{fake_stripe.url}/portal/bps_")


def _event(event_type: str, obj: dict) -> str:
    return json.dumps(
        {
            "id": f"evt_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
            "data": {"object": obj},
        }
    )


def _invoice(customer: str, *, status: str) -> dict:
    return {
        "id": f"in_{secrets.token_hex(7)}",
        "object": "invoice",
        "customer": customer,
        "status": status,
        "number": f"ACC-{secrets.token_hex(2)}",
        "currency": "usd",
        "created": int(time.time()),
        "amount_due": 4900,
        "amount_paid": 4900 if status == "paid" else 0,
        "total": 4900,
        "attempt_count": 1,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "livemode": False,
    }


def test_a_stripe_signed_webhook_is_applied_once_and_a_bad_signature_is_refused(
    platform_server, owner, subscribed, fake_stripe
):
    p = platform_server
    hook = f"{p.url}/billing/stripe/webhook/"
    customer = subscribed["customer"]

    def send(payload: str, secret: str = fake_stripe.webhook_secret) -> requests.Response:
        signature = stripe.WebhookSignature.generate_signature_header(payload, secret)
        return requests.post(
            hook,
            data=payload.encode(),
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
            timeout=30,
        )

    def subscription() -> dict:
        return owner.get(f"{p.url}/api/v1/billing/overview/", timeout=30).json()["subscription"]

    failed = _event("invoice.payment_failed", _invoice(customer, status="open"))
    answer = send(failed)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": json.loads(failed)["id"], "applied": True}
    assert subscription()["status"] == "past_due"
    assert subscription()["past_due_since"] is not None

    paid = _event("invoice.paid", _invoice(customer, status="paid"))
    assert send(paid).json()["applied"] is True
    assert subscription()["status"] == "active"

    # Stripe delivers the failure again: acknowledged, not applied, the tenant stays active.
    replay = send(failed)
    assert replay.status_code == 200
    assert replay.json() == {"received": json.loads(failed)["id"], "applied": False}
    assert subscription()["status"] == "active"
    assert subscription()["past_due_since"] is None

    # Signed with another secret: refused, and nothing changes.
    forged = _event("invoice.payment_failed", _invoice(customer, status="open"))
    refused = send(forged, secret="whsec_not_the_platforms")
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_signature"
    unsigned = requests.post(hook, data=forged.encode(), timeout=30)
    assert unsigned.status_code == 400
    assert subscription()["status"] == "active"


def test_gpu_time_arrives_at_stripe_as_meter_events(
    platform_server, walkthrough, subscribed, stripe_api
):
    """The walk-through's job was billed: the school's usage API and Stripe's meter event
    summaries for the school's customer agree, to the millisecond."""
    p = platform_server
    api = p.school_api()
    meters = {m.event_name: m.id for m in stripe_api.v1.billing.meters.list().data}
    assert "gpu_ms_cpu" in meters, meters
    now = int(time.time())
    window = {"start_time": (now - 3600) // 60 * 60, "end_time": (now // 60 + 2) * 60}
    seen: dict = {}

    def ours_and_stripes() -> tuple[dict, float]:
        usage = api.get(
            f"{p.url}/api/v1/billing/usage/", params={"group_by": "hardware_class"}, timeout=30
        ).json()
        summaries = stripe_api.v1.billing.meters.event_summaries.list(
            meters["gpu_ms_cpu"], {"customer": subscribed["customer"], **window}
        )
        ours = {row["key"]: row["milliseconds"] for row in usage["results"]}
        seen.update(ours=ours, stripe=sum(s.aggregated_value for s in summaries.data))
        return ours, seen["stripe"]

    def agree() -> bool:
        ours, stripes = ours_and_stripes()
        return set(ours) == {"cpu"} and ours["cpu"] > 0 and stripes == ours["cpu"]

    # Pushed from the outbox by a task queued when the usage was recorded (and every minute by
    # the schedule); other tests' jobs may add usage meanwhile, so both are read each time.
    wait_until(
        agree,
        timeout_s=120,
        what="Stripe's meter event summary for the school equal to its usage API",
        explain=lambda: f"last seen: {seen}\n{p.logs(2000)}",
    )
