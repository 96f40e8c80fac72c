"""Stripe, and nothing else: the only module that imports the ``stripe`` SDK.

Every call goes through one ``StripeClient`` built from settings (``STRIPE_SECRET_KEY``,
``STRIPE_API_BASE`` for both the API and meter-event addresses, ``STRIPE_TIMEOUT_S``,
``STRIPE_MAX_NETWORK_RETRIES``), returns plain dicts, and raises one of three errors:

- ``StripeUnavailable``: worth retrying later (connection refused or timed out, 429, 5xx, and
  credential errors, which an operator fixes without the data being wrong);
- ``StripeRejected``: Stripe understood and said no (4xx); retrying the same call is useless;
- ``SignatureInvalid``: a webhook whose signature or timestamp does not verify.

Creates carry an ``Idempotency-Key`` derived from what they create where a retry could repeat
them, so the SDK's own network retries and ours never make two of anything.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import stripe
from django.conf import settings

DEFAULT_API_BASE = "https://api.stripe.com"
DUPLICATE_METER_EVENT = "An event already exists with identifier"


class StripeNotConfigured(RuntimeError):
    pass


class StripeUnavailable(Exception):
    """Try again later; nothing is known to be wrong with the request."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class StripeRejected(Exception):
    """Stripe refused the request (4xx other than 429); the same request will fail again."""

    def __init__(self, message: str, *, status: int | None = None, code: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code


class SignatureInvalid(Exception):
    pass


def is_configured() -> bool:
    return bool(getattr(settings, "STRIPE_SECRET_KEY", ""))


@functools.lru_cache(maxsize=8)
def _client_for(api_key: str, base: str, timeout_s: float, retries: int) -> stripe.StripeClient:
    base = base.rstrip("/")
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": base, "meter_events": base},
        http_client=stripe.RequestsClient(timeout=timeout_s),
        max_network_retries=retries,
    )


def client() -> stripe.StripeClient:
    if not is_configured():
        raise StripeNotConfigured("STRIPE_SECRET_KEY is not set.")
    return _client_for(
        settings.STRIPE_SECRET_KEY,
        getattr(settings, "STRIPE_API_BASE", DEFAULT_API_BASE) or DEFAULT_API_BASE,
        float(getattr(settings, "STRIPE_TIMEOUT_S", 20.0)),
        int(getattr(settings, "STRIPE_MAX_NETWORK_RETRIES", 2)),
    )


def _translate(exc: stripe.StripeError) -> Exception:
    status = getattr(exc, "http_status", None)
    message = getattr(exc, "user_message", None) or str(exc)
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return StripeUnavailable(message, status=status)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return StripeUnavailable(f"Stripe refused our credentials: {message}", status=status)
    if status is None or status >= 500:
        return StripeUnavailable(message, status=status)
    return StripeRejected(message, status=status, code=getattr(exc, "code", None) or "")


def _call(fn, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except stripe.StripeError as exc:
        raise _translate(exc) from exc


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


# --- customers, checkout, portal, subscriptions ----------------------------------------------


def customer_create(*, tenant_id: str, name: str, email: str = "") -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "metadata": {"tenant_id": tenant_id}}
    if email:
        params["email"] = email
    return _plain(
        _call(
            client().v1.customers.create,
            params,
            {"idempotency_key": f"reelcast-customer-{tenant_id}"},
        )
    )


def checkout_session_create(
    *,
    customer_id: str,
    tenant_id: str,
    plan_slug: str,
    price_ids: list[str],
    metered_price_ids: list[str],
    success_url: str,
    cancel_url: str,
) -> dict[str, Any]:
    """A Checkout Session in subscription mode: licensed prices with quantity 1, metered none."""
    line_items: list[dict[str, Any]] = [{"price": p, "quantity": 1} for p in price_ids]
    line_items += [{"price": p} for p in metered_price_ids]
    metadata = {"tenant_id": tenant_id, "plan": plan_slug}
    return _plain(
        _call(
            client().v1.checkout.sessions.create,
            {
                "mode": "subscription",
                "customer": customer_id,
                "client_reference_id": tenant_id,
                "line_items": line_items,
                "success_url": success_url,
                "cancel_url": cancel_url,
                "metadata": metadata,
                "subscription_data": {"metadata": metadata},
            },
        )
    )


def portal_session_create(*, customer_id: str, return_url: str) -> dict[str, Any]:
    return _plain(
        _call(
            client().v1.billing_portal.sessions.create,
            {"customer": customer_id, "return_url": return_url},
        )
    )


def subscription_retrieve(subscription_id: str) -> dict[str, Any]:
    return _plain(_call(client().v1.subscriptions.retrieve, subscription_id))


def subscription_change_prices(
    *,
    subscription_id: str,
    plan_slug: str,
    price_ids: list[str],
    metered_price_ids: list[str],
    idempotency_key: str,
) -> dict[str, Any]:
    """Swap every item of a subscription for the new plan's prices, prorating the fee."""
    current = subscription_retrieve(subscription_id)
    items: list[dict[str, Any]] = [
        {"id": item["id"], "deleted": True} for item in (current.get("items") or {}).get("data", [])
    ]
    items += [{"price": p, "quantity": 1} for p in price_ids]
    items += [{"price": p} for p in metered_price_ids]
    return _plain(
        _call(
            client().v1.subscriptions.update,
            subscription_id,
            {
                "items": items,
                "proration_behavior": "create_prorations",
                "metadata": {"plan": plan_slug},
            },
            {"idempotency_key": idempotency_key},
        )
    )


# --- catalogue: products, prices, meters ------------------------------------------------------


def product_create(*, name: str, plan_slug: str) -> dict[str, Any]:
    return _plain(
        _call(
            client().v1.products.create,
            {"name": name, "metadata": {"plan": plan_slug}},
            {"idempotency_key": f"reelcast-product-{plan_slug}"},
        )
    )


def price_find(*, lookup_key: str) -> dict[str, Any] | None:
    found = _call(client().v1.prices.list, {"lookup_keys": [lookup_key], "limit": 1})
    data = _plain(found).get("data") or []
    return data[0] if data else None


def price_create(params: dict[str, Any]) -> dict[str, Any]:
    """Create a price; the lookup key doubles as the idempotency key (terms are in it)."""
    return _plain(
        _call(
            client().v1.prices.create,
            params,
            {"idempotency_key": f"reelcast-price-{params['lookup_key']}"},
        )
    )


def meter_find(*, event_name: str) -> dict[str, Any] | None:
    for meter in _call(
        client().v1.billing.meters.list, {"status": "active", "limit": 100}
    ).auto_paging_iter():
        if meter["event_name"] == event_name:
            return _plain(meter)
    return None


def meter_create(*, event_name: str, display_name: str) -> dict[str, Any]:
    return _plain(
        _call(
            client().v1.billing.meters.create,
            {
                "display_name": display_name,
                "event_name": event_name,
                "default_aggregation": {"formula": "sum"},
                "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
                "value_settings": {"event_payload_key": "value"},
            },
            {"idempotency_key": f"reelcast-meter-{event_name}"},
        )
    )


# --- usage ------------------------------------------------------------------------------------


def meter_event_create(
    *, event_name: str, customer_id: str, value: int, identifier: str, timestamp: int
) -> str:
    """Send one meter event; ``"created"``, or ``"duplicate"`` when Stripe already has it.

    The SDK does not retry here (the outbox does, with backoff, across task runs), so one call
    is one HTTP request. A duplicate identifier means an earlier attempt landed (a timeout that
    arrived after all): that is success, not an error.
    """
    if not isinstance(value, int):
        raise TypeError("meter event values are whole numbers")
    try:
        _call(
            client().v1.billing.meter_events.create,
            {
                "event_name": event_name,
                "identifier": identifier,
                "timestamp": timestamp,
                "payload": {"stripe_customer_id": customer_id, "value": str(value)},
            },
            {"max_network_retries": 0},
        )
    except StripeRejected as exc:
        if DUPLICATE_METER_EVENT.lower() in str(exc).lower():
            return "duplicate"
        raise
    return "created"


def meter_event_summary_total(*, meter_id: str, customer_id: str, start: int, end: int) -> int:
    """Stripe's aggregated value for one customer on one meter over [start, end) (Unix s)."""
    summaries = _call(
        client().v1.billing.meters.event_summaries.list,
        meter_id,
        {
            "customer": customer_id,
            "start_time": start,
            "end_time": end,
            "limit": 100,
        },
    )
    total = 0.0
    for summary in summaries.auto_paging_iter():
        total += float(summary["aggregated_value"])
    return round(total)


# --- events and webhooks ----------------------------------------------------------------------


def events_since(*, created_after: int, types: list[str]) -> Iterator[dict[str, Any]]:
    """Events created after ``created_after`` (Unix s) of the given types, oldest first.

    Stripe lists newest first and keeps 30 days; the whole page set is read before yielding so
    that the caller processes them in the order they happened.
    """
    params: dict[str, Any] = {"created": {"gt": created_after}, "limit": 100}
    if types:
        params["types"] = types
    events = [_plain(e) for e in _call(client().v1.events.list, params).auto_paging_iter()]
    events.sort(key=lambda e: (e["created"], e["id"]))
    yield from events


def construct_event(*, payload: bytes, signature_header: str) -> dict[str, Any]:
    """Verify a webhook's ``Stripe-Signature`` (HMAC and a 300 s timestamp tolerance)."""
    secret = getattr(settings, "STRIPE_WEBHOOK_SECRET", "")
    if not secret:
        raise SignatureInvalid("STRIPE_WEBHOOK_SECRET is not set.")
    try:
        event = stripe.Webhook.construct_event(
            payload,
            signature_header,
            secret,
            tolerance=int(getattr(settings, "STRIPE_WEBHOOK_TOLERANCE_S", 300)),
        )
    except stripe.SignatureVerificationError as exc:
        raise SignatureInvalid(str(exc)) from exc
    except (ValueError, json.JSONDecodeError) as exc:
        raise SignatureInvalid(f"Not a Stripe event: {exc}") from exc
    return _plain(event)
