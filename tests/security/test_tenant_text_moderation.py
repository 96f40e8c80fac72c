"""Every tenant-supplied text that can reach a frame passes the job values' policy, at save and
at render (issue #15): brand-kit cards, template titles, scripts and variable labels, style
presets and consent names. Before, the brand kit's intro and outro were drawn on every video
unchecked."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from generation.models import BrandKit, ConsentRecord, Job, StylePreset, Template
from tests import factories
from tests.generation.test_templates_api import BODY

pytestmark = pytest.mark.django_db

BLOCKED = "p*rn party"  # a sexual term under a mask: blocked by a school's strict policy


def _admin(tenant) -> APIClient:
    client = APIClient()
    client.force_login(factories.make_member(tenant, role="admin"))
    return client


def _fields(response) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


def test_a_brand_kit_card_with_blocked_text_is_422_and_changes_nothing(tenant):
    response = _admin(tenant).post(
        "/api/v1/brand-kit/", {"intro_text": BLOCKED, "outro_text": "Thanks"}, format="json"
    )
    assert response.status_code == 422
    assert response.json()["code"] == "content_blocked"
    assert _fields(response) == ["intro_text"]
    assert BrandKit.objects.count() == 0


def test_the_dashboard_brand_kit_form_refuses_blocked_text(client, tenant):
    client.force_login(factories.make_member(tenant, role="admin"))
    response = client.post(
        "/app/templates/brand/",
        {
            "logo_corner": "bottom-left",
            "logo_size": "0.1",
            "primary_colour": "#112233",
            "secondary_colour": "#445566",
            "intro_text": "Welcome",
            "intro_seconds": "1.5",
            "outro_text": BLOCKED,
            "outro_seconds": "1",
            "label_locale": "en",
        },
    )
    assert response.status_code == 400
    assert "content moderation" in response.content.decode()
    assert BrandKit.objects.filter(outro_text=BLOCKED).count() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": "{name} and the " + BLOCKED}, "title"),
        ({"prompt": "{name} goes to a " + BLOCKED + "."}, "prompt"),
        (
            {
                "variables": [
                    {"name": "name", "type": "text", "label": "Your " + BLOCKED},
                    {"name": "friend", "type": "text", "required": False},
                ]
            },
            "variables.0.label",
        ),
        (
            {
                "variables": [
                    {"name": "name", "type": "text"},
                    {"name": "friend", "type": "text", "required": False, "default": BLOCKED},
                ]
            },
            "variables.1.default",
        ),
    ],
)
def test_a_template_with_blocked_text_is_422_and_creates_nothing(api, change, field):
    response = api.post("/api/v1/templates/", {**BODY, **change}, format="json")
    assert response.status_code == 422, response.json()
    assert response.json()["code"] == "content_blocked"
    assert field in _fields(response)
    assert Template.objects.count() == 0


def test_a_new_template_version_with_blocked_text_is_refused(api):
    template_id = api.post("/api/v1/templates/", BODY, format="json").json()["id"]
    response = api.patch(
        f"/api/v1/templates/{template_id}/", {"title": "A " + BLOCKED}, format="json"
    )
    assert response.status_code == 422
    assert Template.objects.get(pk=template_id).versions.count() == 1


def test_a_style_preset_with_blocked_text_is_refused(api):
    response = api.post(
        "/api/v1/style-presets/", {"name": "night", "look": "a " + BLOCKED}, format="json"
    )
    assert response.status_code == 422
    assert _fields(response) == ["look"]
    assert StylePreset.objects.count() == 0


def test_a_consent_whose_name_is_blocked_text_is_refused(api):
    response = api.post(
        "/api/v1/consents/",
        {"subject_name": "Porno Star", "consented_by": "Parent", "relationship": "guardian"},
        format="json",
    )
    assert response.status_code == 422, response.json()
    assert _fields(response) == ["subject_name"]
    assert ConsentRecord.objects.count() == 0


def test_a_job_is_refused_while_the_brand_kit_it_would_draw_holds_blocked_text(api, tenant):
    # Saved before the lexicon knew the word (or through the admin): judged again at render.
    BrandKit.objects.create(tenant=tenant, outro_text=BLOCKED)
    template = factories.make_template(tenant)
    response = api.post(
        "/api/v1/jobs/", {"template": str(template.id), "values": {"name": "Ada"}}, format="json"
    )
    assert response.status_code == 422
    assert response.json()["code"] == "content_blocked"
    assert _fields(response) == ["brand_kit.outro_text"]
    assert Job.objects.count() == 0


def test_ordinary_texts_are_saved(api, tenant):
    response = _admin(tenant).post(
        "/api/v1/brand-kit/",
        {"intro_text": "Maple School presents", "outro_text": "Be kind"},
        format="json",
    )
    assert response.status_code in (200, 201), response.json()
    assert api.post("/api/v1/templates/", BODY, format="json").status_code == 201
