"""The shell every page shares: vendored assets under the CSP, and the language menu."""

from __future__ import annotations

import pytest

from tests import factories
from tests.e2e.conftest import login

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_sign_in_loads_the_vendored_assets_without_a_csp_violation(page, live_server, tenant):
    user = factories.make_member(tenant, role="owner")
    login(page, live_server, user.username)
    assert page.evaluate("typeof window.htmx") == "object"
    font = page.evaluate("getComputedStyle(document.body).getPropertyValue('--pico-font-family')")
    assert font  # Pico's stylesheet applied
    assert page.js_errors == []


def test_the_browser_language_chooses_and_the_menu_switches_it(page_for, live_server, tenant):
    user = factories.make_member(tenant, role="owner")
    page = page_for("zh-CN")
    page.goto(f"{live_server.url}/accounts/login/")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    login(page, live_server, user.username)
    page.select_option("select[name=language]", "en")
    page.wait_for_load_state("networkidle")
    assert page.locator("html").get_attribute("lang") == "en"


def test_chinese_text_renders_with_a_cjk_font(page_for, live_server):
    page = page_for("zh-CN")
    page.goto(f"{live_server.url}/accounts/login/")
    # Draw 中 and an unassigned code point: without a CJK font both are the same empty box.
    differ = page.evaluate(
        """() => {
        const glyph = (text) => {
            const canvas = document.createElement('canvas');
            canvas.width = 40; canvas.height = 40;
            const context = canvas.getContext('2d');
            context.font = '28px sans-serif';
            context.fillText(text, 5, 30);
            return Array.from(context.getImageData(0, 0, 40, 40).data).join(',');
        };
        return glyph('中') !== glyph('\u0378');
    }"""
    )
    assert differ is True
