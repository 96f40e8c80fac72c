"""Security headers and the CSP, rate limits (API and sign-in), the cache they count in, and
``manage.py check --deploy`` under the production environment."""

from __future__ import annotations

import os
import re
import runpy
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from config.docs import RedocDocsView, SwaggerDocsView
from config.env import EnvError, env_csp, parse_rate
from config.security import rate_limit_take, rate_principal
from generation.models import Job, Template
from tenants.auth import TenantContext
from tenants.services import apikey_create
from tests import factories
from tests.conftest import key_client

BASE_DIR = Path(__file__).resolve().parent.parent


def _embed_widget(request):
    response = HttpResponse("<!doctype html><p>widget</p>")
    if request.GET.get("origin"):
        response.csp_replace = {"frame-ancestors": [request.GET["origin"]]}
    return response


# The docs pages as config/urls.py wires them (config.docs views), and a stand-in for the future
# embed widget under /embed/; everything else is the project's own URLs.
urlpatterns = [
    path(
        "api/v1/docs/",
        SwaggerDocsView.as_view(
            url_name="schema", permission_classes=[], authentication_classes=[]
        ),
        name="docs",
    ),
    path(
        "api/v1/redoc/",
        RedocDocsView.as_view(url_name="schema", permission_classes=[], authentication_classes=[]),
        name="redoc",
    ),
    path(
        "api/v1/schema/",
        SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]),
        name="schema",
    ),
    path("embed/widget/", _embed_widget),
    path("", include("config.urls")),
]


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def parse_policy(header: str) -> dict[str, list[str]]:
    policy = {}
    for part in header.split(";"):
        directive, *sources = part.split()
        policy[directive] = sources
    return policy


def media_origins() -> list[str]:
    from django.conf import settings

    return settings.REELCAST_MEDIA_ORIGINS


# --- headers ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_login_page_carries_the_strict_policy_and_the_security_headers(client):
    response = client.get("/accounts/login/")

    assert response.status_code == 200
    assert parse_policy(response["Content-Security-Policy"]) == {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:", *media_origins()],
        "media-src": ["'self'", "blob:", *media_origins()],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "object-src": ["'none'"],
    }
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Permissions-Policy"] == (
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
        "microphone=(), payment=(), usb=()"
    )
    assert "Cross-Origin-Resource-Policy" not in response


@pytest.mark.django_db
def test_the_dashboard_and_the_api_carry_the_policy_without_a_nonce(client, tenant, api):
    client.force_login(factories.make_member(tenant))

    page = client.get("/app/")
    listing = api.get("/api/v1/templates/")

    assert page.status_code == 200 and listing.status_code == 200
    for response in (page, listing):
        policy = parse_policy(response["Content-Security-Policy"])
        assert policy["script-src"] == ["'self'"]
        assert policy["style-src"] == ["'self'"]
        assert response["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
def test_the_billing_page_may_post_forms_that_redirect_to_stripe(client, tenant):
    client.force_login(factories.make_member(tenant))

    response = client.get("/app/billing/")

    assert response.status_code == 200
    assert parse_policy(response["Content-Security-Policy"])["form-action"] == [
        "'self'",
        "https://checkout.stripe.com",
        "https://billing.stripe.com",
    ]


def _inline_blocks(html: str) -> list[tuple[str, str]]:
    """(tag, attributes) of every <script> without src and every <style>."""
    blocks = re.findall(r"<(script|style)\b([^>]*)>", html)
    return [(tag, attrs) for tag, attrs in blocks if not (tag == "script" and "src=" in attrs)]


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_swagger_ui_runs_no_inline_script_and_nonces_its_style(client):
    page = client.get("/api/v1/docs/")

    assert page.status_code == 200
    policy = parse_policy(page["Content-Security-Policy"])
    nonce = policy["style-src"][-1].removeprefix("'nonce-").removesuffix("'")
    assert policy["script-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert policy["style-src"] == ["'self'", f"'nonce-{nonce}'"]
    html = page.content.decode()
    assert _inline_blocks(html) == [("style", f' nonce="{nonce}"')]
    assert '<script src="/api/v1/docs/?script="></script>' in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html

    script = client.get("/api/v1/docs/?script=")

    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert 'url: "/api/v1/schema/"' in script.content.decode()


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_redoc_gets_a_nonce_for_its_init_script_and_styles_and_blob_workers(client):
    page = client.get("/api/v1/redoc/")

    assert page.status_code == 200
    policy = parse_policy(page["Content-Security-Policy"])
    nonce = policy["script-src"][-1].removeprefix("'nonce-").removesuffix("'")
    assert policy["script-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert policy["style-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert policy["worker-src"] == ["'self'", "blob:"]
    html = page.content.decode()
    assert _inline_blocks(html) == [("style", f' nonce="{nonce}"'), ("script", f' nonce="{nonce}"')]
    assert f'{{nonce: "{nonce}"}}' in html
    assert "fonts.googleapis.com" not in html and "cdn." not in html


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_every_response_gets_a_fresh_nonce(client):
    first = parse_policy(client.get("/api/v1/redoc/")["Content-Security-Policy"])
    second = parse_policy(client.get("/api/v1/redoc/")["Content-Security-Policy"])

    assert first["script-src"][-1].startswith("'nonce-")
    assert first["script-src"][-1] != second["script-src"][-1]


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_the_embed_widget_paths_can_be_framed_and_loaded_cross_origin(client, settings):
    settings.REELCAST_EMBED_FRAME_ANCESTORS = ["https://shop.example"]

    response = client.get("/embed/widget/")
    narrowed = client.get("/embed/widget/?origin=https://other.example")

    assert "X-Frame-Options" not in response
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert parse_policy(response["Content-Security-Policy"])["frame-ancestors"] == [
        "https://shop.example"
    ]
    assert parse_policy(narrowed["Content-Security-Policy"])["frame-ancestors"] == [
        "https://other.example"
    ]
    assert parse_policy(response["Content-Security-Policy"])["script-src"] == ["'self'"]


@pytest.mark.django_db
def test_report_only_mode_and_switching_the_policy_off(client, settings):
    settings.REELCAST_CSP_REPORT_ONLY = True
    reported = client.get("/accounts/login/")
    settings.REELCAST_CSP = {}
    off = client.get("/accounts/login/")

    assert "Content-Security-Policy" not in reported
    assert parse_policy(reported["Content-Security-Policy-Report-Only"])["default-src"] == [
        "'self'"
    ]
    assert "Content-Security-Policy" not in off
    assert "Content-Security-Policy-Report-Only" not in off


def test_the_policy_reads_json_changes_and_whole_strings_from_the_environment(monkeypatch):
    default = {"default-src": ["'self'"], "img-src": ["'self'"], "object-src": ["'none'"]}

    monkeypatch.setenv(
        "REELCAST_CSP", '{"img-src": "\'self\' https://cdn.example", "object-src": null}'
    )
    changed = env_csp("REELCAST_CSP", default)
    monkeypatch.setenv("REELCAST_CSP", "default-src 'none'; upgrade-insecure-requests")
    replaced = env_csp("REELCAST_CSP", default)

    assert changed == {"default-src": ["'self'"], "img-src": ["'self'", "https://cdn.example"]}
    assert replaced == {"default-src": ["'none'"], "upgrade-insecure-requests": []}
    assert default == {"default-src": ["'self'"], "img-src": ["'self'"], "object-src": ["'none'"]}


@pytest.mark.parametrize(
    "raw",
    ['{"img src": "x"}', '{"img-src": "a; script-src *"}', '["img-src"]', '{"img-src": 3}'],
)
def test_it_refuses_a_malformed_policy_at_start(monkeypatch, raw):
    monkeypatch.setenv("REELCAST_CSP", raw)

    with pytest.raises(EnvError):
        env_csp("REELCAST_CSP", {"default-src": ["'self'"]})


@pytest.mark.parametrize("raw", ["10", "ten/min", "0/min", "10/fortnight"])
def test_it_refuses_a_malformed_rate_at_start(raw):
    with pytest.raises(EnvError):
        parse_rate("REELCAST_RATE_READ", raw)


def test_rates_take_drf_spelling_and_off():
    assert parse_rate("R", "120/min") == "120/min"
    assert parse_rate("R", " 5/s ") == "5/s"
    assert parse_rate("R", "off") is None


# --- API rate limits --------------------------------------------------------------------------


def _rates(settings, **rates):
    """Test rates are per day: counting windows are fixed, and a slow first request must not
    straddle the edge of one."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
    }


@pytest.mark.django_db
def test_reads_over_the_rate_get_a_429_problem_with_retry_after(api, settings):
    _rates(settings, read="2/day")

    statuses = [api.get("/api/v1/templates/").status_code for _ in range(2)]
    refused = api.get("/api/v1/templates/")

    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 86400
    assert refused.json() == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": f"Too many requests. Try again in {retry_after} seconds.",
        "code": "rate_limited",
    }


@pytest.mark.django_db
def test_job_creation_has_its_own_budget_apart_from_reads(tenant, template, settings):
    _rates(settings, jobs_create="1/day", read="100/day")
    client = key_client(factories.make_secret_key(tenant))
    body = {"template": str(template.id), "values": {"name": "Ann"}}

    created = client.post("/api/v1/jobs/", body, format="json")
    refused = client.post("/api/v1/jobs/", body, format="json")
    read = client.get("/api/v1/jobs/")

    assert created.status_code == 201
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert read.status_code == 200
    assert Job.objects.filter(tenant=tenant).count() == 1


@pytest.mark.django_db
def test_each_api_key_has_its_own_budget(tenant, settings):
    _rates(settings, read="1/day")
    first = key_client(factories.make_secret_key(tenant))
    second = key_client(factories.make_secret_key(tenant))

    assert first.get("/api/v1/templates/").status_code == 200
    assert first.get("/api/v1/templates/").status_code == 429
    assert second.get("/api/v1/templates/").status_code == 200


@pytest.mark.django_db
def test_writes_other_than_job_creation_share_the_write_budget(api, tenant, settings):
    _rates(settings, write="1/day", jobs_create="100/day")
    body = {"kind": "character", "prompt": "A child waves."}

    first = api.post("/api/v1/templates/", {**body, "name": "First"}, format="json")
    second = api.post("/api/v1/templates/", {**body, "name": "Second"}, format="json")

    assert first.status_code == 201
    assert second.status_code == 429
    assert Template.objects.filter(tenant=tenant, name="Second").count() == 0


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_anonymous_callers_are_counted_per_address(client, settings):
    _rates(settings, anon="1/day")

    first = client.get("/api/v1/schema/", REMOTE_ADDR="203.0.113.5")
    again = client.get("/api/v1/schema/", REMOTE_ADDR="203.0.113.5")
    spoofed = client.get(
        "/api/v1/schema/", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="198.51.100.9"
    )
    other = client.get("/api/v1/schema/", REMOTE_ADDR="203.0.113.6")

    assert [first.status_code, again.status_code, spoofed.status_code, other.status_code] == [
        200,
        429,
        429,
        200,
    ]
    assert int(again["Retry-After"]) >= 1


@pytest.mark.django_db
def test_the_principal_is_the_key_or_user_and_a_publishable_key_adds_the_address(tenant, settings):
    settings.REELCAST_PROXY_COUNT = 1
    secret = apikey_create(tenant=tenant, kind="secret", name="s").api_key
    public = apikey_create(tenant=tenant, kind="publishable", name="p").api_key
    user = factories.make_member(tenant)
    request = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7"
    )

    request.auth = TenantContext(tenant=tenant, role="server", api_key=secret)
    as_secret = rate_principal(request)
    request.auth = TenantContext(tenant=tenant, role="publishable", api_key=public)
    as_public = rate_principal(request)
    request.auth, request.user = TenantContext(tenant=tenant, role="owner", user=user), user
    as_user = rate_principal(request)
    request.auth, request.user = None, None
    as_anonymous = rate_principal(request)

    assert as_secret == f"t:{tenant.pk}:key:{secret.pk}"
    assert as_public == f"t:{tenant.pk}:key:{public.pk}:ip:203.0.113.7"
    assert as_user == f"t:{tenant.pk}:user:{user.pk}"
    assert as_anonymous == "ip:203.0.113.7"


def test_a_window_refuses_past_the_limit_and_opens_again_after_it():
    now = 1_000_000.0

    taken = [rate_limit_take("test:k", "2/min", now=now + i) for i in range(3)]
    wait = taken[-1]
    after = rate_limit_take("test:k", "2/min", now=now + 2 + wait)

    assert taken[:2] == [None, None]
    assert isinstance(wait, int) and 1 <= wait <= 60
    assert after is None


@pytest.mark.django_db
def test_the_database_cache_holds_the_counters(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "reelcast_cache_test",
        }
    }
    call_command("createcachetable", verbosity=0)  # rolled back with the test

    taken = [rate_limit_take("db:k", "2/min", now=5_000.0) for _ in range(3)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM reelcast_cache_test")
        rows = cursor.fetchone()[0]

    assert taken[:2] == [None, None] and taken[2] is not None
    assert rows == 1


def test_redis_counts_atomically(settings, redis_url):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    }

    taken = [rate_limit_take("redis:k", "2/min", now=7_000.0) for _ in range(3)]

    assert taken[:2] == [None, None] and taken[2] is not None


# --- sign-in throttling -----------------------------------------------------------------------


@pytest.mark.django_db
def test_sign_in_attempts_over_the_rate_are_refused_before_the_password_is_checked(
    client, settings
):
    _rates(settings, login="2/day")
    user = factories.make_user("ann")

    wrong = [
        client.post("/accounts/login/", {"username": "ann", "password": "nope"}).status_code
        for _ in range(2)
    ]
    right = client.post("/accounts/login/", {"username": "ann", "password": "pw-for-tests-123"})

    assert wrong == [200, 200]
    assert right.status_code == 429
    assert 1 <= int(right["Retry-After"]) <= 86400
    assert "_auth_user_id" not in client.session
    user.refresh_from_db()
    assert user.last_login is None


@pytest.mark.django_db
def test_successful_sign_ins_do_not_count(client, settings):
    _rates(settings, login="2/day")
    factories.make_user("dan")

    signed_in = [
        client.post("/accounts/login/", {"username": "dan", "password": "pw-for-tests-123"})
        for _ in range(3)
    ]
    failed = [
        client.post("/accounts/login/", {"username": "dan", "password": "x"}).status_code
        for _ in range(3)
    ]

    assert [r.status_code for r in signed_in] == [302, 302, 302]
    assert failed == [200, 200, 429]


@pytest.mark.django_db
def test_sign_in_attempts_on_one_username_are_counted_across_addresses(client, settings):
    _rates(settings, login="2/day")
    factories.make_user("bob")

    statuses = [
        client.post(
            "/accounts/login/", {"username": "Bob", "password": "x"}, REMOTE_ADDR=f"10.0.0.{n}"
        ).status_code
        for n in range(3)
    ]
    other_user = client.post(
        "/accounts/login/", {"username": "carol", "password": "x"}, REMOTE_ADDR="10.0.0.9"
    )

    assert statuses == [200, 200, 429]
    assert other_user.status_code == 200


# --- the cache and production settings --------------------------------------------------------


def _settings_with(monkeypatch, **env: str) -> dict:
    for name in ("REDIS_URL", "REELCAST_CACHE", "REELCAST_LOG_FORMAT", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(BASE_DIR / "config" / "settings.py"))


def test_the_cache_is_redis_with_redis_url_else_the_database_and_memory_under_debug(
    monkeypatch,
):
    key = secrets.token_urlsafe(50)
    production = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": key}

    with_redis = _settings_with(monkeypatch, **production, REDIS_URL="redis://cache:6379/2")
    without = _settings_with(monkeypatch, **production)
    debug = _settings_with(monkeypatch, DJANGO_DEBUG="1", REDIS_URL="redis://cache:6379/2")
    chosen = _settings_with(monkeypatch, DJANGO_DEBUG="1", REELCAST_CACHE="db")

    assert with_redis["CACHES"]["default"]["BACKEND"] == (
        "django.core.cache.backends.redis.RedisCache"
    )
    assert with_redis["CACHES"]["default"]["LOCATION"] == "redis://cache:6379/2"
    assert without["CACHES"]["default"] == {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "reelcast_cache",
        "KEY_PREFIX": "reelcast",
    }
    assert debug["CACHES"]["default"]["BACKEND"] == (
        "django.core.cache.backends.locmem.LocMemCache"
    )
    assert chosen["CACHES"]["default"]["BACKEND"] == ("django.core.cache.backends.db.DatabaseCache")


def _production_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "REELCAST_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="reelcast.example.com",
        DJANGO_BEHIND_TLS_PROXY="true",
        DJANGO_HSTS_PRELOAD="true",
        REELCAST_VAR_DIR=str(tmp_path),
    )
    return {**env, **extra}


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.slow
def test_check_deploy_is_clean_with_the_production_environment(tmp_path):
    clean = _check_deploy(_production_env(tmp_path))
    plain_http = _check_deploy(_production_env(tmp_path, DJANGO_BEHIND_TLS_PROXY="false"))

    output = clean.stdout + clean.stderr
    assert clean.returncode == 0, output
    assert "WARNINGS" not in output and "ERRORS" not in output
    assert "System check identified no issues (0 silenced)." in output
    # the same check does see a production set-up that serves plain HTTP
    assert plain_http.returncode == 1
    assert "security.W008" in plain_http.stderr
