"""JSON log lines with request, tenant and job ids, the request id, and no secret in any log."""

from __future__ import annotations

import io
import json
import logging
import re
import runpy
import secrets
from pathlib import Path

import pytest
from django.db import connection

from config.logging import (
    ContextFilter,
    JsonFormatter,
    RedactSecretsFilter,
    TextFormatter,
    bind_log_context,
    current_log_context,
    log_context,
)
from generation.backends import wan
from generation.prompting.tags import extract_tags
from tenants.services import apikey_create
from tenants.webhooks import webhook_endpoint_create
from tests.conftest import key_client

BASE_DIR = Path(__file__).resolve().parent.parent
logger = logging.getLogger("reelcast.test")


@pytest.fixture
def console():
    """The handler settings.LOGGING configures (with its own filters), writing JSON into a
    buffer for the length of the test."""
    [handler] = [h for h in logging.getLogger().handlers if h.name == "console"]
    buffer = io.StringIO()
    old_stream, old_formatter = handler.setStream(buffer), handler.formatter
    handler.setFormatter(JsonFormatter())
    yield buffer
    handler.setStream(old_stream)
    handler.setFormatter(old_formatter)


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


# --- format and context -----------------------------------------------------------------------


def test_a_json_line_has_utc_time_level_logger_message_and_the_bound_ids(console):
    with log_context(request_id="req-1234abcd", tenant_id="t-1"):
        with log_context(job_id="job-9"):
            logger.warning("job %s started on %s", "job-9", "gpu-h100", extra={"attempt": 2})
        logger.info("back outside the job")
    logger.info("no context")

    first, second, third = lines(console)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first.pop("time"))
    assert first == {
        "level": "WARNING",
        "logger": "reelcast.test",
        "message": "job job-9 started on gpu-h100",
        "request_id": "req-1234abcd",
        "tenant_id": "t-1",
        "job_id": "job-9",
        "attempt": 2,
    }
    assert {k: second[k] for k in second if k != "time"} == {
        "level": "INFO",
        "logger": "reelcast.test",
        "message": "back outside the job",
        "request_id": "req-1234abcd",
        "tenant_id": "t-1",
    }
    assert set(third) == {"time", "level", "logger", "message"}


def test_an_exception_is_one_line_with_its_traceback(console):
    try:
        raise RuntimeError("encoder crashed")
    except RuntimeError:
        logger.exception("post-processing failed")

    [entry] = lines(console)
    assert entry["message"] == "post-processing failed"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("RuntimeError: encoder crashed")
    assert console.getvalue().count("\n") == 1


def test_log_context_restores_the_outer_ids_and_refuses_unknown_fields():
    with log_context(job_id="a", tenant_id=None):
        bind_log_context(tenant_id="t")
        inner = current_log_context()
    bind_log_context(job_id="outside")  # no block: nothing to bind to

    assert inner == {"job_id": "a", "tenant_id": "t"}
    assert current_log_context() == {}
    with pytest.raises(TypeError), log_context(user="ann"):
        pass


def test_the_text_format_appends_the_ids():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    with log_context(request_id="req-abcdefgh"):
        ContextFilter().filter(record)

    assert TextFormatter().format(record).endswith(" INFO x hello you [request_id=req-abcdefgh]")


def _settings_with(monkeypatch, **env: str) -> dict:
    monkeypatch.delenv("REELCAST_LOG_FORMAT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(BASE_DIR / "config" / "settings.py"))


def test_json_is_the_production_format_and_text_the_debug_one(monkeypatch):
    key = secrets.token_urlsafe(50)

    production = _settings_with(monkeypatch, DJANGO_DEBUG="0", DJANGO_SECRET_KEY=key)
    debug = _settings_with(monkeypatch, DJANGO_DEBUG="1")
    chosen = _settings_with(monkeypatch, DJANGO_DEBUG="1", REELCAST_LOG_FORMAT="json")

    assert production["LOGGING"]["handlers"]["console"]["formatter"] == "json"
    assert debug["LOGGING"]["handlers"]["console"]["formatter"] == "text"
    assert chosen["LOGGING"]["handlers"]["console"]["formatter"] == "json"


def test_every_configured_handler_has_the_context_and_redaction_filters(settings):
    configured = settings.LOGGING["handlers"]
    [live] = [h for h in logging.getLogger().handlers if h.name == "console"]

    assert configured
    for handler in configured.values():
        assert handler["filters"] == ["context", "redact"]
    assert [type(f) for f in live.filters] == [ContextFilter, RedactSecretsFilter]


def test_libraries_with_handlers_of_their_own_write_through_ours_once_loaded():
    extract_tags(["小明在操场上帮助同学"])  # loads jieba: a stderr handler at DEBUG
    wan._torch()  # loads torch: stderr handlers on torch and its registered children

    for name in ("jieba", "torch", "torch._dynamo", "torch._inductor"):
        library = logging.getLogger(name)
        assert library.handlers == [], name
        assert library.propagate, name
    assert logging.getLogger("jieba").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("torch").getEffectiveLevel() == logging.WARNING


# --- the request id ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_sane_incoming_request_id_is_kept_and_echoed(client, console):
    response = client.get("/api/v1/nothing-here/", HTTP_X_REQUEST_ID="edge-7f3a9c21-0001")

    assert response.status_code == 404
    assert response["X-Request-ID"] == "edge-7f3a9c21-0001"
    [not_found] = [e for e in lines(console) if e["logger"] == "django.request"]
    assert not_found["message"] == "Not Found: /api/v1/nothing-here/"
    assert not_found["request_id"] == "edge-7f3a9c21-0001"


@pytest.mark.parametrize(
    "incoming", ["", "short", "has space inside it", "x" * 200, "a\nb-c-d-e-f"]
)
@pytest.mark.django_db
def test_a_missing_or_odd_request_id_is_replaced_with_a_new_one(client, incoming):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=incoming)

    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


@pytest.mark.django_db
def test_the_access_log_names_the_request_status_and_tenant(tenant, settings, console):
    settings.REELCAST_ACCESS_LOG = True
    client = key_client(apikey_create(tenant=tenant, kind="secret", name="s").raw_key)

    response = client.get("/api/v1/templates/?limit=5", HTTP_X_REQUEST_ID="req-access-0001")

    [entry] = [e for e in lines(console) if e["logger"] == "reelcast.request"]
    assert response.status_code == 200
    assert entry["message"] == "GET /api/v1/templates/?limit=5 200"
    assert entry["method"] == "GET" and entry["path"] == "/api/v1/templates/"
    assert entry["status"] == 200 and entry["duration_ms"] >= 0
    assert entry["request_id"] == "req-access-0001"
    assert entry["tenant_id"] == str(tenant.pk)


# --- secrets ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_key_or_secret_reaches_any_log_output(tenant, settings, caplog, console):
    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = True
    settings.REELCAST_ACCESS_LOG = True
    settings.STRIPE_SECRET_KEY = "sk_live_" + secrets.token_urlsafe(24)
    settings.STRIPE_WEBHOOK_SECRET = "whsec_" + secrets.token_urlsafe(24)
    settings.REELCAST_METRICS_TOKEN = "metrics-" + secrets.token_hex(12)  # no telltale prefix
    restricted = "rk_live_" + secrets.token_urlsafe(24)
    db_password = "pg-" + secrets.token_hex(10)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True  # every SQL statement and its parameters are logged
    try:
        issued = apikey_create(tenant=tenant, kind="secret", name="server")
        public = apikey_create(tenant=tenant, kind="publishable", name="shop")
        bad_key = "sk_" + secrets.token_urlsafe(30)
        bad = key_client(bad_key).get("/api/v1/templates/")
        good = key_client(issued.raw_key).get(f"/api/v1/templates/?api_key={issued.raw_key}")
        endpoint = webhook_endpoint_create(tenant=tenant, url="http://127.0.0.1:9/hook")
    finally:
        connection.force_debug_cursor = False
    try:
        raise PermissionError(f"key {issued.raw_key} refused by {endpoint.secret}")
    except PermissionError:
        logger.exception("calling with Authorization: Bearer %s failed", public.raw_key)
    logger.warning(
        "stripe %s / %s, broker redis://:%s@redis:6379/0, metrics %s",
        settings.STRIPE_SECRET_KEY,
        restricted,
        db_password,
        settings.REELCAST_METRICS_TOKEN,
        extra={"header": f"Bearer {issued.raw_key}", "webhook": settings.STRIPE_WEBHOOK_SECRET},
    )
    logger.info('{"password": "%s"}', db_password)

    assert bad.status_code == 401 and good.status_code == 200
    written = console.getvalue()
    entries = lines(console)
    secrets_used = [
        issued.raw_key,
        issued.raw_key[12:],
        public.raw_key,
        bad_key,
        endpoint.secret,
        endpoint.secret.removeprefix("whsec_"),
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_WEBHOOK_SECRET,
        settings.REELCAST_METRICS_TOKEN,
        restricted,
        db_password,
    ]
    for output in (written, caplog.text):
        for secret in secrets_used:
            assert secret not in output
    # the lines were written, with the secrets cut out (the key's lookup prefix stays)
    sql = [e for e in entries if e["logger"] == "django.db.backends"]
    assert any("INSERT INTO" in e["message"] and "whsec_[REDACTED]" in e["message"] for e in sql)
    [failed] = [e for e in entries if e["message"].startswith("calling with")]
    assert failed["message"] == "calling with Authorization: Bearer [REDACTED] failed"
    assert (
        f"key {issued.raw_key[:12]}[REDACTED] refused by whsec_[REDACTED]" in (failed["exception"])
    )
    [stripe] = [e for e in entries if e["message"].startswith("stripe ")]
    assert stripe["message"] == (
        f"stripe [REDACTED] / {restricted[:12]}[REDACTED], "
        "broker redis://:[REDACTED]@redis:6379/0, metrics [REDACTED]"
    )
    assert stripe["header"] == "Bearer [REDACTED]"
    assert stripe["webhook"] == "[REDACTED]"  # a secret setting: cut whole
    [access] = [e for e in entries if e["logger"] == "reelcast.request" and e["status"] == 200]
    assert access["message"] == "GET /api/v1/templates/?api_key=[REDACTED] 200"
    assert entries[-1]["message"] == '{"password": "[REDACTED]"}'


def test_signed_download_links_and_presigned_urls_are_cut_from_log_lines():
    record = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "served %s and %s, events %s",
        (
            "/dl/eyJ0IjoiYSJ9:1u2:abc/video.mp4",
            "https://s3.example/b/k.mp4?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=deadbeef",
            "/api/v1/jobs/1/events/?token=abc.def",
        ),
        None,
    )

    RedactSecretsFilter().filter(record)

    assert record.getMessage() == (
        "served /dl/[REDACTED]/video.mp4 and "
        "https://s3.example/b/k.mp4?X-Amz-Credential=[REDACTED]&X-Amz-Signature=[REDACTED], "
        "events /api/v1/jobs/1/events/?token=[REDACTED]"
    )
