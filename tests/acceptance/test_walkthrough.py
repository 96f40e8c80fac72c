"""The README's "API walk-through", step by step, against the production server: a school's
server lists templates, creates a job (a retry with the same Idempotency-Key returns the same
job), polls it, gets signed links and downloads the video from the S3 store; then the roster and
A/B variant examples."""

from __future__ import annotations

import csv
import io
import json

import requests

from tests.acceptance.conftest import WALKTHROUGH_BODY, WALKTHROUGH_KEY
from tests.acceptance.harness import wait_until


def test_the_readme_api_walkthrough_works_as_written(platform_server, walkthrough):
    p = platform_server
    # the seeded character template
    assert walkthrough.templates.status_code == 200
    slugs = [t["slug"] for t in walkthrough.templates.json()["results"]]
    assert slugs == ["courage-story"]

    # create a job -> 201 {"id": "…", "state": "queued", "queue_position": 0, "eta_s": …}
    created = walkthrough.created.json()
    assert walkthrough.created.status_code == 201
    assert created["state"] == "queued"
    assert created["queue_position"] == 0  # no job ahead of it
    assert created["eta_s"] > 0
    assert created["values"] == {**WALKTHROUGH_BODY["values"], "place": "the school playground"}
    assert created["model"] == "preview"
    assert len(created["shots"]) == 3
    # the Idempotency-Key makes a retried POST return the same job (200)
    assert walkthrough.retried.status_code == 200
    assert walkthrough.retried.json()["id"] == created["id"]

    # poll it -> {"state": "succeeded", "progress": 100, "transitions": [...]}
    done = walkthrough.succeeded
    assert (done["state"], done["progress"]) == ("succeeded", 100)
    states = [t["to_state"] for t in done["transitions"]]
    assert states[0] == "queued" and states[-1] == "succeeded"

    # signed links: on S3 storage they are the store's presigned URLs, expiring
    links = walkthrough.links.json()
    s3 = p.extras["s3"]["endpoint"]
    for name, filename in (("video", "video.mp4"), ("poster", "poster.jpg")):
        url = links[name]["url"]
        assert url.startswith(f"{s3}/reelcast-media/tenants/"), url
        assert url.split("?")[0].endswith(f"/jobs/{created['id']}/{filename}")
        assert "Signature=" in url and "Expires=" in url
        assert links[name]["expires_at"]

    # and download the MP4 (curl -s -o video.mp4 "<video url>")
    assert walkthrough.video.status_code == 200
    body = walkthrough.video.content
    assert body[4:8] == b"ftyp"
    assert len(body) == links["video_bytes"]
    # a player's Range request is answered from the store
    ranged = requests.get(links["video"]["url"], headers={"Range": "bytes=0-99"}, timeout=30)
    assert (ranged.status_code, ranged.content) == (206, body[:100])
    # a link whose signature was changed opens nothing
    forged = links["video"]["url"].replace("Signature=", "Signature=x")
    assert requests.get(forged, timeout=30).status_code == 403


def test_an_admin_deletes_the_walkthrough_s_files_with_a_receipt(
    platform_server, owner, walkthrough
):
    """`DELETE /api/v1/jobs/{id}/` (admin+): every file goes from the store, a receipt says
    which; the signed links stop working and the download answers 410."""
    p = platform_server
    job_id = walkthrough.created.json()["id"]
    video_url = walkthrough.links.json()["video"]["url"]
    assert requests.get(video_url, headers={"Range": "bytes=0-0"}, timeout=30).status_code == 206
    # A secret key acts as an editor: not enough.
    assert p.school_api().delete(f"{p.url}/api/v1/jobs/{job_id}/", timeout=30).status_code == 403

    answer = owner.delete(f"{p.url}/api/v1/jobs/{job_id}/", timeout=60)
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert (receipt["job_id"], receipt["reason"]) == (job_id, "tenant_request")
    names = sorted(f["key"].rsplit("/", 1)[1] for f in receipt["files"])
    assert {"video.mp4", "poster.jpg", "preview.webp", "subtitles.srt", "subtitles.vtt"} <= set(
        names
    ), names
    assert requests.get(video_url, timeout=30).status_code == 404
    gone = p.school_api().get(f"{p.url}/api/v1/jobs/{job_id}/download/", timeout=30)
    assert gone.status_code == 410


def test_the_same_idempotency_key_with_another_body_is_refused(platform_server, walkthrough):
    p = platform_server
    other = {**WALKTHROUGH_BODY, "values": {"name": "小明", "virtue": "honesty"}}
    answer = p.school_api().post(
        f"{p.url}/api/v1/jobs/", json=other, headers={"Idempotency-Key": WALKTHROUGH_KEY}
    )
    assert answer.status_code == 409
    assert answer.json()["code"] == "idempotency_key_reused"


def test_the_readme_roster_example(platform_server):
    """`POST /api/v1/batches/` with a class list answers 202; its rows become jobs in the
    background; progress and the results CSV are readable."""
    p = platform_server
    api = p.school_api()
    roster = "name,virtue,end_user\nAda Lovelace,courage,S-1002\nLi Wei,honesty,S-1003\n"
    answer = api.post(
        f"{p.url}/api/v1/batches/",
        data={"template": "courage-story", "name": "Class 3B"},
        files={"file": ("class-3b.csv", roster.encode(), "text/csv")},
        timeout=60,
    )
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["id"]

    def rows_are_jobs() -> dict | None:
        p.check_alive()
        batch = api.get(f"{p.url}/api/v1/batches/{batch_id}/", timeout=30).json()
        return batch if batch["processed_rows"] == 2 else None

    batch = wait_until(
        rows_are_jobs,
        timeout_s=120,
        what=f"batch {batch_id} turning its 2 rows into jobs",
        explain=lambda: api.get(f"{p.url}/api/v1/batches/{batch_id}/", timeout=30).text,
    )
    assert (batch["total_rows"], batch["accepted_rows"], batch["errors"]) == (2, 2, [])
    jobs = api.get(f"{p.url}/api/v1/jobs/", params={"batch": batch_id}, timeout=30).json()
    names = sorted(j["values"]["name"] for j in jobs["results"])
    assert names == ["Ada Lovelace", "Li Wei"]

    results = api.get(f"{p.url}/api/v1/batches/{batch_id}/results/", timeout=30)
    assert results.status_code == 200
    lines = list(csv.DictReader(io.StringIO(results.content.decode("utf-8-sig"))))
    assert sorted(line["name"] for line in lines) == ["Ada Lovelace", "Li Wei"]

    # The school does not need these two videos: a queued job is canceled at once.
    for job in jobs["results"]:
        canceled = api.post(f"{p.url}/api/v1/jobs/{job['id']}/cancel/", timeout=30)
        assert canceled.status_code == 200, canceled.text


def test_the_readme_variants_example(platform_server):
    """Three looks of the same clip, same seed: one job per variant."""
    p = platform_server
    api = p.school_api()
    body = {
        "template": "courage-story",
        "values": {"name": "小明"},
        "end_user": "S-1001",
        "variants": [
            {"label": "book", "style": {"preset": "storybook"}},
            {"label": "film", "style": {"preset": "cinematic"}},
        ],
    }
    answer = api.post(f"{p.url}/api/v1/batches/variants/", json=body, timeout=60)
    assert answer.status_code == 201, answer.text
    batch_id = answer.json()["id"]
    jobs = api.get(f"{p.url}/api/v1/jobs/", params={"batch": batch_id}, timeout=30).json()
    assert len(jobs["results"]) == 2, json.dumps(jobs)[:2000]
    assert len({j["seed"] for j in jobs["results"]}) == 1
    prompts = {j["shots"][0]["prompt"] for j in jobs["results"]}
    assert len(prompts) == 2  # the style differs, nothing else
    for job in jobs["results"]:
        canceled = api.post(f"{p.url}/api/v1/jobs/{job['id']}/cancel/", timeout=30)
        assert canceled.status_code == 200, canceled.text
