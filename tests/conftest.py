"""Shared fixtures: tenants, keys, API clients, and captured on-commit tasks."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest
from rest_framework.test import APIClient

from tests import factories

REQUIRE_SERVICES = os.environ.get("REELCAST_REQUIRE_SERVICES") == "1"


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url() -> str:
    """A Redis database of this test process's own, emptied first.

    Queues are Redis lists named after the cluster, so two suites running at once on one Redis
    (two developers, or CI beside a developer) would otherwise take each other's tasks.
    """
    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    if not _reachable(base, 6379):
        if REQUIRE_SERVICES:
            pytest.fail(f"Redis is required (REELCAST_REQUIRE_SERVICES=1) but {base} is down")
        pytest.skip(f"Redis not reachable at {base}")
    import redis

    parsed = urlparse(base)
    url = parsed._replace(path=f"/{1 + os.getpid() % 15}").geturl()
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def tenant(db):
    return factories.make_tenant(name="Maple School")


@pytest.fixture
def other_tenant(db):
    return factories.make_tenant(name="Other Shop", kind="shop")


@pytest.fixture
def template(tenant):
    return factories.make_template(tenant)


def key_client(raw_key: str, **headers: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}", **headers)
    return client


def visitor_client(raw_key: str, origin: str, **headers: str) -> APIClient:
    """A storefront's client, as the widget is: the publishable key from ``origin`` with a
    visitor token it asked for first (``X-Reelcast-Visitor``)."""
    response = key_client(raw_key, HTTP_ORIGIN=origin, **headers).post("/api/v1/embed/visitor/")
    assert response.status_code == 201, response.content
    return key_client(
        raw_key, HTTP_ORIGIN=origin, HTTP_X_REELCAST_VISITOR=response.json()["token"], **headers
    )


@pytest.fixture
def api(tenant) -> APIClient:
    """A client authenticated with a secret key of ``tenant``."""
    return key_client(factories.make_secret_key(tenant))


@pytest.fixture
def other_api(other_tenant) -> APIClient:
    return key_client(factories.make_secret_key(other_tenant))


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Run the pipeline the way production does: enqueued on commit (sync cluster in tests)."""

    def runner(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return runner


@pytest.fixture(autouse=True)
def _fresh_trace_index(settings, tmp_path):
    """Each test's database is rolled back, and SQLite then hands the same ids out again: a
    per-process trace index, and its snapshot, must not carry rows from one test into the
    next."""
    settings.REELCAST_TRACE_INDEX_DIR = str(tmp_path / "trace-index")
    yield
    from moderation.provenance_service import _index

    _index.cache_clear()


@pytest.fixture(autouse=True)
def _no_live_stream_slots_held():
    """The test client does not close streaming responses a test leaves unread, which a server
    always does: start each test with no live-stream slot held (the process count and the shared
    counters in the per-process cache)."""
    from django.core.cache import cache

    from generation import live

    live._ProcessSlots.open = 0
    cache.clear()
