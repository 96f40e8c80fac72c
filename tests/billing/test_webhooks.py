"""Stripe's events, signed and sent over HTTP by the fake to a live server, applied once each."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing import services
from billing.models import Invoice, Plan, ProcessedStripeEvent, Subscription
from config.problems import PaymentRequired
from tenants.models import Tenant
from tests import factories
from tests.conftest import key_client

GRACE_S = 3 * 24 * 3600


def _subscribe(tenant, fake, plan_slug="school"):
    """Seed and sync the plans, start a checkout through the API, pay it at the fake."""
    call_command("seed_plans")
    services.stripe_catalog_sync()
    from rest_framework.test import APIClient

    owner = APIClient()
    owner.force_login(factories.make_member(tenant, role="owner"))
    response = owner.post("/api/v1/billing/checkout/", {"plan": plan_slug}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["changed"] is False
    session_id = body["url"].rsplit("/", 1)[1]
    subscription = fake.complete_checkout(session_id)
    fake.flush_webhooks()
    return subscription


def _post(url, body: bytes, signature: str) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.django_db(transaction=True)
def test_a_checkout_becomes_a_live_subscription_through_signed_webhooks(tenant, stripe_webhooks):
    fake = stripe_webhooks

    stripe_sub = _subscribe(tenant, fake)

    subscription = Subscription.objects.get(tenant=tenant)
    assert (subscription.status, subscription.plan.slug) == ("active", "school")
    assert subscription.stripe_subscription_id == stripe_sub["id"]
    assert subscription.current_period_end - subscription.current_period_start == timedelta(days=30)
    sent = [e["id"] for e in fake.events]
    assert [d for d in fake.deliveries] == [(event_id, 200) for event_id in sent]
    assert sorted(ProcessedStripeEvent.objects.values_list("id", flat=True)) == sorted(sent)
    invoice = Invoice.objects.get(tenant=tenant)
    assert (invoice.status, invoice.amount_paid, invoice.total) == ("paid", 4900, 4900)
    assert invoice.hosted_invoice_url.startswith(fake.url)
    plan = Plan.objects.get(slug="school")
    item_prices = {item["price"]["id"] for item in stripe_sub["items"]["data"]}
    assert item_prices == {
        plan.stripe_price_id,
        *plan.rates.values_list("stripe_price_id", flat=True),
    }


@pytest.mark.django_db(transaction=True)
def test_a_webhook_delivered_twice_changes_state_once(tenant, stripe_webhooks):
    fake = stripe_webhooks
    stripe_sub = _subscribe(tenant, fake)
    invoice = fake.invoice_create(stripe_sub["id"])
    fake.invoice_payment_fail(invoice["id"])
    fake.flush_webhooks()
    failed = fake.events_of_type("invoice.payment_failed")[0]
    first_mark = Subscription.objects.get(tenant=tenant).past_due_since

    again = fake.deliver(failed["id"])
    fake.advance_clock(3600)
    third = fake.deliver(failed["id"])

    subscription = Subscription.objects.get(tenant=tenant)
    assert (again, third) == (200, 200)
    assert [status for event_id, status in fake.deliveries if event_id == failed["id"]] == [
        200,
        200,
        200,
    ]
    assert ProcessedStripeEvent.objects.filter(id=failed["id"]).count() == 1
    assert subscription.status == "past_due"
    assert subscription.past_due_since == first_mark
    assert int(first_mark.timestamp()) == failed["created"]


@pytest.mark.django_db(transaction=True)
def test_a_bad_signature_is_refused_and_nothing_changes(tenant, stripe_webhooks, live_server):
    fake = stripe_webhooks
    url = f"{live_server.url}/billing/stripe/webhook/"
    event = {
        "id": "evt_forged",
        "object": "event",
        "type": "invoice.paid",
        "created": 1,
        "data": {"object": {"id": "in_x", "customer": "cus_x"}},
    }
    body = json.dumps(event)
    good = fake.sign(body)
    forged = good.rsplit("=", 1)[0] + "=" + "0" * 64
    stale = fake.sign(body, timestamp=int(timezone.now().timestamp()) - 600)

    statuses = [
        _post(url, body.encode(), forged),
        _post(url, body.encode(), stale),
        _post(url, body.encode() + b" ", good),
        _post(url, body.encode(), ""),
    ]

    assert statuses == [400, 400, 400, 400]
    assert ProcessedStripeEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_dunning_suspends_after_the_grace_period_and_payment_reinstates(
    tenant, template, stripe_webhooks, settings
):
    settings.BILLING_DUNNING_GRACE_S = GRACE_S
    fake = stripe_webhooks
    stripe_sub = _subscribe(tenant, fake)
    api = key_client(factories.make_secret_key(tenant))
    job_body = {"template": str(template.id), "values": {"name": "Ada"}}
    args = {"tenant": tenant, "model": "preview", "width": 128, "height": 96, "duration_s": 1.0}

    invoice = fake.invoice_create(stripe_sub["id"])
    fake.invoice_payment_fail(invoice["id"])
    fake.flush_webhooks()
    since = Subscription.objects.get(tenant=tenant).past_due_since

    assert services.dunning_enforce(now=since + timedelta(seconds=GRACE_S - 1)) == 0
    assert Tenant.objects.get(pk=tenant.pk).status == "active"
    assert services.dunning_enforce(now=since + timedelta(seconds=GRACE_S + 1)) == 1
    assert services.dunning_enforce(now=since + timedelta(seconds=GRACE_S + 2)) == 0

    suspended = Tenant.objects.get(pk=tenant.pk)
    assert suspended.status == "suspended"
    assert suspended.suspended_reason == (
        f"Payment overdue since {since:%Y-%m-%d}: update the payment method in the billing "
        "portal to resume."
    )
    with pytest.raises(PaymentRequired) as refused:
        services.quota_check(**{**args, "tenant": suspended})
    assert refused.value.code == "tenant_suspended"
    response = api.post("/api/v1/jobs/", job_body, format="json")
    assert response.status_code == 402
    assert response.json()["code"] == "tenant_suspended"

    fake.invoice_pay(invoice["id"])
    fake.flush_webhooks()

    reinstated = Tenant.objects.get(pk=tenant.pk)
    subscription = Subscription.objects.get(tenant=tenant)
    assert (reinstated.status, reinstated.suspended_reason) == ("active", "")
    assert (
        subscription.status,
        subscription.past_due_since,
        subscription.suspended_for_nonpayment,
    ) == ("active", None, False)
    assert services.quota_check(**{**args, "tenant": reinstated}) is None
    assert api.post("/api/v1/jobs/", job_body, format="json").status_code == 201
    assert Invoice.objects.get(stripe_invoice_id=invoice["id"]).status == "paid"


@pytest.mark.django_db(transaction=True)
def test_a_payment_does_not_lift_an_operators_suspension(tenant, stripe_webhooks):
    fake = stripe_webhooks
    stripe_sub = _subscribe(tenant, fake)
    invoice = fake.invoice_create(stripe_sub["id"])
    fake.invoice_payment_fail(invoice["id"])
    fake.flush_webhooks()
    Tenant.objects.filter(pk=tenant.pk).update(
        status="suspended", suspended_reason="leaked video under review"
    )

    assert services.dunning_enforce(now=timezone.now() + timedelta(days=30)) == 0
    fake.invoice_pay(invoice["id"])
    fake.flush_webhooks()

    after = Tenant.objects.get(pk=tenant.pk)
    assert (after.status, after.suspended_reason) == ("suspended", "leaked video under review")


@pytest.mark.django_db
def test_the_nightly_catch_up_applies_events_no_webhook_delivered(tenant, fake_stripe):
    fake_stripe.webhooks_paused = True  # every delivery is lost
    call_command("seed_plans")
    services.stripe_catalog_sync()
    result = services.checkout_start(tenant=tenant, plan=Plan.objects.get(slug="shop"))
    fake_stripe.complete_checkout(result.url.rsplit("/", 1)[1])
    assert Subscription.objects.get(tenant=tenant).status == "none"

    applied = services.stripe_events_catch_up()
    again = services.stripe_events_catch_up()

    subscription = Subscription.objects.get(tenant=tenant)
    assert (applied, again) == (len(fake_stripe.events), 0)
    assert (subscription.status, subscription.plan.slug) == ("active", "shop")
    assert set(ProcessedStripeEvent.objects.values_list("source", flat=True)) == {"catch_up"}
    assert Invoice.objects.get(tenant=tenant).status == "paid"


def _sub_event(event_id, created, status, *, sub_id="sub_1", customer="cus_1", deleted=False):
    return {
        "id": event_id,
        "object": "event",
        "created": created,
        "type": "customer.subscription.deleted" if deleted else "customer.subscription.updated",
        "data": {
            "object": {
                "id": sub_id,
                "object": "subscription",
                "customer": customer,
                "status": status,
                "metadata": {},
                "items": {
                    "data": [
                        {"current_period_start": 1_800_000_000, "current_period_end": 1_802_592_000}
                    ]
                },
            }
        },
    }


@pytest.mark.django_db
def test_an_older_subscription_event_arriving_late_does_not_overwrite_a_newer_one(tenant):
    Subscription.objects.create(
        tenant=tenant, stripe_customer_id="cus_1", stripe_subscription_id="sub_1", status="active"
    )

    services.stripe_event_process(event=_sub_event("evt_new", 2_000, "past_due"))
    services.stripe_event_process(event=_sub_event("evt_old", 1_000, "active"))
    services.stripe_event_process(
        event=_sub_event("evt_gone", 3_000, "canceled", sub_id="sub_0", deleted=True)
    )

    subscription = Subscription.objects.get(tenant=tenant)
    assert subscription.status == "past_due"  # neither the stale event nor an old sub's end
    assert subscription.current_period_end == datetime.fromtimestamp(1_802_592_000, tz=UTC)
    assert ProcessedStripeEvent.objects.count() == 3


@pytest.mark.django_db
def test_an_event_for_an_unknown_customer_is_recorded_and_ignored(tenant):
    applied = services.stripe_event_process(
        event=_sub_event("evt_x", 1_000, "active", customer="cus_unknown")
    )

    assert applied is True
    assert ProcessedStripeEvent.objects.get().tenant is None
    assert Subscription.objects.count() == 0


@pytest.mark.django_db
def test_a_checkout_for_a_foreign_reference_is_recorded_and_ignored(tenant):
    event = {
        "id": "evt_y",
        "object": "event",
        "created": 1_000,
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": "cs_1",
                "mode": "subscription",
                "customer": "cus_9",
                "client_reference_id": "order-17",
                "subscription": "sub_9",
                "metadata": {},
            }
        },
    }

    assert services.stripe_event_process(event=event) is True
    assert Subscription.objects.count() == 0
