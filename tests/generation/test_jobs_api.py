from __future__ import annotations

import base64
import io
import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from PIL import Image

from billing.models import UsageEvent
from generation import tasks
from generation.models import IdempotencyKey, Job, JobState, Template
from generation.postprocess.encode import probe_mp4
from generation.storage import get_bytes
from tests import factories
from tests.conftest import key_client, visitor_client

pytestmark = pytest.mark.django_db


def _create(api, template, run_on_commit=None, **body):
    payload = {"template": str(template.id), "values": {"name": "Ada"}, **body}
    if run_on_commit is None:
        return api.post("/api/v1/jobs/", payload, format="json")
    return run_on_commit(api.post, "/api/v1/jobs/", payload, format="json")


def test_a_job_runs_to_succeeded_and_the_mp4_decodes_at_the_expected_size(
    api, template, run_on_commit
):
    response = _create(api, template, run_on_commit)
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    assert job.state == JobState.SUCCEEDED
    assert job.progress == 100
    assert [t.to_state for t in job.transitions.all()] == [
        "queued",
        "running",
        "postprocessing",
        "moderating",
        "succeeded",
    ]
    info = probe_mp4(get_bytes(job.video_key))
    assert (info["width"], info["height"], info["codec"]) == (128, 96, "h264")
    assert info["frames"] == 16 + 8  # the 2 s title card, then the 1 s shot, at 8 fps
    assert job.video_key.startswith(f"tenants/{job.tenant_id}/jobs/{job.id}/")
    body = api.get(f"/api/v1/jobs/{job.id}/").json()
    assert body["state"] == "succeeded"
    assert body["title"] == "Ada and courage"
    assert body["shots"][0]["prompt"] == "Ada shows courage in the playground."


def test_the_download_link_serves_the_video_with_range_and_expires(
    api, template, run_on_commit, client
):
    job_id = _create(api, template, run_on_commit).json()["id"]
    links = api.get(f"/api/v1/jobs/{job_id}/download/").json()
    url = links["video"]["url"].removeprefix("http://127.0.0.1:8000")
    whole = client.get(url)
    data = b"".join(whole.streaming_content)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes"
    assert data == get_bytes(Job.objects.get(pk=job_id).video_key)

    part = client.get(url, HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert b"".join(part.streaming_content) == data[10:20]
    tail = client.get(url, HTTP_RANGE="bytes=-5")
    assert b"".join(tail.streaming_content) == data[-5:]
    assert client.get(url, HTTP_RANGE=f"bytes={len(data)}-").status_code == 416

    token = url.split("/")[2]
    tampered = url.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    assert client.get(tampered).status_code == 404

    from generation import delivery

    job = Job.objects.get(pk=job_id)
    old = delivery.signed_link(tenant=job.tenant, key=job.video_key, ttl_s=60, now=0)
    assert client.get(old.url.removeprefix("http://127.0.0.1:8000")).status_code == 404


def test_head_on_a_download_link_answers_like_get_without_a_body(
    api, template, run_on_commit, client
):
    job_id = _create(api, template, run_on_commit).json()["id"]
    links = api.get(f"/api/v1/jobs/{job_id}/download/").json()
    url = links["video"]["url"].removeprefix("http://127.0.0.1:8000")
    size = len(get_bytes(Job.objects.get(pk=job_id).video_key))

    whole = client.head(url)
    part = client.head(url, HTTP_RANGE="bytes=10-19")
    beyond = client.head(url, HTTP_RANGE=f"bytes={size}-")

    assert (whole.status_code, whole.content) == (200, b"")
    assert (whole["Content-Length"], whole["Content-Type"], whole["Accept-Ranges"]) == (
        str(size),
        "video/mp4",
        "bytes",
    )
    assert whole["Content-Disposition"] == 'inline; filename="video.mp4"'
    assert (part.status_code, part.content, part["Content-Length"]) == (206, b"", "10")
    assert part["Content-Range"] == f"bytes 10-19/{size}"
    assert (beyond.status_code, beyond["Content-Range"]) == (416, f"bytes */{size}")
    poster = client.head(links["poster"]["url"].removeprefix("http://127.0.0.1:8000"))
    assert (poster.status_code, poster["Content-Type"]) == (200, "image/jpeg")


def test_a_download_link_takes_only_get_and_head(api, template, run_on_commit, client):
    job_id = _create(api, template, run_on_commit).json()["id"]
    url = api.get(f"/api/v1/jobs/{job_id}/download/").json()["video"]["url"]

    response = client.post(url.removeprefix("http://127.0.0.1:8000"))

    assert (response.status_code, response["Allow"]) == (405, "GET, HEAD")
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "method_not_allowed"


def test_download_before_success_is_409(api, template):
    job_id = _create(api, template).json()["id"]  # not run: on-commit callbacks not executed
    response = api.get(f"/api/v1/jobs/{job_id}/download/")
    assert response.status_code == 409
    assert response.json()["code"] == "not_ready"


def test_the_same_idempotency_key_and_body_returns_the_original_job(api, template):
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-42"}
    body = {"template": str(template.id), "values": {"name": "Ada"}}
    first = api.post("/api/v1/jobs/", body, format="json", **headers)
    again = api.post("/api/v1/jobs/", body, format="json", **headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert Job.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_409_and_creates_nothing(api, template):
    headers = {"HTTP_IDEMPOTENCY_KEY": "order-42"}
    api.post(
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": "Ada"}},
        format="json",
        **headers,
    )
    response = api.post(
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": "Bob"}},
        format="json",
        **headers,
    )
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert Job.objects.count() == 1


def test_idempotency_keys_are_per_tenant(api, other_api, template, other_tenant):
    other_template = factories.make_template(other_tenant)
    headers = {"HTTP_IDEMPOTENCY_KEY": "same-key"}
    a = api.post(
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": "Ada"}},
        format="json",
        **headers,
    )
    b = other_api.post(
        "/api/v1/jobs/",
        {"template": str(other_template.id), "values": {"name": "Ada"}},
        format="json",
        **headers,
    )
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


def test_idempotency_keys_are_kept_for_24_hours_then_swept(api, template):
    from datetime import timedelta

    from django.utils import timezone

    from generation.services import idempotency_sweep

    api.post(
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": "Ada"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
    )
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=23, minutes=59))
    assert idempotency_sweep() == 0
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=1))
    assert idempotency_sweep() == 1


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({}, "values.name"),
        ({"name": "Ada", "colour": "red"}, "values.colour"),
        ({"name": 42}, "values.name"),
        ({"name": "A" * 33}, "values.name"),
        ({"name": "Ada", "virtue": "greed"}, "values.virtue"),
        ({"name": "Ada", "age": "ten"}, "values.age"),
        ({"name": "Ada", "age": 99}, "values.age"),
        ({"name": "Ada", "age": 7.5}, "values.age"),
        ({"name": "Ada\u202e"}, "values.name"),
        ({"name": "Ada\x00"}, "values.name"),
    ],
)
def test_bad_values_are_400_with_the_field_and_create_nothing(api, template, values, field):
    response = api.post(
        "/api/v1/jobs/", {"template": str(template.id), "values": values}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert response["Content-Type"] == "application/problem+json"
    assert body["code"] == "invalid"
    assert field in [e["field"] for e in body["errors"]]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template": "00000000-0000-0000-0000-000000000000"}, "template"),
        ({"template": "no-such-slug"}, "template"),
        ({"width": 127}, "width"),
        ({"duration_s": 0.01}, "duration_s"),
        ({"model": "gpt-video"}, "model"),
        ({"surprise": 1}, "surprise"),
        ({"model": "wan2.2-ti2v-5b", "width": 1280, "height": 720}, "height"),
    ],
)
def test_bad_requests_are_400_and_create_nothing(api, template, body, field):
    payload = {"template": str(template.id), "values": {"name": "Ada"}, **body}
    response = api.post("/api/v1/jobs/", payload, format="json")
    assert response.status_code == 400
    assert field in [e["field"] for e in response.json()["errors"]]
    assert Job.objects.count() == 0


def test_wan_frame_counts_are_4k_plus_1_in_the_plan(api, tenant):
    template = factories.make_template(
        tenant, model="wan2.2-ti2v-5b", width=1280, height=704, fps=24, duration_s=5.0
    )
    response = api.post(
        "/api/v1/jobs/", {"template": str(template.id), "values": {"name": "Ada"}}, format="json"
    )
    assert response.status_code == 201
    assert [s["num_frames"] for s in response.json()["shots"]] == [121]


def test_a_body_over_the_limit_is_413(api, template):
    with override_settings(REELCAST_MAX_BODY_BYTES=1000):
        response = api.post(
            "/api/v1/jobs/",
            {"template": str(template.id), "values": {"name": "x" * 2000}},
            format="json",
        )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert Job.objects.count() == 0


def test_a_suspended_tenant_gets_402_and_nothing_is_created(api, tenant, template):
    tenant.status = "suspended"
    tenant.save()
    response = _create(api, template)
    assert response.status_code == 402
    assert response.json()["code"] == "tenant_suspended"
    assert Job.objects.count() == 0


def test_an_archived_template_takes_no_jobs(api, template):
    from generation.services import template_archive

    template_archive(template=template)
    response = _create(api, template)
    assert response.status_code == 409
    assert response.json()["code"] == "template_archived"
    assert Job.objects.count() == 0


def _photo_template(tenant):
    return factories.make_template(
        tenant,
        variables=[{"name": "name", "type": "text"}, {"name": "photo", "type": "image"}],
        prompt="{name} walks through the city.",
        title="{name}",
    )


def _png_data_url(size=(64, 48), colour=(200, 30, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_an_image_value_is_verified_stored_under_the_tenant_and_used(api, tenant, run_on_commit):
    template = _photo_template(tenant)
    response = run_on_commit(
        api.post,
        "/api/v1/jobs/",
        {
            "template": str(template.id),
            "values": {"name": "Ada", "photo": _png_data_url()},
            "consent": {"consented_by": "Ada Lovelace"},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["values"]["photo"] == {"image": "photo"}
    job = Job.objects.get()
    key = job.values["photo"]["key"]
    assert key.startswith(f"tenants/{tenant.id}/jobs/{job.id}/inputs/")
    assert Image.open(io.BytesIO(get_bytes(key))).size == (64, 48)
    assert job.state == JobState.SUCCEEDED


@pytest.mark.parametrize(
    "value",
    [
        "data:image/png;base64,bm90IGFuIGltYWdl",
        "data:image/png;base64,%%%",
        "https://example.com/a.png",
    ],
)
def test_a_fake_or_broken_image_is_400(api, tenant, value):
    template = _photo_template(tenant)
    response = api.post(
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": "Ada", "photo": value}},
        format="json",
    )
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["values.photo"]
    assert Job.objects.count() == 0


def test_a_decompression_bomb_is_refused(api, tenant):
    template = _photo_template(tenant)
    with override_settings(REELCAST_MAX_IMAGE_PIXELS=1000):
        response = api.post(
            "/api/v1/jobs/",
            {
                "template": str(template.id),
                "values": {"name": "Ada", "photo": _png_data_url(size=(100, 100))},
            },
            format="json",
        )
    assert response.status_code == 400
    assert "pixels" in response.json()["errors"][0]["message"]


def test_list_filters_by_state_and_template_and_pages_with_a_cursor(api, tenant, template):
    second = factories.make_template(tenant)
    for _ in range(3):
        _create(api, template)
    _create(api, second)
    Job.objects.filter(template=second).update(state="failed")
    page = api.get("/api/v1/jobs/?limit=2").json()
    assert len(page["results"]) == 2 and page["next"]
    rest = api.get(page["next"].removeprefix("http://testserver")).json()
    assert len(rest["results"]) == 2 and rest["next"] is None
    assert {j["id"] for j in page["results"]} | {j["id"] for j in rest["results"]} == {
        str(pk) for pk in Job.objects.values_list("pk", flat=True)
    }
    failed = api.get("/api/v1/jobs/?state=failed").json()["results"]
    assert [j["template"] for j in failed] == [str(second.id)]
    by_template = api.get(f"/api/v1/jobs/?template={template.id}").json()["results"]
    assert len(by_template) == 3
    assert api.get("/api/v1/jobs/?state=flying").status_code == 400
    assert api.get("/api/v1/jobs/?created_after=yesterday").status_code == 400
    future = api.get("/api/v1/jobs/?created_after=2999-01-01T00:00:00Z").json()["results"]
    assert future == []


def test_cancel_while_queued_ends_the_job_and_the_worker_does_nothing(api, template):
    job_id = _create(api, template).json()["id"]
    response = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 200
    assert response.json()["state"] == "canceled"
    tasks.run_job(job_id)  # the queued task is delivered anyway
    job = Job.objects.get(pk=job_id)
    assert job.state == "canceled"
    assert UsageEvent.objects.count() == 0
    assert api.post(f"/api/v1/jobs/{job_id}/cancel/").status_code == 409


def test_cancel_while_running_stops_within_a_step_and_bills_the_work_done(api, tenant, monkeypatch):
    template = factories.make_template(
        tenant, duration_s=4.0, fps=8, prompt="{name} one.\n\n{name} two.\n\n{name} three."
    )
    job_id = _create(api, template).json()["id"]
    from generation.backends.preview import PreviewBackend

    real_generate = PreviewBackend.generate
    seen_progress = []

    def generate_and_cancel_midway(self, request, *, on_progress, should_cancel):
        def progress(done, total):
            seen_progress.append((done, total))
            on_progress(done, total)
            if done >= total // 2 and not Job.objects.get(pk=job_id).cancel_requested_at:
                api.post(f"/api/v1/jobs/{job_id}/cancel/")  # the tenant cancels mid-run

        return real_generate(self, request, on_progress=progress, should_cancel=should_cancel)

    monkeypatch.setattr(PreviewBackend, "generate", generate_and_cancel_midway)
    tasks.run_job(job_id)
    job = Job.objects.get(pk=job_id)
    assert job.state == "canceled"
    assert job.transitions.last().reason == "canceled while running"
    total = seen_progress[0][1]
    assert seen_progress[-1][0] < total  # it stopped before the end
    rows = UsageEvent.objects.filter(job_id=job_id)
    assert rows.count() >= 1 and all(r.milliseconds >= 0 for r in rows)
    assert not job.video_key


def test_a_worker_exception_fails_the_job_with_a_reason(api, template, monkeypatch):
    from generation.backends.preview import PreviewBackend

    def explode(self, request, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(PreviewBackend, "generate", explode)
    job_id = _create(api, template).json()["id"]
    tasks.run_job(job_id)
    job = Job.objects.get(pk=job_id)
    assert (job.state, job.error_code) == ("failed", "generation_error")
    assert "renderer exploded" in job.error_message
    assert api.get(f"/api/v1/jobs/{job_id}/").json()["error"]["code"] == "generation_error"


def test_a_job_whose_worker_dies_is_retried_with_the_same_seed_and_billed_once(
    api, template, monkeypatch, run_on_commit
):
    from datetime import timedelta

    from django.utils import timezone

    from generation.backends.preview import PreviewBackend

    job_id = _create(api, template).json()["id"]
    real_generate = PreviewBackend.generate
    seeds = []

    def generate(self, request, **kwargs):
        seeds.append([shot.seed for shot in request.shots])
        return real_generate(self, request, **kwargs)

    monkeypatch.setattr(PreviewBackend, "generate", generate)
    real_pack = tasks.pack

    def worker_killed_after_billing(frames, *, fps):
        raise SystemExit("kill -9")  # dies after the usage row, before the hand-over

    monkeypatch.setattr(tasks, "pack", worker_killed_after_billing)
    with pytest.raises(SystemExit):
        tasks.run_job(job_id)
    job = Job.objects.get(pk=job_id)
    assert (job.state, job.attempts) == ("running", 1)
    # A second delivery while the lease is alive must not start a second generation.
    monkeypatch.setattr(tasks, "pack", real_pack)
    tasks.run_job(job_id)
    assert len(seeds) == 1
    # The lease lapses (nobody renews it); the reaper requeues and a worker takes it again.
    Job.objects.filter(pk=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert run_on_commit(tasks.reap_lost_jobs) == 1
    job.refresh_from_db()
    assert (job.state, job.attempts) == ("succeeded", 2)
    assert seeds[0] == seeds[1]
    assert "lost; retrying with the same seed" in " ".join(t.reason for t in job.transitions.all())
    tasks.run_job(job_id)  # a late duplicate delivery after success does nothing
    rows = list(UsageEvent.objects.filter(job_id=job_id).values_list("id", flat=True))
    assert rows == [f"job:{job_id}:generate:0"]


def test_a_job_pins_the_template_version_it_was_made_from(api, template, run_on_commit):
    first = _create(api, template).json()
    patched = api.patch(
        f"/api/v1/templates/{template.id}/",
        {"prompt": "{name} learns about {virtue} at the zoo."},
        format="json",
    )
    assert patched.json()["version"]["number"] == 2
    second = _create(api, template).json()
    assert (first["template_version"], second["template_version"]) == (1, 2)
    assert first["shots"][0]["prompt"] == "Ada shows courage in the playground."
    assert second["shots"][0]["prompt"] == "Ada learns about courage at the zoo."
    pinned = _create(api, template, template_version=1).json()
    assert pinned["template_version"] == 1


def test_the_same_seed_gives_the_same_frames(api, template):
    from generation.backends import get_backend

    a, b, c = (
        Job.objects.get(pk=_create(api, template, seed=seed).json()["id"]) for seed in (7, 7, 8)
    )
    assert a.shots == b.shots and a.shots[0]["seed"] != c.shots[0]["seed"]
    backend = get_backend("preview")

    def frames(job):
        return backend.generate(
            tasks._build_request(job), on_progress=lambda d, t: None, should_cancel=lambda: False
        ).frames

    # The delivered videos differ by design: each carries its own job's invisible watermark.
    assert (frames(a) == frames(b)).all()
    assert not (frames(a) == frames(c)).all()


def test_templates_of_another_tenant_cannot_be_used(api, other_tenant):
    foreign = factories.make_template(other_tenant)
    response = api.post(
        "/api/v1/jobs/", {"template": str(foreign.id), "values": {"name": "Ada"}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "template", "message": "No such template."}]
    assert Job.objects.count() == 0
    assert Template.objects.filter(tenant=other_tenant).count() == 1


def test_a_publishable_key_creates_jobs_only_for_its_templates_and_origins(tenant):
    from tenants.services import apikey_create

    variables = [dict(v, public=True) for v in factories.CHARACTER_CONTENT["variables"]]
    template = factories.make_template(tenant, variables=variables)
    other = factories.make_template(tenant)
    pk = apikey_create(
        tenant=tenant,
        kind="publishable",
        name="shop",
        allowed_origins=["https://shop.example"],
        allowed_template_ids=[str(template.id)],
    ).raw_key
    good = visitor_client(pk, "https://shop.example")
    created = good.post(
        "/api/v1/jobs/", {"template": str(template.id), "values": {"name": "Ada"}}, format="json"
    )
    assert created.status_code == 201
    assert good.get(f"/api/v1/jobs/{created.json()['id']}/").status_code == 200
    wrong_template = good.post(
        "/api/v1/jobs/", {"template": str(other.id), "values": {"name": "Ada"}}, format="json"
    )
    assert wrong_template.status_code == 403
    evil = key_client(pk, HTTP_ORIGIN="https://evil.example")
    assert (
        evil.post(
            "/api/v1/jobs/",
            {"template": str(template.id), "values": {"name": "Ada"}},
            format="json",
        ).status_code
        == 403
    )
    assert good.get("/api/v1/jobs/").status_code == 403
    assert good.get("/api/v1/templates/").status_code == 403
    assert Job.objects.count() == 1


def test_an_idempotency_key_past_its_lifetime_makes_a_new_job(api, template):
    body = {"template": str(template.id), "values": {"name": "Ada"}}
    first = api.post("/api/v1/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=1))

    again = api.post("/api/v1/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] != first.json()["id"]
    assert IdempotencyKey.objects.get().job_id == uuid.UUID(again.json()["id"])
