"""A storefront job needs a server-issued visitor identity: the per-shopper quota cannot be
dodged by leaving out, blanking or inventing ``end_user``, and new identities are rate-limited."""

from __future__ import annotations

import re

import pytest
from django.core import signing
from django.core.management import call_command

from billing.models import Plan
from billing.services import subscription_assign
from generation.models import Job
from generation.storefront import VISITOR_SALT
from tenants.services import apikey_create
from tests.conftest import key_client, visitor_client
from tests.security.storefront.support import (
    ELSEWHERE,
    SHOP,
    job_body,
    make_publishable_key,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_video_per_shopper(shop):
    call_command("seed_plans")
    Plan.objects.filter(slug="shop").update(end_user_jobs_per_day=1)
    subscription_assign(tenant=shop, plan=Plan.objects.get(slug="shop"))


def _token(raw_key: str, origin: str = SHOP, **headers: str) -> str:
    response = key_client(raw_key, HTTP_ORIGIN=origin, **headers).post("/api/v1/embed/visitor/")
    assert response.status_code == 201, response.content
    return response.json()["token"]


def test_a_storefront_create_without_a_visitor_token_is_401_and_creates_nothing(
    issued, template, one_video_per_shopper
):
    bare = key_client(issued.raw_key, HTTP_ORIGIN=SHOP)

    # the old bypass: omit end_user, blank it, or send a new random one every time
    answers = [
        bare.post("/api/v1/jobs/", job_body(), format="json"),
        bare.post("/api/v1/jobs/", job_body(end_user=""), format="json"),
        *(bare.post("/api/v1/jobs/", job_body(end_user=f"w_{n}"), format="json") for n in range(3)),
    ]

    assert [a.status_code for a in answers] == [401] * 5
    assert {a.json()["code"] for a in answers} == {"visitor_token_required"}
    assert "X-Reelcast-Visitor" in answers[0].json()["detail"]
    assert answers[0]["Access-Control-Allow-Origin"] == SHOP  # the widget can read why
    assert Job.objects.count() == 0


def test_the_per_shopper_quota_holds_whatever_end_user_the_body_claims(
    issued, template, one_video_per_shopper
):
    shopper = visitor_client(issued.raw_key, SHOP)

    first = shopper.post("/api/v1/jobs/", job_body(), format="json")
    again = shopper.post("/api/v1/jobs/", job_body(), format="json")
    disguised = shopper.post("/api/v1/jobs/", job_body(end_user="w_someone_else"), format="json")

    assert (first.status_code, again.status_code) == (201, 429)
    assert again.json()["code"] == "end_user_quota_exceeded"
    assert int(again["Retry-After"]) > 0
    # the body cannot name the end user at all
    assert disguised.status_code == 400
    assert disguised.json()["errors"] == [
        {
            "field": "end_user",
            "message": "A publishable key cannot set this; the template decides it.",
        }
    ]
    job = Job.objects.get()
    payload = signing.loads(shopper._credentials["HTTP_X_REELCAST_VISITOR"], salt=VISITOR_SALT)
    assert re.fullmatch(r"v_[0-9a-f]{32}", job.end_user)
    assert job.end_user == payload["v"]


@pytest.mark.parametrize(
    "forge",
    ["garbage", "tampered", "other_key", "other_origin", "expired", "server_minted_for_origin"],
)
def test_a_token_not_issued_to_this_key_for_this_origin_now_is_refused(
    issued, shop, template, forge, settings
):
    other = make_publishable_key(shop, template)
    other.api_key.allowed_origins = [SHOP, ELSEWHERE]
    other.api_key.save()
    issued.api_key.allowed_origins = [SHOP, ELSEWHERE]
    issued.api_key.save()
    good = _token(issued.raw_key)
    token = {
        "garbage": "not-a-token",
        "tampered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "other_key": _token(other.raw_key),
        "other_origin": _token(issued.raw_key, origin=ELSEWHERE),
        "expired": good,
        "server_minted_for_origin": signing.dumps(
            {"k": str(issued.api_key.pk), "o": SHOP, "v": "v_chosen"}, salt="another-salt"
        ),
    }[forge]
    if forge == "expired":
        settings.REELCAST_VISITOR_TOKEN_TTL_S = -1

    response = key_client(issued.raw_key, HTTP_ORIGIN=SHOP, HTTP_X_REELCAST_VISITOR=token).post(
        "/api/v1/jobs/", job_body(), format="json"
    )

    assert response.status_code == 401
    expected = "visitor_token_expired" if forge == "expired" else "visitor_token_invalid"
    assert response.json()["code"] == expected
    assert Job.objects.count() == 0


def test_visitor_tokens_are_for_publishable_keys_from_their_origins(issued, shop):
    from_elsewhere = key_client(issued.raw_key, HTTP_ORIGIN=ELSEWHERE).post(
        "/api/v1/embed/visitor/"
    )
    without_origin = key_client(issued.raw_key).post("/api/v1/embed/visitor/")
    secret = apikey_create(tenant=shop, kind="secret", name="server").raw_key
    from_server = key_client(secret, HTTP_ORIGIN=SHOP).post("/api/v1/embed/visitor/")

    assert (from_elsewhere.status_code, without_origin.status_code) == (403, 403)
    assert from_elsewhere.json()["code"] == "origin_not_allowed"
    assert from_server.status_code == 403


def test_minting_identities_is_rate_limited_per_client_address(issued, shop, template, settings):
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, "visitor_tokens_address": "3/hour"},
    }
    one_client = key_client(issued.raw_key, HTTP_ORIGIN=SHOP)
    another_client = key_client(issued.raw_key, HTTP_ORIGIN=SHOP, REMOTE_ADDR="203.0.113.9")

    answers = [one_client.post("/api/v1/embed/visitor/") for _ in range(5)]
    elsewhere = another_client.post("/api/v1/embed/visitor/")

    assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
    assert answers[3].json()["code"] == "visitor_token_rate_limited"
    assert 0 < int(answers[3]["Retry-After"]) <= 3600
    assert answers[3]["Access-Control-Allow-Origin"] == SHOP
    assert elsewhere.status_code == 201


def test_minting_identities_is_rate_limited_per_key_across_addresses(issued, settings):
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, "visitor_tokens_key": "4/hour"},
    }

    answers = [
        key_client(issued.raw_key, HTTP_ORIGIN=SHOP, REMOTE_ADDR=f"198.51.100.{n}").post(
            "/api/v1/embed/visitor/"
        )
        for n in range(6)
    ]

    assert [a.status_code for a in answers] == [201] * 4 + [429] * 2
    assert answers[4].json()["code"] == "visitor_token_rate_limited"


def test_one_visitor_creates_at_the_visitor_rate_only(issued, template, settings):
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, "visitor_jobs": "2/hour"},
    }
    shopper = visitor_client(issued.raw_key, SHOP)
    neighbour = visitor_client(issued.raw_key, SHOP)

    answers = [shopper.post("/api/v1/jobs/", job_body(), format="json") for _ in range(3)]
    other = neighbour.post("/api/v1/jobs/", job_body(), format="json")

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].json()["code"] == "visitor_rate_limited"
    assert int(answers[2]["Retry-After"]) > 0
    assert other.status_code == 201
    assert Job.objects.count() == 3


def test_one_visitors_idempotency_key_never_replays_another_visitors_job(issued, template):
    ana = visitor_client(issued.raw_key, SHOP)
    bo = visitor_client(issued.raw_key, SHOP)

    first = ana.post("/api/v1/jobs/", job_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    replay = ana.post("/api/v1/jobs/", job_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    stranger = bo.post("/api/v1/jobs/", job_body(), format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, replay.status_code, stranger.status_code) == (201, 200, 201)
    assert replay.json()["id"] == first.json()["id"]
    assert stranger.json()["id"] != first.json()["id"]
