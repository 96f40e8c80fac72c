"""Create (or find again) the Stripe products, prices and meters for every plan."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing import services
from billing import stripe_gateway as gateway


class Command(BaseCommand):
    help = "Sync plans to Stripe: a product per plan, fee and metered prices, a meter per class."

    def handle(self, *args, **options):
        if not gateway.is_configured():
            raise CommandError("STRIPE_SECRET_KEY is not set.")
        try:
            result = services.stripe_catalog_sync()
        except (gateway.StripeUnavailable, gateway.StripeRejected) as exc:
            raise CommandError(f"Stripe: {exc}") from exc
        self.stdout.write(
            f"plans={result.plans} prices={result.prices_created_or_found} "
            f"meters={','.join(result.meters)}"
        )
