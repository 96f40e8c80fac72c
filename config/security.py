"""The Content-Security-Policy and rate limits shared by every web process.

Imported by DRF's settings (the throttle), so nothing here may import ``rest_framework.views``
(the API docs views that run under the policy are in ``config/docs.py``).

Rate limits count in the default cache (Redis, or the database cache, in production; see
``CACHES`` in settings), in fixed windows: ``cache.add`` then ``cache.incr`` is one atomic
``SET NX`` + ``INCR`` on Redis, so concurrent requests on many processes cannot both take the
last slot. Each key's window starts at its own offset, so clients do not all come back at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import secrets
import time
import zlib

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

# --- Content-Security-Policy ------------------------------------------------------------------

CSP_NONCE_DIRECTIVES = ("script-src", "style-src")


class CspNonce:
    """A per-request nonce, made on first use: the policy names it only for responses whose
    templates used it (``{{ request.csp_nonce }}``), so every other page keeps the plain
    ``'self'`` policy."""

    def __init__(self) -> None:
        self._value: str | None = None

    @property
    def used(self) -> bool:
        return self._value is not None

    def __str__(self) -> str:
        if self._value is None:
            self._value = secrets.token_urlsafe(18)
        return self._value


def path_matches(path: str, prefixes: list[str] | tuple[str, ...]) -> bool:
    return any(path.startswith(prefix) for prefix in prefixes)


def csp_for(
    request: HttpRequest, *, replace: dict[str, list[str]] | None = None
) -> dict[str, list[str]]:
    """The policy for one response: the site policy, the additions for its path, its nonce,
    the embed widget's framing rule, then what the view replaced (``response.csp_replace``)."""
    policy = {key: list(sources) for key, sources in settings.REELCAST_CSP.items()}
    for prefix, additions in settings.REELCAST_CSP_PATH_ADDITIONS.items():
        if request.path.startswith(prefix):
            for key, sources in additions.items():
                policy[key] = [*policy.get(key, []), *sources]
    nonce = getattr(request, "csp_nonce", None)
    if isinstance(nonce, CspNonce) and nonce.used:
        for key in CSP_NONCE_DIRECTIVES:
            # a directive left out falls back to default-src: start from that, not from more
            policy[key] = [*policy.get(key, policy.get("default-src", [])), f"'nonce-{nonce}'"]
    if path_matches(request.path, settings.REELCAST_FRAMEABLE_PATHS):
        policy["frame-ancestors"] = list(settings.REELCAST_EMBED_FRAME_ANCESTORS)
    policy.update(replace or {})
    return policy


def csp_header_value(policy: dict[str, list[str]]) -> str:
    return "; ".join(" ".join([key, *sources]) for key, sources in policy.items())


# --- who is calling ---------------------------------------------------------------------------


def client_ip(request: HttpRequest) -> str:
    """The caller's address: REMOTE_ADDR, or with ``REELCAST_PROXY_COUNT`` = n trusted proxies
    in front, the n-th address from the right of X-Forwarded-For (what the outermost of our
    proxies saw). Entries further left are the client's to invent, so they are never used."""
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    count = settings.REELCAST_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if count <= 0 or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return hops[-min(count, len(hops))] if hops else remote


def rate_principal(request) -> str:
    """Whose budget a request spends, as a cache key part that carries the tenant id.

    A secret key or a signed-in user has its own budget. A publishable key is public (it sits
    in a storefront's page), so it is counted per key *and* address: one shopper cannot spend
    the whole storefront's budget.
    """
    context = getattr(request, "auth", None)
    tenant = getattr(context, "tenant", None)
    api_key = getattr(context, "api_key", None)
    if tenant is not None and api_key is not None:
        principal = f"t:{tenant.pk}:key:{api_key.pk}"
        if api_key.is_publishable:
            principal += f":ip:{client_ip(request)}"
        return principal
    user = getattr(request, "user", None)
    if getattr(user, "is_authenticated", False) and getattr(user, "pk", None) is not None:
        return f"t:{tenant.pk}:user:{user.pk}" if tenant is not None else f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


# --- counting ---------------------------------------------------------------------------------

_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"120/min"`` -> (120, 60), the way DRF reads its rates (the period's first letter)."""
    count, _, period = rate.partition("/")
    return int(count), _PERIOD_SECONDS[period[0]]


def _window(key: str, window: int, now: float) -> tuple[str, float]:
    """The counter's cache key for the window holding ``now``, and when that window ends."""
    offset = zlib.crc32(key.encode()) % window
    slot = int((now + offset) // window)
    return f"ratelimit:{key}:{window}:{slot}", (slot + 1) * window - offset


def rate_limit_take(key: str, rate: str, *, now: float | None = None) -> int | None:
    """Spend one request of ``rate`` from ``key``'s budget: ``None`` when allowed, else the
    whole seconds (at least 1) until the window that refused it ends."""
    limit, window = parse_rate(rate)
    now = time.time() if now is None else now
    cache_key, ends = _window(key, window, now)
    # add() is SET NX: only the first request of a window creates the counter
    cache.add(cache_key, 0, timeout=window + 1)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # the counter expired between add() and incr()
        cache.set(cache_key, 1, timeout=window + 1)
        count = 1
    if count <= limit:
        return None
    return max(1, math.ceil(ends - now))


def rate_limit_refund(key: str, rate: str, *, now: float) -> None:
    """Give back a request taken at ``now`` (one that turned out not to count)."""
    cache_key, _ = _window(key, parse_rate(rate)[1], now)
    with contextlib.suppress(ValueError):  # the window has ended: nothing to give back
        cache.decr(cache_key)


def throttle_rate(scope: str) -> str | None:
    return api_settings.DEFAULT_THROTTLE_RATES.get(scope)


def throttle_scope(request, view) -> str:
    """``anon`` for callers without credentials; else the view's ``throttle_scope``, the scope
    named for ``"<basename>.<action>"`` in REELCAST_THROTTLE_ACTIONS (job creation:
    ``jobs_create``), or ``read`` / ``write`` by method."""
    principal_known = getattr(request, "auth", None) is not None or getattr(
        getattr(request, "user", None), "is_authenticated", False
    )
    if not principal_known:
        return "anon"
    explicit = getattr(view, "throttle_scope", None)
    if explicit:
        return explicit
    action = f"{getattr(view, 'basename', '')}.{getattr(view, 'action', '')}"
    mapped = settings.REELCAST_THROTTLE_ACTIONS.get(action)
    if mapped:
        return mapped
    return "read" if request.method in SAFE_METHODS else "write"


class ScopedPrincipalThrottle(BaseThrottle):
    """DRF's throttle for every API view: one budget per scope and principal.

    A refused request becomes DRF's ``Throttled`` (429 + Retry-After), which
    ``config.problems`` turns into a problem document with ``code: "rate_limited"``.
    """

    def __init__(self) -> None:
        self.wait_s: int | None = None

    def allow_request(self, request, view) -> bool:
        scope = throttle_scope(request, view)
        rate = throttle_rate(scope)
        if rate is None:
            return True
        self.wait_s = rate_limit_take(f"api:{scope}:{rate_principal(request)}", rate)
        return self.wait_s is None

    def wait(self) -> int | None:
        return self.wait_s


def _login_keys(request: HttpRequest) -> list[str]:
    """The caller's address, and the username tried (hashed: cache keys hold no names)."""
    keys = [f"login:ip:{client_ip(request)}"]
    username = (request.POST.get("username") or "").strip().lower()
    if username:
        keys.append(f"login:user:{hashlib.sha256(username.encode()).hexdigest()[:32]}")
    return keys


def login_attempt_take(request: HttpRequest, *, now: float) -> int | None:
    """Spend a sign-in attempt from the caller's address and from the username tried, before
    the password is checked (so parallel guesses cannot slip past the count); the seconds to
    wait when either budget is spent."""
    rate = throttle_rate("login")
    if rate is None:
        return None
    waits = [rate_limit_take(key, rate, now=now) for key in _login_keys(request)]
    refused = [wait for wait in waits if wait is not None]
    return max(refused) if refused else None


def password_reset_attempt_take(request: HttpRequest, *, now: float) -> int | None:
    """Spend a password-reset request from the caller's address and from the email address
    asked for (hashed), whether or not an account has it; the seconds to wait when either
    budget is spent. Every request counts: the form answers the same either way, so there is
    no success to give back, and the cap keeps the form from flooding an inbox."""
    rate = throttle_rate("password_reset")
    if rate is None:
        return None
    keys = [f"password-reset:ip:{client_ip(request)}"]
    email = (request.POST.get("email") or "").strip().lower()
    if email:
        keys.append(f"password-reset:email:{hashlib.sha256(email.encode()).hexdigest()[:32]}")
    waits = [rate_limit_take(key, rate, now=now) for key in keys]
    refused = [wait for wait in waits if wait is not None]
    return max(refused) if refused else None


def login_attempt_refund(request: HttpRequest, *, now: float) -> None:
    """A sign-in that succeeded does not count against either budget."""
    rate = throttle_rate("login")
    if rate is not None:
        for key in _login_keys(request):
            rate_limit_refund(key, rate, now=now)
