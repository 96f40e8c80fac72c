"""Register the periodic tasks with django-q2 (idempotent; run after migrate)."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django_q.models import Schedule

SCHEDULES = [
    # name, function, minutes: why
    ("reelcast-dispatch", "generation.tasks.dispatch", 1),  # catch-up: slots freed by crashes
    ("reelcast-reap-lost-jobs", "generation.tasks.reap_lost_jobs", 1),  # leases that lapsed
    ("reelcast-sweep-idempotency-keys", "generation.tasks.sweep_idempotency_keys", 60),
    ("reelcast-retention-sweep", "generation.tasks.sweep_retention", 24 * 60),
    # consents that expired or were revoked: their videos expire, jobs in flight stop
    ("reelcast-consent-sweep", "generation.tasks.sweep_consents", 60),
    ("reelcast-resume-batches", "generation.tasks.resume_stalled_batches", 5),  # lost chunks
    ("reelcast-deliver-webhooks", "tenants.tasks.deliver_due_webhooks", 1),  # due retries
    ("reelcast-sweep-webhooks", "tenants.tasks.sweep_webhooks", 24 * 60),
    # the trace index's shared snapshot, written again once stale (see provenance_service)
    ("reelcast-trace-index-snapshot", "moderation.tasks.snapshot_trace_index", 15),
]


class Command(BaseCommand):
    help = "Create or update Reelcast's periodic django-q2 schedules."

    def handle(self, *args, **options):
        for name, func, minutes in SCHEDULES:
            _, created = Schedule.objects.update_or_create(
                name=name,
                defaults={
                    "func": func,
                    "schedule_type": Schedule.MINUTES,
                    "minutes": minutes,
                    "repeats": -1,
                    "cluster": "default",
                },
            )
            self.stdout.write(f"{'created' if created else 'updated'} {name} every {minutes} min")
        call_command("billing_schedules", stdout=self.stdout)
