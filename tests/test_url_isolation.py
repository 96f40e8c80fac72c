"""Every URL the platform serves, enumerated from the resolver, called by another tenant.

For each route that names an object, tenant A's secret key and A's owner (a signed-in session)
ask for tenant B's object with every method: the answer must be exactly the answer for an
object that does not exist (404, or the same 403/405 the route gives any id), and none of B's
rows may change. Collections must not show B's ids. A route that this map does not know fails
the test, so a new endpoint cannot ship without being covered here.
"""

from __future__ import annotations

import uuid

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from generation.batches import batch_create_variants
from generation.services import JobRequest, job_create, style_preset_save
from moderation.models import ModerationDecision, ReviewCase
from tenants.models import ApiKey, Membership, Role, TenantOwnedModel
from tenants.services import apikey_create, invitation_create
from tenants.webhooks import webhook_emit, webhook_endpoint_create
from tests import factories
from tests.conftest import key_client

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")

# Routes nobody's tenant data stands behind, or addressed by an unguessable token: each says
# why it is outside this test (its own tests cover it).
PUBLIC = {
    "schema": "the OpenAPI document",
    "docs": "the API docs page",
    "redoc": "the API docs page",
    "login": "sign-in form",
    "logout": "sign-out",
    "set_language": "language menu",
    "download": "signed, expiring token (tests/generation/test_storage_and_retention.py)",
    "stripe-webhook": "Stripe's signed callbacks (tests/billing/test_webhooks.py)",
    "embed-widget-js": "the public widget script",
    "embed-widget-css": "the public widget stylesheet",
    "account-invitation": "an invitation's secret token, bound to the invitee (test_account_views)",
    "password_reset": "asks for a reset link; the same answer for any address",
    "password_reset_done": "says a link was sent, if an account has the address",
    "password_reset_confirm": "a signed, expiring token bound to one user (test_password_reset)",
    "password_reset_complete": "says the password was changed",
    "detect": "public detection: no credentials, names no one (test_public_detection)",
    "detect-page": "public detection's page (tests/moderation/test_public_detection.py)",
}

# Which of tenant B's objects each URL parameter names, by route name prefix and parameter.
# (API routes come from DRF's router, named "<basename>-<action>", with "pk" or "name".)
API_OBJECTS = {
    "template": "template",
    "embed-template": "template",
    "job": "job",
    "apikey": "key",
    "consent": "consent",
    "style-preset": "style_preset",
    "batch": "batch",
    "webhook-endpoint": "endpoint",
    "webhook-delivery": "delivery",
    "moderation-case": "case",
    "billing-invoice": "invoice",
}
PARAM_OBJECTS = {
    "job_id": "job",
    "template_id": "template",
    "batch_id": "batch",
    "consent_id": "consent",
    "key_id": "key",
    "endpoint_id": "endpoint",
    "delivery_id": "delivery",
    "member_id": "member",
    "invitation_id": "invitation",
    "tenant_id": "tenant",
    "case_id": "case",
    "plan_slug": "plan",
}


def _routes():
    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern

    for route, pattern in walk(get_resolver().url_patterns):
        if route.startswith("admin/"):
            continue  # Django admin: staff only, raw data (tests/test_security.py)
        yield route, pattern


def _params(route: str, pattern: URLPattern) -> list[str]:
    regex = pattern.pattern.regex
    names = list(regex.groupindex)
    return names or [p.split(":")[-1].rstrip(">") for p in route.split("<")[1:]]


def _object_key(name: str, param: str) -> str | None:
    if param in PARAM_OBJECTS:
        return PARAM_OBJECTS[param]
    if param in ("pk", "name"):
        for prefix in sorted(API_OBJECTS, key=len, reverse=True):
            if name.startswith(prefix + "-"):
                return API_OBJECTS[prefix]
    return None


def _url(route: str, values: dict[str, str]) -> str:
    """The route with its parameters filled in (regex routes from DRF, converters otherwise)."""
    import re

    path = route
    for param, value in values.items():
        path = re.sub(rf"\(\?P<{param}>[^)]*\)", value, path)
        path = re.sub(rf"<(?:\w+:)?{param}>", value, path)
    return "/" + path.replace("^", "").replace("$", "")


@pytest.fixture
def foreign(other_tenant, settings):
    """One of everything, owned by tenant B."""
    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = True
    from django.utils import timezone

    from billing.models import Invoice

    template = factories.make_template(other_tenant)
    job = job_create(
        tenant=other_tenant, request=JobRequest(template=template, values={"name": "Zed"})
    ).job
    owner = factories.make_member(other_tenant, role=Role.OWNER)
    member = factories.make_member(other_tenant, role=Role.VIEWER)
    endpoint = webhook_endpoint_create(tenant=other_tenant, url="http://127.0.0.1:9/hook").endpoint
    webhook_emit(tenant=other_tenant, event_type="batch.completed", data={"id": "x"})
    decision = ModerationDecision.objects.create(
        tenant=other_tenant, job=job, stage="text", verdict="review"
    )
    return {
        "tenant": other_tenant.id,
        "template": template.id,
        "job": job.id,
        "key": apikey_create(tenant=other_tenant, kind=ApiKey.Kind.SECRET, name="b").api_key.id,
        "consent": factories.make_consent(other_tenant, "Zed").id,
        "style_preset": style_preset_save(
            tenant=other_tenant, fields={"name": "theirs", "look": "grainy"}, create=True
        ).name,
        "batch": batch_create_variants(
            tenant=other_tenant,
            template=template,
            values={"name": "Zed"},
            variants=[{"label": "a"}, {"label": "b", "style": {"preset": "storybook"}}],
        ).id,
        "endpoint": endpoint.id,
        "delivery": endpoint.deliveries.first().id,
        "case": ReviewCase.objects.create(
            tenant=other_tenant, job=job, decision=decision, stage="text"
        ).id,
        "invoice": Invoice.objects.create(
            tenant=other_tenant,
            stripe_invoice_id="in_theirs",
            status="open",
            currency="usd",
            stripe_created=timezone.now(),
        ).id,
        "member": Membership.objects.get(tenant=other_tenant, user=member).id,
        "invitation": invitation_create(
            tenant=other_tenant,
            invitee="someone@example.com",
            role=Role.VIEWER,
            actor=Membership.objects.get(tenant=other_tenant, user=owner),
        ).invitation.id,
        "plan": "school",
    }


def _missing(value) -> str:
    """An id of the same shape as ``value`` that names nothing."""
    if isinstance(value, int):
        return "987654321"
    if isinstance(value, uuid.UUID):
        return str(uuid.uuid4())
    return "no-such-" + str(value)


def _snapshot(tenant) -> dict:
    """Every tenant-owned row of ``tenant``, field by field."""
    rows = {}
    for model in apps.get_models():
        if issubclass(model, TenantOwnedModel):
            rows[model._meta.label] = sorted(
                map(repr, model.objects.filter(tenant=tenant).values())
            )
    return rows


def _callers(tenant) -> dict[str, APIClient]:
    session = APIClient()
    session.force_login(factories.make_member(tenant, role=Role.OWNER))
    return {"secret key": key_client(factories.make_secret_key(tenant)), "owner session": session}


def _call(client, method: str, url: str):
    return getattr(client, method)(url, {}, format="json")


def test_every_route_is_covered_by_the_isolation_map():
    unknown = []
    for route, pattern in _routes():
        if pattern.name in PUBLIC:
            continue
        for param in _params(route, pattern):
            if _object_key(pattern.name or "", param) is None:
                unknown.append(f"{route} ({pattern.name}: {param})")
    assert unknown == [], "add these routes' parameters to PARAM_OBJECTS/API_OBJECTS"


def test_another_tenants_objects_answer_as_if_they_did_not_exist_and_nothing_changes(
    tenant, other_tenant, foreign
):
    before = _snapshot(other_tenant)
    callers = _callers(tenant)
    checked, problems = 0, []
    for route, pattern in _routes():
        if pattern.name in PUBLIC:
            continue
        params = _params(route, pattern)
        if not params:
            continue
        theirs = {p: str(foreign[_object_key(pattern.name, p)]) for p in params}
        nothing = {p: _missing(foreign[_object_key(pattern.name, p)]) for p in params}
        for who, client in callers.items():
            if who == "secret key" and not route.startswith("api/"):
                continue
            for method in METHODS:
                answer = _call(client, method, _url(route, theirs))
                control = _call(client, method, _url(route, nothing))
                checked += 1
                if answer.status_code != control.status_code or answer.status_code in (
                    200,
                    201,
                    202,
                    204,
                ):
                    problems.append(
                        f"{method.upper()} {_url(route, theirs)} as {who}: "
                        f"{answer.status_code} (a missing id gives {control.status_code})"
                    )
    assert problems == []
    assert checked > 300
    assert _snapshot(other_tenant) == before


def test_collections_never_show_another_tenants_ids(tenant, other_tenant, foreign):
    # Ids long enough not to turn up by chance (uuids); small integer ids would match any digit.
    secrets = {str(v) for k, v in foreign.items() if k != "plan" and len(str(v)) >= 32}
    secrets |= {"in_theirs"}  # B's invoice, by its Stripe id
    callers = _callers(tenant)
    leaks = []
    for route, pattern in _routes():
        if pattern.name in PUBLIC or _params(route, pattern):
            continue
        for who, client in callers.items():
            if who == "secret key" and not route.startswith("api/"):
                continue
            response = client.get(_url(route, {}))
            assert response.status_code < 500, (route, who, response.status_code)
            body = response.content.decode("utf-8", "replace")
            leaks += [f"{route} as {who} shows {s}" for s in secrets if s in body]
    assert leaks == []


def test_every_page_refuses_a_post_without_a_csrf_token(tenant, other_tenant, foreign):
    """Signed in, but posting from another site: every dashboard, account and console route
    (own and missing ids alike) answers 403 before the view runs, and nothing changes."""
    from django.test import Client

    user = factories.make_member(tenant, role=Role.OWNER)
    user.is_staff = user.is_superuser = True  # the console's routes too
    user.save()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    before = (_snapshot(tenant), _snapshot(other_tenant))
    refused = []
    for route, pattern in _routes():
        if not route.startswith(("app/", "console/", "accounts/", "i18n/")):
            continue
        if pattern.name in ("logout",):
            continue
        values = {
            p: _missing(foreign[key]) if (key := _object_key(pattern.name, p)) else "no-such-token"
            for p in _params(route, pattern)
        }
        response = browser.post(_url(route, values), {"reason": "x", "name": "y"})
        refused.append((route, response.status_code))
    assert refused and all(status == 403 for _, status in refused), [
        r for r in refused if r[1] != 403
    ]
    assert (_snapshot(tenant), _snapshot(other_tenant)) == before
