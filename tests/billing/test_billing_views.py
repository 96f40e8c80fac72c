"""The billing page's charts, invoices and buttons: the numbers the charts are drawn from."""

from __future__ import annotations

import json
import re
from datetime import UTC, timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from billing.models import Invoice, Plan
from billing.services import subscription_assign
from tests import factories

pytestmark = pytest.mark.django_db


def _signed_in(tenant, role) -> Client:
    client = Client()
    client.force_login(factories.make_member(tenant, role=role))
    return client


def _charts(html: str) -> dict:
    [blob] = re.findall(r'<script id="usage-charts" type="application/json">(.*?)</script>', html)
    return json.loads(blob)


def test_the_charts_carry_this_periods_usage_by_day_template_and_hardware(tenant, other_tenant):
    courage = factories.make_template(tenant, name="Courage story")
    kindness = factories.make_template(tenant, name="Kindness <b>story</b>")
    factories.make_usage(tenant, [12_500, 2_500], hardware="h100", template=courage)
    factories.make_usage(tenant, [5_000], hardware="cpu", template=kindness, model="preview")
    now = timezone.now().astimezone(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    factories.make_usage(tenant, [99_000], template=courage, at=month_start - timedelta(hours=1))
    factories.make_usage(other_tenant, [77_000])

    html = _signed_in(tenant, "viewer").get("/app/billing/").content.decode()
    charts = _charts(html)

    day = charts["day"]
    assert day["type"] == "bar"
    assert day["labels"][0] == month_start.date().isoformat()
    assert day["labels"][-1] == now.date().isoformat()
    assert len(day["labels"]) == now.day
    assert day["datasets"][0]["data"][-1] == 20.0
    assert sum(day["datasets"][0]["data"]) == 20.0
    assert day["datasets"][0]["label"] == "GPU-seconds"
    assert charts["template"]["labels"] == ["Courage story", "Kindness <b>story</b>"]
    assert charts["template"]["datasets"][0]["data"] == [15.0, 5.0]
    assert charts["hardware"] == {
        "type": "doughnut",
        "labels": ["h100", "cpu"],
        "datasets": [{"label": "GPU-seconds", "data": [15.0, 5.0]}],
        "unit": "GPU-seconds",
    }
    assert "<b>story</b>" not in html  # escaped in the tables, \u003C in the JSON
    assert 'data-chart="day"' in html and 'data-chart="hardware"' in html


def test_the_page_runs_only_the_vendored_chart_library_and_its_own_script(tenant):
    html = _signed_in(tenant, "owner").get("/app/billing/").content.decode()
    scripts = re.findall(r"<script\b([^>]*)>", html)
    assert 'src="/static/vendor/chartjs/chart.umd.min.js" defer' in html
    assert 'src="/static/js/charts.js" defer' in html
    assert [s for s in scripts if "src=" not in s] == [' id="usage-charts" type="application/json"']
    assert "style=" not in html and " onclick=" not in html


def test_invoices_are_listed_with_their_links(tenant):
    Invoice.objects.create(
        tenant=tenant,
        stripe_invoice_id="in_1",
        number="RC-0007",
        status="paid",
        currency="usd",
        total=5_350,
        hosted_invoice_url="https://invoice.stripe.com/i/in_1",
        stripe_created=timezone.now(),
    )
    html = _signed_in(tenant, "viewer").get("/app/billing/").content.decode()
    assert "RC-0007" in html and "$53.50" in html
    assert 'href="https://invoice.stripe.com/i/in_1"' in html


def test_an_admin_sees_checkout_and_portal_and_the_portal_goes_to_stripe(tenant, fake_stripe):
    call_command("seed_plans")
    subscription_assign(tenant=tenant, plan=Plan.objects.get(slug="school"))
    admin = _signed_in(tenant, "admin")

    html = admin.get("/app/billing/").content.decode()
    response = admin.post("/app/billing/portal/")

    assert "Switch to Shop" in html and "Payment details and invoices" in html
    assert response.status_code == 302
    assert response["Location"].startswith(f"{fake_stripe.url}/portal/bps_")


def test_a_viewer_cannot_open_the_portal(tenant, fake_stripe):
    response = _signed_in(tenant, "viewer").post("/app/billing/portal/", follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "Only admins and owners manage payment details."
    ]
    assert fake_stripe.objects.get("customer", {}) == {}  # Stripe was never called


def test_the_billing_page_speaks_chinese_when_asked(tenant):
    factories.make_usage(tenant, [1_000], hardware="cpu")
    response = _signed_in(tenant, "viewer").get("/app/billing/", HTTP_ACCEPT_LANGUAGE="zh-Hans")
    html = response.content.decode()
    assert '<html lang="zh-hans"' in html
    assert "用量与账单" in html and "按日 GPU 秒数" in html and "发票" in html
    assert _charts(html)["day"]["datasets"][0]["label"] == "GPU 秒"
    assert "Invoices" not in html
