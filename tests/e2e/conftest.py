"""Browser tests: Playwright driving Debian's Chromium, headless, against the live server.

Chromium comes from the system (`/usr/bin/chromium`, or REELCAST_CHROMIUM); Playwright's own
browser download is never used (no internet here). Background networking is off so the closed
network is not flooded with refused connections. Without Chromium the tests skip, unless
REELCAST_REQUIRE_SERVICES=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def _chromium() -> str | None:
    return os.environ.get("REELCAST_CHROMIUM") or shutil.which("chromium")


def _font_env(directory) -> dict[str, str]:
    """Chromium's environment with a fontconfig file that adds the Noto Sans CJK font shipped
    on PyPI (the one the video renderer uses), so Chinese pages and screenshots show Chinese
    without a system font package."""
    from generation.fonts import cjk_font_path

    conf = directory / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
        '<include ignore_missing="yes">/etc/fonts/fonts.conf</include>'
        f"<dir>{os.path.dirname(cjk_font_path())}</dir>"
        f"<cachedir>{directory / 'cache'}</cachedir></fontconfig>"
    )
    return {**os.environ, "FONTCONFIG_FILE": str(conf)}


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chromium-fonts")
    executable = _chromium()
    if executable is None:
        if os.environ.get("REELCAST_REQUIRE_SERVICES") == "1":
            pytest.fail("Chromium is required for the browser tests (apt-get install chromium)")
        pytest.skip("no Chromium on this machine")
    # Playwright's sync API runs an event loop in this thread; Django must allow sync ORM
    # calls from the test body meanwhile.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_FLAGS, env=_font_env(tmp)
        )
        yield instance
        instance.close()


@pytest.fixture
def page_for(browser):
    """``page_for(locale="en")`` → a new page in a fresh context with that browser language."""
    contexts = []

    def make(locale: str = "en", **context_options):
        context = browser.new_context(
            locale=locale,
            extra_http_headers={"Accept-Language": locale},
            viewport={"width": 1280, "height": 900},
            **context_options,
        )
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: (
                errors.append(msg.text)
                if msg.type == "error" and "Content Security Policy" in msg.text
                else None
            ),
        )
        page.js_errors = errors  # tests assert this stays empty: no script error, no CSP block
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(page_for):
    return page_for("en")


def login(page, live_server, username: str, password: str = "pw-for-tests-123") -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/app/**")


SCREENSHOTS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "screenshots")


def screenshot(page, name: str) -> None:
    """Save a screenshot for docs/ when REELCAST_SCREENSHOTS=1 (docs are refreshed on purpose,
    not by every test run)."""
    if os.environ.get("REELCAST_SCREENSHOTS") == "1":
        os.makedirs(SCREENSHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)
