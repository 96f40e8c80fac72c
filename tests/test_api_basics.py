"""The one error shape, the schema and docs, health, and the demo seed."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from generation.models import Template
from tenants.models import ApiKey, Tenant
from tests import factories
from tests.conftest import key_client

pytestmark = pytest.mark.django_db


def test_an_unknown_api_url_is_a_problem_document(api):
    response = api.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "Not found.",
        "code": "not_found",
    }


NOT_FOUND = {
    "type": "about:blank",
    "title": "Not Found",
    "status": 404,
    "detail": "Not found.",
    "code": "not_found",
}


def test_every_404_is_the_same_problem_document(api, other_tenant):
    theirs = factories.make_template(other_tenant)
    paths = [
        "/api/v1/nothing-here/",  # an unknown route
        "/api/nothing-here/",
        f"/api/v1/jobs/{uuid.uuid4()}/",  # an unknown id
        "/api/v1/jobs/not-a-uuid/",  # a malformed id
        "/api/v1/jobs/not-a-uuid/download/",
        f"/api/v1/templates/{theirs.id}/",  # another tenant's object, by id and by slug
        f"/api/v1/templates/{theirs.slug}/",
        f"/api/v1/templates/{theirs.id}/versions/",
        "/api/v1/consents/12345/",
        f"/api/v1/batches/{uuid.uuid4()}/results/",
    ]
    answers = {}
    for path in paths:
        response = api.get(path)
        answers[path] = (response.status_code, response["Content-Type"], response.json())
    assert answers == {path: (404, "application/problem+json", NOT_FOUND) for path in paths}


def test_the_error_codes_are_the_documented_ones(api, tenant):
    viewer = APIClient()
    viewer.force_login(factories.make_member(tenant, role="viewer"))
    answers = {
        "no key": APIClient().get("/api/v1/jobs/"),
        "unknown key": key_client("sk_not_a_key_at_all").get("/api/v1/jobs/"),
        "not bearer": APIClient(HTTP_AUTHORIZATION="Basic dXNlcjpwdw==").get("/api/v1/jobs/"),
        "role": viewer.post("/api/v1/keys/", {"name": "k"}, format="json"),
        "method": api.put("/api/v1/jobs/", {}, format="json"),
        "accept": api.get("/api/v1/jobs/", HTTP_ACCEPT="text/csv"),
        "media type": api.post("/api/v1/jobs/", "name=Ada", content_type="text/plain"),
        "json": api.generic("POST", "/api/v1/jobs/", "{", content_type="application/json"),
    }
    codes = {
        name: (response.status_code, response["Content-Type"], response.json()["code"])
        for name, response in answers.items()
    }
    assert codes == {
        "no key": (401, "application/problem+json", "not_authenticated"),
        "unknown key": (401, "application/problem+json", "invalid_api_key"),
        "not bearer": (401, "application/problem+json", "malformed_credentials"),
        "role": (403, "application/problem+json", "permission_denied"),
        "method": (405, "application/problem+json", "method_not_allowed"),
        "accept": (406, "application/problem+json", "not_acceptable"),
        "media type": (415, "application/problem+json", "unsupported_media_type"),
        "json": (400, "application/problem+json", "parse_error"),
    }
    assert all(response.json()["detail"] for response in answers.values())


def test_malformed_json_is_a_400_problem(api):
    response = api.generic("POST", "/api/v1/jobs/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_the_openapi_schema_lists_every_endpoint(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    for path in (
        "/api/v1/jobs/",
        "/api/v1/jobs/{id}/",
        "/api/v1/jobs/{id}/cancel/",
        "/api/v1/jobs/{id}/download/",
        "/api/v1/templates/",
        "/api/v1/keys/",
    ):
        assert path in schema["paths"], path


def test_the_docs_page_serves_its_assets_locally(client):
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn." not in html and "unpkg" not in html
    assert "/static/drf_spectacular_sidecar/" in html


def test_health_and_readiness_answer_on_any_host(client):
    assert client.get("/healthz", HTTP_HOST="10.0.0.7").json() == {"status": "ok"}
    ready = client.get("/readyz", HTTP_HOST="10.0.0.7")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"
    assert client.get("/api/v1/jobs/", HTTP_HOST="10.0.0.7").status_code == 400  # others check


def test_readiness_fails_when_the_broker_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["broker"].startswith("unavailable")


def test_seed_demo_is_idempotent_and_leaves_one_live_key_of_each_kind(capsys):
    call_command("seed_demo", "--json")
    first = json.loads(capsys.readouterr().out)
    call_command("seed_demo", "--json")
    second = json.loads(capsys.readouterr().out)
    assert Tenant.objects.count() == 2
    assert Template.objects.count() == 2
    live = ApiKey.objects.filter(revoked_at__isnull=True)
    assert sorted(live.values_list("tenant__slug", "kind")) == [
        ("maple-primary", "secret"),
        ("northwind", "publishable"),
        ("northwind", "secret"),
    ]
    assert key_client(first["school"]["secret_key"]).get("/api/v1/jobs/").status_code == 401
    assert key_client(second["school"]["secret_key"]).get("/api/v1/jobs/").status_code == 200
    assert second["school"]["template"] == first["school"]["template"]


def test_the_demo_templates_make_jobs(run_on_commit, capsys):
    call_command("seed_demo", "--json")
    keys = json.loads(capsys.readouterr().out)
    api = key_client(keys["school"]["secret_key"])
    response = run_on_commit(
        api.post,
        "/api/v1/jobs/",
        {
            "template": "courage-story",
            "values": {"name": "小明"},
            "end_user": "S-1001",  # a pupil whose parent's consent the demo records
            "duration_s": 1,
            "fps": 8,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    job = api.get(f"/api/v1/jobs/{response.json()['id']}/").json()
    assert job["state"] == "succeeded"
    assert job["title"] == "小明 · a story of courage"
    assert job["consent"] is not None
    shop = key_client(keys["shop"]["secret_key"])
    tryon = run_on_commit(
        shop.post,
        "/api/v1/jobs/",
        {
            "template": "hudson-coat-nyc",
            "values": {"shopper": "Ana"},
            "consent": {"consented_by": "Ana Lima", "subject_name": "Ana Lima"},
            "duration_s": 1,
            "fps": 8,
        },
        format="json",
    )
    assert tryon.status_code == 201, tryon.content
    assert shop.get(f"/api/v1/jobs/{tryon.json()['id']}/").json()["state"] == "succeeded"


def test_createtenant_makes_a_tenant_with_an_owner_and_a_working_key(capsys):
    call_command(
        "createtenant",
        "Riverside High",
        "--kind",
        "school",
        "--owner",
        "principal",
        "--with-key",
        "--json",
    )
    out = json.loads(capsys.readouterr().out)
    tenant = Tenant.objects.get(pk=out["tenant_id"])
    assert (tenant.slug, tenant.kind) == ("riverside-high", "school")
    from tenants.models import Membership

    owner = Membership.objects.get(tenant=tenant)
    assert (owner.user.username, owner.role) == ("principal", "owner")
    assert key_client(out["secret_key"]).get("/api/v1/templates/").status_code == 200


def test_createtenant_refuses_a_taken_slug():
    from django.core.management.base import CommandError

    call_command("createtenant", "A", "--slug", "taken")
    with pytest.raises(CommandError, match="exists already"):
        call_command("createtenant", "B", "--slug", "taken")
    assert Tenant.objects.count() == 1
