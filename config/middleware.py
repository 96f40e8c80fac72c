"""Request guards that must run before a view reads anything."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from config.problems import problem_response


class BodySizeLimitMiddleware:
    """Refuse API bodies over REELCAST_MAX_BODY_BYTES with a 413 before reading them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            raw = request.META.get("CONTENT_LENGTH") or "0"
            try:
                length = int(raw)
            except ValueError:
                return problem_response(
                    400, detail="Content-Length is not a number.", code="bad_content_length"
                )
            limit = settings.REELCAST_MAX_BODY_BYTES
            if length > limit:
                return problem_response(
                    413,
                    detail=f"The body is {length} bytes; the limit is {limit} bytes.",
                    code="payload_too_large",
                )
        return self.get_response(request)


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
            token = settings.REELCAST_METRICS_TOKEN
            if token and request.headers.get("Authorization") != f"Bearer {token}":
                return HttpResponse(status=401)
            from generation.metrics import render

            return HttpResponse(render(), content_type="text/plain; version=0.0.4")
        return self.get_response(request)


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
