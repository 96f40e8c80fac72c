"""Billing fixtures: a Stripe-compatible server per test, settings pointing the SDK at it, and
billing's URLs (until config/urls.py includes them, this module stands in as the root URLconf).
"""

from __future__ import annotations

import pytest
from django.urls import Resolver404, include, path, resolve

from config import urls as config_urls
from tests.support.fake_stripe import FakeStripe

urlpatterns = [path("", include("billing.urls")), path("", include(config_urls))]
handler404 = config_urls.handler404
handler500 = config_urls.handler500


@pytest.fixture(autouse=True)
def _billing_settings(settings):
    settings.BILLING_QUOTE_CACHE_S = 0
    try:
        resolve("/billing/stripe/webhook/")
    except Resolver404:
        settings.ROOT_URLCONF = __name__


@pytest.fixture
def fake_stripe(settings):
    """A fresh fake Stripe on a random port, and the SDK configured to use it."""
    fake = FakeStripe().start()
    settings.STRIPE_SECRET_KEY = fake.api_key
    settings.STRIPE_API_BASE = fake.url
    settings.STRIPE_WEBHOOK_SECRET = fake.webhook_secret
    settings.STRIPE_TIMEOUT_S = 2.0
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    yield fake
    fake.close()


@pytest.fixture
def stripe_webhooks(fake_stripe, live_server):
    """The fake sends its events, signed, to the webhook view of a live server."""
    fake_stripe.set_webhook(f"{live_server.url}/billing/stripe/webhook/")
    return fake_stripe
