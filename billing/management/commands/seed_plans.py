"""Seed the example plans: one for a school, one for a shop.

Idempotent: a plan that exists is left as operators edited it (``--overwrite`` resets it to the
terms below). Prices follow public per-second GPU rates (an H100 rents for about $0.0015 a
second); ``stripe_sync_catalog`` then creates the Stripe products, meters and prices.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.management.base import BaseCommand

from billing.models import Plan
from billing.services import plan_upsert

PLANS = {
    "school": {
        "fields": {
            "name": "School",
            "description": "Class sets of short personalised clips, made overnight.",
            "currency": "usd",
            "monthly_fee_cents": 4900,
            "max_concurrent_jobs": 4,
            "priority_class": Plan.PriorityClass.BULK,
            "max_width": 1280,
            "max_height": 720,
            "max_duration_s": 20.0,
            "allowed_models": ["preview", "wan2.2-ti2v-5b"],
            "storage_retention_days": 180,
            "end_user_jobs_per_day": 0,
        },
        # A school budget cannot run over: the hard cap stops new jobs at 10 GPU-hours.
        "rates": {
            "h100": {
                "included_gpu_seconds": 3600,
                "overage_cents_per_gpu_second": Decimal("0.16"),
                "hard_cap_gpu_seconds": 36000,
            },
            "cpu": {
                "included_gpu_seconds": 36000,
                "overage_cents_per_gpu_second": Decimal("0.001"),
                "hard_cap_gpu_seconds": None,
            },
        },
    },
    "shop": {
        "fields": {
            "name": "Shop",
            "description": "Storefront try-ons on demand, at interactive priority.",
            "currency": "usd",
            "monthly_fee_cents": 19900,
            "max_concurrent_jobs": 16,
            "priority_class": Plan.PriorityClass.INTERACTIVE,
            "max_width": 1920,
            "max_height": 1080,
            "max_duration_s": 30.0,
            "allowed_models": [],
            "storage_retention_days": 30,
            "end_user_jobs_per_day": 5,
        },
        "rates": {
            "h100": {
                "included_gpu_seconds": 18000,
                "overage_cents_per_gpu_second": Decimal("0.15"),
                "hard_cap_gpu_seconds": None,
            },
            "a100-80gb": {
                "included_gpu_seconds": 0,
                "overage_cents_per_gpu_second": Decimal("0.14"),
                "hard_cap_gpu_seconds": None,
            },
            "cpu": {
                "included_gpu_seconds": 36000,
                "overage_cents_per_gpu_second": Decimal("0.001"),
                "hard_cap_gpu_seconds": None,
            },
        },
    },
}


class Command(BaseCommand):
    help = "Create the example school and shop plans (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--overwrite", action="store_true", help="Reset existing plans to the seeded terms."
        )

    def handle(self, *args, overwrite: bool = False, **options):
        for slug, spec in PLANS.items():
            plan, created = plan_upsert(
                slug=slug, fields=spec["fields"], rates=spec["rates"], overwrite=overwrite
            )
            state = "created" if created else ("reset" if overwrite else "exists, kept")
            self.stdout.write(f"plan {plan.slug}: {state}")
