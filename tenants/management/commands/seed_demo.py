"""Seed the demo: a school and a shop, a template each, a demo user, and the demo keys.

Idempotent: tenants, templates, the user and the demo keys are created once, so running it
again (or a second `make run`) never breaks keys that were handed out. Keys are stored hashed,
so only the run that mints a key can print it; later runs print its prefix and say how to get
new ones: ``--rotate-keys`` revokes the demo keys and mints fresh ones. The storefront key is
allowed from every origin a run was given (``--public-origin``, else REELCAST_DEMO_ORIGIN, else
the origin of REELCAST_PUBLIC_URL, which `make run` sets from its HOST and PORT); a new one is
added to the existing key.
"""

from __future__ import annotations

import base64
import io
import json
import os
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from PIL import Image, ImageDraw

from generation.consents import consent_create
from generation.models import ConsentRecord, Template
from generation.services import template_create
from tenants.models import ApiKey, Role, Tenant
from tenants.services import apikey_create, apikey_origin_add, apikey_revoke, membership_set

DEMO_USERNAME = "demo"
DEMO_KEY_NAMES = ("demo secret key", "demo storefront key")
ROTATE_HINT = (
    "The demo keys exist already: they were printed when they were made and are stored hashed. "
    "`manage.py seed_demo --rotate-keys` revokes them and prints new ones."
)

SCHOOL_TEMPLATE = {
    "name": "A story of courage",
    "slug": "courage-story",
    "kind": Template.Kind.CHARACTER,
    "content": {
        "variables": [
            {"name": "name", "type": "name", "label": "Student name"},
            {
                "name": "virtue",
                "type": "choice",
                "label": "Virtue",
                "choices": ["courage", "honesty", "kindness"],
                "default": "courage",
            },
            {
                "name": "place",
                "type": "text",
                "label": "Where it happens",
                "required": False,
                "default": "the school playground",
                "max_length": 60,
            },
        ],
        "prompt": (
            "{name} stands at the edge of {place}, looking worried.\n\n"
            "{name} takes a deep breath and shows {virtue}, helping a classmate.\n\n"
            "{name} smiles as the class cheers; the sun comes out."
        ),
        "negative_prompt": "blurry, text artifacts, violence",
        "character": "{name}, a ten-year-old pupil with short black hair and a red backpack",
        "style": {"preset": "storybook"},
        "title": "{name} · a story of {virtue}",
        "model": "preview",
        "width": 854,
        "height": 480,
        "fps": 24,
        "duration_s": 6.0,
    },
}

SHOP_TEMPLATE = {
    "name": "The Hudson wool coat in New York",
    "slug": "hudson-coat-nyc",
    "kind": Template.Kind.PRODUCT,
    "content": {
        "variables": [
            {
                "name": "shopper",
                "type": "text",
                "label": "Your first name",
                "required": False,
                "default": "You",
                "max_length": 32,
                "public": True,
            },
            {
                "name": "scene",
                "type": "choice",
                "label": "Scene",
                "choices": [
                    "a New York street at dusk",
                    "Central Park in the snow",
                    "a SoHo café terrace",
                ],
                "default": "a New York street at dusk",
                "public": True,
            },
            {
                "name": "photo",
                "type": "image",
                "label": "Your photo",
                "required": False,
                "public": True,
            },
        ],
        "prompt": (
            "{shopper} walks down {scene} wearing the camel Hudson wool coat, "
            "city lights reflecting on the fabric, cinematic tracking shot."
        ),
        "negative_prompt": "distorted hands, logo artifacts",
        "product": "the camel Hudson double-breasted wool coat",
        "style": {"preset": "product-showcase"},
        "title": "{shopper} in the Hudson coat",
        "model": "preview",
        "width": 854,
        "height": 480,
        "fps": 24,
        "duration_s": 5.0,
    },
}


# Demo pupils with a parent's consent on record: jobs name them with "end_user": "S-1001".
DEMO_STUDENTS = (("小明", "S-1001"), ("Ada Lovelace", "S-1002"), ("Li Wei", "S-1003"))


def _coat_data_url() -> str:
    """A drawn product shot of the demo coat (no photo ships with the repository)."""
    image = Image.new("RGB", (320, 420), (236, 232, 224))
    draw = ImageDraw.Draw(image)
    camel, dark = (193, 154, 107), (120, 90, 60)
    draw.polygon([(110, 40), (210, 40), (270, 120), (250, 400), (70, 400), (50, 120)], camel)
    draw.polygon([(110, 40), (160, 150), (210, 40)], dark)
    draw.polygon([(50, 120), (20, 330), (55, 335), (80, 170)], camel)
    draw.polygon([(270, 120), (300, 330), (265, 335), (240, 170)], camel)
    for y in (200, 260, 320):
        for x in (135, 185):
            draw.ellipse((x - 7, y - 7, x + 7, y + 7), dark)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _origin(value: str) -> str:
    """``scheme://host[:port]``, lower-cased as browsers send it in the Origin header."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise CommandError(f"{value!r} is not an http(s) origin such as http://127.0.0.1:8000.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise CommandError(f"{value!r} is not an origin: write only scheme://host[:port].")
    return f"{parts.scheme}://{parts.netloc.lower()}"


class Command(BaseCommand):
    help = (
        "Create (once) the demo tenants, templates, user and API keys; print the keys the run "
        "mints. Running it again keeps the keys; --rotate-keys replaces them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the keys as JSON")
        parser.add_argument(
            "--public-origin",
            help=(
                "an origin the storefront key is allowed from (added to the existing key); "
                "default: REELCAST_DEMO_ORIGIN, else the origin of REELCAST_PUBLIC_URL"
            ),
        )
        parser.add_argument(
            "--rotate-keys",
            action="store_true",
            help="revoke the demo keys and mint new ones (the only way to see a key again)",
        )

    def handle(self, *args, **options):
        password = os.environ.get("REELCAST_DEMO_PASSWORD", "reelcast-demo")
        public_url = urlsplit(settings.REELCAST_PUBLIC_URL)  # links may live under a path
        origin = _origin(
            options["public_origin"]
            or os.environ.get("REELCAST_DEMO_ORIGIN")
            or f"{public_url.scheme}://{public_url.netloc}"
        )
        call_command("seed_plans", stdout=io.StringIO())
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(
                username=DEMO_USERNAME, defaults={"email": "demo@example.com"}
            )
            if created:
                user.set_password(password)
                user.save()
            school = self._tenant("Maple Primary School", "maple-primary", Tenant.Kind.SCHOOL)
            shop = self._tenant("Northwind Outfitters", "northwind", Tenant.Kind.SHOP)
            membership_set(tenant=school, user=user, role=Role.OWNER)
            membership_set(tenant=shop, user=user, role=Role.OWNER)
            self._plan(school, "school")
            self._plan(shop, "shop")
            school_template = self._template(school, SCHOOL_TEMPLATE)
            shop_template = self._template(
                shop,
                {
                    **SHOP_TEMPLATE,
                    "content": {
                        **SHOP_TEMPLATE["content"],
                        "reference_images": [{"role": "product", "image": _coat_data_url()}],
                    },
                },
            )
            for subject_name, ref in DEMO_STUDENTS:
                if not ConsentRecord.objects.for_tenant(school).filter(subject_ref=ref).exists():
                    consent_create(
                        tenant=school,
                        subject_name=subject_name,
                        subject_ref=ref,
                        subject_is_minor=True,
                        consented_by=f"Parent of {subject_name}",
                        relationship=ConsentRecord.Relationship.PARENT,
                        scope_note="demo data",
                    )
            rotate = options["rotate_keys"]
            school_key = self._key(school, ApiKey.Kind.SECRET, rotate=rotate)
            shop_key = self._key(shop, ApiKey.Kind.SECRET, rotate=rotate)
            shop_pk = self._key(
                shop,
                ApiKey.Kind.PUBLISHABLE,
                rotate=rotate,
                origin=origin,
                template_ids=[str(shop_template.id)],
            )
        out = {
            "username": DEMO_USERNAME,
            "password": password if user.check_password(password) else "(changed by you)",
            "school": {
                "tenant": school.slug,
                "template": str(school_template.id),
                "secret_key": school_key["raw"],
                "secret_key_prefix": school_key["prefix"],
            },
            "shop": {
                "tenant": shop.slug,
                "template": str(shop_template.id),
                "secret_key": shop_key["raw"],
                "secret_key_prefix": shop_key["prefix"],
                "publishable_key": shop_pk["raw"],
                "publishable_key_prefix": shop_pk["prefix"],
                "publishable_key_origins": shop_pk["origins"],
            },
        }
        kept = any(key["raw"] is None for key in (school_key, shop_key, shop_pk))
        if kept:
            out["note"] = ROTATE_HINT
        if options["json"]:
            self.stdout.write(json.dumps(out, indent=2))
            return
        self.stdout.write(f"demo user: {DEMO_USERNAME} / {out['password']}")
        self.stdout.write(f"school ({school.slug}) template {school_template.id}")
        self.stdout.write(f"  secret key:      {self._shown(school_key)}")
        self.stdout.write(f"shop ({shop.slug}) template {shop_template.id}")
        self.stdout.write(f"  secret key:      {self._shown(shop_key)}")
        self.stdout.write(f"  publishable key: {self._shown(shop_pk)}")
        self.stdout.write(f"    allowed from:  {', '.join(shop_pk['origins'])}")
        if kept:
            self.stdout.write(ROTATE_HINT)

    def _key(
        self,
        tenant: Tenant,
        kind: str,
        *,
        rotate: bool,
        origin: str | None = None,
        template_ids: list[str] | None = None,
    ) -> dict:
        """The live demo key of this kind: kept (and, for the storefront key, allowed from
        ``origin`` too), or minted where there is none or ``rotate`` says so. A rotated
        storefront key keeps the origins of the one it replaces."""
        name = DEMO_KEY_NAMES[0] if kind == ApiKey.Kind.SECRET else DEMO_KEY_NAMES[1]
        live = list(
            ApiKey.objects.for_tenant(tenant)
            .filter(kind=kind, name=name, revoked_at__isnull=True)
            .order_by("created_at")
        )
        if live and not rotate:
            key = live[-1]
            if origin is not None:
                key = apikey_origin_add(api_key=key, origin=origin)
            return {"raw": None, "prefix": key.prefix, "origins": list(key.allowed_origins)}
        origins = list(dict.fromkeys(o for key in live for o in key.allowed_origins))
        if origin is not None and origin not in origins:
            origins.append(origin)
        for key in live:
            apikey_revoke(api_key=key)
        issued = apikey_create(
            tenant=tenant,
            kind=kind,
            name=name,
            allowed_origins=origins if kind == ApiKey.Kind.PUBLISHABLE else None,
            allowed_template_ids=template_ids,
        )
        return {"raw": issued.raw_key, "prefix": issued.api_key.prefix, "origins": origins}

    @staticmethod
    def _shown(key: dict) -> str:
        return key["raw"] or f"{key['prefix']}… (exists; see below)"

    def _tenant(self, name: str, slug: str, kind: str) -> Tenant:
        tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": name, "kind": kind})
        return tenant

    def _plan(self, tenant: Tenant, slug: str) -> None:
        from billing.models import Plan
        from billing.selectors import subscription_for
        from billing.services import subscription_assign

        subscription = subscription_for(tenant=tenant)
        if subscription is None or subscription.plan_id is None:
            subscription_assign(tenant=tenant, plan=Plan.objects.get(slug=slug))

    def _template(self, tenant: Tenant, spec: dict) -> Template:
        existing = Template.objects.for_tenant(tenant).filter(slug=spec["slug"]).first()
        if existing is not None:
            return existing
        return template_create(
            tenant=tenant,
            name=spec["name"],
            kind=spec["kind"],
            slug=spec["slug"],
            content=dict(spec["content"]),
        )
