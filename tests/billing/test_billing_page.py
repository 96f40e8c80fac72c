"""The dashboard's billing page: plan, usage and cost this period, invoices, plan changes."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from billing.models import Plan
from billing.services import (
    stripe_catalog_sync,
    subscription_assign,
)
from tests import factories

pytestmark = pytest.mark.django_db


def _signed_in(tenant, role) -> Client:
    client = Client()
    client.force_login(factories.make_member(tenant, role=role))
    return client


def _usage(tenant, ms, hardware="cpu", end_user=""):
    factories.make_usage(
        tenant,
        [ms],
        hardware=hardware,
        end_user=end_user,
        model="preview",
        template=factories.make_template(tenant, name="Courage story"),
    )


def test_a_viewer_sees_the_plan_usage_and_cost_but_no_plan_buttons(tenant):
    call_command("seed_plans")
    subscription_assign(tenant=tenant, plan=Plan.objects.get(slug="school"))
    _usage(tenant, 12_500, end_user="shopper-7")
    page = _signed_in(tenant, "viewer").get("/app/billing/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<strong>School</strong>" in html
    assert "12.5 s" in html  # used, by class, day, template and end user
    assert html.count("12.5 s") >= 4
    assert "shopper-7" in html
    assert 'id="cost-so-far">$49.00<' in html  # the fee; cpu time is within the included amount
    assert "Switch to" not in html and "Payment details" not in html


def test_an_admin_switches_plan_through_stripe_checkout(tenant, fake_stripe):
    call_command("seed_plans")
    stripe_catalog_sync()
    admin = _signed_in(tenant, "admin")
    assert "Subscribe" in admin.get("/app/billing/").content.decode()
    response = admin.post("/app/billing/checkout/shop/")
    [session] = fake_stripe.objects["checkout.session"].values()
    assert (response.status_code, response["Location"]) == (302, session["url"])


def test_a_viewer_cannot_start_checkout(tenant, fake_stripe):
    call_command("seed_plans")
    response = _signed_in(tenant, "viewer").post("/app/billing/checkout/shop/", follow=True)
    assert "Only admins and owners change the plan." in response.content.decode()
    assert fake_stripe.objects.get("checkout.session", {}) == {}


def test_without_stripe_the_page_says_so_instead_of_failing(tenant, settings):
    settings.STRIPE_SECRET_KEY = ""
    call_command("seed_plans")
    response = _signed_in(tenant, "owner").post("/app/billing/checkout/shop/", follow=True)
    assert response.status_code == 200
    [message] = [str(m) for m in response.context["messages"]]
    assert "Stripe" in message or "payment" in message.lower()
