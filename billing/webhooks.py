"""The endpoint Stripe posts events to: ``POST /billing/stripe/webhook/``.

No session, no API key and no CSRF token: the ``Stripe-Signature`` header is the credential
(HMAC-SHA256 of the raw body with STRIPE_WEBHOOK_SECRET, timestamp within 300 s). A bad
signature is a 400; an event already applied answers 200 again without doing anything; an
error while applying is a 500, which makes Stripe deliver it again later.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import services
from billing import stripe_gateway as gateway
from config.problems import problem_response


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        event = gateway.construct_event(
            payload=request.body, signature_header=request.headers.get("Stripe-Signature", "")
        )
    except gateway.SignatureInvalid as exc:
        return problem_response(
            400, detail=f"The Stripe signature does not verify: {exc}", code="invalid_signature"
        )
    applied = services.stripe_event_process(event=event, source="webhook")
    return JsonResponse({"received": event["id"], "applied": applied})
