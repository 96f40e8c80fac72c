"""Live-status streams cannot exhaust the web tier (issue #15): each cap answers 429 beyond its
limit, slots come back when a stream closes, and under the shipped gunicorn configuration the API
keeps answering while a hostile client holds as many streams open as it can."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core import signals
from django.core.cache import cache
from django.db import close_old_connections

from generation import live
from generation.models import Job, JobState
from generation.services import JobRequest, job_create
from tests import factories
from tests.support.qcluster import ROOT, database_url


def _job(tenant):
    template = factories.make_template(tenant)
    return job_create(
        tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job


def _close(response) -> None:
    """What a server does when a client goes away: close the response. Django's own test client
    keeps the test's database connection open around it the same way."""
    signals.request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        signals.request_finished.connect(close_old_connections)


def _events(client, job, **extra):
    return client.get(f"/api/v1/jobs/{job.id}/events/?token={live.job_token(job)}", **extra)


@pytest.fixture
def caps(settings):
    settings.REELCAST_LIVE_POLL_S = 0.01
    settings.REELCAST_LIVE_STREAMS_PER_PROCESS = 50
    settings.REELCAST_LIVE_STREAMS_PER_JOB = 50
    settings.REELCAST_LIVE_STREAMS_PER_ADDRESS = 50
    settings.REELCAST_LIVE_MAX_STREAMS = 50
    cache.clear()
    return settings


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("cap", "detail"),
    [
        ("REELCAST_LIVE_STREAMS_PER_JOB", "streams of this job"),
        ("REELCAST_LIVE_STREAMS_PER_ADDRESS", "streams from this address"),
        ("REELCAST_LIVE_MAX_STREAMS", "open streams"),
        ("REELCAST_LIVE_STREAMS_PER_PROCESS", "this server's open streams"),
    ],
)
def test_each_cap_refuses_the_stream_beyond_it_and_frees_a_slot_on_close(
    client, tenant, caps, cap, detail
):
    setattr(caps, cap, 2)
    job = _job(tenant)
    held = [_events(client, job), _events(client, job)]
    assert [r.status_code for r in held] == [200, 200]

    refused = _events(client, job)
    assert refused.status_code == 429
    assert (refused.json()["code"], refused["Retry-After"]) == ("too_many_streams", "5")
    assert detail in refused.json()["detail"]

    _close(held[0])  # the client went away before reading anything: its slot comes back
    again = _events(client, job)
    assert again.status_code == 200
    for response in (held[1], again):
        _close(response)
    assert live._ProcessSlots.open == 0


@pytest.mark.django_db
def test_another_address_is_not_held_back_by_one_address_streams(client, tenant, caps):
    caps.REELCAST_LIVE_STREAMS_PER_ADDRESS = 1
    first, second = _job(tenant), _job(tenant)
    held = _events(client, first, REMOTE_ADDR="203.0.113.5")
    assert _events(client, second, REMOTE_ADDR="203.0.113.5").status_code == 429
    other = _events(client, second, REMOTE_ADDR="198.51.100.7")
    assert other.status_code == 200
    _close(held)
    _close(other)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(check, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def _status(port: int, path: str, headers=None, timeout_s: float = 20.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_api_keeps_answering_while_a_client_holds_every_stream_it_can(tenant, tmp_path):
    job = _job(tenant)
    # A job still running, whose stream stays open (the suite's inline tasks finished this one).
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING, progress=40)
    token = live.job_token(job)
    secret = factories.make_secret_key(tenant)
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": database_url(),
        "REELCAST_VAR_DIR": str(tmp_path),
        "REELCAST_CACHE": "db" if not os.environ.get("REDIS_URL") else "redis",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "4",
    }
    env.pop("REELCAST_LIVE_STREAMS_PER_PROCESS", None)  # the shipped default
    if env["REELCAST_CACHE"] == "db":
        subprocess.run(
            [sys.executable, "manage.py", "createcachetable"], cwd=ROOT, env=env, check=True
        )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "platform/deploy/gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-tmp-dir",
            str(tmp_path),
            "config.wsgi",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "gunicorn.log").open("wb"),
        start_new_session=True,
    )
    streams: list[socket.socket] = []
    try:
        _wait_for(lambda: _status(port, "/healthz") == 200, "gunicorn to answer /healthz")
        statuses = []
        for _ in range(12):  # a hostile page opens stream after stream and never reads them
            sock = socket.create_connection(("127.0.0.1", port), timeout=20)
            sock.sendall(
                f"GET /api/v1/jobs/{job.id}/events/?token={token} HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\n\r\n".encode()
            )
            head = sock.recv(64)
            statuses.append(int(head.split()[1]))
            streams.append(sock)
        # The shipped configuration: two streams per process, the rest refused at once.
        assert statuses.count(200) == 2, statuses
        assert statuses.count(429) == 10, statuses
        for _ in range(5):
            assert _status(port, "/api/v1/templates/", {"Authorization": f"Bearer {secret}"}) == 200
    finally:
        for sock in streams:
            sock.close()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    log = Path(tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log, log[-3000:]
