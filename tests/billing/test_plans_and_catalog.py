"""Seeded plans, and their products, meters and prices in Stripe, created once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command

from billing.models import BillingMeter, Plan, PlanRate
from billing.services import stripe_catalog_sync

pytestmark = pytest.mark.django_db


def test_seed_plans_is_idempotent_and_keeps_operator_edits(db):
    call_command("seed_plans")
    Plan.objects.filter(slug="school").update(monthly_fee_cents=3900)

    call_command("seed_plans")

    school = Plan.objects.get(slug="school")
    shop = Plan.objects.get(slug="shop")
    assert Plan.objects.count() == 2
    assert school.monthly_fee_cents == 3900
    assert (school.priority_class, shop.priority_class) == (0, 2)
    assert sorted(
        school.rates.values_list("hardware_class", "included_gpu_seconds", "hard_cap_gpu_seconds")
    ) == [("cpu", 36000, None), ("h100", 3600, 36000)]
    assert (shop.end_user_jobs_per_day, shop.allowed_models) == (5, [])

    call_command("seed_plans", "--overwrite")
    assert Plan.objects.get(slug="school").monthly_fee_cents == 4900


def test_the_catalogue_sync_makes_meters_and_metered_prices_once(fake_stripe):
    call_command("seed_plans")

    stripe_catalog_sync()
    prices_after_first = len(fake_stripe.objects["price"])
    stripe_catalog_sync()

    meters = {m["event_name"]: m for m in fake_stripe.objects["billing.meter"].values()}
    assert sorted(meters) == ["gpu_ms_a100_80gb", "gpu_ms_cpu", "gpu_ms_h100"]
    assert {m["default_aggregation"]["formula"] for m in meters.values()} == {"sum"}
    assert dict(BillingMeter.objects.values_list("event_name", "stripe_meter_id")) == {
        name: meter["id"] for name, meter in meters.items()
    }
    assert prices_after_first == len(fake_stripe.objects["price"]) == 2 + 5
    assert len(fake_stripe.objects["product"]) == 2

    rate = PlanRate.objects.get(plan__slug="school", hardware_class="h100")
    price = fake_stripe.objects["price"][rate.stripe_price_id]
    assert price["recurring"] == {
        "interval": "month",
        "interval_count": 1,
        "meter": meters["gpu_ms_h100"]["id"],
        "usage_type": "metered",
        "trial_period_days": None,
    }
    assert (price["billing_scheme"], price["tiers_mode"]) == ("tiered", "graduated")
    assert price["_tiers"] == [
        {"up_to": 3_600_000, "unit_amount_decimal": "0", "flat_amount": 0},
        {"up_to": None, "unit_amount_decimal": "0.00016", "flat_amount": 0},
    ]
    fee = fake_stripe.objects["price"][Plan.objects.get(slug="school").stripe_price_id]
    assert (fee["unit_amount"], fee["recurring"]["usage_type"]) == (4900, "licensed")


def test_changing_a_plans_terms_makes_a_new_price_and_keeps_the_old(fake_stripe):
    call_command("seed_plans")
    stripe_catalog_sync()
    rate = PlanRate.objects.get(plan__slug="shop", hardware_class="a100-80gb")
    old_price = rate.stripe_price_id

    PlanRate.objects.filter(pk=rate.pk).update(overage_cents_per_gpu_second=Decimal("0.12"))
    stripe_catalog_sync()

    rate.refresh_from_db()
    assert rate.stripe_price_id != old_price
    assert fake_stripe.objects["price"][rate.stripe_price_id]["unit_amount_decimal"] == "0.00012"
    assert fake_stripe.objects["price"][old_price]["active"] is True
