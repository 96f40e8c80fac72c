"""The storefront embed: the widget's files, the public template description, exact-origin CORS
for the widget's API calls, and the per-shopper quota seen through a publishable key."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from PIL import Image
from rest_framework.test import APIClient

from billing.models import Plan
from billing.services import subscription_assign
from generation.delivery import signed_link
from generation.live import job_events_path, job_token
from generation.models import ConsentRecord, Job, Template
from generation.services import JobRequest, job_create, template_archive
from generation.storage import put_bytes, tenant_key
from tenants.services import apikey_create, apikey_revoke
from tests import factories
from tests.conftest import key_client, visitor_client

pytestmark = pytest.mark.django_db

SHOP = "https://shop.example"
ELSEWHERE = "https://evil.example"
WIDGET = Path(settings.BASE_DIR) / "platform" / "static" / "embed" / "v1" / "widget.js"


def _png_data_url(size=(40, 56), colour=(200, 160, 110)) -> str:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


TRYON_CONTENT = {
    "variables": [
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
            "choices": ["a New York street", "Central Park"],
            "default": "a New York street",
            "public": True,
        },
        {"name": "photo", "type": "image", "label": "Your photo", "public": True},
        {"name": "campaign", "type": "text", "default": "winter-sale", "pattern": "[a-z-]+"},
    ],
    "prompt": "{shopper} walks down {scene} wearing the coat.",
    "negative_prompt": "secret negative words",
    "product": "the camel Hudson wool coat",
    "title": "",
    "model": "preview",
    "width": 128,
    "height": 96,
    "fps": 8,
    "duration_s": 1.0,
}


@pytest.fixture
def shop(db):
    return factories.make_tenant(name="Northwind Outfitters", kind="shop")


@pytest.fixture
def coat(shop) -> Template:
    return factories.make_template(
        shop,
        name="Hudson coat",
        slug="hudson-coat",
        kind="product",
        reference_images=[{"role": "product", "image": _png_data_url((30, 40))}],
        **TRYON_CONTENT,
    )


@pytest.fixture
def issued(shop, coat):
    return apikey_create(
        tenant=shop,
        kind="publishable",
        name="storefront",
        allowed_origins=[SHOP],
        allowed_template_ids=[str(coat.id)],
    )


@pytest.fixture
def storefront(issued):
    """The widget as the browser runs it: the publishable key, from the shop's origin, with
    the visitor token it asked for."""
    return visitor_client(issued.raw_key, SHOP)


def _job_body(**overrides):
    return {
        "template": "hudson-coat",
        "values": {"photo": _png_data_url(), "shopper": "Ana"},
        "consent": {"consented_by": "Ana Lima", "subject_name": "Ana Lima"},
        **overrides,
    }


def _vary(response) -> set[str]:
    return {part.strip().lower() for part in response.get("Vary", "").split(",") if part}


# --- the widget's files ----------------------------------------------------------------------


def test_the_widget_script_is_served_as_javascript_for_any_page_to_load(client):
    response = client.get("/embed/v1/widget.js")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert response["Cache-Control"] == "public, max-age=300"
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert "X-Frame-Options" not in response
    assert response.content == WIDGET.read_bytes()
    assert re.fullmatch(r'"[0-9a-f]{32}"', response["ETag"])


def test_the_widget_script_is_revalidated_with_its_etag(client):
    etag = client.get("/embed/v1/widget.js")["ETag"]

    again = client.get("/embed/v1/widget.js", HTTP_IF_NONE_MATCH=etag)
    changed = client.get("/embed/v1/widget.js", HTTP_IF_NONE_MATCH='"something-else"')

    assert (again.status_code, again.content, again["ETag"]) == (304, b"", etag)
    assert changed.status_code == 200


def test_the_widget_stylesheet_is_served_as_css_and_other_names_are_404(client):
    css = client.get("/embed/v1/widget.css")

    assert css.status_code == 200
    assert css["Content-Type"] == "text/css; charset=utf-8"
    assert css["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert client.get("/embed/v1/settings.py").status_code == 404
    assert client.post("/embed/v1/widget.js").status_code == 405


def test_the_widget_script_holds_no_secret_and_never_parses_html():
    source = WIDGET.read_text()

    assert re.findall(r"\b(?:sk|pk|whsec|rk)_[A-Za-z0-9_-]{8,}", source) == []
    assert "BEGIN" not in source and "PRIVATE KEY" not in source
    assert re.findall(r"(?i)(?:secret|password|token)\s*[:=]\s*['\"][^'\"]{6,}", source) == []
    # everything is built with DOM calls and textContent, styled from widget.css
    assert "innerHTML" not in source and "insertAdjacentHTML" not in source
    assert "style=" not in source
    # both languages are there, and the browser language chooses
    assert '"zh-Hans": {' in source and "navigator.language" in source


# --- the public template description -----------------------------------------------------------


def test_a_publishable_key_reads_only_the_public_face_of_its_template(storefront, coat, shop):
    response = storefront.get(f"/api/v1/embed/templates/{coat.id}/")

    assert response.status_code == 200
    body = response.json()
    poster = body.pop("poster")
    assert body == {
        "id": str(coat.id),
        "slug": "hudson-coat",
        "name": "Hudson coat",
        "kind": "product",
        "version": 1,
        "shop": "Northwind Outfitters",
        "variables": [
            {
                "name": "shopper",
                "type": "text",
                "label": "Your first name",
                "required": False,
                "max_length": 32,
                "default": "You",
            },
            {
                "name": "scene",
                "type": "choice",
                "label": "Scene",
                "required": False,
                "choices": ["a New York street", "Central Park"],
                "default": "a New York street",
            },
            {"name": "photo", "type": "image", "label": "Your photo", "required": True},
        ],
        "takes_photo": True,
        "requires_consent": True,
        "product": "the camel Hudson wool coat",
        "duration_s": 1.0,
        "width": 128,
        "height": 96,
    }
    assert poster["url"].startswith(f"{settings.REELCAST_PUBLIC_URL}/dl/")
    text = response.content.decode()
    for private in ("campaign", "secret negative words", "walks down", "preview", "tenants/"):
        assert private not in text


def test_the_description_is_found_by_slug_too(storefront, coat):
    response = storefront.get("/api/v1/embed/templates/hudson-coat/")

    assert response.status_code == 200
    assert response.json()["id"] == str(coat.id)


def test_anything_a_key_does_not_name_is_404_like_a_template_that_does_not_exist(
    storefront, issued, shop, coat, other_tenant
):
    unnamed = factories.make_template(shop, slug="unnamed")
    foreign = factories.make_template(other_tenant, slug="hudson-coat")
    archived = factories.make_template(shop, slug="archived")
    issued.api_key.allowed_template_ids += [str(archived.id), "not-a-uuid"]
    issued.api_key.save()
    template_archive(template=archived)
    wrong_origin = key_client(issued.raw_key, HTTP_ORIGIN=ELSEWHERE)
    no_origin = key_client(issued.raw_key)

    responses = [
        storefront.get(f"/api/v1/embed/templates/{unnamed.id}/"),
        storefront.get("/api/v1/embed/templates/unnamed/"),
        storefront.get(f"/api/v1/embed/templates/{foreign.id}/"),
        storefront.get(f"/api/v1/embed/templates/{archived.id}/"),
        storefront.get("/api/v1/embed/templates/00000000-0000-0000-0000-000000000000/"),
        wrong_origin.get(f"/api/v1/embed/templates/{coat.id}/"),
        no_origin.get(f"/api/v1/embed/templates/{coat.id}/"),
    ]

    assert [r.status_code for r in responses] == [404] * 7
    assert {r.content for r in responses} == {responses[0].content}
    assert responses[0].json()["code"] == "not_found"


def test_another_tenants_publishable_key_cannot_read_the_template(coat, other_tenant):
    theirs = apikey_create(
        tenant=other_tenant,
        kind="publishable",
        name="theirs",
        allowed_origins=[SHOP],
        allowed_template_ids=[str(coat.id)],
    ).raw_key

    response = key_client(theirs, HTTP_ORIGIN=SHOP).get(f"/api/v1/embed/templates/{coat.id}/")

    assert response.status_code == 404


def test_the_tenants_own_people_and_servers_may_preview_the_description(shop, coat):
    member = factories.make_member(shop, role="viewer")
    session = APIClient()
    session.force_login(member)
    server = key_client(factories.make_secret_key(shop))

    assert session.get(f"/api/v1/embed/templates/{coat.id}/").status_code == 200
    assert server.get("/api/v1/embed/templates/hudson-coat/").json()["takes_photo"] is True
    assert APIClient().get(f"/api/v1/embed/templates/{coat.id}/").status_code == 401


def test_a_publishable_key_still_cannot_read_the_full_template(storefront, coat):
    assert storefront.get(f"/api/v1/templates/{coat.id}/").status_code == 403


# --- CORS: preflights ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/v1/embed/templates/hudson-coat/", "GET"),
        ("/api/v1/embed/visitor/", "POST"),
        ("/api/v1/jobs/", "POST"),
        ("/api/v1/jobs/3f1c2a9e-8d7b-4c6a-9e5f-0a1b2c3d4e5f/", "GET"),
        ("/api/v1/jobs/3f1c2a9e-8d7b-4c6a-9e5f-0a1b2c3d4e5f/events-token/", "POST"),
        ("/api/v1/jobs/3f1c2a9e-8d7b-4c6a-9e5f-0a1b2c3d4e5f/download/", "GET"),
        ("/api/v1/jobs/3f1c2a9e-8d7b-4c6a-9e5f-0a1b2c3d4e5f/events/", "GET"),
    ],
)
def test_a_preflight_from_an_origin_a_key_lists_names_that_origin_exactly(
    client, issued, path, method
):
    response = client.options(
        path,
        HTTP_ORIGIN=SHOP,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type, idempotency-key",
    )

    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert response["Access-Control-Allow-Methods"] == f"{method}, OPTIONS"
    assert response["Access-Control-Allow-Headers"] == (
        "Authorization, Content-Type, Idempotency-Key, X-Reelcast-Visitor"
    )
    assert response["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in response
    assert {"origin", "access-control-request-method"} <= _vary(response)


def test_a_preflight_from_an_unlisted_origin_is_refused_without_cors_headers(client, issued):
    revoked = apikey_create(
        tenant=issued.api_key.tenant,
        kind="publishable",
        name="old",
        allowed_origins=["https://old.example"],
    ).api_key
    apikey_revoke(api_key=revoked)
    apikey_create(
        tenant=issued.api_key.tenant, kind="publishable", name="sandbox", allowed_origins=["null"]
    )
    secret = apikey_create(tenant=issued.api_key.tenant, kind="secret", name="server").api_key
    secret.allowed_origins = ["https://server.example"]
    secret.save()

    for origin in (ELSEWHERE, "https://old.example", "null", "https://server.example", SHOP + "/"):
        response = client.options(
            "/api/v1/jobs/", HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
        )
        assert response.status_code == 403, origin
        assert response.json()["code"] == "origin_not_allowed"
        assert "Access-Control-Allow-Origin" not in response
        assert "origin" in _vary(response)


def test_paths_the_widget_does_not_use_get_no_preflight_answer(client, issued):
    response = client.options(
        "/api/v1/templates/", HTTP_ORIGIN=SHOP, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )

    assert "Access-Control-Allow-Origin" not in response


# --- CORS: actual responses ------------------------------------------------------------------


def test_the_widgets_calls_carry_the_exact_origin_from_a_listed_origin(storefront, issued, coat):
    described = storefront.get("/api/v1/embed/templates/hudson-coat/")
    created = storefront.post(
        "/api/v1/jobs/", _job_body(), format="json", HTTP_IDEMPOTENCY_KEY="widget-1"
    )
    job_id = created.json()["id"]
    read = storefront.get(f"/api/v1/jobs/{job_id}/")
    token = storefront.post(f"/api/v1/jobs/{job_id}/events-token/")
    not_ready = storefront.get(f"/api/v1/jobs/{job_id}/download/")

    assert [r.status_code for r in (described, created, read, token, not_ready)] == [
        200,
        201,
        200,
        200,
        409,
    ]
    for response in (described, created, read, token, not_ready):
        assert response["Access-Control-Allow-Origin"] == SHOP
        assert response["Access-Control-Expose-Headers"] == "Retry-After, X-Request-ID"
        assert "Access-Control-Allow-Credentials" not in response
        assert "origin" in _vary(response)
    job = Job.objects.get(pk=job_id)
    assert re.fullmatch(r"v_[0-9a-f]{32}", job.end_user)  # the visitor the token names
    assert (job.has_photo, job.created_by_key_id) == (True, issued.api_key.id)
    assert ConsentRecord.objects.get(pk=job.consent_id).consented_by == "Ana Lima"


def test_the_same_key_from_an_unlisted_origin_is_refused_and_gets_no_cors_header(
    storefront, issued, coat
):
    job_id = storefront.post("/api/v1/jobs/", _job_body(), format="json").json()["id"]
    evil = key_client(issued.raw_key, HTTP_ORIGIN=ELSEWHERE)

    created = evil.post("/api/v1/jobs/", _job_body(), format="json")
    read = evil.get(f"/api/v1/jobs/{job_id}/")
    token = evil.post(f"/api/v1/jobs/{job_id}/events-token/")
    download = evil.get(f"/api/v1/jobs/{job_id}/download/")

    for response in (created, read, token, download):
        assert response.status_code == 403
        assert response.json()["code"] == "origin_not_allowed"
        assert "Access-Control-Allow-Origin" not in response
        assert "origin" in _vary(response)
    assert Job.objects.count() == 1


def test_an_origin_another_key_lists_is_not_enough(storefront, issued, shop, coat):
    apikey_create(
        tenant=shop,
        kind="publishable",
        name="other shop",
        allowed_origins=[ELSEWHERE],
        allowed_template_ids=[str(coat.id)],
    )
    borrowed = key_client(issued.raw_key, HTTP_ORIGIN=ELSEWHERE)

    response = borrowed.get("/api/v1/embed/templates/hudson-coat/")

    assert response.status_code == 404
    assert "Access-Control-Allow-Origin" not in response


def test_a_secret_key_or_a_session_never_gets_cors_headers(shop, coat, issued):
    server = key_client(factories.make_secret_key(shop), HTTP_ORIGIN=SHOP)

    response = server.get(f"/api/v1/embed/templates/{coat.id}/")

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    assert "origin" in _vary(response)


def test_a_request_without_an_origin_still_varies_on_it(issued, coat):
    response = key_client(issued.raw_key).get("/api/v1/embed/templates/hudson-coat/")

    assert "Access-Control-Allow-Origin" not in response
    assert "origin" in _vary(response)


def test_an_error_the_widget_must_show_is_readable_from_the_shop(storefront, coat):
    response = storefront.post("/api/v1/jobs/", _job_body(values={"shopper": "Ana"}), format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "values.photo", "message": "This variable is required."}
    ]
    assert response["Access-Control-Allow-Origin"] == SHOP


def test_a_body_refused_before_the_view_is_still_readable_from_the_shop(storefront, settings):
    settings.REELCAST_MAX_BODY_BYTES = 100

    response = storefront.post("/api/v1/jobs/", _job_body(), format="json")

    assert response.status_code == 413
    assert response["Access-Control-Allow-Origin"] == SHOP


# --- CORS: the live status stream and signed downloads ------------------------------------------


def _stream_headers(client, path):
    response = client.get(path)
    headers = {k: response[k] for k in ("Access-Control-Allow-Origin",) if k in response}
    assert b"event: end" in b"".join(response.streaming_content)  # the job is over
    return response.status_code, headers


def test_a_job_token_stream_names_the_origin_the_creating_key_allows(storefront, coat):
    job_id = storefront.post("/api/v1/jobs/", _job_body(), format="json").json()["id"]
    Job.objects.filter(pk=job_id).update(state="succeeded")
    url = storefront.post(f"/api/v1/jobs/{job_id}/events-token/").json()["url"]
    path = url.split("testserver", 1)[1]
    shop_page = _stream_headers(APIClient(HTTP_ORIGIN=SHOP), path)
    other_page = _stream_headers(APIClient(HTTP_ORIGIN=ELSEWHERE), path)

    assert shop_page == (200, {"Access-Control-Allow-Origin": SHOP})
    assert other_page == (200, {})


def test_a_job_token_stream_of_a_servers_job_keeps_the_open_header(shop, coat):
    job = job_create(
        tenant=shop,
        request=JobRequest(
            template=coat,
            values={"photo": _png_data_url()},
            consent={"consented_by": "Ana Lima"},
        ),
    ).job
    Job.objects.filter(pk=job.pk).update(state="succeeded")
    path = job_events_path(job, token=job_token(job))

    assert _stream_headers(APIClient(HTTP_ORIGIN=ELSEWHERE), path) == (
        200,
        {"Access-Control-Allow-Origin": "*"},
    )


def test_a_signed_download_names_an_origin_of_the_owning_tenants_keys(issued, shop, other_tenant):
    key = put_bytes(tenant_key(shop.id, "jobs", "x", "video.mp4"), b"\x00\x00\x00\x18ftypmp42")
    apikey_create(
        tenant=other_tenant, kind="publishable", name="theirs", allowed_origins=[ELSEWHERE]
    )
    path = signed_link(tenant=shop, key=key).url.removeprefix(settings.REELCAST_PUBLIC_URL)

    from_shop = APIClient(HTTP_ORIGIN=SHOP).get(path, HTTP_RANGE="bytes=0-3")
    from_other = APIClient(HTTP_ORIGIN=ELSEWHERE).get(path)
    forged = APIClient(HTTP_ORIGIN=SHOP).get("/dl/forged-token/video.mp4")
    preflight = APIClient().options(
        path, HTTP_ORIGIN=SHOP, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )

    assert from_shop.status_code == 206
    assert from_shop["Access-Control-Allow-Origin"] == SHOP
    assert "Content-Range" in from_shop["Access-Control-Expose-Headers"]
    assert from_other.status_code == 200
    assert "Access-Control-Allow-Origin" not in from_other
    assert forged.status_code == 404 and "Access-Control-Allow-Origin" not in forged
    assert preflight["Access-Control-Allow-Headers"].endswith("Range")


# --- the per-shopper quota -----------------------------------------------------------------


def test_each_shopper_has_their_own_daily_quota_and_the_refusal_is_readable(
    storefront, issued, shop, coat
):
    call_command("seed_plans")
    Plan.objects.filter(slug="shop").update(end_user_jobs_per_day=1)
    subscription_assign(tenant=shop, plan=Plan.objects.get(slug="shop"))
    someone = visitor_client(issued.raw_key, SHOP)

    first = storefront.post("/api/v1/jobs/", _job_body(), format="json")
    second = storefront.post("/api/v1/jobs/", _job_body(), format="json")
    someone_else = someone.post("/api/v1/jobs/", _job_body(), format="json")

    assert (first.status_code, second.status_code, someone_else.status_code) == (201, 429, 201)
    assert second.json()["code"] == "end_user_quota_exceeded"
    assert int(second["Retry-After"]) > 0
    assert second["Access-Control-Allow-Origin"] == SHOP
    assert "Retry-After" in second["Access-Control-Expose-Headers"]
    assert len(set(Job.objects.values_list("end_user", flat=True))) == 2
