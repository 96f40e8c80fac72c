from __future__ import annotations

import pytest

from generation.models import Template

pytestmark = pytest.mark.django_db

BODY = {
    "name": "Honesty story",
    "kind": "character",
    "variables": [
        {"name": "name", "type": "text", "max_length": 32},
        {"name": "friend", "type": "text", "required": False, "default": "a friend"},
    ],
    "prompt": "{name} finds a wallet.\n\n{name} returns it to {friend}.",
    "title": "{name} tells the truth",
    "width": 320,
    "height": 192,
    "fps": 12,
    "duration_s": 2,
}


def test_it_creates_a_template_with_version_1_and_defaults(api):
    response = api.post("/api/v1/templates/", BODY, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["slug"] == "honesty-story"
    assert body["version"]["number"] == 1
    assert body["version"]["model"] == "preview"
    assert api.get(f"/api/v1/templates/{body['id']}/").json()["name"] == "Honesty story"


def test_editing_content_publishes_a_new_version_and_renaming_does_not(api):
    template_id = api.post("/api/v1/templates/", BODY, format="json").json()["id"]
    renamed = api.patch(f"/api/v1/templates/{template_id}/", {"name": "Renamed"}, format="json")
    assert renamed.json()["version"]["number"] == 1
    edited = api.patch(f"/api/v1/templates/{template_id}/", {"duration_s": 3}, format="json")
    assert edited.json()["version"]["number"] == 2
    versions = api.get(f"/api/v1/templates/{template_id}/versions/").json()
    assert [(v["number"], v["duration_s"]) for v in versions] == [(1, 2.0), (2, 3.0)]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prompt": "hello {nobody}"}, "prompt"),
        ({"title": "{missing} title"}, "title"),
        ({"variables": [{"name": "Bad Name", "type": "text"}]}, "variables.0.name"),
        ({"variables": [{"name": "a", "type": "colour"}]}, "variables.0.type"),
        ({"variables": [{"name": "a", "type": "text", "pattern": "("}]}, "variables.0.pattern"),
        ({"variables": [{"name": "a", "type": "choice", "choices": []}]}, "variables.0.choices"),
        (
            {"variables": [{"name": "a", "type": "text"}, {"name": "a", "type": "text"}]},
            "variables.1.name",
        ),
        ({"model": "nope"}, "model"),
        ({"width": 321}, "width"),
        ({"kind": "poem"}, "kind"),
    ],
)
def test_invalid_templates_are_400_and_create_nothing(api, change, field):
    response = api.post("/api/v1/templates/", {**BODY, **change}, format="json")
    assert response.status_code == 400
    assert field in [e["field"] for e in response.json()["errors"]]
    assert Template.objects.count() == 0


def test_an_invalid_edit_keeps_the_current_version(api):
    template_id = api.post("/api/v1/templates/", BODY, format="json").json()["id"]
    response = api.patch(f"/api/v1/templates/{template_id}/", {"prompt": "{ghost}"}, format="json")
    assert response.status_code == 400
    assert Template.objects.get().versions.count() == 1


def test_a_duplicate_slug_is_400(api):
    api.post("/api/v1/templates/", BODY, format="json")
    response = api.post("/api/v1/templates/", BODY, format="json")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["slug"]


def test_archived_templates_leave_the_list_but_stay_readable(api, tenant):
    from rest_framework.test import APIClient

    from tests import factories

    template_id = api.post("/api/v1/templates/", BODY, format="json").json()["id"]
    admin = APIClient()
    admin.force_login(factories.make_member(tenant, role="admin"))
    assert admin.delete(f"/api/v1/templates/{template_id}/").status_code == 204
    assert api.get("/api/v1/templates/").json()["results"] == []
    assert len(api.get("/api/v1/templates/?archived=true").json()["results"]) == 1
    assert api.get(f"/api/v1/templates/{template_id}/").json()["archived_at"] is not None


def test_every_template_route_takes_the_slug_as_job_creation_does(api, tenant):
    created = api.post("/api/v1/templates/", BODY, format="json").json()
    by_id = f"/api/v1/templates/{created['id']}"
    by_slug = "/api/v1/templates/honesty-story"
    values = {"values": {"name": "Ada"}}

    preview = api.post(f"{by_slug}/preview/", values, format="json")

    assert preview.status_code == 200, preview.json()
    assert preview.json() == api.post(f"{by_id}/preview/", values, format="json").json()
    assert preview.json()["title"] == "Ada tells the truth"
    assert api.get(f"{by_slug}/").json()["id"] == created["id"]
    assert [v["number"] for v in api.get(f"{by_slug}/versions/").json()] == [1]
    edited = api.patch(f"{by_slug}/", {"duration_s": 3}, format="json")
    assert (edited.status_code, edited.json()["version"]["number"]) == (200, 2)
    job = api.post("/api/v1/jobs/", {"template": "honesty-story", **values}, format="json").json()
    listed = api.get("/api/v1/jobs/", {"template": "honesty-story"}).json()["results"]
    assert [j["id"] for j in listed] == [job["id"]]
    assert api.get("/api/v1/jobs/", {"template": "no-such-slug"}).json()["results"] == []


def test_another_tenants_slug_is_404_and_changes_nothing(api, other_tenant):
    from tests import factories

    theirs = factories.make_template(other_tenant, slug="their-story")
    before = Template.objects.get(pk=theirs.pk).versions.count()

    answers = [
        api.post("/api/v1/templates/their-story/preview/", {}, format="json"),
        api.get("/api/v1/templates/their-story/"),
        api.get("/api/v1/templates/their-story/versions/"),
        api.patch("/api/v1/templates/their-story/", {"duration_s": 3}, format="json"),
    ]

    assert [(r.status_code, r.json()["code"]) for r in answers] == [(404, "not_found")] * 4
    assert Template.objects.get(pk=theirs.pk).versions.count() == before
    assert api.get("/api/v1/jobs/", {"template": "their-story"}).json()["results"] == []
    refused = api.get("/api/v1/jobs/", {"template": "no slug!"})
    assert (refused.status_code, refused.json()["errors"]) == (
        400,
        [{"field": "template", "message": "Must be a template id or slug."}],
    )
