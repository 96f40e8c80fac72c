"""The one error shape, the schema and docs, health, and the demo seed."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.management import CommandError, call_command
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


def _seed_demo(capsys, *args: str) -> dict:
    call_command("seed_demo", "--json", *args)
    return json.loads(capsys.readouterr().out)


def _live_demo_keys() -> list[tuple[str, str]]:
    return sorted(
        ApiKey.objects.filter(revoked_at__isnull=True).values_list("tenant__slug", "kind")
    )


ONE_OF_EACH = [("maple-primary", "secret"), ("northwind", "publishable"), ("northwind", "secret")]


def _embed_status(raw_key: str, template_id: str, origin: str) -> int:
    """What the storefront widget gets when it describes the demo template from ``origin``."""
    client = key_client(raw_key, HTTP_ORIGIN=origin)
    return client.get(f"/api/v1/embed/templates/{template_id}/").status_code


def test_seed_demo_run_again_keeps_the_keys_it_printed_working(capsys):
    first = _seed_demo(capsys)

    second = _seed_demo(capsys)

    assert Tenant.objects.count() == 2
    assert Template.objects.count() == 2
    assert _live_demo_keys() == ONE_OF_EACH
    assert key_client(first["school"]["secret_key"]).get("/api/v1/jobs/").status_code == 200
    assert key_client(first["shop"]["secret_key"]).get("/api/v1/jobs/").status_code == 200
    shop_template = first["shop"]["template"]
    pk = first["shop"]["publishable_key"]
    assert _embed_status(pk, shop_template, "http://127.0.0.1:8000") == 200
    # a hashed key cannot be shown again: the second run names it and says how to get new ones
    assert second["school"]["secret_key"] is None
    assert second["shop"]["publishable_key"] is None
    assert second["school"]["secret_key_prefix"] == first["school"]["secret_key_prefix"]
    assert first["school"]["secret_key"].startswith(second["school"]["secret_key_prefix"])
    assert "--rotate-keys" in second["note"]
    assert "note" not in first
    assert second["school"]["template"] == first["school"]["template"]


def test_seed_demo_rotate_keys_revokes_the_demo_keys_and_prints_new_ones(capsys):
    first = _seed_demo(capsys, "--public-origin", "http://127.0.0.1:8100")

    rotated = _seed_demo(capsys, "--rotate-keys", "--public-origin", "http://localhost:8100")

    assert _live_demo_keys() == ONE_OF_EACH
    assert key_client(first["school"]["secret_key"]).get("/api/v1/jobs/").status_code == 401
    assert key_client(rotated["school"]["secret_key"]).get("/api/v1/jobs/").status_code == 200
    assert "note" not in rotated
    # the new storefront key keeps the origins of the one it replaced
    assert rotated["shop"]["publishable_key_origins"] == [
        "http://127.0.0.1:8100",
        "http://localhost:8100",
    ]
    template_id = rotated["shop"]["template"]
    new_pk, old_pk = rotated["shop"]["publishable_key"], first["shop"]["publishable_key"]
    assert _embed_status(new_pk, template_id, "http://127.0.0.1:8100") == 200
    assert _embed_status(old_pk, template_id, "http://127.0.0.1:8100") == 401


def test_the_storefront_key_is_allowed_from_the_port_make_run_used(capsys, settings):
    settings.REELCAST_PUBLIC_URL = "http://127.0.0.1:8100"  # what `PORT=8100 make run` sets

    keys = _seed_demo(capsys)

    pk, template_id = keys["shop"]["publishable_key"], keys["shop"]["template"]
    assert keys["shop"]["publishable_key_origins"] == ["http://127.0.0.1:8100"]
    assert _embed_status(pk, template_id, "http://127.0.0.1:8100") == 200
    assert _embed_status(pk, template_id, "http://127.0.0.1:8000") == 404


def test_seed_demo_run_again_with_another_origin_adds_it_to_the_same_key(capsys):
    first = _seed_demo(capsys, "--public-origin", "http://127.0.0.1:8100")

    again = _seed_demo(capsys, "--public-origin", "HTTP://LocalHost:8200/")

    pk, template_id = first["shop"]["publishable_key"], first["shop"]["template"]
    assert again["shop"]["publishable_key_prefix"] == first["shop"]["publishable_key_prefix"]
    assert again["shop"]["publishable_key_origins"] == [
        "http://127.0.0.1:8100",
        "http://localhost:8200",
    ]
    assert _embed_status(pk, template_id, "http://127.0.0.1:8100") == 200
    assert _embed_status(pk, template_id, "http://localhost:8200") == 200


def test_seed_demo_refuses_an_origin_with_a_path_and_changes_nothing(capsys):
    first = _seed_demo(capsys)

    with pytest.raises(CommandError, match="is not an origin: write only scheme://host"):
        call_command("seed_demo", "--public-origin", "http://127.0.0.1:8100/shop")

    key = ApiKey.objects.get(kind=ApiKey.Kind.PUBLISHABLE, revoked_at__isnull=True)
    assert key.prefix == first["shop"]["publishable_key_prefix"]
    assert key.allowed_origins == ["http://127.0.0.1:8000"]


def test_seed_demo_text_output_says_the_keys_exist_and_how_to_get_new_ones(capsys):
    call_command("seed_demo")
    printed = capsys.readouterr().out
    assert "secret key:      sk_" in printed
    assert "allowed from:  http://127.0.0.1:8000" in printed

    call_command("seed_demo")

    again = capsys.readouterr().out
    assert "sk_" in again and "… (exists; see below)" in again
    assert "seed_demo --rotate-keys` revokes them and prints new ones" in again


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
