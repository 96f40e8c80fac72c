"""Tenant webhooks: endpoints, the event outbox, Standard Webhooks signing, and delivery.

The flow: a service that changes something calls ``webhook_emit`` (or ``job_event`` /
``job_progress_event``) inside its own transaction. That writes one ``WebhookEvent`` and one
pending ``WebhookDelivery`` per enabled endpoint that wants the event type, and queues the
deliveries on commit, so an event exists exactly when the change it describes does.

A delivery worker claims a pending row (a conditional update: one sender per attempt), POSTs the
event signed per https://www.standardwebhooks.com (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256>``, one signature per valid secret during a
rotation), and records the outcome on the row. A 2xx is delivered; anything else (3xx included:
redirects are not followed) fails, and an automatic attempt with retries left gets a pending
successor due after the next backoff step (5 s, 5 min, 30 min, 2 h, 5 h, 6 h, 10 h: the last try
about 24 h after the first), plus up to 10% jitter, or later if the receiver sent Retry-After.
A 410 Gone disables the endpoint. ``tenants.tasks.deliver_due_webhooks`` sends due retries.

Targets are checked against server-side request forgery when an endpoint is saved and again at
every attempt, after DNS resolution, and the connection goes to the address that was checked (a
second lookup could answer differently). Unless ``REELCAST_WEBHOOKS_ALLOW_PRIVATE`` is set, only
http(s) URLs whose every address is public are accepted.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import random
import secrets
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from config.problems import ConflictProblem
from tenants.models import (
    Tenant,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookThrottle,
)

logger = logging.getLogger(__name__)

EVENT_TYPES = (
    "job.queued",
    "job.started",
    "job.progress",
    "job.succeeded",
    "job.failed",
    "job.canceled",
    "job.in_review",
    "job.blocked",
    "batch.completed",
    "usage.alert",
)
# Job states that are events; running -> queued (a retry after a lost worker) is job.queued again.
JOB_STATE_EVENTS = {
    "queued": "job.queued",
    "running": "job.started",
    "succeeded": "job.succeeded",
    "failed": "job.failed",
    "canceled": "job.canceled",
    "in_review": "job.in_review",
    "blocked": "job.blocked",
}
_WORKING_STATES = ("running", "postprocessing", "moderating")

SECRET_PREFIX = "whsec_"  # noqa: S105 (a marker, not a secret)
SECRET_BYTES = 32  # the scheme asks for 24 to 64
DEFAULT_RETRY_DELAYS_S = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 6 * 3600, 10 * 3600)
RETRY_JITTER = 0.1
MAX_RETRY_AFTER_S = 24 * 3600
SNIPPET_BYTES = 2000
USER_AGENT = "Reelcast-Webhooks/1.0"


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def _timeout_s() -> float:
    return float(_setting("REELCAST_WEBHOOK_TIMEOUT_S", 10.0))


def _allow_private() -> bool:
    return bool(_setting("REELCAST_WEBHOOKS_ALLOW_PRIVATE", False))


# --- secrets and signatures ---------------------------------------------------------------------


def secret_generate() -> str:
    """A new ``whsec_<base64 of 32 random bytes>`` secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key_bytes(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for: the base64 after the prefix, decoded."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


def signature_header(*, keys: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: ``v1,<sig>`` per secret, space-separated, over ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    parts = []
    for secret in keys:
        digest = hmac.new(secret_key_bytes(secret), signed, hashlib.sha256).digest()
        parts.append("v1," + base64.b64encode(digest).decode())
    return " ".join(parts)


def signing_secrets(endpoint: WebhookEndpoint, *, now: datetime | None = None) -> list[str]:
    """The current secret, and the previous one while its overlap lasts."""
    now = now or timezone.now()
    found = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        found.append(endpoint.previous_secret)
    return found


# --- server-side request forgery -------------------------------------------------------------------


class UnsafeTarget(Exception):
    """The URL is not one Reelcast will call: wrong scheme, or a non-public address."""


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(ip: str) -> str | None:
    """Why Reelcast must not connect to ``ip`` (private, loopback, …), or None when it is public."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        ip.split("%", 1)[0]
    )
    if isinstance(address, ipaddress.IPv6Address):
        address = _embedded_ipv4(address) or address
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    if not address.is_global:
        return f"{ip} is not a public address"
    return None


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


def target_parse(url: str) -> Target:
    """Split a webhook URL, refusing anything but plain http(s) URLs without credentials."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except DjangoValidationError:
        raise UnsafeTarget("Use an http:// or https:// URL.") from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("Use an http:// or https:// URL.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeTarget("Put no credentials in the URL; verify the signature instead.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeTarget("The port is not a number between 1 and 65535.") from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=parts.scheme, host=parts.hostname, port=port, path=path)


def target_resolve(target: Target) -> str:
    """The address to connect to; every address the name has must be allowed, not just one."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeTarget(f"{target.host} does not resolve.") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeTarget(f"{target.host} does not resolve.")
    if not _allow_private():
        for address in addresses:
            reason = address_refusal(address)
            if reason:
                where = "" if target.host.strip("[]") == address else f"{target.host}: "
                raise UnsafeTarget(f"Refused: {where}{reason}.")
    return addresses[0]


def webhook_url_check(url: str) -> Target:
    """What an endpoint's URL must pass when it is saved (delivery checks again)."""
    if len(url) > 2000:
        raise UnsafeTarget("At most 2000 characters.")
    target = target_parse(url)
    if not _allow_private():
        target_resolve(target)
    return target


# --- endpoints ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedSecret:
    endpoint: WebhookEndpoint
    secret: str  # shown to the caller once


def _checked_url(url: str) -> str:
    try:
        webhook_url_check(url)
    except UnsafeTarget as refused:
        raise ValidationError({"url": str(refused)}) from None
    return url


def _checked_event_types(event_types: list[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(event_types or []))
    unknown = [t for t in chosen if t not in EVENT_TYPES]
    if unknown:
        raise ValidationError({"event_types": f"Unknown event types: {', '.join(unknown)}."})
    return chosen


def webhook_endpoint_create(
    *,
    tenant: Tenant,
    url: str,
    description: str = "",
    event_types: list[str] | None = None,
    enabled: bool = True,
    created_by: AbstractBaseUser | None = None,
) -> IssuedSecret:
    """A new endpoint with a fresh secret. The URL must pass the SSRF check now."""
    limit = int(_setting("REELCAST_WEBHOOK_MAX_ENDPOINTS", 20))
    if WebhookEndpoint.objects.for_tenant(tenant).count() >= limit:
        raise ConflictProblem(
            f"A tenant may have at most {limit} webhook endpoints.", code="too_many_endpoints"
        )
    secret = secret_generate()
    endpoint = WebhookEndpoint.objects.create(
        tenant=tenant,
        url=_checked_url(url),
        description=description,
        event_types=_checked_event_types(event_types),
        enabled=enabled,
        secret=secret,
        created_by=created_by,
    )
    return IssuedSecret(endpoint=endpoint, secret=secret)


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    description: str | None = None,
    event_types: list[str] | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    """Change what is given; a new URL passes the SSRF check, re-enabling clears the reason."""
    if url is not None:
        endpoint.url = _checked_url(url)
    if description is not None:
        endpoint.description = description
    if event_types is not None:
        endpoint.event_types = _checked_event_types(event_types)
    if enabled is not None:
        endpoint.enabled = enabled
        if enabled:
            endpoint.disabled_reason = ""
    endpoint.save()
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Remove the endpoint and its delivery log; pending attempts go with it."""
    endpoint.delete()


def webhook_secret_rotate(
    *, endpoint: WebhookEndpoint, overlap_s: int | None = None
) -> IssuedSecret:
    """A new current secret; the old one keeps signing for ``overlap_s`` (24 h by default).

    ``overlap_s=0`` drops the old secret at once (for a leaked secret). A secret still in its
    overlap from an earlier rotation is dropped: at most two secrets sign at any time.
    """
    if overlap_s is None:
        overlap_s = int(_setting("REELCAST_WEBHOOK_SECRET_OVERLAP_S", 24 * 3600))
    now = timezone.now()
    secret = secret_generate()
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if overlap_s > 0:
            locked.previous_secret = locked.secret
            locked.previous_secret_expires_at = now + timedelta(seconds=overlap_s)
        else:
            locked.previous_secret = ""
            locked.previous_secret_expires_at = None
        locked.secret = secret
        locked.save()
    return IssuedSecret(endpoint=locked, secret=secret)


# --- events ---------------------------------------------------------------------------------------


def _event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def _subscribers(tenant: Tenant, event_type: str) -> list[WebhookEndpoint]:
    endpoints = WebhookEndpoint.objects.for_tenant(tenant).filter(enabled=True).order_by("id")
    return [endpoint for endpoint in endpoints if endpoint.wants(event_type)]


def webhook_emit(*, tenant: Tenant, event_type: str, data: dict) -> WebhookEvent | None:
    """Record ``event_type`` with ``data`` for every enabled endpoint that wants it.

    Runs in the caller's transaction: the event and its deliveries commit (or roll back) with
    the change they describe, and the deliveries are queued on commit. Returns None, writing
    nothing, when no endpoint wants the event.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    endpoints = _subscribers(tenant, event_type)
    if not endpoints:
        return None
    now = timezone.now()
    body_data = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    payload = {
        "type": event_type,
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "data": body_data,
    }
    with transaction.atomic():
        event = WebhookEvent.objects.create(
            tenant=tenant, id=_event_id(), type=event_type, payload=payload
        )
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(tenant=tenant, endpoint=endpoint, event=event, attempt=1, due_at=now)
            for endpoint in endpoints
        )
        _enqueue_on_commit([delivery.pk for delivery in deliveries])
    return event


def _enqueue_on_commit(delivery_ids: list[Any]) -> None:
    from tenants.tasks import enqueue_deliveries

    # robust: a broker hiccup must not fail the caller's commit; deliver_due_webhooks
    # picks up any pending row that was never queued.
    transaction.on_commit(lambda: enqueue_deliveries(delivery_ids), robust=True)


def _emit_quietly(*, tenant: Tenant, event_type: str, data: dict) -> WebhookEvent | None:
    """Emit inside a savepoint: a webhook problem is logged, never fails the caller's change."""
    try:
        with transaction.atomic():
            return webhook_emit(tenant=tenant, event_type=event_type, data=data)
    except Exception:
        logger.exception("webhook %s for tenant %s was not recorded", event_type, tenant.pk)
        return None


_JOB_FIELDS = (
    "id",
    "tenant_id",
    "template_id",
    "state",
    "progress",
    "eta_s",
    "end_user",
    "error_code",
    "error_message",
    "created_at",
    "started_at",
    "finished_at",
)


def _job_row(job_id: object) -> dict[str, Any] | None:
    from generation.models import Job

    # unscoped: by id, from the service that just wrote the job
    return Job.objects.filter(pk=job_id).values(*_JOB_FIELDS).first()


def job_payload(row: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` of a job event: the job's own fields, no links."""
    error = None
    if row["error_code"]:
        error = {"code": row["error_code"], "message": row["error_message"]}
    return {
        "object": "job",
        "id": str(row["id"]),
        "template": str(row["template_id"]),
        "state": row["state"],
        "progress": row["progress"],
        "eta_s": row["eta_s"],
        "end_user": row["end_user"],
        "error": error,
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
    }


def job_event(*, job: Any, to_state: str) -> WebhookEvent | None:
    """The event for a job entering ``to_state`` (None for states that are not events).

    Call it inside the transaction that moved the job, after the move: it reads the job's row
    as that transaction sees it, so the payload is the state just written.
    """
    event_type = JOB_STATE_EVENTS.get(str(to_state))
    if event_type is None:
        return None
    row = _job_row(job.pk)
    if row is None:
        return None
    tenant = Tenant.objects.get(pk=row["tenant_id"])
    return _emit_quietly(tenant=tenant, event_type=event_type, data=job_payload(row))


def _throttle_take(*, tenant: Tenant, key: str, now: datetime, interval: timedelta) -> bool:
    """True for at most one caller per ``interval`` per key, across processes."""
    taken = WebhookThrottle.objects.filter(
        tenant=tenant, key=key, last_emitted_at__lte=now - interval
    ).update(last_emitted_at=now)
    if taken:
        return True
    if WebhookThrottle.objects.filter(tenant=tenant, key=key).exists():
        return False
    try:
        with transaction.atomic():
            WebhookThrottle.objects.create(tenant=tenant, key=key, last_emitted_at=now)
    except IntegrityError:
        return False  # another process emitted the first one
    return True


def job_progress_event(*, job_id: object, now: datetime | None = None) -> WebhookEvent | None:
    """A ``job.progress`` event for a job being worked on, at most one per 2 s per job.

    Call it after progress was written. The throttle lives in the database, so workers in
    several processes share it. Progress in between is dropped, not queued: the next event
    carries the latest value, and the final state has an event of its own.
    """
    row = _job_row(job_id)
    if row is None or row["state"] not in _WORKING_STATES:
        return None
    tenant = Tenant.objects.get(pk=row["tenant_id"])
    if not _subscribers(tenant, "job.progress"):
        return None
    interval = timedelta(seconds=float(_setting("REELCAST_WEBHOOK_PROGRESS_INTERVAL_S", 2.0)))
    if not _throttle_take(
        tenant=tenant, key=f"job.progress:{job_id}", now=now or timezone.now(), interval=interval
    ):
        return None
    return _emit_quietly(tenant=tenant, event_type="job.progress", data=job_payload(row))


def usage_alert_hook(*, alert: Any) -> WebhookEvent | None:
    """``BILLING_USAGE_ALERT_HOOK``: a ``usage.alert`` event for one billing usage alert."""
    return webhook_emit(
        tenant=alert.tenant,
        event_type="usage.alert",
        data={
            "object": "usage_alert",
            "id": alert.pk,
            "hardware_class": alert.hardware_class,
            "threshold_percent": alert.threshold_percent,
            "used_gpu_seconds": alert.used_ms / 1000,
            "included_gpu_seconds": alert.included_ms / 1000,
            "period_start": alert.period_start,
        },
    )


# --- delivery -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    snippet: str
    error: str
    duration_ms: int
    retry_after_s: float | None = None


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that passed the check, whatever the name resolves to now."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - timezone.now()).total_seconds())


def _post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> Outcome:
    """POST once; never follows redirects; reads at most a snippet of the answer."""
    started = time.monotonic()

    def elapsed() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        target = target_parse(url)
        address = target_resolve(target)
    except UnsafeTarget as refused:
        return Outcome(None, "", str(refused), elapsed())
    kind = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = kind(target.host, target.port, address=address, timeout=timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        snippet = response.read(SNIPPET_BYTES).decode("utf-8", "replace")
        return Outcome(
            response.status,
            snippet,
            "",
            elapsed(),
            retry_after_s=_retry_after_s(response.getheader("Retry-After")),
        )
    except TimeoutError:
        return Outcome(None, "", f"Timed out after {timeout:g} s.", elapsed())
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(None, "", f"{type(exc).__name__}: {exc}"[:500], elapsed())
    finally:
        connection.close()


def _retry_delays() -> tuple[float, ...]:
    delays = _setting("REELCAST_WEBHOOK_RETRY_DELAYS_S", DEFAULT_RETRY_DELAYS_S)
    return tuple(float(seconds) for seconds in delays)


def _next_attempt_at(
    delivery: WebhookDelivery, outcome: Outcome | None, now: datetime
) -> datetime | None:
    """When the automatic retry after this attempt is due, or None when there is none."""
    delays = _retry_delays()
    if delivery.manual or delivery.attempt > len(delays):
        return None
    delay = delays[delivery.attempt - 1] * (1 + random.random() * RETRY_JITTER)
    if outcome is not None and outcome.retry_after_s is not None:
        delay = max(delay, min(outcome.retry_after_s, MAX_RETRY_AFTER_S))
    return now + timedelta(seconds=delay)


def _new_attempt(
    *, endpoint: WebhookEndpoint, event: WebhookEvent, due_at: datetime, manual: bool
) -> WebhookDelivery:
    """The next numbered attempt of an event to an endpoint (the endpoint row is locked)."""
    WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
    last = WebhookDelivery.objects.for_tenant(endpoint.tenant_id).filter(
        endpoint=endpoint, event=event
    )
    attempt = (last.aggregate(n=Max("attempt"))["n"] or 0) + 1
    return WebhookDelivery.objects.create(
        tenant_id=endpoint.tenant_id,
        endpoint=endpoint,
        event=event,
        attempt=attempt,
        manual=manual,
        due_at=due_at,
    )


def _finish(
    delivery: WebhookDelivery, outcome: Outcome, *, now: datetime, retry: bool = True
) -> WebhookDelivery:
    """Record one attempt's outcome, and schedule the retry or disable the endpoint."""
    delivery.attempted_at = delivery.claimed_at or now
    delivery.status_code = outcome.status_code
    delivery.response_snippet = outcome.snippet[:SNIPPET_BYTES]
    delivery.error = outcome.error[:500]
    delivery.duration_ms = outcome.duration_ms
    code = outcome.status_code
    with transaction.atomic():
        if code is not None and 200 <= code < 300:
            delivery.status = WebhookDelivery.Status.SUCCEEDED
            delivery.delivered_at = now
        else:
            delivery.status = WebhookDelivery.Status.FAILED
            if code == 410:
                reason = "The endpoint answered 410 Gone; re-enable it to receive events again."
                WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(
                    enabled=False, disabled_reason=reason, updated_at=now
                )
                if not delivery.error:
                    delivery.error = "410 Gone: the endpoint was disabled."
            elif retry:
                retry_at = _next_attempt_at(delivery, outcome, now)
                if retry_at is not None:
                    successor = _new_attempt(
                        endpoint=delivery.endpoint,
                        event=delivery.event,
                        due_at=retry_at,
                        manual=False,
                    )
                    delivery.next_retry_at = successor.due_at
        delivery.save()
    return delivery


def _claim(delivery_id: object, now: datetime) -> WebhookDelivery | None:
    claimed = WebhookDelivery.objects.filter(  # unscoped: a worker, by id
        pk=delivery_id, status=WebhookDelivery.Status.PENDING
    ).update(status=WebhookDelivery.Status.SENDING, claimed_at=now)
    if not claimed:
        return None
    return (
        WebhookDelivery.objects.select_related("endpoint", "event")  # unscoped: by id
        .filter(pk=delivery_id)
        .first()
    )


def webhook_attempt(*, delivery_id: object) -> WebhookDelivery | None:
    """Make one pending attempt now; None when it is gone or another worker has it.

    Queued only when due (on commit, or by ``deliver_due_webhooks``), so due time is not
    re-checked here; the claim alone guarantees one sender per attempt.
    """
    delivery = _claim(delivery_id, timezone.now())
    if delivery is None:
        return None
    endpoint, event = delivery.endpoint, delivery.event
    if not endpoint.enabled:
        outcome = Outcome(None, "", "The endpoint is disabled.", 0)
        return _finish(delivery, outcome, now=timezone.now(), retry=False)
    body = json.dumps(event.payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            keys=signing_secrets(endpoint), msg_id=event.id, timestamp=timestamp, body=body
        ),
    }
    outcome = _post(endpoint.url, body=body, headers=headers, timeout=_timeout_s())
    if outcome.error:
        logger.info("webhook %s to %s failed: %s", event.id, endpoint.pk, outcome.error)
    return _finish(delivery, outcome, now=timezone.now())


def webhook_due_ids(*, now: datetime | None = None, limit: int = 200) -> list[Any]:
    """Pending attempts that are due, oldest first; attempts whose worker died are failed first.

    A row left ``sending`` for longer than the timeout plus a margin lost its worker (the
    request may or may not have reached the receiver, which the ``webhook-id`` lets it tell):
    it is recorded as failed and its retry is scheduled like any other failure.
    """
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=_timeout_s() + 120)
    stale = WebhookDelivery.objects.select_related("endpoint", "event").filter(  # unscoped: worker
        status=WebhookDelivery.Status.SENDING, claimed_at__lt=stale_before
    )
    for delivery in stale[:limit]:
        lost = Outcome(None, "", "The delivery worker was lost during the attempt.", 0)
        if WebhookDelivery.objects.filter(  # unscoped: a worker, by id
            pk=delivery.pk, status=WebhookDelivery.Status.SENDING
        ).update(status=WebhookDelivery.Status.FAILED):
            _finish(delivery, lost, now=now)
    due = WebhookDelivery.objects.filter(  # unscoped: the delivery worker serves every tenant
        status=WebhookDelivery.Status.PENDING, due_at__lte=now
    ).order_by("due_at")
    return list(due.values_list("pk", flat=True)[:limit])


def webhook_replay(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """A new, manual attempt of the delivery's event to its endpoint, queued now.

    It is one attempt: if it fails it is not retried automatically (an automatic chain that
    is still running keeps running).
    """
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        raise ConflictProblem(
            "The endpoint is disabled; enable it before replaying.", code="endpoint_disabled"
        )
    with transaction.atomic():
        replay = _new_attempt(
            endpoint=endpoint, event=delivery.event, due_at=timezone.now(), manual=True
        )
        _enqueue_on_commit([replay.pk])
    return replay


def webhook_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Forget events (and their delivery logs) past retention, stale throttle rows, and
    previous secrets whose overlap has ended."""
    now = now or timezone.now()
    days = int(_setting("REELCAST_WEBHOOK_RETENTION_DAYS", 30))
    events, _ = WebhookEvent.objects.filter(  # unscoped: a periodic sweep over every tenant
        created_at__lt=now - timedelta(days=days)
    ).delete()
    throttles, _ = WebhookThrottle.objects.filter(  # unscoped: a periodic sweep
        last_emitted_at__lt=now - timedelta(hours=1)
    ).delete()
    retired = WebhookEndpoint.objects.filter(  # unscoped: a periodic sweep
        previous_secret_expires_at__lt=now
    ).update(previous_secret="", previous_secret_expires_at=None)
    return {"events": events, "throttles": throttles, "retired_secrets": retired}
