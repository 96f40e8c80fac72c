"""Natural-looking synthetic clips and the attacks a leaked copy goes through.

Shared by the provenance tests and benchmarks. A clip is a camera panning over a textured scene
(gradients, multi-scale "cloud" texture, soft-edged shapes, fine detail) with objects moving
across it and sensor grain on every frame: the kind of content a watermark has to hide in and
survive in, unlike flat colour.
"""

from __future__ import annotations

import io

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from generation.postprocess.encode import encode_mp4


def _cloud_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Multi-octave value noise in [0, 1]."""
    total = np.zeros((height, width), dtype=np.float32)
    weight_sum = 0.0
    for octave, cells in enumerate((3, 6, 12, 24, 48, 96)):
        grid = rng.random((cells + 1, max(2, cells * width // height) + 1)).astype(np.float32)
        image = Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BICUBIC)
        weight = 0.6**octave
        total += weight * np.asarray(image, dtype=np.float32)
        weight_sum += weight
    total /= weight_sum
    low, high = np.percentile(total, [1, 99])
    return np.clip((total - low) / max(high - low, 1e-6), 0.0, 1.0)


def make_scene(seed: int, height: int, width: int) -> np.ndarray:
    """An RGB uint8 scene with gradients, texture, shapes and fine detail."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    top, bottom, side = (rng.uniform(20, 235, 3).astype(np.float32) for _ in range(3))
    gradient = (
        top[None, None, :] * (1 - y[..., None])
        + bottom[None, None, :] * y[..., None]
        + (side[None, None, :] - 128) * 0.4 * x[..., None]
    )
    texture = _cloud_texture(rng, height, width)
    tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
    scene = gradient + (texture[..., None] - 0.5) * 110 * tint[None, None, :]
    image = Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(12, 24))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.03, 0.2) * min(height, width)
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse([cx - size, cy - size * 0.7, cx + size, cy + size * 0.7], fill=colour)
        elif kind == 1:
            draw.rectangle([cx - size, cy - size / 2, cx + size, cy + size / 2], fill=colour)
        else:
            points = [
                (cx + size * np.cos(a), cy + size * np.sin(a))
                for a in np.sort(rng.uniform(0, 2 * np.pi, 6))
            ]
            draw.polygon(points, fill=colour)
    for _ in range(int(rng.integers(20, 40))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        draw.line(
            [x0, y0, x0 + rng.uniform(-80, 80), y0 + rng.uniform(-80, 80)], fill=colour, width=2
        )
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    detail = (rng.random((height, width)).astype(np.float32) - 0.5) * 12
    return np.clip(np.asarray(image, dtype=np.float32) + detail[..., None], 0, 255).astype(np.uint8)


def make_clip(
    seed: int, *, height: int, width: int, frames: int, pan_px: float = 3.0
) -> list[np.ndarray]:
    """A camera panning over a scene, two objects moving across it, grain on every frame."""
    rng = np.random.default_rng(seed + 1_000_003)
    travel = int(np.ceil(abs(pan_px) * frames)) + 8
    scene = make_scene(seed, height + 16, width + travel)
    direction_y = rng.uniform(-0.3, 0.3)
    grain = rng.normal(0, 2.0, (4, height, width)).astype(np.float32)
    sprites = [
        (
            tuple(int(c) for c in rng.integers(0, 256, 3)),
            rng.uniform(0.05, 0.12) * min(height, width),
            rng.uniform(0, width),
            rng.uniform(0, height),
            rng.uniform(-6, 6),
            rng.uniform(-3, 3),
        )
        for _ in range(2)
    ]
    clip = []
    for index in range(frames):
        left = round(abs(pan_px) * index)
        top = round(8 + direction_y * index) % 16
        frame = Image.fromarray(scene[top : top + height, left : left + width])
        draw = ImageDraw.Draw(frame)
        for colour, radius, x0, y0, vx, vy in sprites:
            cx, cy = x0 + vx * index, y0 + vy * index
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
        noisy = np.asarray(frame, dtype=np.float32) + grain[index % 4][..., None]
        clip.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return clip


def encode(frames: list[np.ndarray], *, fps: int, crf: int, preset: str = "veryfast") -> bytes:
    height, width = frames[0].shape[:2]
    return encode_mp4(frames, fps=fps, width=width, height=height, crf=crf, preset=preset)


def decode(data: bytes, *, luma: bool = False) -> list[np.ndarray]:
    """Every frame of an MP4, as RGB uint8 or (``luma``) as the decoded Y plane."""
    with av.open(io.BytesIO(data)) as container:
        return [
            frame.to_ndarray(format="gray" if luma else "rgb24")
            for frame in container.decode(video=0)
        ]


def scale(frames: list[np.ndarray], factor: float) -> list[np.ndarray]:
    height, width = frames[0].shape[:2]
    size = (int(width * factor) // 2 * 2, int(height * factor) // 2 * 2)
    return [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BICUBIC)) for f in frames]


def crop(
    frames: list[np.ndarray], fraction: float, rng: np.random.Generator, *, centred: bool = False
) -> list[np.ndarray]:
    """Cut ``fraction`` of the width and of the height away, at a random place or centred."""
    height, width = frames[0].shape[:2]
    keep_h = int(height * (1 - fraction)) // 2 * 2
    keep_w = int(width * (1 - fraction)) // 2 * 2
    if centred:
        top, left = (height - keep_h) // 2, (width - keep_w) // 2
    else:
        top = int(rng.integers(0, height - keep_h + 1))
        left = int(rng.integers(0, width - keep_w + 1))
    return [f[top : top + keep_h, left : left + keep_w] for f in frames]


def brightness(frames: list[np.ndarray], factor: float) -> list[np.ndarray]:
    """Every channel multiplied by ``factor`` and clipped, as an "exposure" slider does."""
    return [np.clip(f.astype(np.float32) * factor, 0, 255).astype(np.uint8) for f in frames]


def psnr(original: np.ndarray, marked: np.ndarray) -> float:
    error = np.mean((original.astype(np.float64) - marked.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255.0**2 / error))
