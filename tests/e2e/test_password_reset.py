"""A forgotten password, reset in a real browser under the strict CSP, the email caught in
the test process (the live server runs in it, with the locmem backend)."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.core.cache import cache

from tests import factories
from tests.e2e.conftest import login

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_member_resets_a_forgotten_password_and_signs_in_with_it(
    page, live_server, tenant, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REELCAST_PUBLIC_URL = live_server.url
    cache.clear()  # the rate-limit counters
    user = factories.make_member(tenant, role="viewer")
    user.email = "teacher@school.example"
    user.save()

    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_role("link", name="Forgot password?").click()
    page.fill("input[name=email]", "teacher@school.example")
    page.get_by_role("button", name="Send me a link").click()
    page.wait_for_url(f"{live_server.url}/accounts/password-reset/sent/")
    assert page.get_by_role("heading", name="Check your email").is_visible()

    [message] = mail.outbox
    [link] = re.findall(
        rf"{re.escape(live_server.url)}/accounts/password-reset/\S+/\S+/", message.body
    )
    page.goto(link)
    page.wait_for_url("**/set-password/")
    page.fill("input[name=new_password1]", "a-new-Passphrase-2026")
    page.fill("input[name=new_password2]", "a-new-Passphrase-2026")
    page.get_by_role("button", name="Set my password").click()
    page.wait_for_url(f"{live_server.url}/accounts/password-reset/done/")
    page.get_by_role("button", name="Sign in").click()

    login(page, live_server, user.username, password="a-new-Passphrase-2026")
    assert page.js_errors == []
