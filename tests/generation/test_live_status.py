"""The live status stream of a job (server-sent events), read as a client reads it."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest
from django.urls import Resolver404, include, path, resolve
from rest_framework.test import APIClient

from config import urls as config_urls
from generation import live
from generation.models import JobState
from generation.services import JobRequest, job_create, job_set_progress, job_transition
from tenants.services import apikey_create
from tests import factories
from tests.conftest import key_client

pytestmark = pytest.mark.django_db

# Stands in as the root URLconf until config/urls.py routes the stream.
urlpatterns = [
    path("api/v1/jobs/<uuid:job_id>/events/", live.job_events, name="job-events"),
    path("", include(config_urls)),
]
handler404 = config_urls.handler404
handler500 = config_urls.handler500


@pytest.fixture(autouse=True)
def _live_settings(settings):
    settings.REELCAST_LIVE_POLL_S = 0.01
    settings.REELCAST_LIVE_HEARTBEAT_S = 60.0
    settings.REELCAST_LIVE_MAX_S = 30.0
    try:
        resolve("/api/v1/jobs/00000000-0000-0000-0000-000000000000/events/")
    except Resolver404:
        settings.ROOT_URLCONF = __name__


def _job(tenant, template):
    request = JobRequest(template=template, values={"name": "Ada"})
    return job_create(tenant=tenant, request=request).job


def _parse(chunk) -> tuple[str, object]:
    """One SSE message -> ("state", data) / ("end", data) / ("comment", text) / ("retry", ms)."""
    text = chunk.decode() if isinstance(chunk, bytes) else chunk
    assert text.endswith("\n\n"), text
    lines = text[:-2].split("\n")
    if lines[0].startswith(":"):
        return "comment", lines[0][1:].strip()
    if lines[0].startswith("retry:"):
        return "retry", int(lines[0].split(":", 1)[1])
    fields = dict(line.split(": ", 1) for line in lines)
    return fields["event"], json.loads(fields["data"])


class Reader:
    def __init__(self, response):
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "text/event-stream"
        self.chunks = iter(response.streaming_content)

    def next(self, timeout_s: float = 5.0):
        started = time.monotonic()
        message = _parse(next(self.chunks))
        assert time.monotonic() - started < timeout_s
        return message

    def rest(self):
        return [_parse(chunk) for chunk in self.chunks]


class Between:
    """Equal to any number from ``low`` to ``high``: an ETA counts down while a test runs."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def __eq__(self, other):
        return isinstance(other, int | float) and self.low <= other <= self.high

    def __repr__(self):
        return f"Between({self.low}, {self.high})"


class IsoTime:
    """Equal to an ISO 8601 UTC time string."""

    def __eq__(self, other):
        return (
            isinstance(other, str) and other.endswith("Z") and bool(datetime.fromisoformat(other))
        )

    def __repr__(self):
        return "IsoTime()"


# With the rates below, a job of the fixture template takes 60 s to generate, 10 s to
# post-process and 5 s to moderate (no jobs were measured in these tests).
QUEUED_ETA = Between(74, 75)


@pytest.fixture(autouse=True)
def _known_rates(settings, template):
    job = _job(template.tenant, template)
    work = sum(shot["num_frames"] for shot in job.shots) * job.width * job.height / 1e6
    job.delete()
    settings.BILLING_QUOTE_CACHE_S = 0
    settings.REELCAST_ETA_CACHE_S = 0
    settings.BILLING_QUOTE_FALLBACK = {"preview": 60_000 / work}
    settings.REELCAST_ETA_POSTPROCESS_MS_PER_FRAME_MEGAPIXEL = 10_000 / work
    settings.REELCAST_ETA_MODERATION_MS_PER_FRAME_MEGAPIXEL = 5_000 / work


def _state(state, progress=0, eta=None, queue_position=None):
    return ("state", {"state": state, "progress": progress, "eta_s": eta,
                      "eta_at": None if eta is None else IsoTime(),
                      "queue_position": queue_position})  # fmt: skip


def test_the_stream_follows_a_job_through_its_states_in_order(api, tenant, template):
    job = _job(tenant, template)
    response = api.get(f"/api/v1/jobs/{job.id}/events/")
    assert response["Cache-Control"] == "no-cache"
    stream = Reader(response)

    assert stream.next() == ("retry", 3000)
    assert stream.next() == _state("queued", eta=QUEUED_ETA, queue_position=0)
    job_transition(job=job, to_state=JobState.RUNNING)
    assert stream.next() == _state("running", eta=QUEUED_ETA)
    job_set_progress(job_id=job.id, progress=40, eta_s=12.5)
    # the worker's 12.5 s of generation left, then 15 s of finishing
    assert stream.next() == _state("running", progress=40, eta=Between(27, 28))
    job_transition(job=job, to_state=JobState.POSTPROCESSING)
    assert stream.next() == _state("postprocessing", progress=40, eta=Between(14, 15))
    job_transition(job=job, to_state=JobState.MODERATING, eta_s=None)
    assert stream.next() == _state("moderating", progress=40, eta=Between(4, 5))
    job_transition(job=job, to_state=JobState.SUCCEEDED)
    assert stream.next() == _state("succeeded", progress=100)
    assert stream.rest() == [("end", {"state": "succeeded", "reason": "finished"})]


def test_the_stream_sends_a_new_eta_when_the_expected_finish_moves(api, tenant, template, settings):
    job = _job(tenant, template)
    stream = Reader(api.get(f"/api/v1/jobs/{job.id}/events/"))
    assert stream.next() == ("retry", 3000)
    assert stream.next() == _state("queued", eta=QUEUED_ETA, queue_position=0)

    # generation turns out twice as slow (as if new measurements came in): 60 s later
    settings.BILLING_QUOTE_FALLBACK = {"preview": settings.BILLING_QUOTE_FALLBACK["preview"] * 2}

    assert stream.next() == _state("queued", eta=Between(134, 135), queue_position=0)


def test_a_countdown_alone_is_not_news_but_a_moved_finish_is():
    last = {"state": "queued", "progress": 0, "eta_s": 75.0,
            "eta_at": "2026-01-01T12:01:15Z", "queue_position": 3}  # fmt: skip
    one_second_later = {**last, "eta_s": 74.0}
    assert live._news(last, one_second_later) is False
    assert live._news(last, {**last, "eta_s": 71.0, "eta_at": "2026-01-01T12:01:19Z"}) is False
    assert live._news(last, {**last, "eta_s": 80.0, "eta_at": "2026-01-01T12:01:20Z"}) is True
    assert live._news(last, {**one_second_later, "queue_position": 2}) is True
    assert live._news(last, {**last, "eta_s": None, "eta_at": None}) is True


def test_a_finished_job_sends_its_state_and_ends(api, tenant, template):
    job = _job(tenant, template)
    job_transition(job=job, to_state=JobState.CANCELED)
    stream = Reader(api.get(f"/api/v1/jobs/{job.id}/events/"))
    assert stream.rest() == [
        ("retry", 3000),
        _state("canceled"),
        ("end", {"state": "canceled", "reason": "finished"}),
    ]


def test_a_quiet_stream_sends_heartbeat_comments(api, tenant, template, settings):
    settings.REELCAST_LIVE_HEARTBEAT_S = 0.05
    job = _job(tenant, template)
    stream = Reader(api.get(f"/api/v1/jobs/{job.id}/events/"))
    stream.next(), stream.next()  # retry, state

    started = time.monotonic()
    assert stream.next() == ("comment", "heartbeat")
    assert stream.next() == ("comment", "heartbeat")
    assert time.monotonic() - started >= 0.1


def test_the_stream_ends_after_the_maximum_duration(api, tenant, template, settings):
    settings.REELCAST_LIVE_MAX_S = 0.2
    job = _job(tenant, template)
    started = time.monotonic()
    messages = Reader(api.get(f"/api/v1/jobs/{job.id}/events/")).rest()
    assert 0.2 <= time.monotonic() - started < 5
    assert messages == [
        ("retry", 3000),
        _state("queued", eta=QUEUED_ETA, queue_position=0),
        ("comment", "time limit reached; reconnect to go on"),
    ]


def test_a_member_with_a_session_may_watch(tenant, template):
    client = APIClient()
    client.force_login(factories.make_member(tenant, role="viewer"))
    job = _job(tenant, template)
    stream = Reader(client.get(f"/api/v1/jobs/{job.id}/events/"))
    assert stream.next() == ("retry", 3000)
    assert stream.next()[0] == "state"


# --- job tokens -----------------------------------------------------------------------------------


def test_a_job_token_opens_the_stream_without_other_credentials(tenant, template):
    job = _job(tenant, template)
    token = live.job_token(job)
    response = APIClient().get(live.job_events_path(job, token=token))
    assert response["Access-Control-Allow-Origin"] == "*"
    stream = Reader(response)
    assert stream.next() == ("retry", 3000)
    assert stream.next() == _state("queued", eta=QUEUED_ETA, queue_position=0)


def test_an_expired_job_token_is_refused(tenant, template, monkeypatch):
    job = _job(tenant, template)
    token = live.job_token(job)  # 1 h by default
    issued_at = time.time()
    monkeypatch.setattr(live, "_now", lambda: issued_at + 3599)
    assert APIClient().get(live.job_events_path(job, token=token)).status_code == 200
    monkeypatch.setattr(live, "_now", lambda: issued_at + 3601)

    response = APIClient().get(live.job_events_path(job, token=token))

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "token_expired"


def test_a_short_lived_token_can_be_asked_for(tenant, template, monkeypatch):
    job = _job(tenant, template)
    token = live.job_token(job, ttl_s=60)
    issued_at = time.time()
    monkeypatch.setattr(live, "_now", lambda: issued_at + 61)
    response = APIClient().get(live.job_events_path(job, token=token))
    assert response.json()["code"] == "token_expired"


def _tamper(token: str) -> str:
    position = len(token) - 5
    replacement = "A" if token[position] != "A" else "B"
    return token[:position] + replacement + token[position + 1 :]


def test_a_tampered_or_foreign_token_is_refused(tenant, template, settings):
    job = _job(tenant, template)
    other_job = _job(tenant, template)
    token = live.job_token(job)
    with_other_key = settings.SECRET_KEY
    settings.SECRET_KEY = "another-deployment-key-" + "x" * 40
    forged = live.job_token(job)
    settings.SECRET_KEY = with_other_key

    for bad in (_tamper(token), forged, "garbage", "", live.job_token(other_job)):
        response = APIClient().get(f"/api/v1/jobs/{job.id}/events/", {"token": bad})
        assert response.status_code == 401, bad
        assert response.json()["code"] == "invalid_token"
    assert APIClient().get(live.job_events_path(job, token=token)).status_code == 200


# --- who may watch ------------------------------------------------------------------------------


def test_another_tenants_job_is_404_by_key_and_by_session(tenant, other_tenant, other_api):
    template = factories.make_template(tenant)
    job = _job(tenant, template)
    member = APIClient()
    member.force_login(factories.make_member(other_tenant, role="owner"))

    for client in (other_api, member):
        response = client.get(f"/api/v1/jobs/{job.id}/events/")
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"


def test_a_publishable_key_watches_only_the_jobs_it_created(tenant, template):
    issued = apikey_create(
        tenant=tenant,
        kind="publishable",
        name="shop",
        allowed_origins=["https://shop.example"],
        allowed_template_ids=[str(template.id)],
    )
    own = job_create(
        tenant=tenant,
        request=JobRequest(template=template, values={"name": "Ada"}),
        actor_key=issued.api_key,
    ).job
    someone_elses = _job(tenant, template)
    client = key_client(issued.raw_key, HTTP_ORIGIN="https://shop.example")

    assert client.get(f"/api/v1/jobs/{someone_elses.id}/events/").status_code == 404
    stream = Reader(client.get(f"/api/v1/jobs/{own.id}/events/"))
    assert stream.next() == ("retry", 3000)


def test_no_credentials_is_401_and_a_bad_key_is_401(tenant, template):
    job = _job(tenant, template)
    anonymous = APIClient().get(f"/api/v1/jobs/{job.id}/events/")
    bad_key = key_client("sk_not-a-real-key-at-all-000000").get(f"/api/v1/jobs/{job.id}/events/")
    assert (anonymous.status_code, bad_key.status_code) == (401, 401)
    assert bad_key.json()["code"] == "invalid_api_key"


def test_an_unknown_job_is_404_and_other_methods_are_405(api):
    missing = api.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000/events/")
    posted = api.post("/api/v1/jobs/00000000-0000-0000-0000-000000000000/events/")
    assert (missing.status_code, posted.status_code) == (404, 405)


# --- ASGI -----------------------------------------------------------------------------------------


def test_under_asgi_events_arrive_one_by_one(tenant, template):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    job = _job(tenant, template)
    raw = factories.make_secret_key(tenant)

    async def first_two_then_close():
        response = await AsyncClient().get(
            f"/api/v1/jobs/{job.id}/events/", headers={"Authorization": f"Bearer {raw}"}
        )
        assert response.status_code == 200
        chunks = response.streaming_content
        received = [_parse(await anext(chunks)), _parse(await anext(chunks))]
        await chunks.aclose()
        return received

    # The job never finishes: were the iterator read to its end before sending, the first
    # events would come only when the 30 s limit ends the stream.
    started = time.monotonic()
    received = async_to_sync(first_two_then_close)()
    assert time.monotonic() - started < 5
    assert received == [
        ("retry", 3000),
        _state("queued", eta=QUEUED_ETA, queue_position=0),
    ]
