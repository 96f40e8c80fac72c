"""`/metrics` is not open to the world in production (issue #15): a bearer token when one is set,
otherwise only callers on the same host; development (DJANGO_DEBUG) stays open."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    settings.REELCAST_METRICS_TOKEN = ""
    return settings


def test_production_without_a_token_refuses_other_hosts(client, production):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert b"reelcast_" not in response.content


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_production_without_a_token_answers_this_host(client, production, address):
    response = client.get("/metrics", REMOTE_ADDR=address)
    assert response.status_code == 200
    assert b"reelcast_jobs" in response.content


def test_a_token_is_required_from_everyone_once_set(client, production):
    production.REELCAST_METRICS_TOKEN = "scrape-" + "x" * 20
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-" + "x" * 20)
    assert ok.status_code == 200


def test_development_stays_open(client, settings):
    settings.DEBUG = True
    settings.REELCAST_METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
