"""Show what the text checks find in a piece of text, and why: for tuning the lexicons.

python manage.py moderationcheck "Ａ p.o.r.n clip" [--tenant maple-school]
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from moderation import text
from moderation.services import moderation_judge_text
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Run the text checks on TEXT and print each match, its rule and the verdict."

    def add_arguments(self, parser):
        parser.add_argument("text", nargs="+")
        parser.add_argument("--tenant", help="Judge with this tenant's policy (slug).")

    def handle(self, *args, **options):
        value = " ".join(options["text"])
        joined, split = text.normalize(value)
        self.stdout.write(f"normalised: {joined.text!r}")
        if split.text != joined.text:
            self.stdout.write(f"            {split.text!r}")
        matches = text.scan_text(value, field="text")
        for match in matches:
            self.stdout.write(
                f"  {match.category:<22} {match.weight:.1f}  {match.rule}  "
                f"[{match.start}:{match.end}] {match.excerpt!r}"
            )
        if not matches:
            self.stdout.write("  no match")
        if options["tenant"]:
            # unscoped: a management command, run by an operator
            tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"No tenant {options['tenant']!r}.")
            verdict = moderation_judge_text(tenant=tenant, texts={"text": value})
            self.stdout.write(
                f"verdict for {tenant.slug} ({verdict.policy['name']}): {verdict.verdict}"
            )
            for reason in verdict.reasons:
                self.stdout.write(f"  {reason['action']}: {reason['detail']}")
