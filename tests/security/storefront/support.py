"""A shop, its storefront template and publishable key, for the storefront abuse tests.

The template hides things a shopper must never see or set: the shot prompt, the negative
prompt, the product text, a style preset and a private ``promo`` variable that goes straight
into the prompt. Only ``shopper`` and ``scene`` are public.
"""

from __future__ import annotations

from typing import Any

from generation.models import Template
from tenants.models import Tenant
from tenants.services import IssuedKey, apikey_create
from tests import factories

SHOP = "https://shop.example"
ELSEWHERE = "https://evil.example"
PROMPT_SECRET = "strolls past the hidden atelier of Maison Quill"
NEGATIVE_SECRET = "grainy vhs artefacts"
PRODUCT_SECRET = "the Quill cashmere trench, lot 7741"
PROMO_DEFAULT = "no discount"

STOREFRONT_CONTENT: dict[str, Any] = {
    "variables": [
        {
            "name": "shopper",
            "type": "text",
            "label": "Your first name",
            "max_length": 32,
            "default": "You",
            "public": True,
        },
        {
            "name": "scene",
            "type": "choice",
            "choices": ["a Paris street", "a snowy park"],
            "default": "a Paris street",
            "public": True,
        },
        {"name": "promo", "type": "text", "default": PROMO_DEFAULT, "max_length": 80},
    ],
    "prompt": "{shopper} " + PROMPT_SECRET + " on {scene}, {promo}.",
    "negative_prompt": NEGATIVE_SECRET,
    "product": PRODUCT_SECRET,
    "style": {"preset": "cinematic"},
    "title": "",
    "model": "preview",
    "width": 128,
    "height": 96,
    "fps": 8,
    "duration_s": 1.0,
}

# Strings of the template's internals that no answer to a publishable key may contain.
SECRETS = (
    PROMPT_SECRET,
    "Maison Quill",
    NEGATIVE_SECRET,
    PRODUCT_SECRET,
    "lot 7741",
    PROMO_DEFAULT,
)
# Job fields of the full view that the embed view never has.
INTERNAL_FIELDS = (
    "shots",
    "model",
    "seed",
    "values",
    "title",
    "tags",
    "style",
    "end_user",
    "transitions",
    "consent",
    "pool",
    "priority",
    "device_ms",
    "width",
    "height",
    "fps",
    "duration_s",
)


def make_shop() -> Tenant:
    return factories.make_tenant(name="Quill & Co", kind="shop")


def make_storefront_template(shop: Tenant, **content: Any) -> Template:
    fields = {"name": "Trench try-on", "slug": "trench", "kind": "product"}
    return factories.make_template(shop, **{**fields, **STOREFRONT_CONTENT, **content})


def make_publishable_key(shop: Tenant, template: Template, **budget: Any) -> IssuedKey:
    return apikey_create(
        tenant=shop,
        kind="publishable",
        name="storefront",
        allowed_origins=[SHOP],
        allowed_template_ids=[str(template.id)],
        **budget,
    )


def job_body(**overrides: Any) -> dict[str, Any]:
    return {"template": "trench", "values": {"shopper": "Ana"}, **overrides}
