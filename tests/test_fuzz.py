"""Fuzzing: every operation of the generated OpenAPI schema, under every way of signing in,
answers without a server error; malformed uploads are 4xx.

schemathesis generates requests from the schema (valid and invalid bodies, parameters and
headers) and calls the WSGI application in-process, inside the test's database transaction.
"""

from __future__ import annotations

import base64
import io
import os
import zipfile

import pytest
import schemathesis
from django.test import Client
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from PIL import Image

from generation.services import JobRequest, job_create
from tenants.models import ApiKey
from tenants.services import apikey_create
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

ORIGIN = "https://shop.example"


def _schema():
    from django.core.wsgi import get_wsgi_application

    # Built at collection (pytest-django has set Django up by then); generating the schema
    # touches no database. schemathesis' fixture-based loader does not work with pytest 9.
    return schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())


schema = _schema()


@pytest.fixture(autouse=True)
def _keep_the_test_connection(settings):
    """As Django's test client does: a request must not close the test's database connection
    (each test runs in one transaction, rolled back at the end)."""
    from django.core import signals
    from django.db import close_old_connections

    settings.ALLOWED_HOSTS = ["*"]
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def callers(tenant):
    """The ways in: a secret key, a publishable key (from its origin), a signed-in owner's
    session, and nobody. The tenant has a template and a job, so object routes have rows."""
    template = factories.make_template(tenant)
    job_create(tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"}))
    secret = factories.make_secret_key(tenant)
    publishable = apikey_create(
        tenant=tenant,
        kind=ApiKey.Kind.PUBLISHABLE,
        name="fuzz",
        allowed_origins=[ORIGIN],
        allowed_template_ids=[str(template.id)],
    ).raw_key
    browser = Client()
    browser.force_login(factories.make_member(tenant, role="owner"))
    return {
        "secret_key": {"headers": {"Authorization": f"Bearer {secret}"}},
        "publishable_key": {
            "headers": {"Authorization": f"Bearer {publishable}", "Origin": ORIGIN}
        },
        "session": {"cookies": {"sessionid": browser.cookies["sessionid"].value}},
        "anonymous": {},
    }


@schema.parametrize()
@hypothesis_settings(
    max_examples=int(os.environ.get("REELCAST_FUZZ_EXAMPLES", "2")),
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_a_server_error(case, callers):
    for caller, auth in callers.items():
        headers = {**(case.headers or {}), **auth.get("headers", {})}
        response = case.call(headers=headers, cookies=auth.get("cookies"))
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} as {caller}: {response.status_code} "
            f"{response.text[:500]}"
        )


# --- malformed uploads -------------------------------------------------------------------------


def _png(size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def _data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def _bomb_png() -> bytes:
    """A small file that unpacks to 50 million pixels (the cap is 40 million)."""
    out = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", b"\0" * (120 * 1024 * 1024))
    return out.getvalue()


@pytest.mark.parametrize(
    ("make_image", "field"),
    [
        (lambda: _data_url(_png()[:40]), "values.photo"),  # truncated PNG
        (lambda: _data_url(_bomb_png()), "values.photo"),  # decompression bomb
        (lambda: _data_url(b"GIF89a" + b"\0" * 30, "image/gif"), "values.photo"),  # not real
        (lambda: "data:image/png;base64,not-base64!!", "values.photo"),
    ],
    ids=["truncated", "bomb", "fake-gif", "bad-base64"],
)
def test_malformed_photos_are_400(api, tenant, make_image, field):
    image = make_image()
    template = factories.make_template(
        tenant, variables=[{"name": "photo", "type": "image"}], prompt="A shopper.", title=""
    )
    response = api.post(
        "/api/v1/jobs/",
        {
            "template": str(template.id),
            "values": {"photo": image},
            "consent": {"consented_by": "A B"},
        },
        format="json",
    )
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]


@pytest.mark.parametrize(
    ("make_data", "filename", "code"),
    [
        (lambda: b"name,virtue\nAda\0,courage\n", "class.csv", "roster_nul"),
        (_zip_bomb, "class.xlsx", "roster_zip_bomb"),
        (lambda: b"PK\x03\x04" + b"\xff" * 100, "class.xlsx", "roster_unreadable"),
        (_png, "class.csv", "roster_format"),
    ],
    ids=["csv-nul", "zip-bomb", "truncated-xlsx", "png-as-csv"],
)
def test_malformed_rosters_are_400(api, template, make_data, filename, code):
    upload = io.BytesIO(make_data())
    upload.name = filename
    response = api.post(
        "/api/v1/batches/", {"template": str(template.id), "file": upload}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_a_huge_body_is_413_before_it_is_read(api, template, settings):
    settings.REELCAST_MAX_BODY_BYTES = 1024 * 1024
    upload = io.BytesIO(b"name,virtue\n" + b"Ada,courage\n" * 200_000)
    upload.name = "class.csv"
    response = api.post(
        "/api/v1/batches/", {"template": str(template.id), "file": upload}, format="multipart"
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
