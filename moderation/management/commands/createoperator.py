"""Create an operator account for the moderation console (/console/)."""

from __future__ import annotations

import getpass
import os
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from moderation.services import OPERATOR_GROUP, operator_create

PASSWORD_ENV = "REELCAST_OPERATOR_PASSWORD"  # noqa: S105 (a variable name, not a password)


class Command(BaseCommand):
    help = (
        "Create an operator: an active staff user in the 'operators' group, which holds the "
        "console's permissions (review cases, suspend tenants, change plans). The password "
        f"comes from --password, else ${PASSWORD_ENV}, else a prompt."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password",
            help=f"visible to other users of the machine: prefer ${PASSWORD_ENV} or the prompt",
        )
        parser.add_argument(
            "--existing",
            action="store_true",
            help="make an existing user an operator (password unchanged unless one is given)",
        )
        parser.add_argument("--no-input", action="store_true", help="never prompt for the password")

    def handle(self, *args, **options):
        username = options["username"].strip()
        if not username:
            raise CommandError("The username is empty.")
        password = options["password"] or os.environ.get(PASSWORD_ENV) or None
        if password is None and not options["existing"]:
            password = self._prompt(no_input=options["no_input"])
        try:
            operator_create(
                username=username,
                email=options["email"],
                password=password,
                existing=options["existing"],
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(
            f"{username} is an operator (staff, group '{OPERATOR_GROUP}'): sign in at "
            "/accounts/login/ and open /console/."
        )

    def _prompt(self, *, no_input: bool) -> str:
        if no_input or not sys.stdin.isatty():
            raise CommandError(
                f"No password: give --password, set {PASSWORD_ENV}, or run it in a terminal."
            )
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("The passwords differ.")
        return first
