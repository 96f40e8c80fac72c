"""Live job status: a server-sent-events stream per job, and the job tokens that open it.

``GET /api/v1/jobs/{id}/events/`` answers ``text/event-stream``:

- ``retry: 3000`` first (how long a browser's EventSource waits before reconnecting);
- ``event: state`` with ``{"state", "progress", "eta_s", "eta_at", "queue_position"}`` at once
  and then whenever state, progress or queue position change, or the expected finish
  (``eta_at``) moves by REELCAST_LIVE_ETA_SLACK_S (5 s); between events a client counts
  ``eta_s`` down itself;
- a ``: heartbeat`` comment after REELCAST_LIVE_HEARTBEAT_S (15 s) without an event, so proxies
  and load balancers keep the connection open;
- ``event: end`` after a terminal state (the client should close; a reconnect gets the final
  state and ``end`` again), or a ``:`` comment and the end of the response after
  REELCAST_LIVE_MAX_S, from which EventSource simply reconnects.

Who may watch: the job's tenant, authenticated as for the rest of the API (a secret key, a
signed-in member of any role, or the publishable key that created the job), with the same
scoping as the jobs API (another tenant's job is a 404); or anyone holding a job token
(``?token=``, from ``job_token``): a signed, expiring capability for one job's status, which
a storefront hands to the shopper's browser, since EventSource cannot send an Authorization
header. Token responses carry ``Access-Control-Allow-Origin: *``: the token is the credential,
not a cookie.

Caps: an open stream under WSGI holds a server thread, so streams are limited before they can
starve the API. Each web process serves at most REELCAST_LIVE_STREAMS_PER_PROCESS at once (keep it
below the process's threads: gunicorn's default here is 4 threads and 2 streams, so two threads
are always left for API requests); across processes, through the shared cache, one job has at
most REELCAST_LIVE_STREAMS_PER_JOB, one client address REELCAST_LIVE_STREAMS_PER_ADDRESS, and the
whole platform REELCAST_LIVE_MAX_STREAMS. A stream beyond a cap is refused with 429
``too_many_streams`` and ``Retry-After`` before anything is held; the widget then polls. The
process cap is exact; the shared counters are exact on Redis (atomic INCR) and best effort on the
database cache, and expire after the longest a stream can live, so a crashed process cannot leak
slots for ever.

Trade-off: the stream polls the database every REELCAST_LIVE_POLL_S (0.5 s) rather than
listening to a broker. That needs no new moving part and works with every database, but under
WSGI each open stream holds one server thread and one database connection for its whole life
(bounded by REELCAST_LIVE_MAX_S), and costs a few small indexed queries a second (more while
queued: the jobs ahead and the pool's load, for the queue position and the ETA). Size the WSGI thread pool for the number of watchers, or serve this path
from ASGI, where the same loop runs as an async iterator that holds no thread while it sleeps.
If watchers grow into the thousands, replace the poll with Redis pub/sub published by
``job_transition`` and ``job_set_progress``; the event format stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from rest_framework import exceptions
from rest_framework.request import Request

from config.problems import problem_response
from config.security import client_ip
from generation.models import TERMINAL_STATES, Job
from generation.selectors import job_eta
from tenants.auth import ApiKeyAuthentication, TenantContext, TenantSessionAuthentication

TOKEN_SALT = "reelcast.generation.live.job-token"  # noqa: S105 (a namespace, not a secret)
RECONNECT_MS = 3000


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def _now() -> float:
    return time.time()


# --- job tokens -----------------------------------------------------------------------------------


def job_token(job: Job, *, ttl_s: int | None = None) -> str:
    """A signed token that lets its holder watch this one job's status until it expires (1 h)."""
    ttl = int(ttl_s if ttl_s is not None else _setting("REELCAST_JOB_TOKEN_TTL_S", 3600))
    payload = {"job": str(job.pk), "exp": int(_now()) + ttl}
    return signing.dumps(payload, salt=TOKEN_SALT)


class TokenRefused(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


def job_token_check(token: str, *, job_id: object) -> None:
    """Raise TokenRefused unless ``token`` is genuine, unexpired and names ``job_id``."""
    try:
        payload = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        raise TokenRefused("invalid_token", "The job token is not valid.") from None
    if not isinstance(payload, dict) or payload.get("job") != str(job_id):
        raise TokenRefused("invalid_token", "The job token is not valid for this job.")
    if not isinstance(payload.get("exp"), int) or _now() >= payload["exp"]:
        raise TokenRefused("token_expired", "The job token has expired; ask for a new one.")


def job_events_path(job: Job, *, token: str | None = None) -> str:
    """The stream's path, with ``?token=`` when one is given (for a storefront)."""
    path = f"/api/v1/jobs/{job.pk}/events/"
    return f"{path}?token={token}" if token else path


# --- the stream -----------------------------------------------------------------------------------


def job_status(job_id: object) -> dict[str, Any] | None:
    """What the stream shows of a job, or None when it no longer exists."""
    # unscoped: by id; the caller was authorised for this job before the stream began
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return None
    eta = job_eta(job=job)
    return {
        "state": job.state,
        "progress": job.progress,
        "eta_s": eta.eta_s,
        "eta_at": eta.eta_at.isoformat().replace("+00:00", "Z") if eta.eta_at else None,
        "queue_position": eta.queue_position,
    }


def _news(last: dict[str, Any] | None, status: dict[str, Any]) -> bool:
    """Whether ``status`` is worth an event after ``last`` (the last one sent).

    ``eta_s`` counts down by itself between events (clients tick it); an event goes out when
    anything else changes or the expected finish (``eta_at``) moves by REELCAST_LIVE_ETA_SLACK_S.
    """
    if last is None:
        return True
    steady = ("eta_s", "eta_at")
    if {k: v for k, v in last.items() if k not in steady} != {
        k: v for k, v in status.items() if k not in steady
    }:
        return True
    before, now = last["eta_at"], status["eta_at"]
    if before is None or now is None:
        return before != now
    moved = datetime.fromisoformat(now) - datetime.fromisoformat(before)
    return abs(moved.total_seconds()) >= _setting("REELCAST_LIVE_ETA_SLACK_S", 5.0)


def _message(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class JobEventStream:
    """The stream as a sequence of steps, so one loop serves WSGI (sleeping) and ASGI (awaiting).

    ``step()`` reads the job once and returns the messages to send and how long to wait before
    the next step, or None when the stream is over.
    """

    def __init__(
        self,
        job_id: object,
        *,
        poll_s: float,
        heartbeat_s: float,
        max_s: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.job_id = job_id
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.max_s = max_s
        self.clock = clock
        self.started = clock()
        self.last_write = self.started
        self.last: dict[str, Any] | None = None
        self.opened = False

    def step(self) -> tuple[list[str], float | None]:
        messages: list[str] = []
        if not self.opened:
            messages.append(f"retry: {RECONNECT_MS}\n\n")
            self.opened = True
        status = job_status(self.job_id)
        now = self.clock()
        if status is None:
            messages.append(_message("end", {"state": None, "reason": "gone"}))
            return messages, None
        if _news(self.last, status):
            messages.append(_message("state", status))
            self.last = status
            self.last_write = now
        if status["state"] in TERMINAL_STATES:
            messages.append(_message("end", {"state": status["state"], "reason": "finished"}))
            return messages, None
        if now - self.started >= self.max_s:
            messages.append(": time limit reached; reconnect to go on\n\n")
            return messages, None
        if now - self.last_write >= self.heartbeat_s:
            messages.append(": heartbeat\n\n")
            self.last_write = now
        return messages, self.poll_s

    def __iter__(self) -> Iterator[str]:
        while True:
            messages, wait = self.step()
            yield from messages
            if wait is None:
                return
            time.sleep(wait)

    async def __aiter__(self) -> AsyncIterator[str]:
        step = sync_to_async(self.step)
        while True:
            messages, wait = await step()
            for message in messages:
                yield message
            if wait is None:
                return
            await asyncio.sleep(wait)


# --- caps -------------------------------------------------------------------------------------


class _ProcessSlots:
    """Streams open in this process (exact: a lock, not the cache)."""

    lock = threading.Lock()
    open = 0


def _shared_claim(key: str, limit: int, ttl_s: int) -> bool:
    cache.add(key, 0, timeout=ttl_s)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 0, timeout=ttl_s)
        count = cache.incr(key)
    if count > limit:
        _shared_release(key)
        return False
    return True


def _shared_release(key: str) -> None:
    with contextlib.suppress(ValueError):  # the counter expired (see the module docstring)
        cache.decr(key)


class StreamSlots:
    """The caps one stream holds; ``release`` (idempotent) gives them back."""

    def __init__(self, keys: list[str], process: bool):
        self.keys = keys
        self.process = process
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        for key in self.keys:
            _shared_release(key)
        if self.process:
            with _ProcessSlots.lock:
                _ProcessSlots.open -= 1


def stream_slots_claim(*, job_id: object, tenant_id: object, address: str) -> StreamSlots | str:
    """Every cap a new stream must fit under, claimed together, or the name of the one that is
    full (nothing is kept then)."""
    with _ProcessSlots.lock:
        if _ProcessSlots.open >= int(settings.REELCAST_LIVE_STREAMS_PER_PROCESS):
            return "this server's open streams"
        _ProcessSlots.open += 1
    slots = StreamSlots([], process=True)
    ttl = int(_setting("REELCAST_LIVE_MAX_S", 900.0)) + 60
    for key, limit, name in (
        ("reelcast:live:all", settings.REELCAST_LIVE_MAX_STREAMS, "open streams"),
        (
            f"reelcast:live:job:{tenant_id}:{job_id}",
            settings.REELCAST_LIVE_STREAMS_PER_JOB,
            "streams of this job",
        ),
        (
            f"reelcast:live:addr:{address}",
            settings.REELCAST_LIVE_STREAMS_PER_ADDRESS,
            "streams from this address",
        ),
    ):
        if not _shared_claim(key, int(limit), ttl):
            slots.release()
            return name
        slots.keys.append(key)
    return slots


class _Held:
    """The stream's content: gives its slots back when the response is closed (finished,
    client gone, or never started), under WSGI and ASGI alike."""

    def __init__(self, stream: JobEventStream, slots: StreamSlots):
        self.stream = stream
        self.slots = slots

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self.stream
        finally:
            self.slots.release()

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            async for message in self.stream:
                yield message
        finally:
            self.slots.release()

    def close(self) -> None:
        self.slots.release()


# --- the view -------------------------------------------------------------------------------------


def _authenticated_jobs(request: HttpRequest) -> QuerySet[Job] | HttpResponse:
    """The jobs the caller may see, as the jobs API scopes them, or the problem response."""
    api_request = Request(
        request, authenticators=[ApiKeyAuthentication(), TenantSessionAuthentication()]
    )
    try:
        context = api_request.auth
    except exceptions.APIException as exc:
        codes = exc.get_codes()
        return problem_response(
            exc.status_code,
            detail=str(exc.detail),
            code=codes if isinstance(codes, str) else "not_authenticated",
        )
    if not isinstance(context, TenantContext):
        return problem_response(
            401,
            detail="Authenticate with an API key or a session, or pass ?token=.",
            code="not_authenticated",
        )
    jobs = Job.objects.for_tenant(context.tenant)
    if context.is_publishable:  # a storefront key sees only the jobs it created
        jobs = jobs.filter(created_by_key=context.api_key)
    return jobs


def job_events(request: HttpRequest, job_id: object) -> HttpResponse:
    """``GET /api/v1/jobs/{id}/events/``: the job's live status as server-sent events."""
    if request.method != "GET":
        return problem_response(
            405, detail="Use GET.", code="method_not_allowed", headers={"Allow": "GET"}
        )
    token = request.GET.get("token")
    if token is not None:
        try:
            job_token_check(token, job_id=job_id)
        except TokenRefused as refused:
            return problem_response(401, detail=refused.detail, code=refused.code)
        # unscoped: the token names this job and was signed by us
        tenant_id = Job.objects.filter(pk=job_id).values_list("tenant_id", flat=True).first()
    else:
        jobs = _authenticated_jobs(request)
        if isinstance(jobs, HttpResponse):
            return jobs
        tenant_id = jobs.filter(pk=job_id).values_list("tenant_id", flat=True).first()
    if tenant_id is None:
        return problem_response(404, detail="Not found.", code="not_found")
    slots = stream_slots_claim(job_id=job_id, tenant_id=tenant_id, address=client_ip(request))
    if isinstance(slots, str):
        return problem_response(
            429,
            detail=f"Too many live streams ({slots}); poll GET /api/v1/jobs/{{id}}/ instead, "
            "or retry later.",
            code="too_many_streams",
            headers={"Retry-After": "5"},
        )

    stream = JobEventStream(
        job_id,
        poll_s=_setting("REELCAST_LIVE_POLL_S", 0.5),
        heartbeat_s=_setting("REELCAST_LIVE_HEARTBEAT_S", 15.0),
        max_s=_setting("REELCAST_LIVE_MAX_S", 900.0),
    )
    held = _Held(stream, slots)
    # Under ASGI a plain iterator would be read to the end before anything is sent.
    content = held.__aiter__() if isinstance(request, ASGIRequest) else iter(held)
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    # Closing the response releases the slots even if the body was never read.
    response._resource_closers.append(held.close)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    if token is not None:
        response["Access-Control-Allow-Origin"] = "*"
    return response
