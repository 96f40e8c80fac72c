"""How long the CPU preview backend takes for a 5 s 854x480 24 fps clip, and to encode it.

The reference, measured in the same run on the same frames, is a raw libx264 encode: the same
codec settings straight through a PyAV codec context, no container. ``ratio_to_raw_encode`` is
preview time over that, so it says how the storyboard compares with the cheapest thing the
pipeline must do with the frames anyway, whatever the machine.

    .venv/bin/python bench/preview.py [--repeat 3]

Prints figures and never asserts a time; the last line is the headline.
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageDraw

from generation.backends.base import GenerationRequest, ShotSpec
from generation.backends.preview import PreviewBackend
from generation.postprocess.encode import encode_mp4, probe_mp4

WIDTH, HEIGHT, FPS, SECONDS = 854, 480, 24, 5
CRF, PRESET = 20, "veryfast"


def reference_photo() -> bytes:
    """A 1600x1200 JPEG with detail, standing in for a tenant's photo."""
    image = Image.new("RGB", (1600, 1200), (40, 90, 160))
    draw = ImageDraw.Draw(image)
    for step in range(0, 1600, 40):
        draw.rectangle((step, 0, step + 18, 1200), fill=(230, 190, 60))
    draw.ellipse((500, 300, 1100, 900), fill=(200, 40, 70))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def clip_request() -> GenerationRequest:
    frames = FPS * SECONDS
    first = frames // 2
    return GenerationRequest(
        model="preview",
        width=WIDTH,
        height=HEIGHT,
        fps=FPS,
        shots=(
            ShotSpec(
                index=0,
                prompt="a classroom at sunset",
                negative_prompt="",
                num_frames=first,
                seed=1234,
                scene_text="小明鼓起勇气，在全班同学面前大声说出了自己的想法。",
            ),
            ShotSpec(
                index=1,
                prompt="the walk home, night street",
                negative_prompt="",
                num_frames=frames - first,
                seed=5678,
                scene_text="Everyone listened, and Xiaoming smiled all the way home.",
            ),
        ),
        title="小明的勇气 · Xiaoming's courage",
        reference_image=reference_photo(),
    )


def generate(request: GenerationRequest) -> list[np.ndarray]:
    """The backend alone: its shots' frame arrays, not joined (the encoder takes any iterable)."""
    result = PreviewBackend().generate(
        request, on_progress=lambda done, total: None, should_cancel=lambda: False
    )
    return [shot.frames for shot in result.shots]


def each_frame(shots: list[np.ndarray]):
    for frames in shots:
        yield from frames


def raw_encode(shots: list[np.ndarray]) -> int:
    """libx264 alone, same settings, no container; returns the bytes it produced."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = Fraction(1, FPS)
    codec.framerate = Fraction(FPS)
    codec.options = {"crf": str(CRF), "preset": PRESET, "profile": "high"}
    reformatter = VideoReformatter()
    size = 0
    for number, frame in enumerate(each_frame(shots)):
        video_frame = reformatter.reformat(
            av.VideoFrame.from_ndarray(frame, format="rgb24"), format="yuv420p"
        )
        video_frame.pts = number
        size += sum(packet.size for packet in codec.encode(video_frame))
    size += sum(packet.size for packet in codec.encode(None))
    return size


def best_of(repeat: int, work) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = work()
        best = min(best, time.perf_counter() - started)
    return best, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts")
    repeat = max(1, parser.parse_args().repeat)

    request = clip_request()
    count = sum(shot.num_frames for shot in request.shots)
    started = time.perf_counter()
    shots = generate(request)
    cold_s = time.perf_counter() - started
    preview_s, shots = best_of(repeat, lambda: generate(request))
    encode_s, data = best_of(
        repeat,
        lambda: encode_mp4(
            each_frame(shots), fps=FPS, width=WIDTH, height=HEIGHT, crf=CRF, preset=PRESET
        ),
    )
    raw_encode_s, raw_bytes = best_of(repeat, lambda: raw_encode(shots))
    probe = probe_mp4(data)

    print(f"machine: {platform.machine()} {platform.processor() or ''}".rstrip())
    print(f"python {platform.python_version()}, PyAV {av.__version__}, numpy {np.__version__}")
    print(
        f"clip: {WIDTH}x{HEIGHT} @ {FPS} fps, {SECONDS} s = {count} frames in "
        f"{len(request.shots)} shots, title card and reference image; best of {repeat}"
    )
    print(f"preview generate (first run: font files, fresh memory): {cold_s:.3f} s")
    print(
        f"preview generate: {preview_s:.3f} s ({count / preview_s:.1f} fps, "
        f"{preview_s / count * 1000:.2f} ms/frame)"
    )
    print(
        f"encode_mp4 crf={CRF} preset={PRESET}: {encode_s:.3f} s, {len(data)} bytes, "
        f"{probe['codec']} {probe['profile']} {probe['frames']} frames "
        f"{probe['duration_s']:.3f} s, moov_before_mdat={probe['moov_before_mdat']}"
    )
    print(f"raw libx264 encode (reference): {raw_encode_s:.3f} s, {raw_bytes} bytes")
    print(
        f"preview_s={preview_s:.3f} encode_s={encode_s:.3f} raw_encode_s={raw_encode_s:.3f} "
        f"ratio_to_raw_encode={preview_s / raw_encode_s:.2f} "
        f"encode_overhead={encode_s / raw_encode_s:.2f} fps={count / preview_s:.1f}"
    )


if __name__ == "__main__":
    main()
