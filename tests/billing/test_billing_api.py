"""The billing API: what each role may see and do, and another tenant's data is a 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import Invoice, Plan, Subscription
from billing.services import (
    Measurement,
    stripe_catalog_sync,
    stripe_events_catch_up,
    subscription_assign,
    usage_record,
)
from generation.services import JobRequest, job_create
from tenants.models import ApiKey
from tenants.services import apikey_create
from tests import factories
from tests.conftest import key_client

pytestmark = pytest.mark.django_db


def _as(role, tenant):
    if role == "secret_key":
        return key_client(factories.make_secret_key(tenant))
    if role == "publishable_key":
        return key_client(
            apikey_create(tenant=tenant, kind=ApiKey.Kind.PUBLISHABLE, name="shop").raw_key
        )
    client = APIClient()
    client.force_login(factories.make_member(tenant, role=role))
    return client


def _invoice(tenant, number, created):
    return Invoice.objects.create(
        tenant=tenant,
        stripe_invoice_id=f"in_{number}",
        number=number,
        status="paid",
        currency="usd",
        amount_due=4900,
        amount_paid=4900,
        total=4900,
        hosted_invoice_url=f"https://invoice.example/{number}",
        stripe_created=created,
    )


def test_the_overview_shows_plan_usage_cost_and_projection(tenant):
    call_command("seed_plans")
    start = timezone.now() - timedelta(days=10)
    subscription_assign(
        tenant=tenant,
        plan=Plan.objects.get(slug="school"),
        period_start=start,
        period_end=start + timedelta(days=30),
    )
    job = job_create(
        tenant=tenant,
        request=JobRequest(template=factories.make_template(tenant), values={"name": "Ada"}),
    ).job
    usage_record(
        tenant=tenant,
        job_id=job.id,
        measurements=[
            Measurement(
                stage="generate",
                shot_index=0,
                hardware_class="h100",
                model="wan2.2-ti2v-5b",
                milliseconds=4_600_000,
            )
        ],
    )  # 1000 s past the 3600 included

    body = _as("viewer", tenant).get("/api/v1/billing/overview/").json()

    assert body["plan"]["slug"] == "school"
    assert body["plan"]["priority_class"] == "Bulk"
    assert body["subscription"]["status"] == "active"
    assert body["usage"] == [
        {
            "hardware_class": "cpu",
            "used_ms": 0,
            "included_ms": 36_000_000,
            "overage_ms": 0,
            "overage_cents": "0.0000",
        },
        {
            "hardware_class": "h100",
            "used_ms": 4_600_000,
            "included_ms": 3_600_000,
            "overage_ms": 1_000_000,
            "overage_cents": "160.0000",
        },
    ]
    # 4900 fee + 160 overage so far; at this pace 13 800 s by the period's end → 1632 overage
    assert body["cost"]["currency"] == "usd"
    assert (body["cost"]["fee_cents"], body["cost"]["so_far_cents"]) == (4900, 5060)
    assert 4900 + 1631 <= body["cost"]["projected_cents"] <= 4900 + 1633
    assert body["tenant_status"] == "active"


def test_usage_groups_by_day_hardware_end_user_and_template(tenant, api):
    template = factories.make_template(tenant)
    for end_user, ms, hardware in (("s1", 100, "h100"), ("s2", 250, "cpu"), ("s1", 50, "h100")):
        factories.make_usage(tenant, [ms], hardware=hardware, end_user=end_user, template=template)
    today = datetime.now(UTC).date().isoformat()

    def rows(group):
        response = api.get(f"/api/v1/billing/usage/?group_by={group}")
        assert response.status_code == 200
        return [(r["key"], r["milliseconds"], r["events"]) for r in response.json()["results"]]

    assert rows("day") == [(today, 400, 3)]
    assert rows("hardware_class") == [("cpu", 250, 1), ("h100", 150, 2)]
    assert rows("end_user") == [("s2", 250, 1), ("s1", 150, 2)]
    assert rows("template") == [(str(template.id), 400, 3)]
    bad = api.get("/api/v1/billing/usage/?group_by=color")
    assert bad.status_code == 400
    assert bad.json()["errors"] == [
        {"field": "group_by", "message": "Must be one of day, template, end_user, hardware_class."}
    ]


def test_invoices_are_the_tenants_own_and_another_tenants_is_404(tenant, other_tenant, api):
    now = timezone.now()
    _invoice(tenant, "A-1", now - timedelta(days=31))
    _invoice(tenant, "A-2", now)
    theirs = _invoice(other_tenant, "B-1", now)

    listed = api.get("/api/v1/billing/invoices/").json()
    foreign = api.get(f"/api/v1/billing/invoices/{theirs.pk}/")

    assert [(i["number"], i["hosted_invoice_url"]) for i in listed] == [
        ("A-2", "https://invoice.example/A-2"),
        ("A-1", "https://invoice.example/A-1"),
    ]
    assert foreign.status_code == 404
    assert foreign["Content-Type"] == "application/problem+json"


MATRIX = {
    "overview": {"viewer", "editor", "admin", "owner", "secret_key"},
    "invoices": {"viewer", "editor", "admin", "owner", "secret_key"},
    "checkout": {"admin", "owner"},
    "portal": {"admin", "owner"},
}


@pytest.mark.parametrize(
    "role", ["viewer", "editor", "admin", "owner", "secret_key", "publishable_key"]
)
@pytest.mark.parametrize("action", sorted(MATRIX))
def test_the_billing_role_matrix(tenant, fake_stripe, role, action):
    call_command("seed_plans")
    stripe_catalog_sync()
    client = _as(role, tenant)
    customers_before = len(fake_stripe.objects["customer"])

    response = {
        "overview": lambda: client.get("/api/v1/billing/overview/"),
        "invoices": lambda: client.get("/api/v1/billing/invoices/"),
        "checkout": lambda: client.post(
            "/api/v1/billing/checkout/", {"plan": "shop"}, format="json"
        ),
        "portal": lambda: client.post("/api/v1/billing/portal/"),
    }[action]()

    if role in MATRIX[action]:
        assert response.status_code == 200, response.content
    else:
        assert response.status_code == 403, response.content
        assert len(fake_stripe.objects["customer"]) == customers_before
        assert len(fake_stripe.objects["checkout.session"]) == 0


def test_checkout_and_portal_links_come_from_stripe(tenant, fake_stripe):
    call_command("seed_plans")
    stripe_catalog_sync()
    owner = _as("owner", tenant)

    checkout = owner.post("/api/v1/billing/checkout/", {"plan": "shop"}, format="json").json()
    portal = owner.post("/api/v1/billing/portal/").json()

    [session] = fake_stripe.objects["checkout.session"].values()
    customer = Subscription.objects.get(tenant=tenant).stripe_customer_id
    assert checkout == {"url": session["url"], "changed": False}
    assert (session["customer"], session["client_reference_id"], session["metadata"]) == (
        customer,
        str(tenant.pk),
        {"tenant_id": str(tenant.pk), "plan": "shop"},
    )
    assert portal["url"].startswith(f"{fake_stripe.url}/portal/bps_")
    assert len(fake_stripe.objects["customer"]) == 1


def test_changing_plan_moves_the_live_subscription_to_the_new_prices(tenant, fake_stripe):
    call_command("seed_plans")
    stripe_catalog_sync()
    owner = _as("owner", tenant)
    url = owner.post("/api/v1/billing/checkout/", {"plan": "school"}, format="json").json()["url"]
    stripe_sub = fake_stripe.complete_checkout(url.rsplit("/", 1)[1])
    stripe_events_catch_up()

    changed = owner.post("/api/v1/billing/checkout/", {"plan": "shop"}, format="json")
    same = owner.post("/api/v1/billing/checkout/", {"plan": "shop"}, format="json")

    shop = Plan.objects.get(slug="shop")
    items = fake_stripe.objects["subscription"][stripe_sub["id"]]["items"]["data"]
    assert changed.json() == {"url": "", "changed": True}
    assert {i["price"]["id"] for i in items} == {
        shop.stripe_price_id,
        *shop.rates.values_list("stripe_price_id", flat=True),
    }
    assert Subscription.objects.get(tenant=tenant).plan == shop
    assert (same.status_code, same.json()["code"]) == (409, "already_on_plan")


def test_checkout_while_stripe_is_down_is_503_with_retry_after(tenant, fake_stripe):
    call_command("seed_plans")
    stripe_catalog_sync()
    fake_stripe.down()

    response = _as("owner", tenant).post(
        "/api/v1/billing/checkout/", {"plan": "shop"}, format="json"
    )

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json()["code"] == "payments_unavailable"
