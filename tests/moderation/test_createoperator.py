"""`manage.py createoperator`: the documented way to make a moderation-console account. The
operator it makes signs in over HTTP and opens every console section; a tenant's user does not."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from tests import factories

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-operator-passphrase"
CONSOLE_PAGES = ("/console/queue/", "/console/audit/", "/console/trace/", "/console/tenants/")
CONSOLE_PAGES += ("/console/system/",)


def _signed_in(username: str, password: str) -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": password})
    assert response.status_code == 302, response.content.decode()[:500]
    assert response["Location"] == "/app/"
    return client


def test_a_created_operator_signs_in_and_opens_every_console_section():
    out = io.StringIO()
    call_command(
        "createoperator", "olga", "--email", "olga@example.com", "--password", PASSWORD, stdout=out
    )

    assert "olga is an operator" in out.getvalue()
    console = _signed_in("olga", PASSWORD)
    assert console.get("/console/", follow=True).status_code == 200
    assert {page: console.get(page).status_code for page in CONSOLE_PAGES} == dict.fromkeys(
        CONSOLE_PAGES, 200
    )
    user = get_user_model().objects.get(username="olga")
    assert (user.email, user.is_staff, user.is_superuser) == ("olga@example.com", True, False)


def test_a_tenant_user_signs_in_but_is_refused_the_console(tenant):
    factories.make_member(tenant, username="teacher")

    client = _signed_in("teacher", "pw-for-tests-123")

    assert client.get("/app/", follow=True).status_code == 200
    assert {page: client.get(page).status_code for page in ("/console/", *CONSOLE_PAGES)} == (
        dict.fromkeys(("/console/", *CONSOLE_PAGES), 403)
    )


def test_the_password_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("REELCAST_OPERATOR_PASSWORD", PASSWORD)

    call_command("createoperator", "nadia", "--no-input", stdout=io.StringIO())

    assert _signed_in("nadia", PASSWORD).get("/console/queue/").status_code == 200


def test_without_a_password_and_without_a_terminal_it_refuses_and_creates_nobody(monkeypatch):
    monkeypatch.delenv("REELCAST_OPERATOR_PASSWORD", raising=False)

    with pytest.raises(CommandError, match="No password: give --password, set REELCAST_OPERATOR"):
        call_command("createoperator", "nobody", "--no-input")

    assert not get_user_model().objects.filter(username="nobody").exists()


def test_a_weak_password_is_refused_with_the_validators_reason():
    with pytest.raises(CommandError, match="This password is too short"):
        call_command("createoperator", "weak", "--password", "short")

    assert not get_user_model().objects.filter(username="weak").exists()


def test_an_existing_user_is_promoted_only_when_asked(tenant):
    factories.make_member(tenant, username="head")

    with pytest.raises(CommandError, match="exists already; pass --existing"):
        call_command("createoperator", "head", "--password", PASSWORD)
    assert _signed_in("head", "pw-for-tests-123").get("/console/queue/").status_code == 403

    call_command("createoperator", "head", "--existing", stdout=io.StringIO())

    # the password is the one the user had; the console opens
    assert _signed_in("head", "pw-for-tests-123").get("/console/queue/").status_code == 200
