"""Tenant webhooks, delivered over real HTTP to a receiver on 127.0.0.1.

Signatures are checked with ``verify`` below, written from the Standard Webhooks text
(https://www.standardwebhooks.com, spec/standard-webhooks.md), not with Reelcast's signer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import Resolver404, include, path, resolve
from django.utils import timezone
from rest_framework.test import APIClient

from config import urls as config_urls
from generation.models import JobState
from generation.services import JobRequest, job_create, job_fail, job_transition
from tenants import webhooks
from tenants.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from tenants.tasks import deliver_due_webhooks
from tests import factories
from tests.conftest import key_client
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.django_db

# Stands in as the root URLconf until config/urls.py includes tenants.urls.
urlpatterns = [path("", include("tenants.urls")), path("", include(config_urls))]
handler404 = config_urls.handler404
handler500 = config_urls.handler500


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = True  # the receiver is on loopback
    try:
        resolve("/api/v1/webhooks/endpoints/")
    except Resolver404:
        settings.ROOT_URLCONF = __name__


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance_s: int = 300) -> bool:
    """Standard Webhooks verification, from the spec: HMAC-SHA256 over ``id.timestamp.body``
    keyed with the base64-decoded part of ``whsec_…``, compared with each ``v1,`` signature."""
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_") :])
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    to_sign = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = hmac.new(key, to_sign, hashlib.sha256).digest()
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(base64.b64decode(signature), expected):
            return True
    return False


def _endpoint(tenant, url, **kwargs) -> webhooks.IssuedSecret:
    return webhooks.webhook_endpoint_create(tenant=tenant, url=url, **kwargs)


def _emit(run_on_commit, tenant, event_type="job.succeeded", data=None):
    return run_on_commit(
        webhooks.webhook_emit, tenant=tenant, event_type=event_type, data=data or {"id": "j1"}
    )


def _attempts(event):
    return list(
        WebhookDelivery.objects.filter(event=event)
        .order_by("attempt")
        .values_list("attempt", "status", "status_code")
    )


def _person(tenant, role="admin") -> APIClient:
    client = APIClient()
    client.force_login(factories.make_member(tenant, role=role))
    return client


# --- signing --------------------------------------------------------------------------------------


def test_the_signature_matches_the_schemes_published_test_vector():
    # From standard-webhooks' own library tests (libraries/python/tests/test_webhooks.py).
    header = webhooks.signature_header(
        keys=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )
    assert header == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_new_secret_is_whsec_and_32_random_bytes():
    first, second = webhooks.secret_generate(), webhooks.secret_generate()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first[len("whsec_") :])) == 32


def test_a_delivered_event_verifies_with_an_independent_implementation(
    tenant, receiver, run_on_commit
):
    issued = _endpoint(tenant, receiver.url())
    before = int(time.time())

    event = _emit(run_on_commit, tenant, "job.succeeded", {"id": "job-1", "state": "succeeded"})

    (request,) = receiver.wait_for(1)
    assert request.method == "POST"
    assert request.path == "/hooks/reelcast"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == event.id and event.id.startswith("evt_")
    assert before <= int(request.headers["webhook-timestamp"]) <= int(time.time())
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert verify(issued.secret, request.headers, request.body)
    assert not verify(webhooks.secret_generate(), request.headers, request.body)
    tampered = request.body.replace(b"succeeded", b"failed")
    assert not verify(issued.secret, request.headers, tampered)
    body = json.loads(request.body)
    assert body["type"] == "job.succeeded"
    assert body["data"] == {"id": "job-1", "state": "succeeded"}
    assert body["timestamp"] == event.payload["timestamp"]
    delivery = WebhookDelivery.objects.get(event=event)
    assert (delivery.attempt, delivery.status, delivery.status_code) == (1, "succeeded", 200)
    assert delivery.delivered_at is not None and delivery.next_retry_at is None
    assert delivery.response_snippet == '{"status": 200}'
    assert delivery.duration_ms is not None


def test_an_old_timestamp_fails_verification_in_the_receivers_check(
    tenant, receiver, run_on_commit
):
    issued = _endpoint(tenant, receiver.url())
    _emit(run_on_commit, tenant)
    (request,) = receiver.wait_for(1)
    replayed = {**request.headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    assert verify(issued.secret, request.headers, request.body)
    assert not verify(issued.secret, replayed, request.body)


# --- events ---------------------------------------------------------------------------------------


def test_nothing_is_written_when_no_endpoint_wants_the_event(tenant, run_on_commit):
    _endpoint(tenant, "http://127.0.0.1:9/never", event_types=["job.failed"])
    assert _emit(run_on_commit, tenant, "job.succeeded") is None
    assert (WebhookEvent.objects.count(), WebhookDelivery.objects.count()) == (0, 0)


def test_an_unknown_event_type_is_a_programming_error(tenant):
    with pytest.raises(ValueError, match=r"job\.exploded"):
        webhooks.webhook_emit(tenant=tenant, event_type="job.exploded", data={})


def test_the_event_filter_and_the_enabled_flag_are_honoured(tenant, receiver, run_on_commit):
    _endpoint(tenant, receiver.url("/all"))
    _endpoint(tenant, receiver.url("/finished"), event_types=["job.succeeded", "job.failed"])
    _endpoint(tenant, receiver.url("/off"), enabled=False)

    started = _emit(run_on_commit, tenant, "job.started")
    succeeded = _emit(run_on_commit, tenant, "job.succeeded")

    requests = receiver.wait_for(3)
    time.sleep(0.1)
    assert sorted((r.path, r.headers["webhook-id"]) for r in receiver.requests) == sorted(
        [("/all", started.id), ("/all", succeeded.id), ("/finished", succeeded.id)]
    )
    assert len(requests) == 3


def test_an_event_rolls_back_with_the_callers_transaction(tenant, receiver, run_on_commit):
    _endpoint(tenant, receiver.url())

    def change_that_fails():
        with transaction.atomic():
            webhooks.webhook_emit(tenant=tenant, event_type="job.failed", data={"id": "x"})
            raise RuntimeError("the change itself failed")

    with pytest.raises(RuntimeError):
        run_on_commit(change_that_fails)

    assert (WebhookEvent.objects.count(), WebhookDelivery.objects.count()) == (0, 0)
    time.sleep(0.1)
    assert receiver.requests == []


def test_another_tenants_endpoints_never_get_the_event(
    tenant, other_tenant, receiver, run_on_commit
):
    _endpoint(other_tenant, receiver.url("/theirs"))
    assert _emit(run_on_commit, tenant, "job.succeeded") is None
    time.sleep(0.1)
    assert receiver.requests == []


def test_job_states_map_to_events_with_the_jobs_fields(tenant, template, run_on_commit):
    _endpoint(tenant, "http://127.0.0.1:9/unused")
    job = job_create(tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"}))
    job = job.job

    queued = webhooks.job_event(job=job, to_state=JobState.QUEUED)
    job_transition(job=job, to_state=JobState.RUNNING)
    started = webhooks.job_event(job=job, to_state=JobState.RUNNING)
    job_transition(job=job, to_state=JobState.POSTPROCESSING)
    postprocessing = webhooks.job_event(job=job, to_state=JobState.POSTPROCESSING)
    job_fail(job=job, code="encode_error", message="the encoder gave up")
    failed = webhooks.job_event(job=job, to_state=JobState.FAILED)

    assert (queued.type, started.type, postprocessing, failed.type) == (
        "job.queued",
        "job.started",
        None,
        "job.failed",
    )
    data = failed.payload["data"]
    assert data["object"] == "job" and data["id"] == str(job.id)
    assert data["template"] == str(template.id)
    assert data["state"] == "failed"
    assert data["error"] == {"code": "encode_error", "message": "the encoder gave up"}
    assert data["finished_at"] is not None
    assert started.payload["data"]["state"] == "running"
    assert started.payload["data"]["error"] is None
    assert set(webhooks.JOB_STATE_EVENTS.values()) | {"job.progress"} <= set(webhooks.EVENT_TYPES)


def test_progress_events_are_throttled_to_one_per_two_seconds_per_job(tenant, template):
    _endpoint(tenant, "http://127.0.0.1:9/unused", event_types=["job.progress"])
    jobs = [
        job_create(tenant=tenant, request=JobRequest(template=template, values={"name": n})).job
        for n in ("Ada", "Bo")
    ]
    t0 = timezone.now()
    assert webhooks.job_progress_event(job_id=jobs[0].id, now=t0) is None  # still queued
    for job in jobs:
        job_transition(job=job, to_state=JobState.RUNNING)

    sent = [
        webhooks.job_progress_event(job_id=jobs[0].id, now=t0 + timedelta(seconds=offset))
        for offset in (0, 0.5, 1.99, 2.0, 2.1, 3.9, 4.0)
    ]
    other = webhooks.job_progress_event(job_id=jobs[1].id, now=t0 + timedelta(seconds=0.5))

    assert [event is not None for event in sent] == [True, False, False, True, False, False, True]
    assert other is not None and other.payload["data"]["id"] == str(jobs[1].id)
    assert WebhookEvent.objects.filter(type="job.progress").count() == 4
    assert sent[0].payload["data"]["state"] == "running"


def test_a_usage_alert_becomes_a_usage_alert_event(tenant):
    from billing.models import UsageAlert

    _endpoint(tenant, "http://127.0.0.1:9/unused", event_types=["usage.alert"])
    alert = UsageAlert.objects.create(
        tenant=tenant,
        period_start=timezone.now().replace(microsecond=0),
        hardware_class="h100",
        threshold_percent=80,
        used_ms=800_000,
        included_ms=1_000_000,
    )
    event = webhooks.usage_alert_hook(alert=alert)
    assert event.type == "usage.alert"
    assert event.payload["data"]["threshold_percent"] == 80
    assert event.payload["data"]["used_gpu_seconds"] == 800.0
    assert event.payload["data"]["included_gpu_seconds"] == 1000.0


# --- retries --------------------------------------------------------------------------------------


def test_a_500_is_retried_with_backoff_until_it_succeeds(tenant, receiver, run_on_commit):
    issued = _endpoint(tenant, receiver.url())
    receiver.respond_with(500, 500)

    event = _emit(run_on_commit, tenant)
    receiver.wait_for(1)
    first = WebhookDelivery.objects.get(event=event, attempt=1)
    second = WebhookDelivery.objects.get(event=event, attempt=2)
    assert (first.status, first.status_code, second.status) == ("failed", 500, "pending")
    assert first.next_retry_at == second.due_at
    assert 5 <= (second.due_at - first.attempted_at).total_seconds() <= 5 * 1.1 + 1

    assert deliver_due_webhooks(now=timezone.now()) == 0  # not due yet
    assert deliver_due_webhooks(now=second.due_at) == 1
    receiver.wait_for(2)
    second.refresh_from_db()
    third = WebhookDelivery.objects.get(event=event, attempt=3)
    assert (second.status, second.status_code, third.status) == ("failed", 500, "pending")
    assert 300 <= (third.due_at - second.attempted_at).total_seconds() <= 300 * 1.1 + 1

    assert deliver_due_webhooks(now=third.due_at) == 1
    requests = receiver.wait_for(3)
    assert _attempts(event) == [(1, "failed", 500), (2, "failed", 500), (3, "succeeded", 200)]
    third.refresh_from_db()
    assert third.next_retry_at is None and third.delivered_at is not None
    assert {r.headers["webhook-id"] for r in requests} == {event.id}
    assert all(verify(issued.secret, r.headers, r.body) for r in requests)
    assert deliver_due_webhooks(now=timezone.now() + timedelta(days=2)) == 0


def test_the_default_schedule_spans_about_a_day():
    delays = webhooks.DEFAULT_RETRY_DELAYS_S
    assert list(delays) == sorted(delays) and delays[0] == 5
    assert 23 * 3600 <= sum(delays) <= 25 * 3600


def test_it_gives_up_after_the_last_retry(tenant, receiver, run_on_commit, settings):
    settings.REELCAST_WEBHOOK_RETRY_DELAYS_S = (1, 2)
    receiver.default_status = 503
    _endpoint(tenant, receiver.url())

    event = _emit(run_on_commit, tenant)
    far = timezone.now() + timedelta(hours=1)
    assert deliver_due_webhooks(now=far) == 1
    assert deliver_due_webhooks(now=far) == 1
    assert deliver_due_webhooks(now=far) == 0

    assert _attempts(event) == [(1, "failed", 503), (2, "failed", 503), (3, "failed", 503)]
    last = WebhookDelivery.objects.get(event=event, attempt=3)
    assert last.next_retry_at is None
    assert len(receiver.wait_for(3)) == 3


def test_retry_after_pushes_the_next_attempt_back(tenant, receiver, run_on_commit):
    _endpoint(tenant, receiver.url())
    receiver.respond_with(429, headers={"Retry-After": "120"})
    event = _emit(run_on_commit, tenant)
    first = WebhookDelivery.objects.get(event=event, attempt=1)
    assert first.status_code == 429
    assert (first.next_retry_at - first.attempted_at).total_seconds() >= 120


def test_a_connection_error_is_a_failed_attempt_with_the_reason(tenant, run_on_commit):
    with WebhookReceiver() as closed:
        url = closed.url()
    _endpoint(tenant, url)
    event = _emit(run_on_commit, tenant)
    first = WebhookDelivery.objects.get(event=event, attempt=1)
    assert (first.status, first.status_code) == ("failed", None)
    assert "refused" in first.error.lower()
    assert WebhookDelivery.objects.get(event=event, attempt=2).status == "pending"


def test_a_redirect_is_a_failure_and_is_not_followed(tenant, receiver, run_on_commit):
    _endpoint(tenant, receiver.url("/old"))
    receiver.respond_with(302, headers={"Location": receiver.url("/new")})
    event = _emit(run_on_commit, tenant)
    time.sleep(0.1)
    assert [r.path for r in receiver.requests] == ["/old"]
    assert _attempts(event) == [(1, "failed", 302), (2, "pending", None)]


def test_410_gone_disables_the_endpoint_and_stops_retries(tenant, receiver, run_on_commit):
    issued = _endpoint(tenant, receiver.url())
    receiver.respond_with(410)
    event = _emit(run_on_commit, tenant)
    issued.endpoint.refresh_from_db()
    assert issued.endpoint.enabled is False
    assert "410" in issued.endpoint.disabled_reason
    assert _attempts(event) == [(1, "failed", 410)]
    assert _emit(run_on_commit, tenant) is None


def test_an_attempt_whose_worker_died_is_failed_and_retried(tenant, receiver, run_on_commit):
    _endpoint(tenant, receiver.url())
    event = webhooks.webhook_emit(tenant=tenant, event_type="job.failed", data={"id": "x"})
    delivery = WebhookDelivery.objects.get(event=event)
    lost_at = timezone.now() - timedelta(minutes=10)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="sending", claimed_at=lost_at)

    deliver_due_webhooks()

    delivery.refresh_from_db()
    assert delivery.status == "failed" and "lost" in delivery.error
    assert WebhookDelivery.objects.get(event=event, attempt=2).status == "pending"


# --- rotation and replay --------------------------------------------------------------------------


def test_during_rotation_both_secrets_sign_then_only_the_new_one(tenant, receiver, run_on_commit):
    old = _endpoint(tenant, receiver.url()).secret
    admin = _person(tenant)
    endpoint = WebhookEndpoint.objects.get()

    response = admin.post(f"/api/v1/webhooks/endpoints/{endpoint.id}/rotate-secret/")
    assert response.status_code == 200, response.content
    new = response.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert old not in response.content.decode()
    expires = response.json()["endpoint"]["previous_secret_expires_at"]
    assert expires is not None

    _emit(run_on_commit, tenant)
    (during,) = receiver.wait_for(1)
    signatures = during.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert verify(old, during.headers, during.body)
    assert verify(new, during.headers, during.body)
    for secret in (old, new):
        alone = {**during.headers}
        matches = [
            s for s in signatures if verify(secret, {**alone, "webhook-signature": s}, during.body)
        ]
        assert len(matches) == 1

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    _emit(run_on_commit, tenant)
    after = receiver.wait_for(2)[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert verify(new, after.headers, after.body)
    assert not verify(old, after.headers, after.body)


def test_rotation_with_no_overlap_drops_the_old_secret_at_once(tenant, receiver, run_on_commit):
    old = _endpoint(tenant, receiver.url()).secret
    endpoint = WebhookEndpoint.objects.get()
    response = _person(tenant).post(
        f"/api/v1/webhooks/endpoints/{endpoint.id}/rotate-secret/", {"overlap_s": 0}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["endpoint"]["previous_secret_expires_at"] is None
    _emit(run_on_commit, tenant)
    (request,) = receiver.wait_for(1)
    assert verify(response.json()["secret"], request.headers, request.body)
    assert not verify(old, request.headers, request.body)


def test_replay_makes_a_new_attempt_of_the_same_event(
    tenant, receiver, run_on_commit, django_capture_on_commit_callbacks
):
    issued = _endpoint(tenant, receiver.url())
    event = _emit(run_on_commit, tenant)
    receiver.wait_for(1)
    original = WebhookDelivery.objects.get(event=event)

    with django_capture_on_commit_callbacks(execute=True):
        response = _person(tenant).post(f"/api/v1/webhooks/deliveries/{original.id}/replay/")

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["attempt"], body["manual"], body["event"]["id"]) == (2, True, event.id)
    requests = receiver.wait_for(2)
    assert [r.headers["webhook-id"] for r in requests] == [event.id, event.id]
    assert all(verify(issued.secret, r.headers, r.body) for r in requests)
    assert _attempts(event) == [(1, "succeeded", 200), (2, "succeeded", 200)]


def test_a_failed_replay_is_not_retried_automatically(tenant, receiver, run_on_commit):
    _endpoint(tenant, receiver.url())
    event = _emit(run_on_commit, tenant)
    receiver.respond_with(500)
    replay = run_on_commit(
        webhooks.webhook_replay, delivery=WebhookDelivery.objects.get(event=event)
    )
    replay.refresh_from_db()
    assert (replay.status, replay.status_code, replay.next_retry_at) == ("failed", 500, None)
    assert _attempts(event) == [(1, "succeeded", 200), (2, "failed", 500)]


# --- server-side request forgery ---------------------------------------------------------------

REFUSED_URLS = [
    "http://127.0.0.1:8000/hook",
    "http://localhost/hook",
    "http://10.1.2.3/hook",
    "http://172.16.5.4/hook",
    "http://192.168.0.10/hook",
    "http://100.64.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "http://[::1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "ftp://93.184.216.34/hook",
    "file:///etc/passwd",
    "gopher://93.184.216.34/",
    "http://user:pw@93.184.216.34/hook",
    "not a url",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_private_and_non_http_targets_are_refused_at_creation(tenant, settings, url):
    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = False
    response = _person(tenant).post("/api/v1/webhooks/endpoints/", {"url": url}, format="json")
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["url"]
    assert WebhookEndpoint.objects.count() == 0


def test_a_public_address_is_accepted_with_the_guard_on(tenant, settings):
    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = False
    response = _person(tenant).post(
        "/api/v1/webhooks/endpoints/", {"url": "https://93.184.216.34/hook"}, format="json"
    )
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("127.0.0.53", True),
        ("::ffff:10.0.0.1", True),
        ("2002:7f00:1::", True),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:1", True),  # NAT64 around 10.0.0.1
        ("fe80::1%eth0", True),
        ("198.18.0.1", True),  # benchmarking range, not global
        ("240.0.0.1", True),  # reserved
    ],
)
def test_addresses_are_judged_with_embedded_ipv4_unwrapped(address, refused):
    assert (webhooks.address_refusal(address) is not None) is refused


def test_a_target_that_became_private_is_refused_at_delivery(
    tenant, receiver, run_on_commit, settings
):
    _endpoint(tenant, receiver.url())  # allowed while the setting was on
    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = False

    event = _emit(run_on_commit, tenant)

    first = WebhookDelivery.objects.get(event=event, attempt=1)
    assert (first.status, first.status_code) == ("failed", None)
    assert "127.0.0.1 is a loopback address" in first.error
    time.sleep(0.1)
    assert receiver.requests == []


# --- API ------------------------------------------------------------------------------------------


def test_an_admin_creates_an_endpoint_and_sees_the_secret_only_once(tenant, receiver):
    admin = _person(tenant)
    response = admin.post(
        "/api/v1/webhooks/endpoints/",
        {"url": receiver.url(), "description": "CRM", "event_types": ["job.succeeded"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    secret = response.json()["secret"]
    created = response.json()["endpoint"]
    assert secret.startswith("whsec_")
    assert created["event_types"] == ["job.succeeded"] and created["enabled"] is True
    assert WebhookEndpoint.objects.get().secret == secret

    detail = admin.get(f"/api/v1/webhooks/endpoints/{created['id']}/")
    listing = admin.get("/api/v1/webhooks/endpoints/")
    assert detail.status_code == listing.status_code == 200
    assert secret not in detail.content.decode() and 'secret"' not in detail.content.decode()
    assert secret not in listing.content.decode()
    assert [e["id"] for e in listing.json()["results"]] == [created["id"]]


def test_unknown_event_types_and_fields_are_400(tenant, receiver):
    admin = _person(tenant)
    bad_type = admin.post(
        "/api/v1/webhooks/endpoints/",
        {"url": receiver.url(), "event_types": ["job.exploded"]},
        format="json",
    )
    unknown_field = admin.post(
        "/api/v1/webhooks/endpoints/",
        {"url": receiver.url(), "secret": "whsec_mine"},
        format="json",
    )
    assert (bad_type.status_code, unknown_field.status_code) == (400, 400)
    assert WebhookEndpoint.objects.count() == 0


def test_patch_changes_the_filter_and_rechecks_the_url(tenant, receiver, settings):
    endpoint = _endpoint(tenant, receiver.url()).endpoint
    admin = _person(tenant)
    changed = admin.patch(
        f"/api/v1/webhooks/endpoints/{endpoint.id}/",
        {"event_types": ["job.failed"], "enabled": False},
        format="json",
    )
    assert changed.status_code == 200
    assert (changed.json()["event_types"], changed.json()["enabled"]) == (["job.failed"], False)

    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = False
    refused = admin.patch(
        f"/api/v1/webhooks/endpoints/{endpoint.id}/", {"url": "http://10.0.0.5/"}, format="json"
    )
    assert refused.status_code == 400
    endpoint.refresh_from_db()
    assert endpoint.url == receiver.url()


def test_the_delivery_log_filters_by_endpoint_and_event_type(tenant, receiver, run_on_commit):
    a = _endpoint(tenant, receiver.url("/a")).endpoint
    b = _endpoint(tenant, receiver.url("/b")).endpoint
    _emit(run_on_commit, tenant, "job.started")
    _emit(run_on_commit, tenant, "job.succeeded")
    admin = _person(tenant)

    by_endpoint = admin.get(f"/api/v1/webhooks/deliveries/?endpoint={a.id}").json()["results"]
    by_type = admin.get("/api/v1/webhooks/deliveries/?event_type=job.started").json()["results"]
    both = admin.get(
        f"/api/v1/webhooks/deliveries/?endpoint={b.id}&event_type=job.succeeded"
    ).json()["results"]
    bad = admin.get("/api/v1/webhooks/deliveries/?endpoint=nope&event_type=job.nope")

    assert {d["endpoint"] for d in by_endpoint} == {str(a.id)} and len(by_endpoint) == 2
    assert {d["event"]["type"] for d in by_type} == {"job.started"} and len(by_type) == 2
    assert len(both) == 1 and both[0]["status"] == "succeeded" and both[0]["status_code"] == 200
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"endpoint", "event_type"}


def test_deleting_an_endpoint_removes_it_and_its_log(tenant, receiver, run_on_commit):
    endpoint = _endpoint(tenant, receiver.url()).endpoint
    _emit(run_on_commit, tenant)
    response = _person(tenant).delete(f"/api/v1/webhooks/endpoints/{endpoint.id}/")
    assert response.status_code == 204
    assert (WebhookEndpoint.objects.count(), WebhookDelivery.objects.count()) == (0, 0)


# --- isolation and roles ----------------------------------------------------------------------


@pytest.fixture
def foreign(other_tenant, receiver, run_on_commit):
    endpoint = _endpoint(other_tenant, receiver.url("/theirs")).endpoint
    event = _emit(run_on_commit, other_tenant)
    receiver.wait_for(1)
    return {"endpoint": endpoint, "delivery": WebhookDelivery.objects.get(event=event)}


def _their_state(other_tenant):
    return (
        list(
            WebhookEndpoint.objects.filter(tenant=other_tenant).values_list(
                "url", "secret", "previous_secret", "enabled", "event_types"
            )
        ),
        WebhookDelivery.objects.filter(tenant=other_tenant).count(),
    )


FOREIGN_CALLS = [
    ("get", "/api/v1/webhooks/endpoints/{endpoint}/", None),
    ("patch", "/api/v1/webhooks/endpoints/{endpoint}/", {"enabled": False}),
    ("delete", "/api/v1/webhooks/endpoints/{endpoint}/", None),
    ("post", "/api/v1/webhooks/endpoints/{endpoint}/rotate-secret/", None),
    ("get", "/api/v1/webhooks/deliveries/{delivery}/", None),
    ("post", "/api/v1/webhooks/deliveries/{delivery}/replay/", None),
]


@pytest.mark.parametrize(("method", "url", "body"), FOREIGN_CALLS)
def test_another_tenants_webhooks_are_404_and_nothing_changes(
    tenant, other_tenant, foreign, receiver, method, url, body
):
    before = _their_state(other_tenant)
    client = _person(tenant, role="owner")
    target = url.format(endpoint=foreign["endpoint"].id, delivery=foreign["delivery"].id)
    response = getattr(client, method)(target, body, format="json")
    assert response.status_code == 404, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert _their_state(other_tenant) == before
    time.sleep(0.05)
    assert len(receiver.requests) == 1


def test_lists_show_only_the_callers_webhooks(tenant, other_tenant, foreign):
    owner = _person(tenant, role="owner")
    endpoints = owner.get("/api/v1/webhooks/endpoints/").json()["results"]
    deliveries = owner.get("/api/v1/webhooks/deliveries/").json()["results"]
    filtered = owner.get(f"/api/v1/webhooks/deliveries/?endpoint={foreign['endpoint'].id}").json()[
        "results"
    ]
    assert (endpoints, deliveries, filtered) == ([], [], [])


ROLES = ["viewer", "editor", "admin", "owner", "secret_key", "publishable_key"]
ALLOWED = {"admin", "owner"}
ACTIONS = [
    "list endpoints",
    "create endpoint",
    "edit endpoint",
    "delete endpoint",
    "rotate secret",
    "list deliveries",
    "replay delivery",
]


def _client_as(role, tenant, template):
    from tenants.services import apikey_create

    if role == "secret_key":
        return key_client(factories.make_secret_key(tenant))
    if role == "publishable_key":
        raw = apikey_create(
            tenant=tenant,
            kind="publishable",
            name="shop",
            allowed_origins=["https://shop.example"],
            allowed_template_ids=[str(template.id)],
        ).raw_key
        return key_client(raw, HTTP_ORIGIN="https://shop.example")
    return _person(tenant, role=role)


def _do(action, client, endpoint, delivery, url):
    return {
        "list endpoints": lambda: client.get("/api/v1/webhooks/endpoints/"),
        "create endpoint": lambda: client.post(
            "/api/v1/webhooks/endpoints/", {"url": url}, format="json"
        ),
        "edit endpoint": lambda: client.patch(
            f"/api/v1/webhooks/endpoints/{endpoint.id}/", {"description": "x"}, format="json"
        ),
        "delete endpoint": lambda: client.delete(f"/api/v1/webhooks/endpoints/{endpoint.id}/"),
        "rotate secret": lambda: client.post(
            f"/api/v1/webhooks/endpoints/{endpoint.id}/rotate-secret/"
        ),
        "list deliveries": lambda: client.get("/api/v1/webhooks/deliveries/"),
        "replay delivery": lambda: client.post(
            f"/api/v1/webhooks/deliveries/{delivery.id}/replay/"
        ),
    }[action]()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", ACTIONS)
def test_the_webhook_role_matrix(tenant, template, receiver, run_on_commit, role, action):
    endpoint = _endpoint(tenant, receiver.url()).endpoint
    event = _emit(run_on_commit, tenant)
    delivery = WebhookDelivery.objects.get(event=event)
    client = _client_as(role, tenant, template)
    before = (
        list(WebhookEndpoint.objects.values_list("url", "description", "secret", "enabled")),
        WebhookDelivery.objects.count(),
    )

    response = _do(action, client, endpoint, delivery, receiver.url("/new"))

    if role in ALLOWED:
        assert response.status_code in (200, 201, 202, 204), response.content
    else:
        assert response.status_code == 403, response.content
        after = (
            list(WebhookEndpoint.objects.values_list("url", "description", "secret", "enabled")),
            WebhookDelivery.objects.count(),
        )
        assert after == before


def test_the_sweep_forgets_old_events_and_retired_secrets(tenant, settings):
    from tenants.tasks import sweep_webhooks

    settings.REELCAST_WEBHOOK_RETENTION_DAYS = 30
    endpoint = _endpoint(tenant, "http://127.0.0.1:9/unused").endpoint
    old = webhooks.webhook_emit(tenant=tenant, event_type="job.failed", data={"id": "old"})
    new = webhooks.webhook_emit(tenant=tenant, event_type="job.failed", data={"id": "new"})
    WebhookEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    webhooks.webhook_secret_rotate(endpoint=endpoint, overlap_s=60)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )

    result = sweep_webhooks()

    assert result["retired_secrets"] == 1
    assert list(WebhookEvent.objects.values_list("id", flat=True)) == [new.id]
    assert WebhookDelivery.objects.filter(event_id=old.id).count() == 0
    endpoint.refresh_from_db()
    assert (endpoint.previous_secret, endpoint.previous_secret_expires_at) == ("", None)
