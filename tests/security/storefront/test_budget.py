"""The storefront budget: a publishable key creates at most N jobs in any hour and M in any
day, whoever calls and however many call at once (the key's row is locked in the create
transaction); the shop sets it through the API and on the keys page."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from generation.models import Job
from tenants.models import ApiKey
from tests import factories
from tests.conftest import key_client, visitor_client
from tests.security.storefront.support import (
    SHOP,
    job_body,
    make_publishable_key,
    make_shop,
    make_storefront_template,
)

PARALLEL = 20


def _post(url: str, headers: dict[str, str], body: dict | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        url,
        method="POST",
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")


@pytest.mark.django_db(transaction=True)
def test_parallel_creates_never_pass_the_hourly_budget(live_server, monkeypatch, settings):
    """20 shoppers (20 visitor tokens) press the button at the same moment; the budget is 3."""
    monkeypatch.setattr("generation.tasks.enqueue_job", lambda job_id: None)  # no run needed
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, "visitor_tokens_address": f"{PARALLEL}/hour"},
    }
    shop = make_shop()
    template = make_storefront_template(shop)
    issued = make_publishable_key(shop, template, storefront_jobs_per_hour=3)
    base = {"Authorization": f"Bearer {issued.raw_key}", "Origin": SHOP}
    tokens = []
    for _ in range(PARALLEL):
        status, _, body = _post(f"{live_server.url}/api/v1/embed/visitor/", base)
        assert status == 201, body
        tokens.append(body["token"])
    start = threading.Barrier(PARALLEL)
    answers: list[tuple[int, dict, dict]] = [None] * PARALLEL  # type: ignore[list-item]

    def shopper(n: int) -> None:
        start.wait()
        answers[n] = _post(
            f"{live_server.url}/api/v1/jobs/",
            {**base, "X-Reelcast-Visitor": tokens[n]},
            job_body(),
        )

    threads = [threading.Thread(target=shopper, args=(n,)) for n in range(PARALLEL)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads), "a request never came back"

    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [201] * 3 + [429] * (PARALLEL - 3), (
        f"answers by status: {Counter(statuses)}; {[body for _, _, body in answers]}"
    )
    refused = [(headers, body) for status, headers, body in answers if status == 429]
    assert {body["code"] for _, body in refused} == {"storefront_budget_exceeded"}
    assert all(0 < int(headers["Retry-After"]) <= 3600 for headers, _ in refused)
    assert Job.objects.filter(created_by_key=issued.api_key).count() == 3


@pytest.mark.django_db
def test_the_daily_budget_refuses_until_the_oldest_job_leaves_the_day(settings):
    shop = make_shop()
    template = make_storefront_template(shop)
    issued = make_publishable_key(shop, template, storefront_jobs_per_day=2)
    shoppers = [visitor_client(issued.raw_key, SHOP) for _ in range(3)]

    first = shoppers[0].post("/api/v1/jobs/", job_body(), format="json")
    Job.objects.filter(pk=first.json()["id"]).update(created_at=timezone.now() - timedelta(hours=5))
    second = shoppers[1].post("/api/v1/jobs/", job_body(), format="json")
    third = shoppers[2].post("/api/v1/jobs/", job_body(), format="json")

    assert (first.status_code, second.status_code, third.status_code) == (201, 201, 429)
    assert third.json()["code"] == "storefront_budget_exceeded"
    # the first job leaves the rolling day 19 hours from now
    assert 19 * 3600 - 60 <= int(third["Retry-After"]) <= 19 * 3600
    assert third["Access-Control-Allow-Origin"] == SHOP
    assert Job.objects.count() == 2


@pytest.mark.django_db
def test_the_budget_binds_only_the_storefront_not_the_shops_own_servers():
    shop = make_shop()
    template = make_storefront_template(shop)
    issued = make_publishable_key(shop, template, storefront_jobs_per_hour=0)
    server = key_client(factories.make_secret_key(shop))

    storefront = visitor_client(issued.raw_key, SHOP).post(
        "/api/v1/jobs/", job_body(), format="json"
    )
    from_server = server.post("/api/v1/jobs/", job_body(), format="json")

    assert (storefront.status_code, from_server.status_code) == (429, 201)
    assert int(storefront["Retry-After"]) == 3600


@pytest.mark.django_db
def test_an_admin_sets_the_budget_through_the_api_and_it_applies_at_once():
    shop = make_shop()
    template = make_storefront_template(shop)
    issued = make_publishable_key(shop, template)
    admin = Client()
    admin.force_login(factories.make_member(shop, role="admin"))
    editor = Client()
    editor.force_login(factories.make_member(shop, role="editor"))
    shopper = visitor_client(issued.raw_key, SHOP)
    assert shopper.post("/api/v1/jobs/", job_body(), format="json").status_code == 201

    denied = editor.patch(
        f"/api/v1/keys/{issued.api_key.id}/",
        {"storefront_jobs_per_hour": 1},
        content_type="application/json",
    )
    changed = admin.patch(
        f"/api/v1/keys/{issued.api_key.id}/",
        {"storefront_jobs_per_hour": 1, "storefront_jobs_per_day": 10},
        content_type="application/json",
    )
    refused = shopper.post("/api/v1/jobs/", job_body(), format="json")

    assert denied.status_code == 403
    assert changed.status_code == 200
    assert (
        changed.json()["storefront_jobs_per_hour"],
        changed.json()["storefront_jobs_per_day"],
    ) == (1, 10)
    assert refused.status_code == 429
    assert refused.json()["code"] == "storefront_budget_exceeded"


@pytest.mark.django_db
def test_the_budget_is_set_when_a_key_is_made_and_only_on_publishable_keys():
    shop = make_shop()
    template = make_storefront_template(shop)
    admin = Client()
    admin.force_login(factories.make_member(shop, role="admin"))

    made = admin.post(
        "/api/v1/keys/",
        {
            "kind": "publishable",
            "name": "shop",
            "allowed_origins": [SHOP],
            "allowed_template_ids": [str(template.id)],
            "storefront_jobs_per_hour": 30,
            "storefront_jobs_per_day": 200,
        },
        content_type="application/json",
    )
    secret = admin.post(
        "/api/v1/keys/",
        {"kind": "secret", "name": "server", "storefront_jobs_per_hour": 30},
        content_type="application/json",
    )
    negative = admin.patch(
        f"/api/v1/keys/{made.json()['api_key']['id']}/",
        {"storefront_jobs_per_hour": -1},
        content_type="application/json",
    )

    assert made.status_code == 201
    assert ApiKey.objects.filter(storefront_jobs_per_hour=30, storefront_jobs_per_day=200).exists()
    assert secret.status_code == 400
    assert [e["field"] for e in secret.json()["errors"]] == ["storefront_jobs_per_hour"]
    assert negative.status_code == 400


@pytest.mark.django_db
def test_the_keys_page_shows_and_changes_the_budget():
    shop = make_shop()
    template = make_storefront_template(shop)
    issued = make_publishable_key(shop, template, storefront_jobs_per_hour=5)
    admin = Client()
    admin.force_login(factories.make_member(shop, role="admin"))
    viewer = Client()
    viewer.force_login(factories.make_member(shop, role="viewer"))
    budget_url = f"/app/account/keys/{issued.api_key.id}/budget/"

    page = admin.get("/app/account/keys/")
    denied = viewer.post(budget_url, {"storefront_jobs_per_hour": "100"})
    saved = admin.post(budget_url, {"storefront_jobs_per_hour": "8", "storefront_jobs_per_day": ""})
    after = admin.get("/app/account/keys/")

    assert page.status_code == 200
    assert "5 / hour" in page.content.decode()
    assert 'name="storefront_jobs_per_hour"' in page.content.decode()
    assert denied.status_code == 403
    assert saved.status_code == 302
    issued.api_key.refresh_from_db()
    assert (issued.api_key.storefront_jobs_per_hour, issued.api_key.storefront_jobs_per_day) == (
        8,
        None,
    )
    assert "8 / hour" in after.content.decode()
