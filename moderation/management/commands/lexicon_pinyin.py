"""Regenerate the pinyin lexicons from the Chinese ones (``--check``: only say if stale)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from moderation import lexicon_pinyin


class Command(BaseCommand):
    help = "Write moderation/lexicons/pinyin/<category>.txt from zh/<category>.txt."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="Fail if any list is stale.")

    def handle(self, *args, **options):
        if options["check"]:
            stale = lexicon_pinyin.stale()
            if stale:
                raise CommandError(f"Stale pinyin lexicons: {', '.join(stale)}.")
            self.stdout.write("pinyin lexicons are up to date")
            return
        changed = lexicon_pinyin.write()
        self.stdout.write(f"wrote: {', '.join(changed)}" if changed else "nothing to change")
