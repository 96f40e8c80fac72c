"""Install billing's periodic tasks as django-q2 schedules (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from billing.tasks import schedules_install


class Command(BaseCommand):
    help = (
        "Schedule the meter-event push (1 min), roll-ups and reconciliation (hourly), "
        "dunning (15 min) and the Stripe events catch-up (daily)."
    )

    def handle(self, *args, **options):
        for name in schedules_install():
            self.stdout.write(name)
