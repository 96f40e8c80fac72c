"""The dashboard's account pages: API keys, webhooks and the team, for each role and tenant."""

from __future__ import annotations

import logging
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tenants import webhooks
from tenants.models import ApiKey, Invitation, Membership, WebhookDelivery, WebhookEndpoint
from tenants.services import apikey_create
from tests import factories
from tests.conftest import key_client
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.django_db

KEYS = "/app/account/keys/"
WEBHOOKS = "/app/account/webhooks/"
TEAM = "/app/account/team/"


def _signed_in(tenant, role: str, username: str | None = None) -> Client:
    client = Client()
    client.force_login(factories.make_member(tenant, role=role, username=username))
    return client


def _html(response) -> str:
    return response.content.decode()


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture(autouse=True)
def _webhook_targets_on_loopback(settings):
    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = True  # the receiver is on 127.0.0.1


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


# --- API keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_a_viewer_or_editor_cannot_see_or_create_keys_and_nothing_is_created(tenant, role):
    client = _signed_in(tenant, role)

    page = client.get(KEYS)
    created = client.post(KEYS, {"kind": "secret", "name": "sneaky"})

    assert (page.status_code, created.status_code) == (403, 403)
    assert "Only admins and owners can use this page." in _html(created)
    assert ApiKey.objects.count() == 0


def test_the_menu_shows_keys_and_webhooks_to_admins_only(tenant):
    viewer_page = _html(_signed_in(tenant, "viewer").get(TEAM))
    admin_page = _html(_signed_in(tenant, "admin").get(TEAM))

    assert 'href="/app/account/keys/"' not in viewer_page
    assert 'href="/app/account/webhooks/"' not in viewer_page
    assert 'href="/app/account/keys/"' in admin_page
    assert 'href="/app/account/webhooks/"' in admin_page


def test_an_admin_creates_a_secret_key_that_is_shown_exactly_once(tenant, caplog):
    caplog.set_level(logging.DEBUG)
    client = _signed_in(tenant, "admin")

    response = client.post(KEYS, {"kind": "secret", "name": "CI server"})

    assert response.status_code == 201
    api_key = ApiKey.objects.get(tenant=tenant)
    [raw] = re.findall(r"sk_[A-Za-z0-9_\-]{20,}", _html(response))
    assert raw.startswith(api_key.prefix)
    assert _html(response).count(raw) == 1
    assert "no-store" in response["Cache-Control"]
    assert (api_key.name, api_key.kind, api_key.allowed_origins) == ("CI server", "secret", [])
    assert key_client(raw).get("/api/v1/jobs/").status_code == 200
    later = [client.get(KEYS), client.get(TEAM), client.get("/app/billing/")]
    assert all(raw not in _html(page) for page in later)
    assert f"{api_key.prefix}…" in _html(later[0])
    assert raw not in caplog.text
    assert raw not in str(client.session.items())


def test_a_publishable_key_names_its_origins_and_templates(tenant, template):
    client = _signed_in(tenant, "owner")

    missing = client.post(KEYS, {"kind": "publishable", "name": "shop"})
    not_an_origin = client.post(
        KEYS,
        {
            "kind": "publishable",
            "name": "shop",
            "allowed_origins": "https://shop.example.com/checkout",
            "allowed_templates": [str(template.id)],
        },
    )
    created = client.post(
        KEYS,
        {
            "kind": "publishable",
            "name": "shop",
            "allowed_origins": "https://Shop.Example.com/\nhttp://localhost:8080",
            "allowed_templates": [str(template.id)],
        },
    )

    assert missing.status_code == 400
    errors = dict(re.findall(r'data-field="(\w+)">([^<]+)<', _html(missing)))
    assert errors == {
        "allowed_origins": "A publishable key needs at least one origin.",
        "allowed_templates": "A publishable key needs at least one template.",
    }
    assert 'aria-invalid="true"' in _html(missing)
    assert not_an_origin.status_code == 400
    assert "is not an origin" in _html(not_an_origin)
    assert created.status_code == 201
    api_key = ApiKey.objects.get(tenant=tenant)
    assert api_key.kind == "publishable"
    assert api_key.allowed_origins == ["https://shop.example.com", "http://localhost:8080"]
    assert api_key.allowed_template_ids == [str(template.id)]
    assert len(re.findall(r"pk_[A-Za-z0-9_\-]{20,}", _html(created))) == 1


def test_another_tenants_template_cannot_be_named_on_a_key(tenant, other_tenant):
    theirs = factories.make_template(other_tenant)
    response = _signed_in(tenant, "admin").post(
        KEYS,
        {
            "kind": "publishable",
            "name": "shop",
            "allowed_origins": "https://shop.example.com",
            "allowed_templates": [str(theirs.id)],
        },
    )
    assert response.status_code == 400
    assert 'data-field="allowed_templates"' in _html(response)
    assert ApiKey.objects.count() == 0


def test_an_admin_revokes_a_key_and_it_stops_working(tenant):
    issued = apikey_create(tenant=tenant, kind="secret", name="old")
    client = _signed_in(tenant, "admin")

    response = client.post(f"{KEYS}{issued.api_key.id}/revoke/", follow=True)

    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is not None
    assert _messages(response) == [f"Key {issued.api_key.prefix}… is revoked."]
    assert key_client(issued.raw_key).get("/api/v1/jobs/").status_code == 401
    assert "Revoked" in _html(response)


def test_a_viewer_cannot_revoke_a_key(tenant):
    issued = apikey_create(tenant=tenant, kind="secret", name="live")
    response = _signed_in(tenant, "viewer").post(f"{KEYS}{issued.api_key.id}/revoke/")
    issued.api_key.refresh_from_db()
    assert (response.status_code, issued.api_key.revoked_at) == (403, None)


def test_another_tenants_key_is_404_and_stays_live(tenant, other_tenant):
    theirs = apikey_create(tenant=other_tenant, kind="secret", name="theirs")
    response = _signed_in(tenant, "owner").post(f"{KEYS}{theirs.api_key.id}/revoke/")
    theirs.api_key.refresh_from_db()
    assert (response.status_code, theirs.api_key.revoked_at) == (404, None)
    assert theirs.api_key.prefix not in _html(_signed_in(tenant, "owner").get(KEYS))


def test_signed_out_visitors_are_sent_to_sign_in(db):
    response = Client().get(KEYS)
    assert (response.status_code, response["Location"]) == (302, f"/accounts/login/?next={KEYS}")


# --- webhooks ------------------------------------------------------------------------------------


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(tenant, receiver):
    client = _signed_in(tenant, "admin")

    response = client.post(
        WEBHOOKS, {"url": receiver.url(), "description": "CRM", "event_types": ["job.succeeded"]}
    )

    assert response.status_code == 201
    endpoint = WebhookEndpoint.objects.get(tenant=tenant)
    assert (endpoint.url, endpoint.event_types) == (receiver.url(), ["job.succeeded"])
    assert _html(response).count(endpoint.secret) == 1
    assert "no-store" in response["Cache-Control"]
    listing = _html(client.get(WEBHOOKS))
    detail = _html(client.get(f"{WEBHOOKS}{endpoint.id}/"))
    assert receiver.url() in listing and endpoint.secret not in listing
    assert endpoint.secret not in detail


def test_a_private_target_is_refused_on_the_url_field(tenant, settings):
    settings.REELCAST_WEBHOOKS_ALLOW_PRIVATE = False
    response = _signed_in(tenant, "admin").post(WEBHOOKS, {"url": "http://127.0.0.1/hook"})
    assert response.status_code == 400
    assert re.search(
        r'data-field="url">Refused: 127\.0\.0\.1 is a loopback address', _html(response)
    )
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_a_viewer_or_editor_cannot_manage_webhooks(tenant, role):
    issued = webhooks.webhook_endpoint_create(tenant=tenant, url="http://127.0.0.1:9/hook")
    client = _signed_in(tenant, role)
    responses = [
        client.get(WEBHOOKS),
        client.post(WEBHOOKS, {"url": "http://127.0.0.1:9/other"}),
        client.post(f"{WEBHOOKS}{issued.endpoint.id}/delete/"),
        client.post(f"{WEBHOOKS}{issued.endpoint.id}/rotate/"),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403, 403]
    assert list(WebhookEndpoint.objects.values_list("secret", flat=True)) == [issued.secret]


def test_the_delivery_log_shows_attempts_and_replay_queues_a_new_one(
    tenant, receiver, run_on_commit, django_capture_on_commit_callbacks
):
    issued = webhooks.webhook_endpoint_create(tenant=tenant, url=receiver.url())
    event = run_on_commit(
        webhooks.webhook_emit, tenant=tenant, event_type="job.succeeded", data={"id": "j1"}
    )
    receiver.wait_for(1)
    original = WebhookDelivery.objects.get(event=event)
    client = _signed_in(tenant, "admin")
    log = _html(client.get(f"{WEBHOOKS}{issued.endpoint.id}/"))
    assert event.id in log and "Succeeded" in log and ">200<" in log

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(f"{WEBHOOKS}deliveries/{original.id}/replay/")

    assert response.status_code == 302
    assert response["Location"] == f"{WEBHOOKS}{issued.endpoint.id}/"
    assert len(callbacks) == 1  # the new attempt was queued on commit
    replay = WebhookDelivery.objects.get(event=event, attempt=2)
    assert (replay.manual, replay.status, replay.status_code) == (True, "succeeded", 200)
    assert [r.headers["webhook-id"] for r in receiver.wait_for(2)] == [event.id, event.id]


def test_replay_to_a_disabled_endpoint_says_why_and_queues_nothing(tenant, run_on_commit):
    issued = webhooks.webhook_endpoint_create(tenant=tenant, url="http://127.0.0.1:9/hook")
    event = webhooks.webhook_emit(tenant=tenant, event_type="job.failed", data={"id": "j2"})
    webhooks.webhook_endpoint_update(endpoint=issued.endpoint, enabled=False)
    delivery = WebhookDelivery.objects.get(event=event)

    response = _signed_in(tenant, "owner").post(
        f"{WEBHOOKS}deliveries/{delivery.id}/replay/", follow=True
    )

    assert _messages(response) == ["The endpoint is disabled; enable it before replaying."]
    assert WebhookDelivery.objects.filter(event=event).count() == 1


def test_rotating_shows_the_new_secret_once_and_keeps_the_old_one_signing(tenant):
    issued = webhooks.webhook_endpoint_create(tenant=tenant, url="http://127.0.0.1:9/hook")
    client = _signed_in(tenant, "admin")

    response = client.post(f"{WEBHOOKS}{issued.endpoint.id}/rotate/")

    endpoint = WebhookEndpoint.objects.get()
    assert response.status_code == 200
    assert endpoint.secret != issued.secret
    assert endpoint.previous_secret == issued.secret
    assert _html(response).count(endpoint.secret) == 1
    assert issued.secret not in _html(response)
    client.post(f"{WEBHOOKS}{endpoint.id}/rotate/", {"at_once": "1"})
    endpoint.refresh_from_db()
    assert (endpoint.previous_secret, endpoint.previous_secret_expires_at) == ("", None)


def test_an_admin_disables_enables_and_deletes_an_endpoint(tenant):
    issued = webhooks.webhook_endpoint_create(tenant=tenant, url="http://127.0.0.1:9/hook")
    url = f"{WEBHOOKS}{issued.endpoint.id}/"
    client = _signed_in(tenant, "admin")

    client.post(f"{url}enabled/", {"enabled": "0"})
    disabled = WebhookEndpoint.objects.get().enabled
    client.post(f"{url}enabled/", {"enabled": "1"})
    enabled = WebhookEndpoint.objects.get().enabled
    deleted = client.post(f"{url}delete/")

    assert (disabled, enabled) == (False, True)
    assert (deleted.status_code, deleted["Location"]) == (302, WEBHOOKS)
    assert WebhookEndpoint.objects.count() == 0


def test_another_tenants_endpoint_and_deliveries_are_404_and_nothing_changes(tenant, other_tenant):
    theirs = webhooks.webhook_endpoint_create(tenant=other_tenant, url="http://127.0.0.1:9/hook")
    event = webhooks.webhook_emit(tenant=other_tenant, event_type="job.failed", data={"id": "x"})
    delivery = WebhookDelivery.objects.get(event=event)
    client = _signed_in(tenant, "owner")
    url = f"{WEBHOOKS}{theirs.endpoint.id}/"

    responses = [
        client.get(url),
        client.post(f"{url}rotate/"),
        client.post(f"{url}enabled/", {"enabled": "0"}),
        client.post(f"{url}delete/"),
        client.post(f"{WEBHOOKS}deliveries/{delivery.id}/replay/"),
    ]

    assert [r.status_code for r in responses] == [404] * 5
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.secret, endpoint.enabled) == (theirs.secret, True)
    assert WebhookDelivery.objects.count() == 1
    assert theirs.endpoint.url not in _html(client.get(WEBHOOKS))


# --- team ----------------------------------------------------------------------------------------


def _membership(user) -> Membership:
    return Membership.objects.get(user=user)


def test_everyone_sees_the_team_and_only_managers_get_the_controls(tenant):
    factories.make_member(tenant, role="owner", username="olga")
    viewer = _html(_signed_in(tenant, "viewer", username="vic").get(TEAM))
    admin = _html(_signed_in(tenant, "admin", username="ada").get(TEAM))

    assert "olga" in viewer and "vic" in viewer
    assert "Change role" not in viewer and "Invite someone" not in viewer
    assert "Change role" in admin and "Invite someone" in admin


def test_an_admin_changes_a_role(tenant):
    editor = factories.make_member(tenant, role="editor")
    client = _signed_in(tenant, "admin")

    response = client.post(f"{TEAM}{_membership(editor).pk}/role/", {"role": "viewer"}, follow=True)

    assert _membership(editor).role == "viewer"
    assert _messages(response) == [f"{editor.username} is now Viewer."]


def test_a_viewer_cannot_change_roles(tenant):
    editor = factories.make_member(tenant, role="editor")
    response = _signed_in(tenant, "viewer").post(
        f"{TEAM}{_membership(editor).pk}/role/", {"role": "admin"}
    )
    assert (response.status_code, _membership(editor).role) == (403, "editor")


def test_an_admin_can_neither_make_an_owner_nor_touch_one(tenant):
    owner = factories.make_member(tenant, role="owner")
    editor = factories.make_member(tenant, role="editor")
    client = _signed_in(tenant, "admin")

    promote = client.post(f"{TEAM}{_membership(editor).pk}/role/", {"role": "owner"}, follow=True)
    demote = client.post(f"{TEAM}{_membership(owner).pk}/role/", {"role": "viewer"}, follow=True)
    remove = client.post(f"{TEAM}{_membership(owner).pk}/remove/", follow=True)

    assert _messages(promote) == ["You cannot give a role above your own."]
    assert _messages(demote) == ["You cannot change a member whose role is above yours."]
    assert _messages(remove) == ["You cannot change a member whose role is above yours."]
    assert (_membership(owner).role, _membership(editor).role) == ("owner", "editor")


def test_the_last_owner_can_be_neither_demoted_nor_removed(tenant):
    owner = factories.make_member(tenant, role="owner")
    client = Client()
    client.force_login(owner)
    pk = _membership(owner).pk

    demote = client.post(f"{TEAM}{pk}/role/", {"role": "admin"}, follow=True)
    remove = client.post(f"{TEAM}{pk}/remove/", follow=True)

    assert _messages(demote) == [
        "The last owner cannot be demoted; make someone else an owner first."
    ]
    assert _messages(remove) == [
        "The last owner cannot be removed; make someone else an owner first."
    ]
    assert _membership(owner).role == "owner"


def test_with_a_second_owner_an_owner_may_step_down(tenant):
    first = factories.make_member(tenant, role="owner")
    second = factories.make_member(tenant, role="owner")
    client = Client()
    client.force_login(first)

    stepped_down = client.post(
        f"{TEAM}{_membership(first).pk}/role/", {"role": "admin"}, follow=True
    )
    refused = client.post(f"{TEAM}{_membership(second).pk}/role/", {"role": "admin"}, follow=True)

    assert _messages(stepped_down) == [f"{first.username} is now Admin."]
    assert (_membership(first).role, _membership(second).role) == ("admin", "owner")
    assert _messages(refused) == ["You cannot change a member whose role is above yours."]


def test_an_admin_removes_a_member(tenant):
    editor = factories.make_member(tenant, role="editor")
    response = _signed_in(tenant, "admin").post(
        f"{TEAM}{_membership(editor).pk}/remove/", follow=True
    )
    assert not Membership.objects.filter(user=editor).exists()
    assert _messages(response) == [f"{editor.username} was removed."]


def test_another_tenants_member_is_404_and_unchanged(tenant, other_tenant):
    theirs = factories.make_member(other_tenant, role="editor")
    client = _signed_in(tenant, "owner")
    pk = _membership(theirs).pk

    responses = [
        client.post(f"{TEAM}{pk}/role/", {"role": "viewer"}),
        client.post(f"{TEAM}{pk}/remove/"),
    ]

    assert [r.status_code for r in responses] == [404, 404]
    assert _membership(theirs).role == "editor"


def test_an_invitation_is_accepted_once_by_the_person_invited(tenant, settings):
    settings.REELCAST_PUBLIC_URL = "https://reelcast.example.com"
    invitee = get_user_model().objects.create_user(
        "newbie", email="New.Bie@example.com", password="pw-for-tests-123"
    )
    stranger = factories.make_user("stranger")
    admin = _signed_in(tenant, "admin")

    created = admin.post(f"{TEAM}invite/", {"invitee": "new.bie@example.com", "role": "editor"})

    assert created.status_code == 201
    [link] = re.findall(
        r"https://reelcast\.example\.com/app/account/invitations/[\w-]+/", _html(created)
    )
    assert _html(created).count(link) == 1
    path = link.removeprefix("https://reelcast.example.com")
    assert "new.bie@example.com" in _html(admin.get(TEAM))  # pending
    assert path not in _html(admin.get(TEAM))

    other = Client()
    other.force_login(stranger)
    assert "for another account" in _html(other.get(path))
    other.post(path)
    assert not Membership.objects.filter(user=stranger).exists()

    client = Client()
    client.force_login(invitee)
    assert "Join Maple School" in _html(client.get(path))
    joined = client.post(path, follow=True)

    assert _membership(invitee).role == "editor"
    assert _messages(joined) == ["You joined Maple School."]
    assert Invitation.objects.get().accepted_by == invitee
    assert client.get(path).status_code == 404  # used


def test_inviting_a_member_or_above_ones_own_role_is_a_field_error(tenant):
    factories.make_member(tenant, role="viewer", username="already")
    client = _signed_in(tenant, "admin")

    member = client.post(f"{TEAM}invite/", {"invitee": "Already", "role": "viewer"})
    owner = client.post(f"{TEAM}invite/", {"invitee": "someone", "role": "owner"})

    assert member.status_code == 400
    assert 'data-field="invitee">This person is already a member.<' in _html(member)
    assert owner.status_code == 400
    assert 'data-field="role">' in _html(owner)
    assert Invitation.objects.count() == 0


def test_a_withdrawn_invitation_stops_working(tenant):
    invitee = factories.make_user("late")
    admin = _signed_in(tenant, "admin")
    created = admin.post(f"{TEAM}invite/", {"invitee": "late", "role": "viewer"})
    [path] = re.findall(r"/app/account/invitations/[\w-]+/", _html(created))

    admin.post(f"{TEAM}invitations/{Invitation.objects.get().id}/revoke/")
    client = Client()
    client.force_login(invitee)
    client.post(path)

    assert client.get(path).status_code == 404
    assert not Membership.objects.filter(user=invitee).exists()


# --- languages -----------------------------------------------------------------------------------


def test_the_account_pages_speak_chinese_when_asked(tenant):
    client = _signed_in(tenant, "admin")
    keys = _html(client.get(KEYS, HTTP_ACCEPT_LANGUAGE="zh-Hans"))
    team = _html(client.get(TEAM, HTTP_ACCEPT_LANGUAGE="zh-Hans"))
    hooks = _html(client.get(WEBHOOKS, HTTP_ACCEPT_LANGUAGE="zh-Hans"))

    assert '<html lang="zh-hans"' in keys
    assert "创建密钥" in keys and "API 密钥" in keys
    assert "邀请成员" in team and "管理员" in team
    assert "添加端点" in hooks
    assert "Create key" not in keys
