"""Exact-origin CORS for the storefront widget's API calls.

The widget runs on a shop's page (another origin) and calls a few API paths with a publishable
key; browsers let it read the answers only when they carry ``Access-Control-Allow-Origin``.
This middleware sends that header, naming the one origin, and only where a publishable key
names that origin:

- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) carries no Authorization
  header, so it is allowed when *some* live publishable key lists the origin; otherwise it is
  refused (403, no CORS headers);
- an actual response gets the header only when the request's own key lists the origin (or, for
  the live status stream opened with a job token, the key that created the job does; for a
  signed download link, a live publishable key of the tenant that owns the file does).

Never ``*`` (but for a job-token stream of a job that a server made: see generation/live.py),
never an origin no key lists, never ``Access-Control-Allow-Credentials``: the key or token in
the request is the credential, and the widget sends no cookies. ``Vary: Origin`` is on every
response of these paths, so a cache never hands one shop's answer to another. The literal
origin ``null`` (sandboxed frames, ``file:``) is never allowed: any page can claim it.

The server-side checks stay where they are (a publishable key used from an unlisted origin is
a 403 ``origin_not_allowed``, or a 404 for template descriptions); CORS is the browser's half.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from config.problems import problem_response

_UUID = r"[0-9a-fA-F-]{36}"
# path -> the methods a storefront may use there
CORS_PATHS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"^/api/v1/embed/templates/[^/]+/$"), ("GET",)),
    (re.compile(r"^/api/v1/embed/visitor/$"), ("POST",)),
    (re.compile(r"^/api/v1/jobs/$"), ("POST",)),
    (re.compile(rf"^/api/v1/jobs/{_UUID}/$"), ("GET",)),
    (re.compile(rf"^/api/v1/jobs/{_UUID}/events-token/$"), ("POST",)),
    (re.compile(rf"^/api/v1/jobs/{_UUID}/download/$"), ("GET",)),
    (re.compile(rf"^/api/v1/jobs/(?P<job_id>{_UUID})/events/$"), ("GET",)),
    (re.compile(r"^/dl/(?P<token>[^/]+)/[^/]+$"), ("GET", "HEAD")),
)
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Reelcast-Visitor"
DOWNLOAD_ALLOW_HEADERS = "Range"
EXPOSE_HEADERS = "Retry-After, X-Request-ID"
DOWNLOAD_EXPOSE_HEADERS = "Content-Range, Accept-Ranges, Content-Length"
PREFLIGHT_MAX_AGE_S = 600


def _route(path: str) -> tuple[re.Match[str], tuple[str, ...]] | None:
    for pattern, methods in CORS_PATHS:
        match = pattern.match(path)
        if match:
            return match, methods
    return None


def _live_publishable_keys():
    from tenants.models import ApiKey

    # unscoped: a preflight names no tenant; only origins are read
    return ApiKey.objects.filter(kind=ApiKey.Kind.PUBLISHABLE, revoked_at__isnull=True)


def origin_is_listed(origin: str, *, tenant_id: object = None) -> bool:
    """Whether a live publishable key (of ``tenant_id``, when given) lists ``origin``."""
    if not origin or origin == "null":
        return False
    keys = _live_publishable_keys()
    if tenant_id is not None:
        keys = keys.filter(tenant_id=tenant_id)
    if connection.features.supports_json_field_contains:  # PostgreSQL: one containment query
        return keys.filter(allowed_origins__contains=[origin]).exists()
    lists = keys.values_list("allowed_origins", flat=True)
    return any(isinstance(listed, list) and origin in listed for listed in lists.iterator())


def _request_key(request: HttpRequest):
    """The API key the request authenticated with: DRF's result when the view ran, else the
    Authorization header checked here (a 413 or 401 answered before the view)."""
    api_key = getattr(getattr(request, "auth", None), "api_key", None)
    if api_key is not None:
        return api_key
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip().startswith("pk_"):
        return None
    from tenants.services import apikey_authenticate

    return apikey_authenticate(raw_key=raw.strip())


def _key_allows(api_key, origin: str) -> bool:
    return (
        api_key is not None
        and api_key.is_publishable
        and api_key.revoked_at is None
        and origin != "null"
        and origin in (api_key.allowed_origins or [])
    )


def _job_token_origin(request: HttpRequest, job_id: str, origin: str) -> bool | None:
    """For a stream opened with ``?token=``: True/False when the job's creating publishable
    key allows/refuses the origin, None when no publishable key made the job (or the token
    is not good: the view answers that)."""
    from generation.live import TokenRefused, job_token_check
    from generation.models import Job

    try:
        job_token_check(request.GET.get("token", ""), job_id=job_id)
    except TokenRefused:
        return None
    # unscoped: the signed token names this job
    job = Job.objects.filter(pk=job_id).select_related("created_by_key").first()
    api_key = job.created_by_key if job is not None else None
    if api_key is None or not api_key.is_publishable:
        return None
    return _key_allows(api_key, origin)


def _download_origin(token: str, origin: str) -> bool:
    from django.http import Http404

    from generation.delivery import resolve_token

    try:
        key = resolve_token(token)
    except Http404:
        return False
    tenant_id = key.split("/")[1]  # resolve_token checked the key is under tenants/<id>/
    return origin_is_listed(origin, tenant_id=tenant_id)


class StorefrontCorsMiddleware:
    """Answer the widget's preflights and add exact-origin CORS headers (see the module)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        route = _route(request.path_info)
        if route is None:
            return self.get_response(request)
        match, methods = route
        origin = request.headers.get("Origin", "")
        download = "token" in match.groupdict()
        if (
            request.method == "OPTIONS"
            and origin
            and "Access-Control-Request-Method" in request.headers
        ):
            return self._preflight(origin, methods, download=download)
        response = self.get_response(request)
        patch_vary_headers(response, ["Origin"])
        if not origin:
            return response
        if download:
            allowed: bool | None = _download_origin(match.group("token"), origin)
        else:
            allowed = _key_allows(_request_key(request), origin)
            if not allowed and match.groupdict().get("job_id") and "token" in request.GET:
                allowed = _job_token_origin(request, match.group("job_id"), origin)
                if allowed is None:  # a server's job: generation/live.py's own header stands
                    return response
        if allowed:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Expose-Headers"] = (
                f"{EXPOSE_HEADERS}, {DOWNLOAD_EXPOSE_HEADERS}" if download else EXPOSE_HEADERS
            )
        else:
            for name in ("Access-Control-Allow-Origin", "Access-Control-Expose-Headers"):
                if name in response:
                    del response[name]
        return response

    def _preflight(self, origin: str, methods: tuple[str, ...], *, download: bool) -> HttpResponse:
        if not origin_is_listed(origin):
            response: HttpResponse = problem_response(
                403,
                detail="No publishable key allows this origin.",
                code="origin_not_allowed",
            )
        else:
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = ", ".join((*methods, "OPTIONS"))
            response["Access-Control-Allow-Headers"] = (
                f"{ALLOW_HEADERS}, {DOWNLOAD_ALLOW_HEADERS}" if download else ALLOW_HEADERS
            )
            response["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
        patch_vary_headers(
            response, ["Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"]
        )
        return response
