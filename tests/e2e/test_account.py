"""The account pages and the usage charts in a real browser, under the strict CSP."""

from __future__ import annotations

import pytest
from django.db.models import Sum

from billing.models import UsageEvent
from tests import factories
from tests.e2e.conftest import login, screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_an_admin_creates_a_key_sees_it_once_and_revokes_it(page, live_server, tenant):
    factories.make_template(tenant, name="Courage story")
    admin = factories.make_member(tenant, role="admin")
    login(page, live_server, admin.username)

    page.goto(f"{live_server.url}/app/account/keys/")
    extra = page.locator("[data-publishable-only]")
    assert extra.is_hidden()  # a secret key has no origins or templates
    page.select_option("select[name=kind]", "publishable")
    assert extra.is_visible()
    page.select_option("select[name=kind]", "secret")
    page.fill("input[name=name]", "CI server")
    page.get_by_role("button", name="Create key").click()

    raw = page.locator("#raw-key").inner_text().strip()
    assert raw.startswith("sk_") and len(raw) > 40
    assert page.content().count(raw) == 1
    page.locator("a", has_text="Done: back to the keys").click()
    page.wait_for_url(f"{live_server.url}/app/account/keys/")
    row = page.locator("#key-list tbody tr", has_text="CI server")
    assert raw not in page.content()
    assert row.locator("code").inner_text() == f"{raw[:12]}…"
    screenshot(page, "dashboard-keys")

    page.once("dialog", lambda dialog: dialog.accept())  # data-confirm asks first
    row.get_by_role("button", name="Revoke").click()
    page.wait_for_selector("#key-list tbody tr .bad")
    assert "Revoked" in row.inner_text()
    assert page.js_errors == []


def test_a_viewer_has_no_keys_menu_and_is_refused_at_the_url(page, live_server, tenant):
    viewer = factories.make_member(tenant, role="viewer")
    login(page, live_server, viewer.username)

    page.goto(f"{live_server.url}/app/account/team/")
    menu = page.locator("nav.side-nav")
    assert menu.get_by_role("link", name="Team").count() == 1
    assert menu.locator('a[href="/app/account/keys/"]').count() == 0
    assert menu.locator('a[href="/app/account/webhooks/"]').count() == 0
    response = page.goto(f"{live_server.url}/app/account/keys/")

    assert response.status == 403
    assert page.get_by_text("Only admins and owners can use this page.").is_visible()
    assert page.locator("form[data-key-form]").count() == 0
    assert page.js_errors == []


def test_the_billing_page_draws_its_usage_with_chart_js(page, live_server, tenant):
    courage = factories.make_template(tenant, name="Courage story")
    factories.make_usage(tenant, [12_500, 2_500], hardware="h100", template=courage)
    factories.make_usage(tenant, [5_000], hardware="cpu")
    owner = factories.make_member(tenant, role="owner")
    login(page, live_server, owner.username)

    page.goto(f"{live_server.url}/app/billing/")
    page.wait_for_function(
        "() => window.Chart && [...document.querySelectorAll('canvas[data-chart]')]"
        ".every((canvas) => Chart.getChart(canvas))"
    )

    for name in ("day", "template", "hardware"):
        canvas = page.locator(f'canvas[data-chart="{name}"]')
        box = canvas.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100, name
        assert canvas.evaluate("(c) => c.width > 0 && c.height > 0")
    drawn = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('canvas[data-chart]')].map("
        "(c) => { const chart = Chart.getChart(c); return [c.dataset.chart, "
        "{type: chart.config.type, labels: chart.data.labels, data: chart.data.datasets[0].data}]; }))"
    )
    # On a live server the jobs really run (on commit), and the preview backend's measured
    # device time replaces make_usage's numbers for the same shots: compare with the ledger.
    ledger = {
        row["hardware_class"]: round(row["ms"] / 1000, 3)
        for row in UsageEvent.objects.filter(tenant=tenant)
        .values("hardware_class")
        .annotate(ms=Sum("milliseconds"))
    }
    hardware = drawn["hardware"]
    assert hardware["type"] == "doughnut"
    assert dict(zip(hardware["labels"], hardware["data"], strict=True)) == ledger
    assert set(ledger) == {"h100", "cpu"}
    assert "Courage story" in drawn["template"]["labels"]
    assert drawn["day"]["type"] == "bar"
    assert round(sum(drawn["day"]["data"]), 3) == round(sum(ledger.values()), 3)
    screenshot(page, "dashboard-billing")
    assert page.js_errors == []
