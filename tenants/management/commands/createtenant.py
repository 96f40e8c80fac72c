"""Create a tenant, optionally with an owner and a secret API key."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from tenants.models import ApiKey, Tenant
from tenants.services import apikey_create, tenant_create


class Command(BaseCommand):
    help = "Create a tenant. With --owner, that user (created if missing) becomes its owner."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--slug")
        parser.add_argument("--kind", choices=Tenant.Kind.values, default=Tenant.Kind.OTHER)
        parser.add_argument("--owner", help="username of the owner")
        parser.add_argument("--with-key", action="store_true", help="also mint a secret API key")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        slug = options["slug"]
        if slug and Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"A tenant with slug '{slug}' exists already.")
        owner = None
        if options["owner"]:
            owner, _ = get_user_model().objects.get_or_create(username=options["owner"])
        tenant = tenant_create(name=options["name"], kind=options["kind"], slug=slug, owner=owner)
        out = {"tenant_id": str(tenant.id), "slug": tenant.slug}
        if options["with_key"]:
            issued = apikey_create(
                tenant=tenant, kind=ApiKey.Kind.SECRET, name="created by createtenant"
            )
            out["secret_key"] = issued.raw_key
        if options["json"]:
            self.stdout.write(json.dumps(out))
        else:
            for key, value in out.items():
                self.stdout.write(f"{key}: {value}")
