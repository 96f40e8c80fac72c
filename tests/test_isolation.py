"""Another tenant's objects are 404 on every endpoint, and nothing changes; roles are enforced."""

from __future__ import annotations

import pytest

from generation.batches import batch_create_variants
from generation.models import Batch, ConsentRecord, Job, JobState, StylePreset, Template
from generation.services import JobRequest, job_create, style_preset_save
from tenants.models import ApiKey
from tenants.services import apikey_create
from tests import factories
from tests.conftest import key_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def foreign(other_tenant):
    template = factories.make_template(other_tenant)
    job = job_create(
        tenant=other_tenant, request=JobRequest(template=template, values={"name": "Zed"})
    ).job
    key = apikey_create(tenant=other_tenant, kind="secret", name="theirs").api_key
    consent = factories.make_consent(other_tenant, "Zed")
    batch = batch_create_variants(
        tenant=other_tenant,
        template=template,
        values={"name": "Zed"},
        variants=[{"label": "a"}, {"label": "b", "style": {"preset": "storybook"}}],
    )
    style_preset_save(tenant=other_tenant, fields={"name": "theirs", "look": "grainy"}, create=True)
    return {
        "template": template,
        "job": job,
        "key": key,
        "consent": consent,
        "batch": batch,
        "ids": {
            "template": template.id,
            "job": job.id,
            "key": key.id,
            "consent": consent.id,
            "batch": batch.id,
        },
    }


def _snapshot(other_tenant):
    return (
        list(Template.objects.filter(tenant=other_tenant).values_list("name", "archived_at")),
        list(Job.objects.filter(tenant=other_tenant).values_list("state", "cancel_requested_at")),
        list(ApiKey.objects.filter(tenant=other_tenant).values_list("revoked_at", flat=True)),
        Template.objects.get(tenant=other_tenant).versions.count(),
        list(
            ConsentRecord.objects.filter(tenant=other_tenant).values_list("revoked_at", flat=True)
        ),
        list(StylePreset.objects.filter(tenant=other_tenant).values_list("name", "look")),
        Batch.objects.filter(tenant=other_tenant).count(),
    )


ENDPOINTS = [
    ("get", "/api/v1/templates/{template}/", None),
    ("patch", "/api/v1/templates/{template}/", {"name": "pwned", "prompt": "hijacked {name}"}),
    ("delete", "/api/v1/templates/{template}/", None),
    ("get", "/api/v1/templates/{template}/versions/", None),
    ("get", "/api/v1/jobs/{job}/", None),
    ("post", "/api/v1/jobs/{job}/cancel/", None),
    ("get", "/api/v1/jobs/{job}/download/", None),
    ("post", "/api/v1/templates/{template}/preview/", {"values": {"name": "x"}}),
    ("get", "/api/v1/consents/{consent}/", None),
    ("post", "/api/v1/consents/{consent}/revoke/", {"reason": "x"}),
    ("get", "/api/v1/batches/{batch}/", None),
    ("get", "/api/v1/batches/{batch}/results/", None),
    ("put", "/api/v1/style-presets/theirs/", {"look": "pwned"}),
    ("delete", "/api/v1/style-presets/theirs/", None),
]
SESSION_ENDPOINTS = [
    ("get", "/api/v1/keys/{key}/", None),
    ("post", "/api/v1/keys/{key}/revoke/", None),
]


def _call(client, method, url, body):
    return (
        getattr(client, method)(url, body, format="json") if body else getattr(client, method)(url)
    )


# archiving a template is for people (admin+)
KEY_ENDPOINTS = [e for e in ENDPOINTS if e[:2] != ("delete", "/api/v1/templates/{template}/")]


@pytest.mark.parametrize(("method", "url", "body"), KEY_ENDPOINTS)
def test_a_foreign_object_is_404_by_key_and_nothing_changes(
    api, other_tenant, foreign, method, url, body
):
    before = _snapshot(other_tenant)
    response = _call(
        api,
        method,
        url.format(**foreign["ids"]),
        body,
    )
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert _snapshot(other_tenant) == before


@pytest.mark.parametrize(("method", "url", "body"), ENDPOINTS + SESSION_ENDPOINTS)
def test_a_foreign_object_is_404_by_session_and_nothing_changes(
    tenant, other_tenant, foreign, method, url, body
):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(factories.make_member(tenant, role="owner"))
    before = _snapshot(other_tenant)
    response = _call(
        client,
        method,
        url.format(**foreign["ids"]),
        body,
    )
    assert response.status_code == 404
    assert _snapshot(other_tenant) == before


def test_a_forbidden_action_answers_403_whether_or_not_the_object_is_ours(api, template, foreign):
    ours = api.delete(f"/api/v1/templates/{template.id}/")
    theirs = api.delete(f"/api/v1/templates/{foreign['template'].id}/")
    assert (ours.status_code, theirs.status_code) == (403, 403)
    assert ours.json() == theirs.json()


def test_lists_show_only_the_callers_tenant(api, tenant, template, foreign):
    job_create(tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"}))
    jobs = api.get("/api/v1/jobs/").json()["results"]
    templates = api.get("/api/v1/templates/").json()["results"]
    assert {j["id"] for j in jobs} == {str(j.id) for j in Job.objects.filter(tenant=tenant)}
    assert [t["id"] for t in templates] == [str(template.id)]


def test_a_subclass_cannot_override_the_tenant_scoping():
    from tenants.scoping import TenantScopedViewSet

    for name in ("get_queryset", "get_object"):
        with pytest.raises(TypeError, match=name):
            type("Leaky", (TenantScopedViewSet,), {name: lambda self: None})
    with pytest.raises(TypeError, match="queryset"):
        type("Leaky", (TenantScopedViewSet,), {"queryset": Job.objects.all()})


# --- the role matrix ---------------------------------------------------------------------------

ROLES = ["viewer", "editor", "admin", "owner", "secret_key"]
TEMPLATE_BODY = {
    "name": "New",
    "kind": "character",
    "prompt": "hello {name}",
    "variables": [{"name": "name", "type": "text"}],
    "width": 128,
    "height": 96,
    "fps": 8,
    "duration_s": 1,
}

# action -> the roles that may do it
MATRIX = {
    "list templates": {"viewer", "editor", "admin", "owner", "secret_key"},
    "create template": {"editor", "admin", "owner", "secret_key"},
    "edit template": {"editor", "admin", "owner", "secret_key"},
    "archive template": {"admin", "owner"},
    "list jobs": {"viewer", "editor", "admin", "owner", "secret_key"},
    "create job": {"editor", "admin", "owner", "secret_key"},
    "cancel job": {"editor", "admin", "owner", "secret_key"},
    "list keys": {"admin", "owner"},
    "create key": {"admin", "owner"},
}


def _as(role, tenant):
    from rest_framework.test import APIClient

    if role == "secret_key":
        return key_client(factories.make_secret_key(tenant))
    client = APIClient()
    client.force_login(factories.make_member(tenant, role=role))
    return client


def _do(action, client, template, job):
    return {
        "list templates": lambda: client.get("/api/v1/templates/"),
        "create template": lambda: client.post("/api/v1/templates/", TEMPLATE_BODY, format="json"),
        "edit template": lambda: client.patch(
            f"/api/v1/templates/{template.id}/", {"prompt": "changed {name}"}, format="json"
        ),
        "archive template": lambda: client.delete(f"/api/v1/templates/{template.id}/"),
        "list jobs": lambda: client.get("/api/v1/jobs/"),
        "create job": lambda: client.post(
            "/api/v1/jobs/",
            {"template": str(template.id), "values": {"name": "Ada"}},
            format="json",
        ),
        "cancel job": lambda: client.post(f"/api/v1/jobs/{job.id}/cancel/"),
        "list keys": lambda: client.get("/api/v1/keys/"),
        "create key": lambda: client.post(
            "/api/v1/keys/", {"kind": "secret", "name": "k"}, format="json"
        ),
    }[action]()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(MATRIX))
def test_the_role_matrix(tenant, template, role, action):
    job = job_create(
        tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job
    client = _as(role, tenant)
    counts = (
        Template.objects.count(),
        Job.objects.count(),
        ApiKey.objects.count(),
        template.versions.count(),
    )
    response = _do(action, client, template, job)
    if role in MATRIX[action]:
        assert response.status_code in (200, 201, 204), response.content
    else:
        assert response.status_code == 403, response.content
        assert (
            Template.objects.count(),
            Job.objects.count(),
            ApiKey.objects.count(),
            template.versions.count(),
        ) == counts
        job.refresh_from_db()
        template.refresh_from_db()
        assert job.state == JobState.QUEUED and template.archived_at is None
