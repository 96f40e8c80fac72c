"""Every answer a publishable key can get is the embed view: state, progress, queue, the video
once ready, an error code and a public reason. Nothing of the template's internals (shot
prompts, negative prompt, preset, product text, private values, seed) ever appears."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from generation.live import job_token
from generation.models import Job
from generation.services import job_fail
from tests.conftest import key_client
from tests.security.storefront.support import (
    INTERNAL_FIELDS,
    NEGATIVE_SECRET,
    PROMO_DEFAULT,
    PROMPT_SECRET,
    SECRETS,
    SHOP,
    job_body,
)

pytestmark = pytest.mark.django_db

EMBED_FIELDS = {
    "id",
    "template",
    "state",
    "progress",
    "queue_position",
    "eta_s",
    "eta_at",
    "error",
    "video",
    "poster",
    "created_at",
    "finished_at",
}


def _assert_nothing_internal(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked: {text[:400]}"


def _assert_embed_view(body: dict) -> None:
    assert set(body) == EMBED_FIELDS
    assert not set(INTERNAL_FIELDS) & set(body)


def test_create_and_retrieve_answer_with_the_embed_view_only(storefront):
    created = storefront.post("/api/v1/jobs/", job_body(), format="json")
    job_id = created.json()["id"]
    read = storefront.get(f"/api/v1/jobs/{job_id}/")

    assert (created.status_code, read.status_code) == (201, 200)
    for response in (created, read):
        _assert_embed_view(response.json())
        _assert_nothing_internal(response.content.decode())
    assert read.json()["state"] == "queued"
    assert (read.json()["video"], read.json()["error"]) == (None, None)
    # the job itself holds the secrets the answers left out
    job = Job.objects.get(pk=job_id)
    assert "Maison Quill" in job.shots[0]["prompt"]


def test_a_finished_job_gives_the_video_links_and_still_nothing_internal(storefront, run_on_commit):
    created = run_on_commit(storefront.post, "/api/v1/jobs/", job_body(), format="json")
    job_id = created.json()["id"]
    assert Job.objects.get(pk=job_id).state == "succeeded"

    read = storefront.get(f"/api/v1/jobs/{job_id}/")
    download = storefront.get(f"/api/v1/jobs/{job_id}/download/")
    events_token = storefront.post(f"/api/v1/jobs/{job_id}/events-token/")

    assert [r.status_code for r in (read, download, events_token)] == [200, 200, 200]
    body = read.json()
    _assert_embed_view(body)
    assert body["state"] == "succeeded"
    assert body["video"]["url"].startswith(f"{settings.REELCAST_PUBLIC_URL}/dl/")
    assert body["poster"]["url"].startswith(f"{settings.REELCAST_PUBLIC_URL}/dl/")
    assert set(download.json()) == {"video", "poster", "video_bytes", "variants"}
    assert set(events_token.json()) == {"token", "url", "expires_in_s"}
    for response in (read, download, events_token):
        _assert_nothing_internal(response.content.decode())


def test_the_live_stream_shows_state_only_by_key_and_by_job_token(storefront, issued):
    job_id = storefront.post("/api/v1/jobs/", job_body(), format="json").json()["id"]
    job = Job.objects.get(pk=job_id)
    Job.objects.filter(pk=job_id).update(state="succeeded", progress=100)
    by_key = key_client(issued.raw_key, HTTP_ORIGIN=SHOP).get(f"/api/v1/jobs/{job_id}/events/")
    by_token = APIClient(HTTP_ORIGIN=SHOP).get(
        f"/api/v1/jobs/{job_id}/events/?token={job_token(job)}"
    )

    for response in (by_key, by_token):
        assert response.status_code == 200
        text = b"".join(response.streaming_content).decode()
        _assert_nothing_internal(text)
        data = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
        states = [item for item in data if "progress" in item]
        assert states == [
            {
                "state": "succeeded",
                "progress": 100,
                "eta_s": None,
                "eta_at": None,
                "queue_position": None,
            }
        ]


def test_a_failed_job_shows_its_code_and_a_public_reason_not_the_internal_message(storefront):
    job_id = storefront.post("/api/v1/jobs/", job_body(), format="json").json()["id"]
    job = Job.objects.get(pk=job_id)
    Job.objects.filter(pk=job_id).update(state="running")
    job.refresh_from_db()
    job_fail(
        job=job,
        code="backend_error",
        message=f"CUDA error while denoising '{job.shots[0]['prompt']}' seed {job.seed}",
    )

    read = storefront.get(f"/api/v1/jobs/{job_id}/")

    assert read.json()["state"] == "failed"
    assert read.json()["error"] == {
        "code": "backend_error",
        "reason": "The video could not be made.",
    }
    _assert_nothing_internal(read.content.decode())
    assert str(job.seed) not in read.content.decode().replace(job_id, "")


def test_a_blocked_request_quotes_the_shoppers_words_but_never_the_prompt(storefront):
    response = storefront.post("/api/v1/jobs/", job_body(values={"shopper": "porn"}), format="json")

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "content_blocked"
    fields = [error["field"] for error in body["errors"]]
    assert "values.shopper" in fields
    assert not any(field.startswith(("shots", "title")) for field in fields)
    _assert_nothing_internal(response.content.decode())
    assert Job.objects.count() == 0


def test_a_publishable_key_lists_nothing_and_cannot_reach_the_full_views(storefront, template):
    job_id = storefront.post("/api/v1/jobs/", job_body(), format="json").json()["id"]

    answers = {
        "list": storefront.get("/api/v1/jobs/"),
        "cancel": storefront.post(f"/api/v1/jobs/{job_id}/cancel/"),
        "delete": storefront.delete(f"/api/v1/jobs/{job_id}/"),
        "template": storefront.get(f"/api/v1/templates/{template.id}/"),
        "preview": storefront.post(f"/api/v1/templates/{template.id}/preview/", {}),
        "versions": storefront.get(f"/api/v1/templates/{template.id}/versions/"),
    }

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 403)
    for response in answers.values():
        _assert_nothing_internal(response.content.decode())


def test_the_public_template_description_holds_no_prompt(storefront, template):
    response = storefront.get(f"/api/v1/embed/templates/{template.id}/")

    assert response.status_code == 200
    text = response.content.decode()
    # the product line is the shop's public description of what it sells; the rest is not
    for secret in (PROMPT_SECRET, "Maison Quill", NEGATIVE_SECRET, PROMO_DEFAULT, "cinematic"):
        assert secret not in text
    assert [v["name"] for v in response.json()["variables"]] == ["shopper", "scene"]
