"""Request guards that must run before a view reads anything, the security headers every
response carries, and the request id every log line of a request carries."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from config.logging import log_context
from config.problems import problem_response
from config.security import (
    CspNonce,
    csp_for,
    csp_header_value,
    login_attempt_refund,
    login_attempt_take,
    password_reset_attempt_take,
    path_matches,
)

access_logger = logging.getLogger("reelcast.request")
_CSP_HEADERS = ("Content-Security-Policy", "Content-Security-Policy-Report-Only")

# What an incoming X-Request-ID may be: a proxy's or a client's id is kept when it looks like
# an id (a UUID, a hex or base64url token, ALB/Heroku-style ids), and replaced otherwise, so a
# log line can never be forged or bloated through this header.
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+-]{7,127}")


class RequestContextMiddleware:
    """Give each request an id (the caller's X-Request-ID when sane, else a new one), bind it to
    every log record made while the request runs, echo it as X-Request-ID, and (with
    REELCAST_ACCESS_LOG) log one line per request with its status, time and tenant."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        started = time.perf_counter()
        with log_context(request_id=request_id):
            response = self.get_response(request)
            if settings.REELCAST_ACCESS_LOG:
                # DRF copies its authentication onto the Django request, so the tenant of an
                # API call is known here after the view has run
                tenant = getattr(getattr(request, "auth", None), "tenant", None)
                access_logger.info(
                    "%s %s %s",
                    request.method,
                    request.get_full_path(),
                    response.status_code,
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                        "tenant_id": str(tenant.pk) if tenant is not None else None,
                    },
                )
        response["X-Request-ID"] = request_id
        return response


class SecurityHeadersMiddleware:
    """Content-Security-Policy and Permissions-Policy on every response.

    Django's SecurityMiddleware already sends nosniff, Referrer-Policy, COOP and HSTS, and
    XFrameOptionsMiddleware sends X-Frame-Options: DENY; this one adds what Django 5.2 lacks.
    Paths under REELCAST_FRAMEABLE_PATHS (the embed widget, /embed/) lose X-Frame-Options, get
    ``frame-ancestors`` from REELCAST_EMBED_FRAME_ANCESTORS and may be loaded cross-origin. A
    view may set ``response.csp_replace = {"frame-ancestors": [...]}`` (the widget: the key's
    allowed origins) to replace directives for its own response.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.csp_nonce = CspNonce()  # type: ignore[attr-defined]
        response = self.get_response(request)
        frameable = path_matches(request.path, settings.REELCAST_FRAMEABLE_PATHS)
        if frameable:
            del response["X-Frame-Options"]
            response.setdefault("Cross-Origin-Resource-Policy", "cross-origin")
        # Django's own debug pages (DEBUG only) are styled and scripted inline.
        debug_page = settings.DEBUG and response.status_code >= 400
        if settings.REELCAST_CSP and not debug_page and not _has_csp(response):
            policy = csp_for(request, replace=getattr(response, "csp_replace", None))
            header = _CSP_HEADERS[1] if settings.REELCAST_CSP_REPORT_ONLY else _CSP_HEADERS[0]
            response[header] = csp_header_value(policy)
        if settings.REELCAST_PERMISSIONS_POLICY:
            response.setdefault("Permissions-Policy", settings.REELCAST_PERMISSIONS_POLICY)
        return response


def _has_csp(response: HttpResponse) -> bool:
    return any(name in response for name in _CSP_HEADERS)


def _too_many(message: str, wait: int) -> HttpResponse:
    response = HttpResponse(f"{message}\n", status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(wait)
    return response


class LoginRateLimitMiddleware:
    """Sign-in forms (REELCAST_LOGIN_PATHS) take at most the ``login`` rate of failed POSTs per
    client address and per username tried; over it, 429 with Retry-After before the password
    is checked. A sign-in that succeeds (the view redirects) gives its attempt back.

    Password-reset requests (REELCAST_PASSWORD_RESET_PATHS) take at most the
    ``password_reset`` rate per client address and per email address, before any email is
    looked up or sent."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return self.get_response(request)
        if request.path_info in getattr(settings, "REELCAST_PASSWORD_RESET_PATHS", ()):
            wait = password_reset_attempt_take(request, now=time.time())
            if wait is None:
                return self.get_response(request)
            return _too_many(
                f"Too many password reset requests. Try again in {wait} seconds.", wait
            )
        if request.path_info not in settings.REELCAST_LOGIN_PATHS:
            return self.get_response(request)
        now = time.time()
        wait = login_attempt_take(request, now=now)
        if wait is not None:
            return _too_many(f"Too many sign-in attempts. Try again in {wait} seconds.", wait)
        response = self.get_response(request)
        if response.status_code in (301, 302, 303):
            login_attempt_refund(request, now=now)
        return response


DETECT_API_PATH = "/api/v1/detect/"
DETECT_PAGE_PATH = "/detect/"


class BodySizeLimitMiddleware:
    """Refuse API bodies over REELCAST_MAX_BODY_BYTES with a 413 before reading them; public
    detection uploads (the API and the page) over REELCAST_DETECT_MAX_BYTES likewise."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == DETECT_PAGE_PATH and request.method == "POST":
            limit = settings.REELCAST_DETECT_MAX_BYTES
            length = _content_length(request)
            if length is None:
                return HttpResponse(
                    "Content-Length is not a number.\n",
                    status=400,
                    content_type="text/plain; charset=utf-8",
                )
            if length > limit:  # plain text: the page cannot render a form for an unread body
                return HttpResponse(
                    f"The file is too large: at most {limit // 2**20} MiB.\n",
                    status=413,
                    content_type="text/plain; charset=utf-8",
                )
            return self.get_response(request)
        if request.path.startswith("/api/"):
            raw = request.META.get("CONTENT_LENGTH") or "0"
            try:
                length = int(raw)
            except ValueError:
                return problem_response(
                    400, detail="Content-Length is not a number.", code="bad_content_length"
                )
            limit = (
                settings.REELCAST_DETECT_MAX_BYTES
                if request.path_info == DETECT_API_PATH
                else settings.REELCAST_MAX_BODY_BYTES
            )
            if length > limit:
                return problem_response(
                    413,
                    detail=f"The body is {length} bytes; the limit is {limit} bytes.",
                    code="payload_too_large",
                )
        return self.get_response(request)


def _content_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "0")
    except ValueError:
        return None


class ProbeMiddleware:
    """/healthz, /readyz and /metrics answer before host validation.

    Load balancers and Prometheus reach pods by IP, which is not in ALLOWED_HOSTS; these
    endpoints reveal no tenant data (metrics are platform totals, and may require a token).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path == "/healthz":
            return JsonResponse({"status": "ok"})
        if path == "/readyz":
            return _readiness()
        if path == "/metrics":
            if not _metrics_allowed(request):
                return HttpResponse(status=401, headers={"WWW-Authenticate": "Bearer"})
            from generation.metrics import render

            return HttpResponse(render(), content_type="text/plain; version=0.0.4")
        return self.get_response(request)


def _metrics_allowed(request: HttpRequest) -> bool:
    """With REELCAST_METRICS_TOKEN, the bearer token (compared in constant time); without one,
    only a caller on this host (a sidecar, a node-local agent) in production, anyone under
    DJANGO_DEBUG. Queue depths and job counts are platform totals, but still nobody's business."""
    token = settings.REELCAST_METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())
    if settings.DEBUG:
        return True
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _readiness() -> JsonResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any database failure means not ready
        checks["database"] = f"unavailable: {exc}"
    if settings.REDIS_URL:
        try:
            import redis

            redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).ping()
            checks["broker"] = "ok"
        except Exception as exc:  # any broker failure means not ready
            checks["broker"] = f"unavailable: {exc}"
    else:
        checks["broker"] = "ok (database)"
    ready = all(value.startswith("ok") for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503
    )
