"""The walk-through's video, judged from the bytes a school downloaded: it decodes as H.264 and
AAC, shows the visible AI label from the first frame on, carries the implicit ``AIGC`` tag and a
C2PA manifest that c2pa's own reader validates, and shows its caption."""

from __future__ import annotations

import hashlib
import hmac
import io
import json

import av
import c2pa
import numpy as np
import pytest

from generation.postprocess import aigc

WIDTH, HEIGHT = 854, 480  # the demo school template's size


@pytest.fixture(scope="module")
def mp4(walkthrough) -> bytes:
    assert walkthrough.video.status_code == 200
    return walkthrough.video.content


def _frames_until(mp4: bytes, seconds: float) -> list[tuple[float, np.ndarray]]:
    out = []
    with av.open(io.BytesIO(mp4)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time > seconds:
                break
            out.append((frame.time, frame.to_ndarray(format="rgb24")))
    return out


def test_the_video_decodes_as_h264_and_aac(mp4):
    with av.open(io.BytesIO(mp4)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.profile == "High"
        assert (video.codec_context.width, video.codec_context.height) == (WIDTH, HEIGHT)
        assert video.average_rate == 24
        assert audio.codec_context.name == "aac"
        frames = sum(1 for _ in container.decode(video=0))
    # The finishing pass's 2 s title card, then the template's three 2 s shots at 24 fps,
    # joined by two 0.3 s cross-fades.
    assert frames == 48 + 3 * 48 - 2 * round(0.3 * 24)
    with av.open(io.BytesIO(mp4)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    assert samples > 0


def _label_masks(locale: str) -> tuple[np.ndarray, np.ndarray]:
    """Which pixels of the frame are the label's text and which its plate: drawn by the one
    function that labels every output, on a mid-grey canvas of the video's size."""
    from generation.postprocess.label import apply_ai_label

    canvas = apply_ai_label(np.full((HEIGHT, WIDTH, 3), 128, np.uint8), locale=locale)
    drawn = canvas.astype(int)
    text = drawn.min(axis=2) > 200
    plate = (drawn.max(axis=2) < 100) & ~text
    return text, plate


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


def test_the_ai_label_is_visible_from_the_first_frame_for_two_seconds(mp4):
    # 小明 is a Chinese name: the label is "AI生成".
    text, plate = _label_masks("zh-Hans")
    other_text, other_plate = _label_masks("en")
    near = plate | text | other_plate | other_text  # where either label would be
    frames = _frames_until(mp4, 2.0)
    assert frames[0][0] == 0.0 and frames[-1][0] >= 1.9
    for at, frame in frames:  # every frame of the first 2 s
        pixels = frame.astype(int)
        bright = (pixels.min(axis=2) > 170) & near
        dark = pixels.max(axis=2) < 80
        # The white glyphs are where "AI生成" puts them (and not where "AI-generated" would)...
        assert _overlap(bright, text) > 0.6, (at, _overlap(bright, text))
        assert _overlap(bright, text) > _overlap(bright, other_text) + 0.2, at
        # ...on the dark plate.
        assert dark[plate].mean() > 0.9, (at, dark[plate].mean())


def test_the_implicit_aigc_tag_is_in_the_mp4(mp4, walkthrough, platform_server):
    job_id = walkthrough.created.json()["id"].replace("-", "")
    with av.open(io.BytesIO(mp4)) as container:
        tag = container.metadata["AIGC"]
    # The platform's watermark key (moderation.provenance_service.watermark_key: the configured
    # one, else derived from the secret key) and the label's key derived from that.
    env = platform_server.env
    watermark_key = (
        env["REELCAST_WATERMARK_KEY"].encode()
        if env.get("REELCAST_WATERMARK_KEY")
        else hmac.new(
            env["DJANGO_SECRET_KEY"].encode(), b"reelcast-watermark-v1", hashlib.sha256
        ).digest()
    )
    key = aigc.derive_key(watermark_key)
    assert json.loads(tag) == {
        "Label": "1",
        "ContentProducer": "Reelcast",
        "ProduceID": job_id,
        "ReservedCode1": aigc.signature(key=key, content_producer="Reelcast", produce_id=job_id),
        "ContentPropagator": "Reelcast",
        "PropagateID": job_id,
        "ReservedCode2": aigc.key_id(key),
    }
    assert aigc.verify(tag, key=key).valid
    # An MP4 metadata item: the key in the 'keys' box, its value in 'ilst'.
    assert b"mdtaAIGC" in mp4 and tag.encode() in mp4


def test_c2pa_s_own_reader_validates_the_manifest(mp4, platform_server):
    # Without trust anchors: the signature and every hash check out; only the development
    # chain's root is unknown to c2pa.
    reader = c2pa.Reader("video/mp4", io.BytesIO(mp4))
    store = json.loads(reader.json())
    assert reader.get_validation_state() == "Valid", store.get("validation_status")
    statuses = [s["code"] for s in store.get("validation_status", [])]
    assert statuses == ["signingCredential.untrusted"]
    active = store["manifests"][store["active_manifest"]]
    actions = next(a for a in active["assertions"] if a["label"].startswith("c2pa.actions"))
    assert actions["data"]["actions"][0]["action"] == "c2pa.created"
    assert actions["data"]["actions"][0]["digitalSourceType"].endswith("trainedAlgorithmicMedia")

    # With the operator's root (the development chain the platform generated) it is trusted.
    root = (platform_server.var_dir / "c2pa" / "root-ca.pem").read_text()
    context = c2pa.Context.from_dict(
        {"trust": {"user_anchors": root}, "verify": {"remote_manifest_fetch": False}}
    )
    trusted = c2pa.Reader("video/mp4", io.BytesIO(mp4), context=context)
    assert trusted.get_validation_state() == "Trusted"


def test_delivered_video_shows_one_caption_block(mp4, walkthrough):
    """Each shot's subtitle is burned in as one block of text at the bottom (the preview
    backend once drew its own caption under it: two overlapping blocks), and the title card
    before the first shot has none."""
    from tests.support.video_checks import caption_blocks, decode_frame_at

    assert caption_blocks(decode_frame_at(mp4, 1.0)) == []  # the 2 s title card
    for middle in (3.0, 4.7, 6.4):  # the middle of each 2 s shot after the title card
        blocks = caption_blocks(decode_frame_at(mp4, middle))
        assert len(blocks) == 1, (middle, blocks)
        top, bottom = blocks[0]
        assert top > HEIGHT // 2 and bottom <= HEIGHT
