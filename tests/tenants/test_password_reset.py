"""Password reset for dashboard users, over HTTP as a browser does it (CSRF enforced), with the
email caught by the locmem backend."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

from tests import factories

pytestmark = pytest.mark.django_db

RESET = "/accounts/password-reset/"
SENT = "/accounts/password-reset/sent/"
NEW_PASSWORD = "a-new-Passphrase-2026"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _mail_and_counters(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REELCAST_PUBLIC_URL = "https://reelcast.example"
    cache.clear()  # the rate-limit counters
    yield
    cache.clear()


@pytest.fixture
def browser() -> Client:
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def ann():
    user = factories.make_user("ann")
    user.email = "ann@school.example"
    user.save()
    return user


def _token(client: Client, url: str) -> str:
    page = client.get(url)
    assert page.status_code == 200, page.content
    return client.cookies["csrftoken"].value


def _submit(client: Client, url: str, data: dict, **extra):
    """GET the form (for the CSRF cookie), then POST it with the token, as a browser does."""
    return client.post(url, {**data, "csrfmiddlewaretoken": _token(client, url)}, **extra)


def _signs_in(password: str) -> bool:
    client = Client()
    response = client.post("/accounts/login/", {"username": "ann", "password": password})
    return response.status_code == 302 and "_auth_user_id" in client.session


def test_the_sign_in_page_links_to_the_reset_form(browser):
    page = browser.get("/accounts/login/").content.decode()

    assert f'<a href="{RESET}">Forgot password?</a>' in page


def test_a_user_resets_a_forgotten_password_through_the_emailed_link(browser, ann):
    asked = _submit(browser, RESET, {"email": "Ann@School.example"})

    assert (asked.status_code, asked["Location"]) == (302, SENT)
    assert "we have sent it a link" in browser.get(SENT).content.decode()
    [message] = mail.outbox
    assert message.to == ["ann@school.example"]
    assert message.subject == "Reset your Reelcast password"
    assert 'Reelcast account "ann"' in message.body
    [link] = re.findall(r"https://reelcast\.example/accounts/password-reset/\S+/\S+/", message.body)

    opened = browser.get(urlsplit(link).path)
    # Django swaps the token for a session entry, so it is not left in the page's URL
    assert opened.status_code == 302
    assert opened["Location"].endswith("/set-password/")
    form = opened["Location"]
    assert "Choose a new password" in browser.get(form).content.decode()
    changed = _submit(browser, form, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert (changed.status_code, changed["Location"]) == (302, "/accounts/password-reset/done/")
    assert "Your new password is set" in browser.get(changed["Location"]).content.decode()

    assert _signs_in(NEW_PASSWORD)
    assert not _signs_in("pw-for-tests-123")
    # the link worked once
    again = Client().get(urlsplit(link).path, follow=True).content.decode()
    assert "This link does not work" in again


def test_an_unknown_email_gets_the_same_answer_and_no_message(browser, ann):
    unknown = _submit(browser, RESET, {"email": "nobody@school.example"})
    known = _submit(Client(enforce_csrf_checks=True), RESET, {"email": "ann@school.example"})

    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])
    assert [message.to for message in mail.outbox] == [["ann@school.example"]]


def test_an_inactive_user_or_one_without_a_usable_password_gets_no_message(browser, ann):
    ann.is_active = False
    ann.save()
    bob = factories.make_user("bob")
    bob.email = "bob@school.example"
    bob.set_unusable_password()
    bob.save()

    for email in ("ann@school.example", "bob@school.example"):
        assert _submit(browser, RESET, {"email": email})["Location"] == SENT

    assert mail.outbox == []


def test_the_reset_form_refuses_a_post_without_the_csrf_token(browser, ann):
    refused = browser.post(RESET, {"email": "ann@school.example"})

    assert refused.status_code == 403
    assert mail.outbox == []


def test_the_new_password_form_refuses_a_post_without_the_csrf_token(browser, ann):
    _submit(browser, RESET, {"email": "ann@school.example"})
    [link] = re.findall(
        r"https://reelcast\.example(/accounts/password-reset/\S+/\S+/)", mail.outbox[0].body
    )
    form = browser.get(link)["Location"]
    browser.get(form)

    refused = browser.post(form, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    assert refused.status_code == 403
    assert not _signs_in(NEW_PASSWORD)
    assert _signs_in("pw-for-tests-123")


def test_a_weak_or_mismatched_new_password_is_refused_with_the_reason(browser, ann):
    _submit(browser, RESET, {"email": "ann@school.example"})
    [link] = re.findall(
        r"https://reelcast\.example(/accounts/password-reset/\S+/\S+/)", mail.outbox[0].body
    )
    form = browser.get(link)["Location"]

    weak = _submit(browser, form, {"new_password1": "password", "new_password2": "password"})
    other = _submit(browser, form, {"new_password1": NEW_PASSWORD, "new_password2": "different-1"})

    assert weak.status_code == 200
    assert "This password is too common." in weak.content.decode()
    assert other.status_code == 200
    assert "The two password fields" in other.content.decode()
    assert _signs_in("pw-for-tests-123")


def test_reset_requests_over_the_rate_are_refused_before_any_email_is_sent(ann, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "password_reset": "2/day",
        },
    }
    answers = [
        _submit(Client(enforce_csrf_checks=True), RESET, {"email": "ann@school.example"})
        for _ in range(3)
    ]
    # another address is still counted per email: three clients, one inbox
    elsewhere = _submit(
        Client(enforce_csrf_checks=True),
        RESET,
        {"email": "ann@school.example"},
        REMOTE_ADDR="10.0.0.7",
    )

    assert [answer.status_code for answer in answers] == [302, 302, 429]
    assert 1 <= int(answers[2]["Retry-After"]) <= 86400
    assert elsewhere.status_code == 429
    assert len(mail.outbox) == 2


def test_the_reset_pages_run_no_inline_script_or_style_and_speak_chinese(browser):
    pages = [
        browser.get(url, HTTP_ACCEPT_LANGUAGE="zh-Hans")
        for url in (RESET, SENT, "/accounts/password-reset/done/", f"{RESET}MQ/bad-token/")
    ]

    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200
        assert "Content-Security-Policy" in page
        assert "style=" not in html
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "重置密码" in pages[0].content.decode()
    assert "请查收邮件" in pages[1].content.decode()
    assert "此链接无效" in pages[3].content.decode()


def test_the_email_backend_comes_from_the_environment():
    def settings_with(**env: str) -> list[str]:
        code = (
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER, "
            "s.EMAIL_HOST_PASSWORD, s.EMAIL_USE_TLS, s.DEFAULT_FROM_EMAIL, sep='|')"
        )
        base = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "DEFAULT_"))}
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={
                **base,
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DJANGO_DEBUG": "true",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1].split("|")

    assert settings_with() == [
        "django.core.mail.backends.console.EmailBackend",
        "localhost",
        "25",
        "",
        "",
        "False",
        "Reelcast <no-reply@localhost>",
    ]
    assert settings_with(
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="smtp.school.example",
        EMAIL_PORT="587",
        EMAIL_HOST_USER="reelcast",
        EMAIL_HOST_PASSWORD="s3cret",
        EMAIL_USE_TLS="true",
        DEFAULT_FROM_EMAIL="Reelcast <videos@school.example>",
    ) == [
        "django.core.mail.backends.smtp.EmailBackend",
        "smtp.school.example",
        "587",
        "reelcast",
        "s3cret",
        "True",
        "Reelcast <videos@school.example>",
    ]
