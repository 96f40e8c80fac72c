"""The invisible watermark: round trip, every attack of issue 6, no false positives."""

from __future__ import annotations

import numpy as np
import pytest

from moderation.provenance import watermark
from tests.moderation import clips

KEY = b"reelcast-test-watermark-key-0001"
OTHER_KEY = b"another-deployment-key-000000002"
PAYLOAD = 0xC0FF_EE00_1234_ABCD
FPS = 24


def _raw_bit_error_rate(detection: watermark.Detection, payload: int) -> float:
    truth = 1 - 2.0 * watermark.coded_bits(payload, key=KEY)
    return float(np.mean(np.sign(detection.soft_bits) != truth))


@pytest.fixture(scope="module")
def delivered() -> list[np.ndarray]:
    """A 5-second 640x360 clip, watermarked and encoded as the platform delivers it."""
    frames = clips.make_clip(7, height=360, width=640, frames=5 * FPS)
    hook = watermark.make_frame_hook(PAYLOAD, KEY)
    marked = [hook(index, frame) for index, frame in enumerate(frames)]
    return clips.decode(clips.encode(marked, fps=FPS, crf=20))


def test_embedding_changes_luma_only_and_keeps_psnr_above_40_db():
    frame = clips.make_clip(3, height=720, width=1280, frames=1)[0]

    marked = watermark.embed_frame(frame, PAYLOAD, frame_index=0, key=KEY)

    assert marked.shape == frame.shape and marked.dtype == np.uint8
    assert 40.0 <= clips.psnr(frame, marked) < 45.0
    delta = marked.astype(np.int16) - frame.astype(np.int16)
    unclipped = (frame > 8).all(axis=2) & (frame < 247).all(axis=2)
    assert (delta[..., 0] == delta[..., 1])[unclipped].all()
    assert (delta[..., 1] == delta[..., 2])[unclipped].all()


def test_the_frame_hook_marks_every_frame_as_embed_frame_does():
    frames = clips.make_clip(4, height=360, width=640, frames=3)
    hook = watermark.make_frame_hook(PAYLOAD, KEY)

    for index, frame in enumerate(frames):
        expected = watermark.embed_frame(frame, PAYLOAD, frame_index=index, key=KEY)
        returned = hook(index, frame)
        assert returned is frame  # changed in place, as the post-processing pass allows
        assert np.array_equal(frame, expected)
    read_only = frames[0].copy()
    read_only.setflags(write=False)
    assert not np.shares_memory(hook(0, read_only), read_only)


def test_marking_adds_the_luma_delta_with_clipping():
    frame = clips.make_clip(9, height=360, width=640, frames=1)[0]
    delta = watermark.frame_delta(PAYLOAD, KEY, 360, 640)

    marked = watermark.embed_frame(frame, PAYLOAD, frame_index=0, key=KEY)

    expected = np.clip(frame.astype(np.int16) + delta[:, :, None], 0, 255).astype(np.uint8)
    assert np.array_equal(marked, expected)
    assert 1.5 < np.sqrt(np.mean(delta.astype(np.float64) ** 2)) < 2.6


def test_it_reads_the_payload_back_from_the_delivered_mp4(delivered):
    detection = watermark.extract(delivered, key=KEY)

    assert detection.payload == PAYLOAD
    assert detection.frames_used == 5 * FPS
    assert detection.confidence > 0.9
    assert _raw_bit_error_rate(detection, PAYLOAD) < 0.05


ATTACKS = {
    "h264_crf28": lambda frames, rng: (frames, FPS, 28),
    "crop_10_percent": lambda frames, rng: (clips.crop(frames, 0.1, rng), FPS, 23),
    "brightness_plus_20": lambda frames, rng: (clips.brightness(frames, 1.2), FPS, 23),
    "brightness_minus_20": lambda frames, rng: (clips.brightness(frames, 0.8), FPS, 23),
    "every_other_frame_dropped": lambda frames, rng: (frames[::2], FPS // 2, 23),
    "two_second_excerpt": lambda frames, rng: (frames[37 : 37 + 2 * FPS], FPS, 23),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_payload_survives_the_attack_and_a_re_encode(delivered, attack):
    frames, fps, crf = ATTACKS[attack](delivered, np.random.default_rng(5))
    copy = clips.decode(clips.encode(frames, fps=fps, crf=crf), luma=True)

    detection = watermark.extract(copy, key=KEY)

    bit_error_rate = _raw_bit_error_rate(detection, PAYLOAD)
    print(f"{attack}: raw coded bit error rate {bit_error_rate:.3f}")
    assert detection.payload == PAYLOAD
    assert bit_error_rate < 0.15


def test_the_payload_survives_half_scale_then_crf28_at_720p():
    frames = clips.make_clip(8, height=720, width=1280, frames=5 * FPS)
    hook = watermark.make_frame_hook(PAYLOAD, KEY)
    delivered = clips.decode(
        clips.encode([hook(i, f) for i, f in enumerate(frames)], fps=FPS, crf=20)
    )
    copy = clips.decode(clips.encode(clips.scale(delivered, 0.5), fps=FPS, crf=28), luma=True)

    detection = watermark.extract(copy, key=KEY)

    bit_error_rate = _raw_bit_error_rate(detection, PAYLOAD)
    print(f"half scale + crf28 (720p): raw coded bit error rate {bit_error_rate:.3f}")
    assert detection.payload == PAYLOAD
    assert abs(detection.period_px[1] - 128.0) < 1.0  # the 256-pixel tile, halved
    assert bit_error_rate < 0.2


def test_unmarked_clips_never_yield_a_payload():
    found = []
    for seed in range(60):
        frames = clips.make_clip(1000 + seed, height=192, width=320, frames=8, pan_px=2.0)
        found.append(watermark.extract(frames, key=KEY).payload)

    assert found == [None] * 60


def test_unmarked_encoded_clip_and_another_keys_mark_yield_no_payload(delivered):
    unmarked = clips.decode(
        clips.encode(clips.make_clip(7, height=360, width=640, frames=48), fps=FPS, crf=20)
    )

    assert watermark.extract(unmarked, key=KEY).payload is None
    assert watermark.extract(delivered, key=OTHER_KEY).payload is None


def test_random_soft_bits_never_pass_the_keyed_check():
    # 20,000 noise words through the real decoder and check: each passes with probability
    # 2**-32, so even one pass here would mean the check is broken.
    rng = np.random.default_rng(11)
    soft = rng.normal(size=(20_000, watermark.CODED_BITS)).astype(np.float32)

    info = watermark.viterbi_decode(soft)

    payloads = [watermark._bits_to_int(row[: watermark.PAYLOAD_BITS]) for row in info]
    checks = [watermark._bits_to_int(row[watermark.PAYLOAD_BITS :]) for row in info]
    passed = sum(check == watermark._check_value(p, KEY) for p, check in zip(payloads, checks))
    assert passed == 0


def test_the_code_corrects_noisy_soft_bits():
    rng = np.random.default_rng(3)
    codeword = watermark.coded_bits(PAYLOAD, key=KEY)
    symbols = 1.0 - 2.0 * codeword
    noisy = symbols + rng.normal(scale=0.9, size=symbols.shape)
    assert np.mean(np.sign(noisy) != symbols) > 0.08

    info = watermark.viterbi_decode(noisy)

    assert watermark._bits_to_int(info[: watermark.PAYLOAD_BITS]) == PAYLOAD


@pytest.mark.parametrize("payload", [-1, 1 << 64, 1.5])
def test_it_refuses_a_payload_that_is_not_64_bits(payload):
    frame = np.zeros((360, 640, 3), dtype=np.uint8)

    with pytest.raises(ValueError, match="payload"):
        watermark.embed_frame(frame, payload, frame_index=0, key=KEY)
