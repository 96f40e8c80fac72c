"""The gateway against real Stripe test mode: opt-in, with STRIPE_TEST_SECRET_KEY set.

Checks the facts the fake server encodes (identifier dedup and its error text, meters, metered
graduated prices, checkout sessions, summaries, the events list) against Stripe itself. It
creates test-mode objects under a dedicated hardware class, ``ci-test``, whose meter
(``gpu_ms_ci_test``) is found again on later runs instead of being created anew.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import services
from billing import stripe_gateway as gateway
from billing.models import Plan, PlanRate

KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")

pytestmark = [
    pytest.mark.skipif(not KEY, reason="STRIPE_TEST_SECRET_KEY is not set"),
    pytest.mark.django_db,
]


@pytest.fixture
def live_stripe(settings):
    assert KEY.startswith(("sk_test_", "rk_test_")), "only a test-mode key, never a live one"
    settings.STRIPE_SECRET_KEY = KEY
    settings.STRIPE_API_BASE = "https://api.stripe.com"
    settings.STRIPE_TIMEOUT_S = 30.0
    settings.STRIPE_MAX_NETWORK_RETRIES = 2


def test_live_a_repeated_identifier_is_reported_as_a_duplicate(tenant, live_stripe):
    meter = services.meter_ensure(hardware_class="ci-test")
    customer = services.customer_ensure(tenant=tenant).stripe_customer_id
    identifier = f"reelcast-ci-{uuid.uuid4()}"
    sent = {
        "event_name": meter.event_name,
        "customer_id": customer,
        "value": 1500,
        "identifier": identifier,
        "timestamp": int(timezone.now().timestamp()),
    }

    first = gateway.meter_event_create(**sent)
    second = gateway.meter_event_create(**sent)

    assert (first, second) == ("created", "duplicate")
    with pytest.raises(gateway.StripeRejected):
        gateway.meter_event_create(
            **{
                **sent,
                "identifier": f"{identifier}-old",
                "timestamp": sent["timestamp"] - 40 * 24 * 3600,
            }
        )


def test_live_catalogue_checkout_and_summaries(tenant, live_stripe):
    plan = Plan.objects.create(
        slug=f"ci-{uuid.uuid4().hex[:8]}", name="CI plan", monthly_fee_cents=100
    )
    PlanRate.objects.create(
        plan=plan,
        hardware_class="ci-test",
        included_gpu_seconds=10,
        overage_cents_per_gpu_second=Decimal("0.15"),
    )

    services.stripe_catalog_sync()
    session = services.checkout_start(tenant=tenant, plan=plan)
    customer = services.customer_ensure(tenant=tenant).stripe_customer_id
    meter = services.meter_ensure(hardware_class="ci-test")
    end = timezone.now().replace(second=0, microsecond=0)
    total = gateway.meter_event_summary_total(
        meter_id=meter.stripe_meter_id,
        customer_id=customer,
        start=int((end - timedelta(hours=1)).timestamp()),
        end=int(end.timestamp()),
    )
    recent = list(
        gateway.events_since(
            created_after=int((timezone.now() - timedelta(minutes=10)).timestamp()),
            types=["checkout.session.completed"],
        )
    )

    plan.refresh_from_db()
    assert plan.stripe_price_id.startswith("price_")
    assert session.url.startswith("https://checkout.stripe.com/")
    assert total >= 0
    assert isinstance(recent, list)
