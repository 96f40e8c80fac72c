"""One owner for burned-in text: the finishing pass draws the title card, the subtitles, the logo
and the AI label for every backend, and nothing else draws a caption where subtitles go.

Proved on the delivered bytes: a real preview job runs to ``succeeded`` through the production
path, its MP4 is read back from storage and decoded, and the frames are searched for caption
blocks (``tests/support/video_checks.py``)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw
from rest_framework.test import APIClient

from generation.backends.base import GenerationRequest, ShotSpec
from generation.backends.preview import PreviewBackend
from generation.fonts import load_font
from generation.models import Job
from generation.postprocess.label import label_box
from generation.postprocess.layout import Box
from generation.postprocess.subtitles import render_subtitle
from generation.storage import get_bytes
from tests import factories
from tests.support.video_checks import caption_blocks, decode_frame_at

WIDTH, HEIGHT = 640, 360
SCRIPT = (
    "{name} raises a hand in the classroom and asks the question everyone else was afraid "
    "to ask.\n\n{name} walks home at sunset, proud of the day."
)
# Rows of x264 blur around the letters that the renderer drew.
TOLERANCE = 2
_CUE = re.compile(r"(\d+):(\d+):(\d+),(\d+) --> (\d+):(\d+):(\d+),(\d+)\n(.+?)\n\n", re.S)


def _run(api, run_on_commit, **content) -> Job:
    template = factories.make_template(
        api.tenant, prompt=SCRIPT, title="{name}", width=WIDTH, height=HEIGHT, fps=12, **content
    )
    response = run_on_commit(
        api.post,
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": "Ada"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.state == "succeeded", (job.error_code, job.error_message)
    return job


def _cues(job: Job) -> list[tuple[float, float, str]]:
    """(start s, end s, text) of each subtitle cue, from the delivered SRT sidecar."""
    srt = get_bytes(f"tenants/{job.tenant_id}/jobs/{job.id}/subtitles.srt").decode()
    cues = []
    for match in _CUE.finditer(srt):
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(v) for v in match.groups()[:8])
        start = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000
        end = h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        cues.append((start, end, " ".join(match.group(9).splitlines())))
    assert len(cues) == len(job.shots), srt
    return cues


def _ink_rows(text: str, *, width: int, height: int, avoid: list[Box]) -> tuple[int, int]:
    """[first, last + 1) rows of the letters the finishing pass draws for ``text``."""
    subtitle = render_subtitle(text, width=width, height=height, avoid=avoid)
    font = load_font(subtitle.text.size)
    tops, bottoms = [], []
    for line, (_x, baseline) in zip(subtitle.text.lines, subtitle.baselines, strict=True):
        _left, top, _right, bottom = font.getbbox(line, anchor="ls")
        tops.append(baseline + top)
        bottoms.append(baseline + bottom)
    return min(tops), max(bottoms)


def _assert_one_caption_where_subtitles_go(frame, text, *, avoid):
    height, width = frame.shape[:2]
    blocks = caption_blocks(frame)
    assert len(blocks) == 1, f"{len(blocks)} caption blocks at rows {blocks}"
    (start, end), (ink_top, ink_bottom) = (
        blocks[0],
        _ink_rows(text, width=width, height=height, avoid=avoid),
    )
    assert abs(start - ink_top) <= TOLERANCE and abs(end - ink_bottom) <= TOLERANCE, (
        f"caption at rows {start}-{end}, the subtitle's letters at {ink_top}-{ink_bottom}"
    )


@pytest.fixture
def api(tenant) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {factories.make_secret_key(tenant)}")
    client.tenant = tenant
    return client


@pytest.mark.django_db
def test_a_preview_video_shows_each_subtitle_once_where_the_finishing_pass_puts_it(
    api, run_on_commit
):
    job = _run(api, run_on_commit, duration_s=4.0, extra_outputs=["portrait"])
    cues = _cues(job)
    texts = [shot["scene_text"] for shot in job.shots]
    assert [cue[2] for cue in cues] == texts
    landscape = get_bytes(job.video_key)
    portrait = get_bytes(f"tenants/{job.tenant_id}/jobs/{job.id}/video-portrait.mp4")

    for mp4, (width, height) in ((landscape, (WIDTH, HEIGHT)), (portrait, (HEIGHT, WIDTH))):
        label = label_box(width, height, "en")
        for start, end, text in cues:
            frame = decode_frame_at(mp4, (start + end) / 2)
            assert frame.shape == (height, width, 3)
            _assert_one_caption_where_subtitles_go(frame, text, avoid=[label])
        # The finishing pass's title card comes first, and no caption is drawn on it.
        assert cues[0][0] > 0
        assert caption_blocks(decode_frame_at(mp4, cues[0][0] / 2)) == []


def _logo_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 64), (255, 0, 255, 255)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.django_db
def test_brand_cards_and_a_bottom_logo_leave_the_subtitle_alone(api, tenant, run_on_commit):
    admin = APIClient()
    admin.force_login(factories.make_member(tenant, role="admin"))
    response = admin.post(
        "/api/v1/brand-kit/",
        {
            "logo": _logo_data_url(),
            "logo_corner": "bottom-right",
            "logo_size": 0.2,
            "intro_text": "Maple School presents",
            "intro_seconds": 1.0,
            "outro_text": "See you tomorrow",
            "outro_seconds": 1.0,
            "label_locale": "en",
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    job = _run(api, run_on_commit, duration_s=3.0)
    mp4 = get_bytes(job.video_key)
    cues = _cues(job)
    label = label_box(WIDTH, HEIGHT, "en")

    for start, end, text in cues:
        frame = decode_frame_at(mp4, (start + end) / 2)
        magenta = (frame[..., 0] > 200) & (frame[..., 1] < 60) & (frame[..., 2] > 200)
        rows = np.flatnonzero(magenta.any(axis=1))
        logo = Box(0, int(rows[0]), WIDTH, int(rows[-1]) - int(rows[0]) + 1)
        _assert_one_caption_where_subtitles_go(frame, text, avoid=[label, logo])
        (caption,) = caption_blocks(frame)
        assert caption[1] <= logo.y, f"the caption {caption} runs into the logo at {logo}"
    intro_s, outro_s = cues[0][0] / 2, cues[-1][1] + 0.5
    for card_s in (intro_s, outro_s):
        assert caption_blocks(decode_frame_at(mp4, card_s)) == []


def _portrait_photo() -> bytes:
    """A head and shoulders on a blue wall: bright and dark edges a caption detector must not
    take for letters once the storyboard frames it (a near-white border, a drop shadow)."""
    image = Image.new("RGB", (400, 500), (40, 90, 160))
    draw = ImageDraw.Draw(image)
    draw.ellipse((100, 80, 300, 300), fill=(230, 190, 150))
    draw.rectangle((80, 300, 320, 500), fill=(200, 30, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize("reference_image", [None, _portrait_photo()], ids=["plain", "photo"])
def test_the_preview_backend_draws_no_caption_of_its_own(reference_image):
    shots = (
        ShotSpec(0, "a classroom at sunset", "", 12, 101, scene_text="小明鼓起勇气，举起了手。"),
        ShotSpec(1, "night street, snow", "", 12, 202, scene_text="Xiaoming walks home."),
        ShotSpec(2, "a bright winter sky", "", 12, 303),
    )
    request = GenerationRequest(
        model="preview",
        width=WIDTH,
        height=HEIGHT,
        fps=12,
        shots=shots,
        title="小明的勇气",
        reference_image=reference_image,
    )
    result = PreviewBackend().generate(
        request, on_progress=lambda done, total: None, should_cancel=lambda: False
    )

    for shot in result.shots:
        for frame in shot.frames[:: len(shot.frames) // 3]:
            assert caption_blocks(frame) == [], shot.index
