"""Delivered videos are finished: the visible AI label, the AIGC tag, audio, the tenant's brand
kit, subtitles and a preview, through the real pipeline."""

from __future__ import annotations

import base64
import io
import json
import wave

import av
import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image
from rest_framework.test import APIClient

from generation.models import BrandKit, Job
from generation.postprocess.aigc import key_id, signature, verify
from generation.postprocess.label import label_box
from generation.storage import get_bytes
from moderation.provenance_service import aigc_label_key
from tests import factories

pytestmark = pytest.mark.django_db

SIZE = {"width": 320, "height": 180, "fps": 12, "duration_s": 3.0}


def _run(api, template, run_on_commit, name="Ada"):
    response = run_on_commit(
        api.post,
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": name}},
        format="json",
    )
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.state == "succeeded", (job.error_code, job.error_message)
    return job


def _frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _plate(frame, box):
    x, y, w, h = box
    return frame[y : y + h, x : x + w].astype(int)


@pytest.mark.parametrize(("name", "locale"), [("小明", "zh-Hans"), ("Ada", "en")])
def test_every_delivered_video_carries_the_visible_label_from_the_first_frame(
    api, tenant, run_on_commit, name, locale
):
    template = factories.make_template(tenant, prompt="{name} plays chess.", title="{name}", **SIZE)
    job = _run(api, template, run_on_commit, name=name)
    frames = _frames(get_bytes(job.video_key))
    box = label_box(320, 180, locale)
    assert box[3] >= 0.05 * 180  # at least 5% of the shorter side
    for index in (0, 12, 24, len(frames) - 1):  # first frame, 1 s, 2 s, last
        plate = _plate(frames[index], box)
        dark = (plate.max(axis=2) < 60).mean()
        bright = (plate.min(axis=2) > 190).mean()
        assert dark > 0.4 and bright > 0.03, (index, dark, bright)  # a dark plate, white text


def test_the_implicit_label_audio_and_sidecars_are_delivered(api, tenant, run_on_commit):
    from generation.postprocess.encode import probe_mp4

    template = factories.make_template(tenant, prompt="{name} one.\n\n{name} two.", **SIZE)
    job = _run(api, template, run_on_commit)
    info = probe_mp4(get_bytes(job.video_key))
    assert info["moov_before_mdat"] and info["profile"] == "High"
    assert info["audio"] is not None
    aigc = json.loads(info["metadata"]["AIGC"])
    key = aigc_label_key()
    assert aigc == {
        "Label": "1",
        "ContentProducer": "Reelcast",
        "ProduceID": job.id.hex,  # the job id
        "ReservedCode1": signature(key=key, content_producer="Reelcast", produce_id=job.id.hex),
        "ContentPropagator": "Reelcast",
        "PropagateID": job.id.hex,  # first write: nothing republishes through the platform
        "ReservedCode2": key_id(key),
    }
    assert verify(info["metadata"]["AIGC"], key=key).valid
    prefix = f"tenants/{tenant.id}/jobs/{job.id}/"
    srt = get_bytes(prefix + "subtitles.srt").decode()
    assert "Ada one." in srt and "Ada two." in srt
    assert get_bytes(prefix + "subtitles.vtt").decode().startswith("WEBVTT")
    preview = Image.open(io.BytesIO(get_bytes(prefix + "preview.webp")))
    assert preview.format == "WEBP" and preview.n_frames > 1


def _logo_data_url() -> str:
    logo = Image.new("RGBA", (64, 64), (255, 0, 255, 255))  # pure magenta: easy to find
    buffer = io.BytesIO()
    logo.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _wav_data_url(seconds=2.0, rate=48000) -> str:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(tone.tobytes())
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_the_brand_kit_puts_the_logo_on_the_video_without_covering_the_label(
    api, tenant, run_on_commit
):
    admin = APIClient()
    admin.force_login(factories.make_member(tenant, role="admin"))
    response = admin.post(
        "/api/v1/brand-kit/",
        {
            "logo": _logo_data_url(),
            "logo_corner": "top-left",
            "logo_size": 0.2,
            "music": _wav_data_url(),
            "label_locale": "en",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["has_logo"] and response.json()["has_music"]
    template = factories.make_template(tenant, **SIZE)
    job = _run(api, template, run_on_commit)
    frame = _frames(get_bytes(job.video_key))[6]
    magenta = (frame[..., 0] > 200) & (frame[..., 1] < 60) & (frame[..., 2] > 200)
    assert magenta.sum() > 100  # the logo is there
    lx, ly, lw, lh = label_box(320, 180, "en")  # the label took top-left; the logo moved
    inside_label = magenta[ly : ly + lh, lx : lx + lw].sum()
    assert inside_label == 0
    from generation.postprocess.encode import probe_mp4

    assert probe_mp4(get_bytes(job.video_key))["audio"] is not None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"logo": "data:image/png;base64,bm90IGFuIGltYWdl"}, "logo"),
        ({"music": "data:audio/wav;base64,bm90IGF1ZGlv"}, "music"),
        ({"music": "https://example.com/song.mp3"}, "music"),
        ({"logo_corner": "middle"}, "logo_corner"),
        ({"primary_colour": "red"}, "primary_colour"),
        ({"label_enabled": False}, "label_enabled"),
    ],
)
def test_a_bad_brand_kit_is_400_and_changes_nothing(tenant, body, field):
    admin = APIClient()
    admin.force_login(factories.make_member(tenant, role="admin"))
    response = admin.post("/api/v1/brand-kit/", body, format="json")
    assert response.status_code == 400
    assert field in [e["field"] for e in response.json()["errors"]]
    assert BrandKit.objects.count() == 0


def test_only_admins_set_the_brand_kit(tenant, api):
    viewer = APIClient()
    viewer.force_login(factories.make_member(tenant, role="editor"))
    assert viewer.post("/api/v1/brand-kit/", {"intro_text": "Hi"}, format="json").status_code == 403
    assert api.post("/api/v1/brand-kit/", {"intro_text": "Hi"}, format="json").status_code == 403
    assert viewer.get("/api/v1/brand-kit/").json()["has_logo"] is False
    assert BrandKit.objects.count() == 0


def test_replacing_the_logo_removes_the_old_file(tenant):
    admin = APIClient()
    admin.force_login(factories.make_member(tenant, role="admin"))
    admin.post("/api/v1/brand-kit/", {"logo": _logo_data_url()}, format="json")
    first = BrandKit.objects.get().logo_key
    admin.post("/api/v1/brand-kit/", {"logo": _logo_data_url()}, format="json")
    second = BrandKit.objects.get().logo_key
    assert first != second and second.startswith(f"tenants/{tenant.id}/brand/")
    assert not default_storage.exists(first) and default_storage.exists(second)


def test_a_template_can_deliver_a_vertical_version_too(api, tenant, run_on_commit, client):
    template = factories.make_template(tenant, extra_outputs=["portrait"], **SIZE)
    assert api.get(f"/api/v1/templates/{template.id}/").json()["version"]["extra_outputs"] == [
        "portrait"
    ]
    job = _run(api, template, run_on_commit)
    links = api.get(f"/api/v1/jobs/{job.id}/download/").json()
    portrait = links["variants"]["portrait"]["url"].removeprefix("http://127.0.0.1:8000")
    data = b"".join(client.get(portrait).streaming_content)
    frames = _frames(data)
    assert frames[0].shape == (320, 180, 3)  # 9:16 on the same short side
    box = label_box(180, 320, "en")
    plate = _plate(frames[0], box)
    assert (plate.max(axis=2) < 60).mean() > 0.4  # the label is on this output too
    landscape = _frames(get_bytes(job.video_key))
    assert landscape[0].shape == (180, 320, 3)


@pytest.mark.parametrize("extra", [["landscape"], ["square"], ["portrait", "portrait"], "portrait"])
def test_extra_outputs_must_be_the_other_orientation(api, extra):
    body = {
        "name": "T",
        "kind": "character",
        "prompt": "{name}",
        "variables": [{"name": "name", "type": "text"}],
        "extra_outputs": extra,
        **SIZE,
    }
    response = api.post("/api/v1/templates/", body, format="json")
    assert response.status_code == 400
    assert "extra_outputs" in [e["field"] for e in response.json()["errors"]]
