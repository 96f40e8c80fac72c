"""Write the trace index's snapshot now (after a restore, or to warm a new host)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from moderation.provenance_service import trace_index_dir, trace_index_snapshot


class Command(BaseCommand):
    help = (
        "Write a new trace index snapshot if the current one is missing or stale (--force: always)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="write one even if fresh")

    def handle(self, *args, force: bool = False, **options):
        folder = trace_index_snapshot(force=force)
        if folder is None:
            self.stdout.write(f"the snapshot in {trace_index_dir()} is current")
        else:
            self.stdout.write(f"wrote {folder}")
