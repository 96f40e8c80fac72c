"""A method a route does not serve is a 405 with ``Allow``, whoever asks.

Every POST-only API action is found by walking the URL resolver, so a new one is covered
without touching this file. The method is checked before the role matrix: a viewer asking
GET of a POST route learns that the route takes POST (405), not that their role is too low
(403), and so do an owner, a secret key and a publishable key.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tenants.auth import ApiKeyAuthentication
from tenants.models import Role
from tenants.services import apikey_create
from tests import factories
from tests.conftest import key_client

pytestmark = pytest.mark.django_db

SHOP = "https://shop.example"


def _viewset_routes():
    """(path, view class, {method: action}) for every DRF viewset route."""

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                actions = getattr(pattern.callback, "actions", None)
                if actions:
                    yield prefix + str(pattern.pattern), pattern.callback.cls, actions

    for route, cls, actions in walk(get_resolver().url_patterns):
        path = re.sub(r"\(\?P<\w+>[^)]*\)", str(uuid.uuid4()), route)
        path = re.sub(r"<(?:\w+:)?\w+>", str(uuid.uuid4()), path)
        yield "/" + path.replace("^", "").replace("$", ""), cls, actions


def _post_only_routes() -> list[tuple[str, type]]:
    return [(path, cls) for path, cls, actions in _viewset_routes() if set(actions) == {"post"}]


@pytest.fixture
def callers(tenant) -> dict[str, APIClient]:
    """Signed-in members of every role, a secret key and a publishable key (from its origin)."""
    clients = {}
    for role in (Role.VIEWER, Role.EDITOR, Role.ADMIN, Role.OWNER):
        session = APIClient()
        session.force_login(factories.make_member(tenant, role=role))
        clients[f"{role} session"] = session
    clients["secret key"] = key_client(factories.make_secret_key(tenant))
    publishable = apikey_create(
        tenant=tenant, kind="publishable", name="shop", allowed_origins=[SHOP]
    ).raw_key
    clients["publishable key"] = key_client(publishable, HTTP_ORIGIN=SHOP)
    return clients


def test_the_walk_finds_the_post_only_actions():
    paths = [path for path, _ in _post_only_routes()]
    assert len(paths) >= 10
    for shape in (
        r"/api/v1/jobs/[^/]+/cancel/",
        r"/api/v1/jobs/[^/]+/events-token/",
        r"/api/v1/templates/[^/]+/preview/",
        r"/api/v1/keys/[^/]+/revoke/",
        r"/api/v1/batches/variants/",
    ):
        assert any(re.fullmatch(shape, path) for path in paths), shape


def test_get_on_every_post_only_action_is_405_with_allow_for_every_role(callers):
    wrong = []
    checked = 0
    for path, cls in _post_only_routes():
        takes_keys = ApiKeyAuthentication in cls.authentication_classes
        for who, client in callers.items():
            if who.endswith(" key") and not takes_keys:
                continue  # the route does not know API keys (the operator console's API)
            response = client.get(path)
            checked += 1
            answer = (
                response.status_code,
                response.get("Allow"),
                response.get("Content-Type"),
                response.json(),
            )
            expected = (
                405,
                "POST",
                "application/problem+json",
                {
                    "type": "about:blank",
                    "title": "Method Not Allowed",
                    "status": 405,
                    "detail": "GET is not allowed here; use POST.",
                    "code": "method_not_allowed",
                },
            )
            if answer != expected:
                wrong.append(f"GET {path} as {who}: {answer}")
    assert wrong == []
    assert checked >= 60


def test_a_method_a_collection_does_not_take_is_405_not_403(tenant):
    viewer = APIClient()
    viewer.force_login(factories.make_member(tenant, role=Role.VIEWER))

    response = viewer.delete("/api/v1/jobs/")

    assert (response.status_code, response["Allow"]) == (405, "GET, POST, HEAD")
    assert response.json()["code"] == "method_not_allowed"
    assert response.json()["detail"] == "DELETE is not allowed here; use GET, POST."


def test_options_is_refused_and_left_out_of_allow(api):
    response = api.options("/api/v1/jobs/")
    assert (response.status_code, response["Allow"]) == (405, "GET, POST, HEAD")
    assert response.json()["code"] == "method_not_allowed"


def test_without_credentials_the_wrong_method_is_still_401(tenant):
    response = APIClient().get(f"/api/v1/jobs/{uuid.uuid4()}/cancel/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_the_right_method_still_goes_through_the_role_matrix(tenant, template):
    viewer = APIClient()
    viewer.force_login(factories.make_member(tenant, role=Role.VIEWER))

    response = viewer.post(f"/api/v1/jobs/{uuid.uuid4()}/cancel/")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
