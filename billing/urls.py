"""Billing's URLs, included at the root: the API under /api/v1/billing/ and Stripe's webhook.

config/urls.py: ``path("", include("billing.urls"))``.
"""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from billing.api import BillingViewSet, InvoiceViewSet
from billing.webhooks import stripe_webhook

router = SimpleRouter()
router.register("billing/invoices", InvoiceViewSet, basename="billing-invoice")
router.register("billing", BillingViewSet, basename="billing")

urlpatterns = [
    path("api/v1/", include(router.urls)),
    path("billing/stripe/webhook/", stripe_webhook, name="stripe-webhook"),
]
