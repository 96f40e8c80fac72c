"""What a publishable (``pk_``) key may do, made safe for a hostile caller.

A ``pk_`` key sits in a shop's public page and any client can send any ``Origin``, so the key and
the origin prove nothing about *who* is calling. Three limits stand between such a caller and
the shop's GPU bill:

- **Visitor tokens.** The widget first asks ``POST /api/v1/embed/visitor/`` for a visitor token:
  a fresh random visitor id, the key's id and the request's ``Origin``, signed by us (Django's
  signing, with its own salt and a time stamp) and valid for REELCAST_VISITOR_TOKEN_TTL_S. Every
  storefront job create carries it in ``X-Reelcast-Visitor``; the job's ``end_user`` is the
  visitor id from the token, never from the body, so the plan's per-end-user allowance and the
  per-visitor creation rate apply to a server-issued identity. Minting a new identity is itself
  rate-limited per key and per key + client address.
- **The storefront budget** (``ApiKey.storefront_jobs_per_hour`` / ``_per_day``): counted in
  jobs, checked with the key's row locked in the create transaction, so parallel requests can
  never pass it together.
- **The request policy**: a ``pk_`` key names a template and sets its public variables (the
  shopper's photo among them) and the shopper's own consent; everything else comes from the
  template, and a request that tries to set it is refused with the field names.

Why the budget counts jobs and not estimated GPU-seconds: a ``pk_`` key cannot set the model,
size, length or version (the request policy), so every storefront job of a template costs what
the template costs, and a job count is the GPU-seconds divided by a constant the shop already
knows. A count is exact and the same on every process, where an estimate moves with the
measured history that billing's quote learns from.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.utils import timezone

from config.problems import Problem
from config.security import rate_limit_take, throttle_rate
from tenants.models import ApiKey

VISITOR_HEADER = "X-Reelcast-Visitor"
VISITOR_SALT = "reelcast.generation.storefront.visitor"  # a namespace, not a secret
# What a publishable key may put in a job create; everything else comes from the template.
STOREFRONT_FIELDS = frozenset({"template", "values", "consent"})
BUDGET_WINDOWS = (
    ("storefront_jobs_per_hour", timedelta(hours=1), "hour"),
    ("storefront_jobs_per_day", timedelta(days=1), "24 hours"),
)


class VisitorRefused(Problem):
    """401: a storefront job create without a good visitor token for this key and origin."""

    status_code = 401
    default_code = "visitor_token_invalid"


@dataclass(frozen=True)
class IssuedVisitorToken:
    token: str
    expires_in_s: int


def _ttl_s() -> int:
    return int(settings.REELCAST_VISITOR_TOKEN_TTL_S)


def _take(key: str, scope: str, *, code: str, detail: str) -> None:
    rate = throttle_rate(scope)
    if rate is None:
        return
    wait = rate_limit_take(key, rate)
    if wait is not None:
        raise Problem(detail, code=code, status_code=429, headers={"Retry-After": str(wait)})


def visitor_token_issue(*, api_key: ApiKey, origin: str, client_address: str) -> IssuedVisitorToken:
    """A new visitor identity for one browser session on ``origin``, as a signed token.

    Issuance is counted per key + client address first (one client cannot mint identities
    without bound) and then per key (many addresses together cannot either); each refusal is a
    429 ``visitor_token_rate_limited`` with ``Retry-After``.
    """
    base = f"t:{api_key.tenant_id}:key:{api_key.pk}"
    detail = "Too many visitor tokens were requested; try again later."
    _take(
        f"visitor-token:{base}:ip:{client_address}",
        "visitor_tokens_address",
        code="visitor_token_rate_limited",
        detail=detail,
    )
    _take(
        f"visitor-token:{base}",
        "visitor_tokens_key",
        code="visitor_token_rate_limited",
        detail=detail,
    )
    payload = {"k": str(api_key.pk), "o": origin, "v": f"v_{secrets.token_hex(16)}"}
    token = signing.dumps(payload, salt=VISITOR_SALT)
    return IssuedVisitorToken(token=token, expires_in_s=_ttl_s())


def visitor_from_token(*, token: str, api_key: ApiKey, origin: str) -> str:
    """The visitor id of a genuine, unexpired token issued to this key for this origin."""
    if not token:
        raise VisitorRefused(
            f"A storefront job needs a visitor token in the {VISITOR_HEADER} header; get one "
            "from POST /api/v1/embed/visitor/.",
            code="visitor_token_required",
        )
    try:
        payload: Any = signing.loads(token, salt=VISITOR_SALT, max_age=_ttl_s())
    except signing.SignatureExpired:
        raise VisitorRefused(
            "The visitor token has expired; get a new one.", code="visitor_token_expired"
        ) from None
    except signing.BadSignature:
        raise VisitorRefused("The visitor token is not valid.") from None
    if (
        not isinstance(payload, dict)
        or payload.get("k") != str(api_key.pk)
        or payload.get("o") != origin
        or not isinstance(payload.get("v"), str)
    ):
        raise VisitorRefused("The visitor token was issued for another key or origin.")
    return payload["v"]


def visitor_job_take(*, api_key: ApiKey, visitor: str) -> None:
    """Spend one storefront job create of the visitor's rate (REELCAST_RATE_VISITOR_JOBS)."""
    _take(
        f"visitor-jobs:t:{api_key.tenant_id}:key:{api_key.pk}:{visitor}",
        "visitor_jobs",
        code="visitor_rate_limited",
        detail="You have made many videos in a short time; try again later.",
    )


def storefront_request_errors(*, body: Any, public_variables: set[str] | None) -> dict[str, str]:
    """What a publishable key tried to set that only the shop may: ``{field: message}``.

    ``public_variables`` is None before the template is known (only the top-level fields are
    checked then). A private variable and one that does not exist get the same answer, so the
    refusal says nothing about the template beyond its public description.
    """
    if not isinstance(body, dict):
        return {}
    errors = {
        name: "A publishable key cannot set this; the template decides it."
        for name in body
        if name not in STOREFRONT_FIELDS
    }
    consent = body.get("consent")
    if consent is not None and not isinstance(consent, dict):
        errors["consent"] = (
            "A storefront gives the shopper's own consent as {consented_by, subject_name}, "
            "not a consent record id."
        )
    values = body.get("values")
    if public_variables is not None and isinstance(values, dict):
        for name in values:
            if name not in public_variables:
                errors[f"values.{name}"] = "Not a variable a storefront may set."
    return errors


def storefront_budget_take(*, api_key: ApiKey, now: datetime | None = None) -> None:
    """Refuse a storefront job over its key's hourly or daily budget (429, ``Retry-After``).

    Must run inside the transaction that creates the job, before the job row is written: the
    key's row is locked (``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the IMMEDIATE
    transaction already holds the one write lock), so concurrent creates on one key count one
    after another and each sees the jobs the previous ones committed. The budget is read from
    the locked row, so a change made a moment ago applies at once.
    """
    from generation.models import Job

    locked = (
        ApiKey.objects.select_for_update()
        .filter(pk=api_key.pk)
        .values("storefront_jobs_per_hour", "storefront_jobs_per_day")
        .first()
    )
    if locked is None:
        return
    now = now or timezone.now()
    jobs = Job.objects.for_tenant(api_key.tenant).filter(created_by_key_id=api_key.pk)
    for field, window, label in BUDGET_WINDOWS:
        limit = locked[field]
        if limit is None:
            continue
        in_window = jobs.filter(created_at__gt=now - window)
        count = in_window.count()
        if count < limit:
            continue
        if limit == 0:
            frees_at = now + window
        else:
            oldest_counted = in_window.order_by("-created_at").values_list("created_at", flat=True)[
                limit - 1
            ]
            frees_at = oldest_counted + window
        retry_after = max(1, math.ceil((frees_at - now).total_seconds()))
        raise Problem(
            f"This storefront has made its {limit} videos for this {label}; try again later.",
            code="storefront_budget_exceeded",
            status_code=429,
            headers={"Retry-After": str(retry_after)},
        )
