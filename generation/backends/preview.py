"""The CPU ``preview`` backend: an animated storyboard instead of a diffusion model.

Each shot is a slowly moving background whose colours come from the shot's seed and prompt, and
the tenant's reference image (if any, or a collage of its reference images) in a panel with a
Ken Burns pan and zoom. It lets tenants check a template end to end, and lets the whole pipeline
run on a laptop, without a GPU.

Like a model's clip, a storyboard frame is a picture without text: the finishing pass
(``generation.postprocess``) is the one owner of burned-in text and draws the title card, the
subtitles (the shot's scene text), the logo and the AI label on every backend's shots. The panel
is kept out of the bands where the finishing pass puts the label and the subtitles, so neither
covers the reference.

Speed comes from splitting each shot into static layers, drawn once with Pillow, and per-frame
work that is only a box resize of a pre-scaled image and masked pastes of those layers. Every
choice is drawn from a hash of the seed and prompt, so the same request gives byte-identical
frames on the same machine.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random
import re
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from generation.backends.base import (
    CancelCheck,
    GenerationCanceled,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    ShotResult,
    ShotSpec,
)
from generation.postprocess.label import LOCALES, label_box
from generation.postprocess.subtitles import subtitle_area
from generation.tryon import MAX_PRODUCTS, compose_image

RGB = tuple[int, int, int]

CANCEL_POLL_FRAMES = 4
PROGRESS_REPORTS_PER_SHOT = 16
MIN_SIDE = 16
# The reference panel keeps this fraction of the frame from its sides.
SAFE_MARGIN = 0.06

# The background is drawn larger than the frame so the camera can move over it, and at half
# resolution because it is smooth: upscaling it each frame is cheaper than downscaling.
BACKGROUND_OVERSCAN = 1.2
BACKGROUND_SCALE = 0.5
REFERENCE_OVERSCAN = 1.15

# Colour words a prompt may contain, as (hue in degrees, saturation, value). The earliest one in
# the prompt sets the palette's base hue; without one the hash picks it.
COLOUR_WORDS: dict[str, tuple[float, float, float]] = {
    "red": (2, 0.70, 0.80),
    "红": (2, 0.70, 0.80),
    "orange": (25, 0.72, 0.88),
    "橙": (25, 0.72, 0.88),
    "sunset": (18, 0.72, 0.88),
    "dusk": (18, 0.62, 0.70),
    "夕阳": (18, 0.72, 0.88),
    "黄昏": (18, 0.62, 0.70),
    "gold": (42, 0.68, 0.88),
    "golden": (42, 0.68, 0.88),
    "金": (42, 0.68, 0.88),
    "yellow": (52, 0.66, 0.90),
    "黄": (52, 0.66, 0.90),
    "green": (125, 0.55, 0.70),
    "绿": (125, 0.55, 0.70),
    "forest": (110, 0.55, 0.55),
    "森林": (110, 0.55, 0.55),
    "grass": (95, 0.55, 0.75),
    "草": (95, 0.55, 0.75),
    "ocean": (198, 0.65, 0.75),
    "sea": (198, 0.65, 0.75),
    "海": (198, 0.65, 0.75),
    "sky": (205, 0.50, 0.90),
    "天空": (205, 0.50, 0.90),
    "blue": (218, 0.65, 0.80),
    "蓝": (218, 0.65, 0.80),
    "night": (232, 0.60, 0.35),
    "夜": (232, 0.60, 0.35),
    "purple": (275, 0.55, 0.70),
    "紫": (275, 0.55, 0.70),
    "pink": (335, 0.45, 0.92),
    "粉": (335, 0.45, 0.92),
    "snow": (205, 0.12, 0.92),
    "winter": (205, 0.18, 0.88),
    "雪": (205, 0.12, 0.92),
    "冬": (205, 0.18, 0.88),
}

_LATIN_WORD = re.compile(r"[a-z]+")


class PreviewBackend:
    """Renders storyboard clips on the CPU; the same request always gives the same frames."""

    name = "preview"
    hardware_class = "cpu"

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback,
        should_cancel: CancelCheck,
    ) -> GenerationResult:
        _check_request(request)
        total = sum(shot.num_frames for shot in request.shots)
        reference = _ReferenceImage(
            request.reference_image,
            request.reference_images,
            width=request.width,
            height=request.height,
        )
        completed: list[ShotResult] = []
        done = 0
        for shot in request.shots:
            if should_cancel():
                raise GenerationCanceled(
                    completed=completed, partial_device_seconds=0.0, partial_shot_index=None
                )
            started = time.perf_counter()
            renderer = _ShotRenderer(request=request, shot=shot, reference=reference)
            frames = np.empty((shot.num_frames, request.height, request.width, 3), np.uint8)
            report_every = max(1, math.ceil(shot.num_frames / PROGRESS_REPORTS_PER_SHOT))
            for frame_index in range(shot.num_frames):
                if frame_index and frame_index % CANCEL_POLL_FRAMES == 0 and should_cancel():
                    raise GenerationCanceled(
                        completed=completed,
                        partial_device_seconds=time.perf_counter() - started,
                        partial_shot_index=shot.index,
                    )
                frames[frame_index] = np.asarray(renderer.frame(frame_index))
                rendered = frame_index + 1
                if rendered % report_every == 0 or rendered == shot.num_frames:
                    on_progress(done + rendered, total)
            done += shot.num_frames
            completed.append(
                ShotResult(
                    index=shot.index,
                    frames=frames,
                    device_seconds=time.perf_counter() - started,
                    seed=shot.seed,
                )
            )
        return GenerationResult(
            shots=completed, fps=request.fps, hardware_class=self.hardware_class
        )


def _check_request(request: GenerationRequest) -> None:
    if request.width < MIN_SIDE or request.height < MIN_SIDE:
        raise ValueError(
            f"preview frames must be at least {MIN_SIDE}x{MIN_SIDE} "
            f"(got {request.width}x{request.height})"
        )
    if request.fps < 1:
        raise ValueError(f"fps must be at least 1 (got {request.fps})")
    if not request.shots:
        raise ValueError("a generation request needs at least one shot")
    for shot in request.shots:
        if shot.num_frames < 1:
            raise ValueError(f"shot {shot.index} needs at least one frame (got {shot.num_frames})")
    if request.reference_images and request.reference_image is not None:
        raise ValueError("give reference images or a reference image, not both")
    if len(request.reference_images) > MAX_PRODUCTS + 1:
        raise ValueError(
            f"at most {MAX_PRODUCTS + 1} reference images (got {len(request.reference_images)})"
        )


class _ReferenceImage:
    """The reference shown in the panel, made once per job and only if a shot draws it.

    A reference image (image-to-video) is shown as it is. Reference images (reference-to-video,
    as in a try-on: the person first, then the products) are shown as the collage that
    ``generation.tryon`` composes for image-to-video models, at the frame's aspect ratio.
    """

    def __init__(
        self,
        data: bytes | None,
        references: tuple[bytes, ...] = (),
        *,
        width: int = 0,
        height: int = 0,
    ):
        self._data = data
        self._references = references
        self._size = (width, height)
        self._image: Image.Image | None = None

    def __bool__(self) -> bool:
        return bool(self._data) or bool(self._references)

    def image(self, min_side: int) -> Image.Image:
        if self._image is None:
            if self._references:
                scale = max(1.0, min_side / max(self._size))
                self._image = compose_image(
                    person=self._references[0],
                    products=list(self._references[1:]),
                    width=math.ceil(self._size[0] * scale),
                    height=math.ceil(self._size[1] * scale),
                )
            else:
                self._image = _decode_image(self._data or b"", min_side=min_side)
        return self._image


def _decode_image(data: bytes, *, min_side: int) -> Image.Image:
    """RGB pixels as the camera saw them: EXIF orientation applied, transparency on white."""
    try:
        image = Image.open(io.BytesIO(data))
        # JPEG only: decode at the smallest power-of-two scale that still covers min_side.
        image.draft("RGB", (min_side, min_side))
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, (245, 245, 245))
            image.paste(rgba, (0, 0), rgba.getchannel("A"))
        else:
            image = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"the reference image could not be decoded: {err}") from err
    return image


@dataclass(frozen=True)
class _Palette:
    light: RGB
    dark: RGB
    accent: RGB
    complement: RGB


def _shot_random(shot: ShotSpec) -> random.Random:
    """A generator fixed by the seed and prompt; Python's str hash is salted, sha256 is not."""
    digest = hashlib.sha256(f"{shot.seed}\x00{shot.prompt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def _colour_word(prompt: str) -> tuple[float, float, float] | None:
    lowered = prompt.lower()
    found: list[tuple[int, int, str]] = []
    for match in _LATIN_WORD.finditer(lowered):
        if match.group() in COLOUR_WORDS:
            found.append((match.start(), -len(match.group()), match.group()))
    for word in COLOUR_WORDS:
        if not word.isascii():
            position = lowered.find(word)
            if position >= 0:
                found.append((position, -len(word), word))
    if not found:
        return None
    return COLOUR_WORDS[min(found)[2]]


def _hsv(hue_degrees: float, saturation: float, value: float) -> RGB:
    red, green, blue = colorsys.hsv_to_rgb((hue_degrees % 360) / 360, saturation, value)
    return (round(red * 255), round(green * 255), round(blue * 255))


def _palette(prompt: str, rng: random.Random) -> _Palette:
    hint = _colour_word(prompt)
    if hint is None:
        hue, saturation, value = rng.uniform(0, 360), rng.uniform(0.45, 0.7), rng.uniform(0.6, 0.9)
    else:
        hue, saturation, value = hint
        hue += rng.uniform(-10, 10)
    shift = rng.choice((-1, 1)) * rng.uniform(25, 60)
    return _Palette(
        light=_hsv(hue, saturation * 0.85, min(0.95, value * 1.1)),
        dark=_hsv(hue + shift, min(0.8, saturation * 1.1), value * 0.45),
        accent=_hsv(hue - shift, min(0.8, saturation + 0.1), min(0.95, value * 1.15)),
        complement=_hsv(hue + 180 + rng.uniform(-20, 20), saturation * 0.6, min(0.95, value)),
    )


def _background(width: int, height: int, palette: _Palette, rng: random.Random) -> Image.Image:
    """A diagonal gradient with a glow, soft bokeh discs and a vignette, as one RGB image."""
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    aspect = width / height
    angle = rng.uniform(0, 2 * math.pi)
    along = (xs - 0.5) * math.cos(angle) * aspect + (ys - 0.5) * math.sin(angle)
    along = np.clip(along / (0.5 * (aspect * abs(math.cos(angle)) + abs(math.sin(angle)))), -1, 1)
    blend = ((along + 1) * 0.5)[..., None]
    light = np.array(palette.light, np.float32)
    dark = np.array(palette.dark, np.float32)
    canvas = light * (1 - blend) + dark * blend

    glow_x, glow_y, glow_radius = (
        rng.uniform(0.2, 0.8),
        rng.uniform(0.15, 0.6),
        rng.uniform(0.25, 0.45),
    )
    distance2 = ((xs - glow_x) * aspect) ** 2 + (ys - glow_y) ** 2
    glow = (np.exp(-distance2 / (2 * glow_radius**2)) * 0.55)[..., None]
    canvas = canvas * (1 - glow) + np.array(palette.accent, np.float32) * glow

    for _ in range(rng.randint(5, 9)):
        colour = np.array(
            rng.choice((palette.accent, palette.complement, palette.light)), np.float32
        )
        # Small sparkles only: two soft discs a fifth of the frame high, side by side, read
        # as a breast to nudenet (0.38) and blocked a school's storyboard (see the test).
        radius = rng.uniform(0.018, 0.058) * height
        centre_x, centre_y = rng.uniform(0, width), rng.uniform(0, height)
        strength = rng.uniform(0.12, 0.3)
        left, right = max(0, int(centre_x - radius - 2)), min(width, int(centre_x + radius + 3))
        top, bottom = max(0, int(centre_y - radius - 2)), min(height, int(centre_y + radius + 3))
        if left >= right or top >= bottom:
            continue
        local_x = np.arange(left, right, dtype=np.float32)[None, :] - centre_x
        local_y = np.arange(top, bottom, dtype=np.float32)[:, None] - centre_y
        edge = np.clip((radius - np.sqrt(local_x**2 + local_y**2)) / (radius * 0.35), 0, 1)
        alpha = (edge * strength)[..., None]
        region = canvas[top:bottom, left:right]
        canvas[top:bottom, left:right] = region * (1 - alpha) + colour * alpha

    vignette = 1 - 0.28 * (((xs - 0.5) * 2) ** 2 + ((ys - 0.5) * 2) ** 2)[..., None] / 2
    canvas = np.clip(canvas * vignette + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(canvas, "RGB")


def _smoothstep(t: float) -> float:
    return t * t * (3 - 2 * t)


def _lerp_box(
    start: tuple[float, float, float, float], end: tuple[float, float, float, float], t: float
) -> tuple[float, float, float, float]:
    return (
        start[0] + (end[0] - start[0]) * t,
        start[1] + (end[1] - start[1]) * t,
        start[2] + (end[2] - start[2]) * t,
        start[3] + (end[3] - start[3]) * t,
    )


def _camera_path(
    source_width: float, source_height: float, zoom: float, rng: random.Random
) -> tuple[tuple[float, float, float, float], tuple[float, float, float, float]]:
    """Start and end boxes of a Ken Burns move: the whole source, and a zoomed-in corner of it.

    The source has the output's aspect ratio, so every box in between does too.
    """
    wide = (0.0, 0.0, source_width, source_height)
    box_width, box_height = source_width / zoom, source_height / zoom
    anchor_x, anchor_y = rng.uniform(0, 1), rng.uniform(0, 1)
    left = (source_width - box_width) * anchor_x
    top = (source_height - box_height) * anchor_y
    close = (left, top, left + box_width, top + box_height)
    return (wide, close) if rng.random() < 0.5 else (close, wide)


@dataclass
class _Sprite:
    """A static RGBA layer, cropped to what it covers, pasted with its alpha each frame."""

    rgb: Image.Image
    alpha: Image.Image
    left: int
    top: int

    @classmethod
    def from_layer(cls, layer: Image.Image) -> _Sprite | None:
        alpha = layer.getchannel("A")
        box = alpha.getbbox()
        if box is None:
            return None
        return cls(layer.crop(box).convert("RGB"), alpha.crop(box), box[0], box[1])

    def paste(self, frame: Image.Image) -> None:
        frame.paste(self.rgb, (self.left, self.top), self.alpha)


class _ShotRenderer:
    """Static layers of one shot, built once, and the cheap per-frame composition of them."""

    def __init__(
        self,
        *,
        request: GenerationRequest,
        shot: ShotSpec,
        reference: _ReferenceImage,
    ):
        width, height = request.width, request.height
        self.size = (width, height)
        self.frame_count = shot.num_frames
        rng = _shot_random(shot)
        palette = _palette(shot.prompt, rng)
        margin_x = round(width * SAFE_MARGIN)

        canvas_width = max(2, round(width * BACKGROUND_OVERSCAN * BACKGROUND_SCALE))
        canvas_height = max(2, round(height * BACKGROUND_OVERSCAN * BACKGROUND_SCALE))
        self.background = _background(canvas_width, canvas_height, palette, rng)
        self.background_path = _camera_path(canvas_width, canvas_height, BACKGROUND_OVERSCAN, rng)

        self.under: list[_Sprite] = []
        self.panel: Image.Image | None = None
        if reference:
            top, bottom = _picture_band(width, height)
            self._add_panel(reference, rng, margin_x, top, bottom, palette)

    def _add_panel(
        self,
        reference: _ReferenceImage,
        rng: random.Random,
        margin_x: int,
        top: int,
        bottom: int,
        palette: _Palette,
    ) -> None:
        """The reference image in a framed panel between ``top`` and ``bottom``, pre-scaled for
        the camera."""
        width, height = self.size
        gap = max(4, round(height * 0.03))
        border = max(1, round(height / 160))
        available_height = bottom - gap - (top + gap) - 2 * border
        available_width = width - 2 * margin_x - 2 * border
        if available_height < 8 or available_width < 8:
            return
        source = reference.image(math.ceil(max(width, height) * REFERENCE_OVERSCAN))
        aspect = min(max(source.width / source.height, 0.75), 1.78)
        panel_height = available_height
        panel_width = round(panel_height * aspect)
        if panel_width > available_width:
            panel_width = available_width
            panel_height = max(8, round(panel_width / aspect))
        left = (width - panel_width) // 2
        panel_top = top + gap + border + (available_height - panel_height) // 2
        self.panel_box = (left, panel_top, left + panel_width, panel_top + panel_height)

        scaled_size = (
            math.ceil(panel_width * REFERENCE_OVERSCAN),
            math.ceil(panel_height * REFERENCE_OVERSCAN),
        )
        self.panel = ImageOps.fit(
            source, scaled_size, Image.Resampling.LANCZOS, centering=(0.5, 0.45)
        )
        self.panel_path = _camera_path(scaled_size[0], scaled_size[1], REFERENCE_OVERSCAN, rng)

        layer = Image.new("RGBA", self.size, (0, 0, 0, 0))
        shadow_offset = max(2, round(height * 0.012))
        ImageDraw.Draw(layer).rectangle(
            (
                left - border + shadow_offset,
                panel_top - border + shadow_offset,
                left + panel_width + border + shadow_offset,
                panel_top + panel_height + border + shadow_offset,
            ),
            fill=(0, 0, 0, 120),
        )
        layer = layer.filter(ImageFilter.GaussianBlur(shadow_offset))
        ImageDraw.Draw(layer).rectangle(
            (
                left - border,
                panel_top - border,
                left + panel_width + border - 1,
                panel_top + panel_height + border - 1,
            ),
            fill=(*_mix(palette.light, (255, 255, 255), 0.7), 255),
        )
        sprite = _Sprite.from_layer(layer)
        if sprite is not None:
            self.under.append(sprite)

    def frame(self, index: int) -> Image.Image:
        progress = _smoothstep(index / (self.frame_count - 1)) if self.frame_count > 1 else 0.0
        frame = self.background.resize(
            self.size,
            Image.Resampling.BILINEAR,
            box=_lerp_box(*self.background_path, progress),
        )
        for sprite in self.under:
            sprite.paste(frame)
        if self.panel is not None:
            panel_size = (
                self.panel_box[2] - self.panel_box[0],
                self.panel_box[3] - self.panel_box[1],
            )
            view = self.panel.resize(
                panel_size, Image.Resampling.BILINEAR, box=_lerp_box(*self.panel_path, progress)
            )
            frame.paste(view, self.panel_box[:2])
        return frame


def _picture_band(width: int, height: int) -> tuple[int, int]:
    """Rows [top, bottom) free of the finishing pass's text: below the AI label (the taller of
    its locales; a corner logo sits level with it) and above where subtitles go."""
    top = max(box.y + box.h for box in (label_box(width, height, locale) for locale in LOCALES))
    return top, subtitle_area(width=width, height=height).y


def _mix(colour: RGB, other: RGB, amount: float) -> RGB:
    return (
        round(colour[0] + (other[0] - colour[0]) * amount),
        round(colour[1] + (other[1] - colour[1]) * amount),
        round(colour[2] + (other[2] - colour[2]) * amount),
    )
