from __future__ import annotations

import pytest
from django.db import connection

from tenants.models import ApiKey
from tenants.services import apikey_create, apikey_revoke
from tests import factories
from tests.conftest import key_client

pytestmark = pytest.mark.django_db


def test_it_stores_only_a_hash_and_a_prefix_of_the_key(tenant):
    issued = apikey_create(tenant=tenant, kind="secret", name="server")
    secret_part = issued.raw_key[12:]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM tenants_apikey")
        rows = cursor.fetchall()
    flat = " ".join(str(value) for row in rows for value in row)
    assert issued.raw_key not in flat
    assert secret_part not in flat
    assert issued.raw_key.startswith("sk_")
    assert ApiKey.objects.get().prefix == issued.raw_key[:12]


def test_a_key_authenticates_and_records_last_use(tenant):
    issued = apikey_create(tenant=tenant, kind="secret", name="server")
    response = key_client(issued.raw_key).get("/api/v1/templates/")
    assert response.status_code == 200
    issued.api_key.refresh_from_db()
    assert issued.api_key.last_used_at is not None


@pytest.mark.parametrize(
    "header",
    [
        "Bearer sk_not-a-real-key-at-all-000000",
        "Bearer ",
        "Token sk_whatever",
        "Bearer pk_",
    ],
)
def test_unknown_or_malformed_keys_get_401_in_the_problem_shape(tenant, header):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/jobs/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 401


def test_a_revoked_key_never_authenticates_again(tenant):
    issued = apikey_create(tenant=tenant, kind="secret", name="server")
    client = key_client(issued.raw_key)
    assert client.get("/api/v1/jobs/").status_code == 200
    apikey_revoke(api_key=issued.api_key)
    response = client.get("/api/v1/jobs/")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"


def test_no_credentials_is_401(db):
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/jobs/").status_code == 401


def test_an_admin_creates_a_key_that_is_shown_once_and_can_be_revoked(tenant, client):
    admin = factories.make_member(tenant, role="admin")
    client.force_login(admin)
    response = client.post(
        "/api/v1/keys/", {"kind": "secret", "name": "ci"}, content_type="application/json"
    )
    assert response.status_code == 201
    raw = response.json()["key"]
    key_id = response.json()["api_key"]["id"]
    assert key_client(raw).get("/api/v1/jobs/").status_code == 200
    listed = client.get("/api/v1/keys/").json()["results"]
    assert [k["id"] for k in listed] == [key_id]
    assert "key" not in listed[0] and raw not in str(listed)
    assert client.post(f"/api/v1/keys/{key_id}/revoke/").status_code == 200
    assert key_client(raw).get("/api/v1/jobs/").status_code == 401


def test_a_secret_key_cannot_mint_keys(api, tenant):
    response = api.post("/api/v1/keys/", {"kind": "secret", "name": "escalate"}, format="json")
    assert response.status_code == 403
    assert ApiKey.objects.filter(tenant=tenant).count() == 1


def test_a_publishable_key_must_name_origins_and_templates(tenant, client):
    client.force_login(factories.make_member(tenant, role="owner"))
    response = client.post(
        "/api/v1/keys/", {"kind": "publishable", "name": "shop"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert ApiKey.objects.count() == 0
