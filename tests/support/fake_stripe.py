"""A Stripe-compatible HTTP server for tests, on 127.0.0.1 at a random port.

The real ``stripe`` SDK talks to it over HTTP (``StripeClient(base_addresses=...)``), so the
request encoding, headers, retries, timeouts and error classes under test are the SDK's own.
None of the public fakes covers Billing Meters (localstripe has customers, plans and invoices
but no Prices, meters or idempotency keys; stripe-stateful-mock has no meters, invoices or
webhooks), hence this.

Faithful to Stripe's documented behaviour for what Reelcast uses:

- form-encoded bodies with bracketed keys (``items[0][price]``), ``Authorization: Bearer``,
  JSON objects with ``id`` and ``object``, list objects with ``has_more`` and cursor paging,
  and error bodies ``{"error": {"type", "message", "code", "param"}}`` with Stripe's status codes;
- ``Idempotency-Key``: a POST repeated with the same key replays the first answer (header
  ``Idempotent-Replayed: true``); the same key with other parameters is an ``idempotency_error``;
  requests that fail before running (injected 5xx/429) are not remembered, as at Stripe;
- customers, products, prices (``recurring.meter``, graduated tiers, ``unit_amount_decimal``,
  unique ``lookup_key``), billing meters (sum/count/last), meter events (``identifier`` unique
  for 24 h: a duplicate is a 400 "An event already exists with identifier …" with
  ``stripe-should-retry: false``; timestamps from 35 days back to 5 minutes ahead; whole-number
  values; an unknown customer is accepted but never aggregated, as Stripe reports those
  asynchronously), meter event summaries, checkout and portal sessions, subscriptions (the
  billing period on the items, as since API 2025-03-31), invoices and the events list;
- events are delivered as webhooks signed like Stripe's: ``Stripe-Signature: t=<unix>,
  v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` (computed here with hmac, not the SDK).

Test controls: ``fail_next``, ``slow_next`` (the answer is computed, then delayed: a client that
times out has still had its request applied), ``down``/``up``, ``add_phantom_usage`` (drift in
summaries), ``advance_clock``, and the payment lifecycle (``complete_checkout``,
``invoice_create``, ``invoice_payment_fail``, ``invoice_pay``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import queue
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.loopback import LoopbackServer, QuietHandler

API_VERSION = "2026-10-28.endive"
IDENTIFIER_TTL_S = 24 * 3600
PAST_WINDOW_S = 35 * 24 * 3600
FUTURE_WINDOW_S = 5 * 60
PERIOD_S = 30 * 24 * 3600


class StripeError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                k: v
                for k, v in {
                    "type": type,
                    "message": message,
                    "code": code,
                    "param": param,
                }.items()
                if v is not None
            }
        }
        self.headers = headers or {}


def _missing(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def _no_such(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


# --- form decoding --------------------------------------------------------------------------

_BRACKETS = re.compile(r"\[([^\]]*)\]")


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    return node


def decode_form(raw: str) -> dict[str, Any]:
    """``a[b][0][c]=v`` → ``{"a": {"b": [{"c": "v"}]}}``; ``a[]=x`` appends."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        base = key.split("[", 1)[0]
        parts = [base, *_BRACKETS.findall(key[len(base) :])]
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":  # a[] : append
                part = str(sum(1 for k in node if k.isdigit()))
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _int(value: Any, param: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StripeError(400, f"Invalid integer: {value}", param=param) from None


def _bool(value: Any) -> bool:
    return str(value).lower() == "true"


# --- the server -------------------------------------------------------------------------------


class FakeStripe(LoopbackServer):
    poll_interval = 0.02
    thread_name_prefix = "fake-stripe"

    def __init__(
        self, *, api_key: str = "sk_test_fake_reelcast", webhook_secret: str = "whsec_fake_reelcast"
    ):
        super().__init__()
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.lock = threading.RLock()
        self.clock_offset = 0.0
        self.objects: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.meter_events: list[dict[str, Any]] = []  # accepted, in order
        self.meter_event_errors: list[dict[str, Any]] = []  # accepted, never aggregated
        self.identifiers: dict[str, float] = {}
        self.events: list[dict[str, Any]] = []
        self.idempotency: dict[str, tuple[str, int, bytes]] = {}
        self.requests: list[dict[str, Any]] = []
        self.phantom: list[dict[str, Any]] = []
        self.deliveries: list[tuple[str, int | str]] = []
        self.webhook_url = ""
        self.webhooks_paused = False
        self._faults: list[dict[str, Any]] = []
        self._latency: list[dict[str, Any]] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.port = 0
        self._deliverer = threading.Thread(
            target=self._deliver_loop, daemon=True, name="fake-stripe-webhooks"
        )
        self._deliverer.start()

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on, or last listened on, or will bind at the next start (0: a
        free one)."""
        return self._port

    @port.setter
    def port(self, value: int) -> None:
        self._port = value

    @property
    def url(self) -> str:
        return self.address()

    def _handler_class(self) -> type[_Handler]:
        fake = self

        class Handler(_Handler):
            server_state = fake

        return Handler

    def start(self) -> FakeStripe:
        self.port = self._serve(self.port)
        return self

    def down(self) -> None:
        """Stop answering: connections to the port are refused until ``up()``."""
        self._shutdown()

    def up(self) -> None:
        if self._server is None:
            self.start()

    def close(self) -> None:
        self.down()
        self._queue.put(None)

    # --- controls -------------------------------------------------------------------------

    def now(self) -> int:
        return int(time.time() + self.clock_offset)

    def advance_clock(self, seconds: float) -> None:
        self.clock_offset += seconds

    def fail_next(self, count: int, *, status: int = 500, path: str = "") -> None:
        """Answer the next ``count`` requests (whose path starts with ``path``) with an error,
        before doing anything."""
        with self.lock:
            self._faults.append({"remaining": count, "status": status, "path": path})

    def slow_next(self, count: int, *, seconds: float, path: str = "") -> None:
        """Apply the next ``count`` matching requests, then wait ``seconds`` before answering."""
        with self.lock:
            self._latency.append({"remaining": count, "seconds": seconds, "path": path})

    def add_phantom_usage(
        self, *, meter_id: str, customer_id: str, value: float, timestamp: int | None = None
    ) -> None:
        """Usage that Stripe counts in summaries but we never sent: drift."""
        with self.lock:
            self.phantom.append(
                {
                    "meter": meter_id,
                    "customer": customer_id,
                    "value": value,
                    "timestamp": timestamp or self.now(),
                }
            )

    def set_webhook(self, url: str) -> None:
        self.webhook_url = url

    def deliver(self, event_id: str) -> int | str:
        """Send one event to the webhook URL now (again, if it was sent before)."""
        return self._send(event_id)

    def flush_webhooks(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._queue.unfinished_tasks:
            raise TimeoutError("webhook deliveries still pending")

    def request_count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r["method"] == method and r["path"] == path)

    def events_of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == event_type]

    # --- payment lifecycle (what a customer or Stripe's billing engine would do) ---------

    def complete_checkout(self, session_id: str) -> dict[str, Any]:
        """The customer pays on the hosted page: a subscription starts and its first invoice
        is paid; events follow in Stripe's order."""
        with self.lock:
            session = self._get("checkout.session", session_id)
            now = self.now()
            sub_id = self._id("sub")
            items = []
            for line in session["_line_items"]:
                price = self._get("price", line["price"])
                item = {
                    "id": self._id("si"),
                    "object": "subscription_item",
                    "created": now,
                    "price": copy.deepcopy(price),
                    "subscription": sub_id,
                    "current_period_start": now,
                    "current_period_end": now + PERIOD_S,
                    "metadata": {},
                }
                if price["recurring"]["usage_type"] == "licensed":
                    item["quantity"] = int(line.get("quantity", 1))
                items.append(item)
            subscription = {
                "id": sub_id,
                "object": "subscription",
                "customer": session["customer"],
                "status": "active",
                "created": now,
                "start_date": now,
                "billing_cycle_anchor": now,
                "cancel_at_period_end": False,
                "canceled_at": None,
                "ended_at": None,
                "livemode": False,
                "latest_invoice": None,
                "metadata": dict(session.get("_subscription_metadata") or {}),
                "items": {
                    "object": "list",
                    "data": items,
                    "has_more": False,
                    "url": f"/v1/subscription_items?subscription={sub_id}",
                },
            }
            self.objects["subscription"][sub_id] = subscription
            session.update(status="complete", payment_status="paid", subscription=sub_id)
            self._emit("customer.subscription.created", subscription)
            self._emit("checkout.session.completed", session)
            invoice = self._invoice_for(subscription, period_start=now, period_end=now, usage=False)
            self._finalize(invoice)
            self._pay(invoice)
            return copy.deepcopy(subscription)

    def invoice_create(self, subscription_id: str) -> dict[str, Any]:
        """Close the subscription's current period: an invoice for the fee and the metered
        usage of the period (graduated tiers applied), finalized; the period moves on."""
        with self.lock:
            subscription = self._get("subscription", subscription_id)
            first = subscription["items"]["data"][0]
            start, end = first["current_period_start"], first["current_period_end"]
            invoice = self._invoice_for(
                subscription, period_start=start, period_end=end, usage=True
            )
            for item in subscription["items"]["data"]:
                item["current_period_start"], item["current_period_end"] = end, end + PERIOD_S
            self._finalize(invoice)
            return copy.deepcopy(invoice)

    def invoice_payment_fail(self, invoice_id: str) -> None:
        with self.lock:
            invoice = self._get("invoice", invoice_id)
            invoice["attempt_count"] += 1
            invoice["attempted"] = True
            self._emit("invoice.payment_failed", invoice)
            subscription = self.objects["subscription"].get(invoice["_subscription"])
            if subscription and subscription["status"] == "active":
                subscription["status"] = "past_due"
                self._emit(
                    "customer.subscription.updated", subscription, previous={"status": "active"}
                )

    def invoice_pay(self, invoice_id: str) -> None:
        with self.lock:
            self._pay(self._get("invoice", invoice_id))

    # --- internals: objects and events ------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(7)}"

    def _get(self, kind: str, object_id: str, param: str = "id") -> dict[str, Any]:
        found = self.objects[kind].get(object_id)
        if found is None:
            raise _no_such(kind.split(".")[-1].replace("_", " "), object_id, param)
        return found

    def _public(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_")}

    def _emit(
        self, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"object": self._public(obj)}
        if previous:
            data["previous_attributes"] = previous
        event = {
            "id": self._id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        self.events.append(event)
        if self.webhook_url and not self.webhooks_paused:
            self._queue.put(event["id"])
        return event

    def _invoice_for(
        self, subscription: dict[str, Any], *, period_start: int, period_end: int, usage: bool
    ) -> dict[str, Any]:
        lines = []
        total = Decimal(0)
        for item in subscription["items"]["data"]:
            price = self.objects["price"][item["price"]["id"]]
            if price["recurring"]["usage_type"] == "licensed":
                amount = Decimal(price["unit_amount"] or 0) * item.get("quantity", 1)
                quantity = item.get("quantity", 1)
            elif usage:
                meter = self.objects["billing.meter"][price["recurring"]["meter"]]
                quantity = int(
                    self._aggregate(meter, subscription["customer"], period_start, period_end)
                )
                amount = _price_amount(price, quantity)
            else:
                continue
            total += amount
            lines.append(
                {
                    "price": price["id"],
                    "quantity": quantity,
                    "amount": int(amount.to_integral_value()),
                }
            )
        invoice_id = self._id("in")
        amount_due = int(total.to_integral_value())
        invoice = {
            "id": invoice_id,
            "object": "invoice",
            "customer": subscription["customer"],
            "status": "draft",
            "number": None,
            "currency": "usd",
            "created": self.now(),
            "amount_due": amount_due,
            "amount_paid": 0,
            "amount_remaining": amount_due,
            "total": amount_due,
            "subtotal": amount_due,
            "attempt_count": 0,
            "attempted": False,
            "period_start": period_start,
            "period_end": period_end,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "livemode": False,
            "lines": {"object": "list", "data": lines, "has_more": False},
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription["id"]},
            },
            "_subscription": subscription["id"],
        }
        self.objects["invoice"][invoice_id] = invoice
        subscription["latest_invoice"] = invoice_id
        return invoice

    def _finalize(self, invoice: dict[str, Any]) -> None:
        count = len(self.objects["invoice"])
        invoice.update(
            status="open",
            number=f"FAKE-{count:04d}",
            hosted_invoice_url=f"{self.url}/i/{invoice['id']}",
            invoice_pdf=f"{self.url}/i/{invoice['id']}/pdf",
        )
        self._emit("invoice.finalized", invoice)

    def _pay(self, invoice: dict[str, Any]) -> None:
        invoice.update(
            status="paid", amount_paid=invoice["amount_due"], amount_remaining=0, attempted=True
        )
        self._emit("invoice.paid", invoice)
        subscription = self.objects["subscription"].get(invoice["_subscription"])
        if subscription and subscription["status"] == "past_due":
            subscription["status"] = "active"
            self._emit(
                "customer.subscription.updated", subscription, previous={"status": "past_due"}
            )

    def _aggregate(self, meter: dict[str, Any], customer: str, start: int, end: int) -> float:
        values = [
            e["value"]
            for e in self.meter_events
            if e["event_name"] == meter["event_name"]
            and e["customer"] == customer
            and start <= e["timestamp"] < end
        ]
        values += [
            p["value"]
            for p in self.phantom
            if p["meter"] == meter["id"]
            and p["customer"] == customer
            and start <= p["timestamp"] < end
        ]
        formula = meter["default_aggregation"]["formula"]
        if formula == "count":
            return float(len(values))
        if formula == "last":
            return float(values[-1]) if values else 0.0
        return float(sum(values))

    # --- webhooks ---------------------------------------------------------------------------

    def sign(self, body: str, timestamp: int | None = None) -> str:
        timestamp = int(time.time()) if timestamp is None else timestamp
        mac = hmac.new(
            self.webhook_secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256
        ).hexdigest()
        return f"t={timestamp},v1={mac}"

    def _send(self, event_id: str) -> int | str:
        event = next(e for e in self.events if e["id"] == event_id)
        body = json.dumps(event)
        request = urllib.request.Request(
            self.webhook_url,
            data=body.encode(),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": self.sign(body),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                outcome: int | str = response.status
        except urllib.error.HTTPError as exc:
            outcome = exc.code
        except OSError as exc:
            outcome = f"error: {exc}"
        with self.lock:
            self.deliveries.append((event_id, outcome))
        return outcome

    def _deliver_loop(self) -> None:
        while True:
            event_id = self._queue.get()
            try:
                if event_id is None:
                    return
                self._send(event_id)
            finally:
                self._queue.task_done()

    # --- request handling -----------------------------------------------------------------

    def _take(self, rules: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
        with self.lock:
            for rule in rules:
                if rule["remaining"] > 0 and path.startswith(rule["path"]):
                    rule["remaining"] -= 1
                    return rule
        return None

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        path = parts.path
        record = {
            "method": method,
            "path": path,
            "idempotency_key": headers.get("idempotency-key", ""),
        }
        self.requests.append(record)
        fault = self._take(self._faults, path)
        if fault is not None:
            status = fault["status"]
            error = (
                StripeError(429, "Request rate limit exceeded.", code="rate_limit")
                if status == 429
                else StripeError(status, "An unknown error occurred.", type="api_error")
            )
            record["status"] = status
            return self._reply(error.status, error.body, error.headers)
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            error = StripeError(401, "Invalid API Key provided.")
            record["status"] = 401
            return self._reply(401, error.body)
        params = decode_form(body.decode() if method == "POST" else parts.query)
        key = headers.get("idempotency-key", "") if method == "POST" else ""
        fingerprint = json.dumps([method, path, params], sort_keys=True)
        with self.lock:
            if key and key in self.idempotency:
                first_fingerprint, status, payload = self.idempotency[key]
                if first_fingerprint != fingerprint:
                    error = StripeError(
                        400,
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.",
                        type="idempotency_error",
                    )
                    status, payload, extra = error.status, json.dumps(error.body).encode(), {}
                else:
                    extra = {"Idempotent-Replayed": "true"}
                record["status"] = status
                return status, {"Content-Type": "application/json", **extra}, payload
            try:
                status, out, extra = 200, self._route(method, path, params), {}
            except StripeError as exc:
                status, out, extra = exc.status, exc.body, exc.headers
            payload = json.dumps(out).encode()
            if key and status < 500:
                self.idempotency[key] = (fingerprint, status, payload)
        record["status"] = status
        slow = self._take(self._latency, path)
        if slow is not None:
            time.sleep(slow["seconds"])
        return status, {"Content-Type": "application/json", **extra}, payload

    def _reply(
        self, status: int, body: dict[str, Any], extra: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return (
            status,
            {"Content-Type": "application/json", **(extra or {})},
            json.dumps(body).encode(),
        )

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        for route_method, pattern, handler in _ROUTES:
            if route_method != method:
                continue
            match = re.fullmatch(pattern, path)
            if match:
                return handler(self, params, *match.groups())
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")

    # --- lists --------------------------------------------------------------------------------

    def _list(
        self, items: list[dict[str, Any]], params: dict[str, Any], url: str
    ) -> dict[str, Any]:
        limit = min(max(_int(params.get("limit", 10), "limit"), 1), 100)
        if params.get("starting_after"):
            ids = [i["id"] for i in items]
            if params["starting_after"] not in ids:
                raise _no_such("object", params["starting_after"], "starting_after")
            items = items[ids.index(params["starting_after"]) + 1 :]
        elif params.get("ending_before"):
            ids = [i["id"] for i in items]
            if params["ending_before"] in ids:
                items = items[: ids.index(params["ending_before"])][-limit:]
        page = items[:limit]
        return {
            "object": "list",
            "data": [self._public(i) for i in page],
            "has_more": len(items) > limit,
            "url": url,
        }

    # --- endpoints ----------------------------------------------------------------------------

    def customer_create(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = {
            "id": self._id("cus"),
            "object": "customer",
            "created": self.now(),
            "email": params.get("email"),
            "name": params.get("name"),
            "metadata": params.get("metadata") or {},
            "balance": 0,
            "currency": None,
            "delinquent": False,
            "livemode": False,
        }
        self.objects["customer"][customer["id"]] = customer
        return customer

    def customer_get(self, params: dict[str, Any], customer_id: str) -> dict[str, Any]:
        return self._public(self._get("customer", customer_id))

    def product_create(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("name"):
            raise _missing("name")
        product = {
            "id": self._id("prod"),
            "object": "product",
            "active": True,
            "created": self.now(),
            "name": params["name"],
            "type": "service",
            "metadata": params.get("metadata") or {},
            "livemode": False,
        }
        self.objects["product"][product["id"]] = product
        return product

    def price_create(self, params: dict[str, Any]) -> dict[str, Any]:
        for name in ("currency", "product"):
            if not params.get(name):
                raise _missing(name)
        self._get("product", params["product"], "product")
        recurring = params.get("recurring")
        scheme = params.get("billing_scheme", "per_unit")
        if recurring is not None:
            if recurring.get("interval") not in ("day", "week", "month", "year"):
                raise StripeError(400, "Invalid recurring[interval].", param="recurring[interval]")
            usage_type = recurring.get("usage_type", "licensed")
            if usage_type == "metered":
                if not recurring.get("meter"):
                    raise StripeError(
                        400,
                        "Metered prices must be backed by a meter: set recurring[meter].",
                        param="recurring[meter]",
                    )
                self._get("billing.meter", recurring["meter"], "recurring[meter]")
            recurring = {
                "interval": recurring["interval"],
                "interval_count": _int(
                    recurring.get("interval_count", 1), "recurring[interval_count]"
                ),
                "meter": recurring.get("meter"),
                "usage_type": usage_type,
                "trial_period_days": None,
            }
        tiers = None
        unit_amount = unit_amount_decimal = None
        if scheme == "tiered":
            if params.get("tiers_mode") not in ("graduated", "volume"):
                raise _missing("tiers_mode")
            raw_tiers = params.get("tiers") or []
            if not raw_tiers or raw_tiers[-1].get("up_to") != "inf":
                raise StripeError(400, "The last tier must have up_to set to `inf`.", param="tiers")
            tiers = [
                {
                    "up_to": None if t["up_to"] == "inf" else _int(t["up_to"], "up_to"),
                    "unit_amount_decimal": _decimal(
                        t.get("unit_amount_decimal", t.get("unit_amount", "0"))
                    ),
                    "flat_amount": _int(t.get("flat_amount", 0), "flat_amount"),
                }
                for t in raw_tiers
            ]
        elif "unit_amount_decimal" in params:
            unit_amount_decimal = _decimal(params["unit_amount_decimal"])
        elif "unit_amount" in params:
            unit_amount = _int(params["unit_amount"], "unit_amount")
            unit_amount_decimal = str(unit_amount)
        else:
            raise StripeError(
                400, "Provide unit_amount, unit_amount_decimal or tiers.", param="unit_amount"
            )
        lookup_key = params.get("lookup_key")
        if lookup_key:
            holder = next(
                (
                    p
                    for p in self.objects["price"].values()
                    if p["lookup_key"] == lookup_key and p["active"]
                ),
                None,
            )
            if holder is not None:
                if not _bool(params.get("transfer_lookup_key")):
                    raise StripeError(
                        400,
                        f"A price (`{holder['id']}`) already uses that lookup key.",
                        param="lookup_key",
                    )
                holder["lookup_key"] = None
        price = {
            "id": self._id("price"),
            "object": "price",
            "active": True,
            "billing_scheme": scheme,
            "created": self.now(),
            "currency": params["currency"].lower(),
            "livemode": False,
            "lookup_key": lookup_key,
            "metadata": params.get("metadata") or {},
            "nickname": params.get("nickname"),
            "product": params["product"],
            "recurring": recurring,
            "tiers_mode": params.get("tiers_mode") if scheme == "tiered" else None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": unit_amount_decimal,
            "_tiers": tiers,
        }
        self.objects["price"][price["id"]] = price
        return self._price_out(price, params)

    def _price_out(self, price: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        out = self._public(price)
        if "tiers" in (params.get("expand") or []):
            out["tiers"] = copy.deepcopy(price["_tiers"])
        return out

    def price_list(self, params: dict[str, Any]) -> dict[str, Any]:
        prices = sorted(self.objects["price"].values(), key=lambda p: p["created"], reverse=True)
        if params.get("lookup_keys"):
            keys = params["lookup_keys"]
            keys = keys if isinstance(keys, list) else [keys]
            prices = [p for p in prices if p["lookup_key"] in keys]
        if "active" in params:
            prices = [p for p in prices if p["active"] == _bool(params["active"])]
        if params.get("product"):
            prices = [p for p in prices if p["product"] == params["product"]]
        return self._list(prices, params, "/v1/prices")

    def price_get(self, params: dict[str, Any], price_id: str) -> dict[str, Any]:
        return self._price_out(self._get("price", price_id), params)

    def meter_create(self, params: dict[str, Any]) -> dict[str, Any]:
        for name in ("display_name", "event_name"):
            if not params.get(name):
                raise _missing(name)
        formula = (params.get("default_aggregation") or {}).get("formula")
        if formula not in ("sum", "count", "last"):
            raise StripeError(
                400, "Invalid default_aggregation[formula].", param="default_aggregation[formula]"
            )
        if any(
            m["event_name"] == params["event_name"] and m["status"] == "active"
            for m in self.objects["billing.meter"].values()
        ):
            raise StripeError(
                400,
                f"An active meter with event_name `{params['event_name']}` already exists.",
                param="event_name",
            )
        now = self.now()
        mapping = params.get("customer_mapping") or {}
        meter = {
            "id": self._id("mtr"),
            "object": "billing.meter",
            "created": now,
            "customer_mapping": {
                "event_payload_key": mapping.get("event_payload_key", "stripe_customer_id"),
                "type": mapping.get("type", "by_id"),
            },
            "default_aggregation": {"formula": formula},
            "display_name": params["display_name"],
            "event_name": params["event_name"],
            "event_time_window": params.get("event_time_window"),
            "livemode": False,
            "status": "active",
            "status_transitions": {"deactivated_at": None},
            "updated": now,
            "value_settings": {
                "event_payload_key": (params.get("value_settings") or {}).get(
                    "event_payload_key", "value"
                )
            },
        }
        self.objects["billing.meter"][meter["id"]] = meter
        return meter

    def meter_list(self, params: dict[str, Any]) -> dict[str, Any]:
        meters = sorted(
            self.objects["billing.meter"].values(), key=lambda m: m["created"], reverse=True
        )
        if params.get("status"):
            meters = [m for m in meters if m["status"] == params["status"]]
        return self._list(meters, params, "/v1/billing/meters")

    def meter_get(self, params: dict[str, Any], meter_id: str) -> dict[str, Any]:
        return self._public(self._get("billing.meter", meter_id))

    def meter_event_create(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("event_name"):
            raise _missing("event_name")
        payload = params.get("payload")
        if not isinstance(payload, dict) or not payload:
            raise _missing("payload")
        meter = next(
            (
                m
                for m in self.objects["billing.meter"].values()
                if m["event_name"] == params["event_name"] and m["status"] == "active"
            ),
            None,
        )
        if meter is None:
            raise StripeError(
                400,
                f"No active meter was found for event_name `{params['event_name']}`.",
                param="event_name",
            )
        customer_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        if not payload.get(customer_key):
            raise _missing(f"payload[{customer_key}]")
        raw_value = payload.get(value_key)
        if raw_value is None or not re.fullmatch(r"-?\d+", str(raw_value)):
            raise StripeError(
                400,
                f"The value in payload[{value_key}] must be a whole number.",
                param=f"payload[{value_key}]",
            )
        now = self.now()
        timestamp = _int(params.get("timestamp", now), "timestamp")
        if not now - PAST_WINDOW_S <= timestamp <= now + FUTURE_WINDOW_S:
            raise StripeError(
                400,
                "Timestamp must be within the past 35 calendar days or up to "
                "5 minutes in the future.",
                param="timestamp",
            )
        identifier = params.get("identifier") or self._id("mev")
        seen = self.identifiers.get(identifier)
        if seen is not None and now - seen < IDENTIFIER_TTL_S:
            raise StripeError(
                400,
                f"An event already exists with identifier {identifier}.",
                param="identifier",
                headers={"stripe-should-retry": "false"},
            )
        self.identifiers[identifier] = now
        event = {
            "event_name": params["event_name"],
            "identifier": identifier,
            "customer": payload[customer_key],
            "value": int(raw_value),
            "timestamp": timestamp,
            "created": now,
        }
        if payload[customer_key] in self.objects["customer"]:
            self.meter_events.append(event)
        else:  # Stripe validates the customer asynchronously and reports it separately
            self.meter_event_errors.append({**event, "error": "no_customer"})
        return {
            "object": "billing.meter_event",
            "created": now,
            "event_name": params["event_name"],
            "identifier": identifier,
            "livemode": False,
            "payload": payload,
            "timestamp": timestamp,
        }

    def meter_event_summaries(self, params: dict[str, Any], meter_id: str) -> dict[str, Any]:
        meter = self._get("billing.meter", meter_id)
        for name in ("customer", "start_time", "end_time"):
            if not params.get(name):
                raise _missing(name)
        start = _int(params["start_time"], "start_time")
        end = _int(params["end_time"], "end_time")
        if start % 60 or end % 60:
            raise StripeError(
                400,
                "start_time and end_time must be aligned with minute boundaries.",
                param="start_time",
            )
        if end <= start:
            raise StripeError(400, "end_time must be after start_time.", param="end_time")
        window = {"hour": 3600, "day": 86400}.get(params.get("value_grouping_window", ""))
        buckets = (
            [(s, min(s + window, end)) for s in range(start, end, window)]
            if window
            else [(start, end)]
        )
        summaries = [
            {
                "id": "mtrusg_"
                + hashlib.sha1(f"{meter_id}{params['customer']}{s}{e}".encode()).hexdigest()[:14],
                "object": "billing.meter_event_summary",
                "aggregated_value": self._aggregate(meter, params["customer"], s, e),
                "start_time": s,
                "end_time": e,
                "livemode": False,
                "meter": meter_id,
            }
            for s, e in reversed(buckets)
        ]
        return self._list(summaries, params, f"/v1/billing/meters/{meter_id}/event_summaries")

    def checkout_create(self, params: dict[str, Any]) -> dict[str, Any]:
        mode = params.get("mode")
        if mode not in ("payment", "setup", "subscription"):
            raise _missing("mode")
        if not params.get("success_url"):
            raise _missing("success_url")
        if params.get("customer"):
            self._get("customer", params["customer"], "customer")
        lines = params.get("line_items") or []
        if mode == "subscription" and not lines:
            raise _missing("line_items")
        for index, line in enumerate(lines):
            price = self._get("price", line.get("price", ""), f"line_items[{index}][price]")
            metered = (price["recurring"] or {}).get("usage_type") == "metered"
            if metered and "quantity" in line:
                raise StripeError(
                    400,
                    "Quantity should not be specified where usage_type is "
                    f"`metered`. Remove quantity from `line_items[{index}]`.",
                    param=f"line_items[{index}][quantity]",
                )
            if not metered and "quantity" not in line:
                raise _missing(f"line_items[{index}][quantity]")
        now = self.now()
        session_id = f"cs_test_{secrets.token_hex(12)}"
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": mode,
            "status": "open",
            "payment_status": "unpaid",
            "url": f"{self.url}/checkout/{session_id}",
            "customer": params.get("customer"),
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata") or {},
            "subscription": None,
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "created": now,
            "expires_at": now + 24 * 3600,
            "livemode": False,
            "_line_items": lines,
            "_subscription_metadata": (params.get("subscription_data") or {}).get("metadata") or {},
        }
        self.objects["checkout.session"][session_id] = session
        return self._public(session)

    def checkout_get(self, params: dict[str, Any], session_id: str) -> dict[str, Any]:
        return self._public(self._get("checkout.session", session_id))

    def portal_create(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("customer"):
            raise _missing("customer")
        self._get("customer", params["customer"], "customer")
        session_id = self._id("bps")
        return {
            "id": session_id,
            "object": "billing_portal.session",
            "customer": params["customer"],
            "return_url": params.get("return_url"),
            "url": f"{self.url}/portal/{session_id}",
            "created": self.now(),
            "livemode": False,
        }

    def subscription_get(self, params: dict[str, Any], sub_id: str) -> dict[str, Any]:
        return self._public(self._get("subscription", sub_id))

    def subscription_list(self, params: dict[str, Any]) -> dict[str, Any]:
        subs = sorted(
            self.objects["subscription"].values(), key=lambda s: s["created"], reverse=True
        )
        if params.get("customer"):
            subs = [s for s in subs if s["customer"] == params["customer"]]
        return self._list(subs, params, "/v1/subscriptions")

    def subscription_update(self, params: dict[str, Any], sub_id: str) -> dict[str, Any]:
        subscription = self._get("subscription", sub_id)
        if subscription["status"] == "canceled":
            raise StripeError(
                400,
                "A canceled subscription can only update its cancellation details and metadata.",
            )
        previous: dict[str, Any] = {}
        if "items" in params:
            items = subscription["items"]["data"]
            previous["items"] = copy.deepcopy(subscription["items"])
            first = items[0] if items else {}
            for index, change in enumerate(params["items"]):
                if change.get("id"):
                    current = next((i for i in items if i["id"] == change["id"]), None)
                    if current is None:
                        raise _no_such("subscription item", change["id"], f"items[{index}][id]")
                    if _bool(change.get("deleted")):
                        items.remove(current)
                    elif change.get("quantity"):
                        current["quantity"] = _int(change["quantity"], "quantity")
                    continue
                price = self._get("price", change.get("price", ""), f"items[{index}][price]")
                item = {
                    "id": self._id("si"),
                    "object": "subscription_item",
                    "created": self.now(),
                    "price": copy.deepcopy(price),
                    "subscription": sub_id,
                    "metadata": {},
                    "current_period_start": first.get("current_period_start", self.now()),
                    "current_period_end": first.get("current_period_end", self.now() + PERIOD_S),
                }
                if price["recurring"]["usage_type"] == "licensed":
                    item["quantity"] = _int(change.get("quantity", 1), "quantity")
                items.append(item)
            if len(items) > 20:
                raise StripeError(400, "A subscription can have at most 20 items.", param="items")
        if "metadata" in params:
            previous["metadata"] = dict(subscription["metadata"])
            subscription["metadata"].update(params["metadata"] or {})
        if "cancel_at_period_end" in params:
            previous["cancel_at_period_end"] = subscription["cancel_at_period_end"]
            subscription["cancel_at_period_end"] = _bool(params["cancel_at_period_end"])
        self._emit("customer.subscription.updated", subscription, previous=previous)
        return self._public(subscription)

    def subscription_cancel(self, params: dict[str, Any], sub_id: str) -> dict[str, Any]:
        subscription = self._get("subscription", sub_id)
        if subscription["status"] == "canceled":
            raise StripeError(400, f"No such subscription: '{sub_id}'", code="resource_missing")
        subscription.update(status="canceled", canceled_at=self.now(), ended_at=self.now())
        self._emit("customer.subscription.deleted", subscription)
        return self._public(subscription)

    def invoice_list(self, params: dict[str, Any]) -> dict[str, Any]:
        invoices = sorted(
            self.objects["invoice"].values(), key=lambda i: i["created"], reverse=True
        )
        if params.get("customer"):
            invoices = [i for i in invoices if i["customer"] == params["customer"]]
        return self._list(invoices, params, "/v1/invoices")

    def invoice_get(self, params: dict[str, Any], invoice_id: str) -> dict[str, Any]:
        return self._public(self._get("invoice", invoice_id))

    def event_list(self, params: dict[str, Any]) -> dict[str, Any]:
        events = list(reversed(self.events))  # newest first, as Stripe lists them
        created = params.get("created")
        if isinstance(created, dict):
            for op, test in (
                ("gt", lambda a, b: a > b),
                ("gte", lambda a, b: a >= b),
                ("lt", lambda a, b: a < b),
                ("lte", lambda a, b: a <= b),
            ):
                if op in created:
                    bound = _int(created[op], f"created[{op}]")
                    events = [e for e in events if test(e["created"], bound)]
        elif created is not None:
            events = [e for e in events if e["created"] == _int(created, "created")]
        types = params.get("types")
        if types:
            types = types if isinstance(types, list) else [types]
            events = [e for e in events if e["type"] in types]
        if params.get("type"):
            wanted = params["type"]
            events = [
                e
                for e in events
                if e["type"] == wanted
                or (wanted.endswith(".*") and e["type"].startswith(wanted[:-1]))
            ]
        return self._list(events, params, "/v1/events")

    def event_get(self, params: dict[str, Any], event_id: str) -> dict[str, Any]:
        found = next((e for e in self.events if e["id"] == event_id), None)
        if found is None:
            raise _no_such("event", event_id)
        return copy.deepcopy(found)


def _decimal(value: Any) -> str:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise StripeError(400, f"Invalid decimal: {value}", param="unit_amount_decimal") from None
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > 12:
        raise StripeError(
            400, "unit_amount_decimal has more than 12 decimal places.", param="unit_amount_decimal"
        )
    return str(value)


def _price_amount(price: dict[str, Any], quantity: int) -> Decimal:
    """Cents for ``quantity`` units under a per-unit or graduated/volume tiered price."""
    if price["billing_scheme"] != "tiered":
        return Decimal(price["unit_amount_decimal"] or 0) * quantity
    total = Decimal(0)
    lower = 0
    tiers = price["_tiers"]
    if price["tiers_mode"] == "volume":
        tier = next(t for t in tiers if t["up_to"] is None or quantity <= t["up_to"])
        return Decimal(tier["unit_amount_decimal"]) * quantity + tier["flat_amount"]
    for tier in tiers:
        upper = tier["up_to"] if tier["up_to"] is not None else max(quantity, lower)
        units = max(0, min(quantity, upper) - lower)
        if units:
            total += Decimal(tier["unit_amount_decimal"]) * units + tier["flat_amount"]
        lower = upper
        if quantity <= lower:
            break
    return total


_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", r"/v1/customers", FakeStripe.customer_create),
    ("GET", r"/v1/customers/([^/]+)", FakeStripe.customer_get),
    ("POST", r"/v1/products", FakeStripe.product_create),
    ("POST", r"/v1/prices", FakeStripe.price_create),
    ("GET", r"/v1/prices", FakeStripe.price_list),
    ("GET", r"/v1/prices/([^/]+)", FakeStripe.price_get),
    ("POST", r"/v1/billing/meters", FakeStripe.meter_create),
    ("GET", r"/v1/billing/meters", FakeStripe.meter_list),
    ("GET", r"/v1/billing/meters/([^/]+)", FakeStripe.meter_get),
    ("GET", r"/v1/billing/meters/([^/]+)/event_summaries", FakeStripe.meter_event_summaries),
    ("POST", r"/v1/billing/meter_events", FakeStripe.meter_event_create),
    ("POST", r"/v1/checkout/sessions", FakeStripe.checkout_create),
    ("GET", r"/v1/checkout/sessions/([^/]+)", FakeStripe.checkout_get),
    ("POST", r"/v1/billing_portal/sessions", FakeStripe.portal_create),
    ("GET", r"/v1/subscriptions", FakeStripe.subscription_list),
    ("GET", r"/v1/subscriptions/([^/]+)", FakeStripe.subscription_get),
    ("POST", r"/v1/subscriptions/([^/]+)", FakeStripe.subscription_update),
    ("DELETE", r"/v1/subscriptions/([^/]+)", FakeStripe.subscription_cancel),
    ("GET", r"/v1/invoices", FakeStripe.invoice_list),
    ("GET", r"/v1/invoices/([^/]+)", FakeStripe.invoice_get),
    ("GET", r"/v1/events", FakeStripe.event_list),
    ("GET", r"/v1/events/([^/]+)", FakeStripe.event_get),
]


class _Handler(QuietHandler):
    # HTTP/1.0: one request per connection, so down() refuses the very next call.
    protocol_version = "HTTP/1.0"
    server_state: FakeStripe

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, payload = self.server_state.handle(method, self.path, headers, body)
        self.send_response(status)
        self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        self.send_header("Stripe-Version", headers.get("stripe-version", API_VERSION))
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        # A client that gave up (a timeout) is gone; its request was applied all the same.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
