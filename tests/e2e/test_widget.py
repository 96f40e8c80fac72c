"""The storefront widget on a shop's page served from another origin than the platform.

The platform is the live server (``http://localhost:<port>``); each shop page comes from a
plain HTTP server of its own on ``127.0.0.1:<another port>``, a different origin, exactly as a
shop's site would be. Jobs run inside the live server's request (the sync task cluster of the
test settings) with the CPU ``preview`` backend at 128x96.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import signing
from PIL import Image

from generation.models import ConsentRecord, Job, Priority
from generation.services import JobRequest, job_create
from generation.storefront import VISITOR_SALT, visitor_token_issue
from tenants.services import apikey_create
from tests import factories
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SHOP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Northwind Outfitters</title>
<style>body {{ font-family: serif; }} input, select, button {{ border: 5px dashed red; }}</style>
</head><body>
<h1>The Hudson wool coat</h1>
<script src="{api}/embed/v1/widget.js" data-key="{key}" data-template="hudson-coat"></script>
<p id="after-widget">Free returns within 30 days.</p>
</body></html>
"""


def _png(size=(40, 56), colour=(200, 160, 110)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


@contextmanager
def shop_site(page: dict[str, str]) -> Iterator[str]:
    """Serve ``page["html"]`` at ``/`` from 127.0.0.1 on a free port; yields the site's origin
    (the page is read per request, so it can name a key made for that origin)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = page.get("html", "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def storefront(live_server, settings):
    """A shop tenant, its try-on template (a product photo, the shopper's photo), and a way to
    mint its publishable key for a given origin."""
    settings.REELCAST_PUBLIC_URL = live_server.url  # signed links point at the live server
    shop = factories.make_tenant(name="Northwind Outfitters", kind="shop")
    coat = factories.make_template(
        shop,
        name="The Hudson coat in New York",
        slug="hudson-coat",
        kind="product",
        variables=[
            {
                "name": "shopper",
                "type": "text",
                "label": "Your first name",
                "required": False,
                "default": "You",
                "max_length": 32,
                "public": True,
            },
            {
                "name": "scene",
                "type": "choice",
                "label": "Scene",
                "choices": ["a New York street at dusk", "Central Park in the snow"],
                "default": "a New York street at dusk",
                "public": True,
            },
            {"name": "photo", "type": "image", "label": "Your photo", "public": True},
        ],
        prompt="{shopper} walks down {scene} wearing the camel wool coat.",
        product="the camel Hudson double-breasted wool coat",
        title="",
        reference_images=[
            {
                "role": "product",
                "image": "data:image/png;base64,"
                + base64.b64encode(_png((30, 40), (193, 154, 107))).decode(),
            }
        ],
    )

    def key_for(origin: str):
        return apikey_create(
            tenant=shop,
            kind="publishable",
            name="storefront",
            allowed_origins=[origin],
            allowed_template_ids=[str(coat.id)],
        )

    return {"shop": shop, "template": coat, "key_for": key_for}


def _widget(page, selector: str):
    # Playwright's CSS engine pierces open shadow roots
    return page.locator(f".reelcast-widget {selector}")


def _preflight(url: str, origin: str) -> tuple[int, str | None]:
    request = urllib.request.Request(
        url,
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Access-Control-Allow-Origin")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Access-Control-Allow-Origin")


@pytest.mark.parametrize(
    ("locale", "live_stream", "ready", "lang"),
    [
        ("en-GB", True, "Your video is ready.", "en"),
        # a browser without EventSource: the widget polls the job instead
        ("zh-CN", False, "您的视频已生成。", "zh-Hans"),
    ],
)
def test_the_widget_on_a_shops_page_makes_a_try_on_video(
    page_for, live_server, storefront, tmp_path, locale, live_stream, ready, lang
):
    page = page_for(locale)
    if not live_stream:
        page.add_init_script("delete window.EventSource;")
    api_calls: list[str] = []
    page.on(
        "request",
        lambda request: (
            api_calls.append(f"{request.method} {request.url}")
            if "/api/v1/jobs/" in request.url
            else None
        ),
    )
    photo = tmp_path / "me.png"
    photo.write_bytes(_png((300, 420), (90, 120, 200)))
    shop_page: dict[str, str] = {}

    with shop_site(shop_page) as origin:
        key = storefront["key_for"](origin)
        shop_page["html"] = SHOP_PAGE.format(api=live_server.url, key=key.raw_key)
        page.goto(f"{origin}/")

        _widget(page, "input[name=shopper]").fill("Ana")
        _widget(page, "select[name=scene]").select_option("Central Park in the snow")
        _widget(page, "input[type=file]").set_input_files(str(photo))
        _widget(page, "img.thumb").wait_for(state="visible")
        _widget(page, "input[name=consented_by]").fill("Ana Lima")
        _widget(page, "input[name=consent]").check()
        screenshot(page, f"widget-form-{lang}")
        _widget(page, "button.submit").click()

        video = _widget(page, "video")
        video.wait_for(timeout=120_000)
        page.wait_for_function(
            """() => {
                const root = document.querySelector('.reelcast-widget').shadowRoot;
                const video = root.querySelector('video');
                return video && video.readyState >= 1 && video.duration > 0;
            }""",
            timeout=30_000,
        )
        kept = page.evaluate(
            f"JSON.parse(sessionStorage.getItem('reelcast.visitor.{key.raw_key[:12]}'))"
        )
        layout = page.evaluate(
            """() => {
                const host = document.querySelector('.reelcast-widget');
                const input = host.shadowRoot.querySelector('button');
                return {
                    afterScript: host.previousElementSibling.tagName,
                    beforeParagraph: host.nextElementSibling.id,
                    buttonBorder: getComputedStyle(input).borderTopStyle,
                    lang: host.shadowRoot.querySelector('.rc').lang,
                };
            }"""
        )
        screenshot(page, f"widget-video-{lang}")
        src = video.get_attribute("src")
        done_text = _widget(page, "p.done").inner_text()

    job = Job.objects.get()
    consent = ConsentRecord.objects.get(pk=job.consent_id)
    assert job.state == "succeeded"
    assert job.created_by_key_id == key.api_key.id
    # the visitor the server signed into the token the widget kept is the job's end user
    end_user = signing.loads(kept["value"], salt=VISITOR_SALT)["v"]
    assert end_user.startswith("v_") and job.end_user == end_user
    assert job.has_photo is True
    assert job.values["shopper"] == "Ana" and job.values["scene"] == "Central Park in the snow"
    assert (consent.consented_by, consent.relationship, consent.subject_ref) == (
        "Ana Lima",
        "self",
        end_user,
    )
    assert src.startswith(f"{live_server.url}/dl/")
    assert done_text == ready
    streamed = [c for c in api_calls if c.startswith("GET ") and "/events/?token=" in c]
    polled = [c for c in api_calls if c == f"GET {live_server.url}/api/v1/jobs/{job.id}/"]
    assert (len(streamed) >= 1, len(polled) >= 1) == (live_stream, not live_stream)
    assert layout == {
        "afterScript": "SCRIPT",
        "beforeParagraph": "after-widget",
        "buttonBorder": "none",  # the shop's dashed red borders stay outside the shadow root
        "lang": lang,
    }
    assert page.js_errors == []


def test_the_same_key_on_a_page_from_an_unlisted_origin_is_refused(
    page_for, live_server, storefront
):
    page = page_for("zh-CN")
    shop_page: dict[str, str] = {}
    with shop_site(shop_page) as listed, shop_site(shop_page) as unlisted:
        key = storefront["key_for"](listed)
        shop_page["html"] = SHOP_PAGE.format(api=live_server.url, key=key.raw_key)
        page.goto(f"{unlisted}/")

        error = _widget(page, "p.notice.error")
        error.wait_for()
        screenshot(page, "widget-refused")
        # and a job POSTed straight from that page is stopped by the browser's preflight
        outcome = page.evaluate(
            """async ([api, key]) => {
                try {
                    await fetch(api + '/api/v1/jobs/', {
                        method: 'POST',
                        headers: {Authorization: 'Bearer ' + key,
                                  'Content-Type': 'application/json'},
                        body: JSON.stringify({template: 'hudson-coat', values: {}}),
                    });
                    return 'answered';
                } catch (error) {
                    return error.name;
                }
            }""",
            [live_server.url, key.raw_key],
        )
        refused = _preflight(f"{live_server.url}/api/v1/jobs/", unlisted)
        allowed = _preflight(f"{live_server.url}/api/v1/jobs/", listed)

    assert error.inner_text() == "此网站无法使用该视频功能。"
    assert _widget(page, "form").count() == 0
    assert outcome == "TypeError"
    assert refused == (403, None)
    assert allowed == (204, listed)
    assert Job.objects.count() == 0


def test_a_shopper_over_their_daily_quota_is_told_when_to_come_back(
    page, live_server, storefront, tmp_path, monkeypatch
):
    from django.core.management import call_command

    from billing.models import Plan
    from billing.services import subscription_assign
    from generation.services import JobRequest, job_create

    monkeypatch.setattr("generation.tasks.enqueue_job", lambda job_id: None)  # no run needed
    call_command("seed_plans")
    Plan.objects.filter(slug="shop").update(end_user_jobs_per_day=1)
    subscription_assign(tenant=storefront["shop"], plan=Plan.objects.get(slug="shop"))
    photo = tmp_path / "me.png"
    photo.write_bytes(_png())
    shop_page: dict[str, str] = {}

    with shop_site(shop_page) as origin:
        key = storefront["key_for"](origin)
        # this tab already holds a visitor token, and that visitor made today's video
        issued = visitor_token_issue(api_key=key.api_key, origin=origin, client_address="x")
        shopper = signing.loads(issued.token, salt=VISITOR_SALT)["v"]
        job_create(
            tenant=storefront["shop"],
            request=JobRequest(
                template=storefront["template"],
                values={"photo": "data:image/png;base64," + base64.b64encode(_png()).decode()},
                end_user=shopper,
                consent={"consented_by": "Ana Lima"},
            ),
        )
        kept = json.dumps({"value": issued.token, "until": 4102444800000})
        page.add_init_script(
            f"sessionStorage.setItem('reelcast.visitor.{key.raw_key[:12]}', '{kept}');"
        )
        shop_page["html"] = SHOP_PAGE.format(api=live_server.url, key=key.raw_key)
        page.goto(f"{origin}/")
        _widget(page, "input[type=file]").set_input_files(str(photo))
        _widget(page, "img.thumb").wait_for(state="visible")
        _widget(page, "input[name=consented_by]").fill("Ana Lima")
        _widget(page, "input[name=consent]").check()
        _widget(page, "button.submit").click()
        message = _widget(page, ".status p.notice.error")
        message.wait_for()
        text = message.inner_text()
        button_enabled = _widget(page, "button.submit").is_enabled()

    assert text.startswith("You have made as many videos as you can for now.")
    assert text.endswith("You can make another in 24 hours.")
    assert button_enabled
    assert Job.objects.filter(end_user=shopper).count() == 1
    assert page.js_errors == []


def test_a_waiting_shopper_sees_the_jobs_ahead_and_a_counting_down_eta(
    page_for, live_server, settings
):
    # An autoscaled pool with no live worker takes nothing: the jobs wait in the queue.
    settings.REELCAST_POOLS = {
        "cpu-pods": {"hardware_class": "cpu", "capacity": 4, "models": ["preview"],
                     "autoscale": True},
    }  # fmt: skip
    settings.REELCAST_ETA_CACHE_S = 0
    settings.BILLING_QUOTE_CACHE_S = 0
    settings.REELCAST_ETA_POSTPROCESS_MS_PER_FRAME_MEGAPIXEL = 0.0
    settings.REELCAST_ETA_MODERATION_MS_PER_FRAME_MEGAPIXEL = 0.0
    shop = factories.make_tenant(name="Northwind Outfitters", kind="shop")
    card = factories.make_template(
        shop,
        slug="greeting-card",
        kind="product",
        variables=[
            {
                "name": "name",
                "type": "text",
                "label": "Your first name",
                "default": "You",
                "public": True,
            }
        ],
        prompt="{name} waves at the camera in front of the shop.",
        title="{name}",
    )
    ahead = job_create(
        tenant=shop,
        request=JobRequest(
            template=factories.make_template(shop),
            values={"name": "A"},
            priority=Priority.INTERACTIVE,
        ),
    ).job
    work = sum(s["num_frames"] for s in ahead.shots) * ahead.width * ahead.height / 1e6
    settings.BILLING_QUOTE_FALLBACK = {"preview": 30_000 / work}  # 30 s to generate each
    page = page_for("en-GB")
    shop_page: dict[str, str] = {}

    with shop_site(shop_page) as origin:
        key = apikey_create(
            tenant=shop,
            kind="publishable",
            name="storefront",
            allowed_origins=[origin],
            allowed_template_ids=[str(card.id)],
        )
        shop_page["html"] = SHOP_PAGE.format(api=live_server.url, key=key.raw_key).replace(
            "hudson-coat", "greeting-card"
        )
        page.goto(f"{origin}/")
        _widget(page, "button.submit").click()

        _widget(page, "p.state").filter(has_text="Waiting in line: 1 ahead of you").wait_for()
        eta = _widget(page, "small.eta")
        eta.filter(has_text=re.compile(r"^about (5\d|60) s left$")).wait_for()
        first = eta.inner_text()
        # the page counts the ETA down between the stream's events
        page.wait_for_function(
            """(first) => document.querySelector('.reelcast-widget').shadowRoot
                .querySelector('small.eta').textContent !== first""",
            arg=first,
            timeout=30_000,
        )
        later = eta.inner_text()

    assert int(later.split()[1]) < int(first.split()[1])
    assert Job.objects.filter(state="queued", dispatched_at__isnull=True).count() == 2
    assert page.js_errors == []
