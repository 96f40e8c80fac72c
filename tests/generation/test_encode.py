"""MP4 and poster encoding: what a player and a browser will actually get."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest
from PIL import Image

from generation.backends.base import GenerationRequest, ShotSpec
from generation.backends.preview import PreviewBackend
from generation.postprocess.encode import (
    encode_mp4,
    mp4_top_level_boxes,
    poster_jpeg,
    probe_mp4,
)

COLOUR_BARS = [
    (255, 255, 255),
    (255, 255, 0),
    (0, 255, 255),
    (0, 255, 0),
    (255, 0, 255),
    (255, 0, 0),
    (0, 0, 255),
    (16, 16, 16),
]


def colour_bars(width: int, height: int, shift: int = 0) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    bar = width // len(COLOUR_BARS)
    for number, colour in enumerate(COLOUR_BARS):
        frame[:, number * bar : (number + 1) * bar] = colour
    return np.roll(frame, shift, axis=1)


def moving_frames(count: int, width: int, height: int) -> list[np.ndarray]:
    return [colour_bars(width, height, shift=2 * number) for number in range(count)]


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def test_it_encodes_an_h264_high_profile_mp4_with_its_index_first():
    data = encode_mp4(moving_frames(48, 320, 240), fps=24, width=320, height=240)

    probe = probe_mp4(data)

    assert probe["width"] == 320
    assert probe["height"] == 240
    assert probe["frames"] == 48
    assert probe["codec"] == "h264"
    assert probe["profile"] == "High"
    assert probe["pix_fmt"] == "yuv420p"
    assert probe["fps"] == 24.0
    assert probe["duration_s"] == 2.0
    assert probe["moov_before_mdat"] is True
    assert probe["boxes"][0] == "ftyp"


@pytest.mark.parametrize(("fps", "count"), [(24, 1), (12, 7), (25, 31), (30, 61)])
def test_it_keeps_every_frame_and_the_exact_duration(fps, count):
    data = encode_mp4(moving_frames(count, 64, 48), fps=fps, width=64, height=48)

    probe = probe_mp4(data)

    assert probe["frames"] == count
    assert probe["fps"] == float(fps)
    assert probe["duration_s"] == count / fps


def test_it_keeps_the_colours_of_the_picture():
    source = colour_bars(256, 64)

    data = encode_mp4([source] * 3, fps=24, width=256, height=64, crf=12)

    with av.open(io.BytesIO(data)) as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="rgb24")
    bar = 256 // len(COLOUR_BARS)
    for number, colour in enumerate(COLOUR_BARS):
        # The middle of each bar, away from chroma bleeding at the edges.
        middle = decoded[8:-8, number * bar + 8 : (number + 1) * bar - 8].reshape(-1, 3)
        assert np.abs(middle.astype(int) - colour).max() <= 4, colour


def test_it_accepts_frames_from_a_generator():
    frames = (colour_bars(64, 48, shift=number) for number in range(5))

    data = encode_mp4(frames, fps=10, width=64, height=48)

    assert probe_mp4(data)["frames"] == 5


def test_it_writes_the_metadata_it_is_given():
    data = encode_mp4(
        moving_frames(2, 64, 48),
        fps=24,
        width=64,
        height=48,
        metadata={"title": "小明的勇气", "comment": "AI-generated", "reelcast_job": "job_42"},
    )

    metadata = probe_mp4(data)["metadata"]

    assert metadata["title"] == "小明的勇气"
    assert metadata["comment"] == "AI-generated"
    assert metadata["reelcast_job"] == "job_42"


@pytest.mark.parametrize(
    ("bad_frame", "message"),
    [
        (
            np.zeros((48, 64, 4), np.uint8),
            r"frame 1 has shape \(48, 64, 4\), expected \(48, 64, 3\)",
        ),
        (np.zeros((64, 48, 3), np.uint8), r"frame 1 has shape \(64, 48, 3\)"),
        (np.zeros((48, 64), np.uint8), r"frame 1 has shape \(48, 64\)"),
        (np.zeros((48, 64, 3), np.float32), "frame 1 has dtype float32, expected uint8"),
    ],
)
def test_it_refuses_a_frame_of_the_wrong_shape_or_type(bad_frame, message):
    frames = [colour_bars(64, 48), bad_frame]

    with pytest.raises(ValueError, match=message):
        encode_mp4(frames, fps=24, width=64, height=48)


def test_it_refuses_to_encode_no_frames():
    with pytest.raises(ValueError, match="at least one frame"):
        encode_mp4([], fps=24, width=64, height=48)


@pytest.mark.parametrize(("width", "height"), [(63, 48), (64, 47)])
def test_it_refuses_odd_sizes(width, height):
    with pytest.raises(ValueError, match="even width and height"):
        encode_mp4([np.zeros((height, width, 3), np.uint8)], fps=24, width=width, height=height)


def test_it_encodes_what_the_preview_backend_renders():
    shots = (
        ShotSpec(index=0, prompt="a classroom", negative_prompt="", num_frames=9, seed=1),
        ShotSpec(index=1, prompt="a playground", negative_prompt="", num_frames=6, seed=2),
    )
    request = GenerationRequest(
        model="preview", width=320, height=180, fps=12, shots=shots, title="小明的勇气"
    )
    result = PreviewBackend().generate(
        request, on_progress=lambda done, total: None, should_cancel=lambda: False
    )

    data = encode_mp4(iter(result.frames), fps=12, width=320, height=180)

    probe = probe_mp4(data)
    assert (probe["width"], probe["height"], probe["frames"]) == (320, 180, 15)
    assert probe["duration_s"] == 15 / 12
    assert probe["moov_before_mdat"] is True


def test_it_makes_a_jpeg_poster_at_the_frame_size():
    frame = colour_bars(320, 240)

    poster = poster_jpeg(frame)

    image = Image.open(io.BytesIO(poster))
    assert poster[:3] == b"\xff\xd8\xff"
    assert image.format == "JPEG"
    assert image.size == (320, 240)
    decoded = np.asarray(image.convert("RGB")).astype(int)
    assert np.abs(decoded[20:-20, 60:70] - frame[20:-20, 60:70]).max() <= 8


def test_it_scales_a_wide_poster_down_to_the_maximum_width():
    poster = poster_jpeg(colour_bars(1920, 1080), max_width=1280)

    assert Image.open(io.BytesIO(poster)).size == (1280, 720)


def test_it_refuses_a_poster_that_is_not_an_rgb_frame():
    with pytest.raises(ValueError, match="RGB frame"):
        poster_jpeg(np.zeros((48, 64, 4), np.uint8))


def test_it_lists_top_level_boxes_including_64_bit_and_to_the_end_sizes():
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + 3) + b"abc"
    to_the_end = struct.pack(">I4s", 0, b"free") + b"rest of file"
    data = box(b"ftyp", b"isom\x00\x00\x02\x00") + box(b"moov", b"x" * 5) + large + to_the_end

    assert mp4_top_level_boxes(data) == ["ftyp", "moov", "mdat", "free"]


@pytest.mark.parametrize(
    "data",
    [
        box(b"ftyp", b"isom") + b"\x00\x00\x00",
        box(b"ftyp", b"isom") + struct.pack(">I4s", 100, b"mdat") + b"short",
        struct.pack(">I4s", 4, b"moov"),
    ],
)
def test_it_refuses_a_malformed_box_list(data):
    with pytest.raises(ValueError):
        mp4_top_level_boxes(data)
