"""The CPU ``preview`` backend: an animated storyboard instead of a diffusion model.

Each shot is a slowly moving background whose colours come from the shot's seed and prompt, the
tenant's reference image (if any, or a collage of its reference images) in a panel with a Ken
Burns pan and zoom, the shot's scene text inside the safe margins, and a shot counter; the first
shot opens on a title card with the job's personalised title. It lets tenants check a template end to end, and lets the whole pipeline run
on a laptop, without a GPU.

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
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps, features

from generation.backends.base import (
    CancelCheck,
    GenerationCanceled,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    ShotResult,
    ShotSpec,
)
from generation.fonts import load_font
from generation.tryon import MAX_PRODUCTS, compose_image

RGB = tuple[int, int, int]

CANCEL_POLL_FRAMES = 4
PROGRESS_REPORTS_PER_SHOT = 16
MIN_SIDE = 16
# Text, the counter and the reference panel keep this fraction of the frame from its edges.
SAFE_MARGIN = 0.06

# The background is drawn larger than the frame so the camera can move over it, and at half
# resolution because it is smooth: upscaling it each frame is cheaper than downscaling.
BACKGROUND_OVERSCAN = 1.2
BACKGROUND_SCALE = 0.5
REFERENCE_OVERSCAN = 1.15

TITLE_SECONDS = 1.6
TITLE_RISE_SECONDS = 0.4
TITLE_FADE_OUT_SECONDS = 0.5

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
_CJK_CHARACTERS = (
    "\u2e80-\u2fff\u3000-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003ffff"
)
_CJK = re.compile(f"[{_CJK_CHARACTERS}]")
# Spaces, single CJK characters (a line may break between any two), and words that break only
# at spaces.
_TOKEN = re.compile(f"\\s+|[{_CJK_CHARACTERS}]|[^\\s{_CJK_CHARACTERS}]+")
# Punctuation that must not open a line (kinsoku): it stays with the character before it.
_NO_LINE_START = set("，。、！？；：）」』》〉】,.!?;:)]}%”’…")
ELLIPSIS = "…"
_RAQM = features.check_feature("raqm")


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
        for position, shot in enumerate(request.shots):
            if should_cancel():
                raise GenerationCanceled(
                    completed=completed, partial_device_seconds=0.0, partial_shot_index=None
                )
            started = time.perf_counter()
            renderer = _ShotRenderer(
                request=request, shot=shot, position=position, reference=reference
            )
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
        radius = rng.uniform(0.04, 0.13) * height
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


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _features(text: str) -> list[str] | None:
    """OpenType features for one line of text.

    A CJK font gives Latin quotes (U+2018 to U+201D) full-width glyphs, which leave a gap in
    an English possessive; a line without CJK characters asks for proportional ones. Mixed
    lines keep CJK typography. Features need libraqm; without it Pillow's basic layout draws
    the defaults, and measuring and drawing still agree.
    """
    if _RAQM and not _CJK.search(text):
        return ["pwid"]
    return None


def _measure(font: ImageFont.FreeTypeFont, text: str) -> float:
    return font.getlength(text, features=_features(text))


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Greedy line breaking: between words for Latin, between characters for CJK."""
    lines: list[str] = []
    for paragraph in text.splitlines():
        line: list[str] = []  # tokens, with " " where the text had spaces
        for token in _tokens(paragraph):
            if token.isspace():
                if line and line[-1] != " ":
                    line.append(" ")
                continue
            if _measure(font, "".join([*line, token])) <= max_width:
                line.append(token)
                continue
            words = [index for index, part in enumerate(line) if part != " "]
            if token in _NO_LINE_START and len(words) > 1:
                # Kinsoku: the mark may not open a line, so the word before it moves down too.
                lines.append("".join(line[: words[-1]]).rstrip())
                line = [line[words[-1]], token]
                continue
            if words:
                lines.append("".join(line).rstrip())
            line = []
            for character in token:  # a single word wider than the line is cut anywhere
                if line and _measure(font, "".join([*line, character])) > max_width:
                    lines.append("".join(line))
                    line = []
                line.append(character)
        if "".join(line).strip():
            lines.append("".join(line).rstrip())
    return lines


def _fit_text(
    text: str, *, max_width: float, max_lines: int, size: int, min_size: int
) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest font size at which ``text`` fits; at the smallest, the rest is cut with …"""
    step = max(1, size // 12)
    for candidate in range(size, min_size - 1, -step):
        font = load_font(candidate)
        lines = _wrap(text, font, max_width)
        if len(lines) <= max_lines:
            return font, lines
    font = load_font(min_size)
    lines = _wrap(text, font, max_width)[:max_lines]
    if not lines:
        return font, lines
    last = lines[-1]
    while last and _measure(font, last + ELLIPSIS) > max_width:
        last = last[:-1]
    lines[-1] = last.rstrip() + ELLIPSIS
    return font, lines


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return round((ascent + descent) * 1.08)


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

    def paste(self, frame: Image.Image, *, opacity: float = 1.0, offset_y: int = 0) -> None:
        if opacity <= 0:
            return
        mask = self.alpha
        if opacity < 1:
            mask = mask.point([round(value * opacity) for value in range(256)])
        frame.paste(self.rgb, (self.left, self.top + offset_y), mask)


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    lines: list[str],
    font: ImageFont.FreeTypeFont,
    *,
    centre_x: float,
    top: float,
    fill: tuple[int, int, int, int],
) -> None:
    line_height = _line_height(font)
    for number, line in enumerate(lines):
        draw.text(
            (centre_x, top + number * line_height),
            line,
            font=font,
            fill=fill,
            anchor="ma",
            features=_features(line),
        )


def _text_layer(
    size: tuple[int, int],
    lines: list[str],
    font: ImageFont.FreeTypeFont,
    *,
    centre_x: float,
    top: float,
    shadow_radius: float,
) -> Image.Image:
    """White lines over a soft dark shadow, on a transparent layer."""
    shadow = Image.new("RGBA", size, (0, 0, 0, 0))
    offset = max(1.0, shadow_radius * 0.6)
    _draw_lines(
        ImageDraw.Draw(shadow),
        lines,
        font,
        centre_x=centre_x + offset,
        top=top + offset,
        fill=(0, 0, 0, 170),
    )
    if shadow_radius > 0:
        shadow = shadow.filter(ImageFilter.GaussianBlur(shadow_radius))
    _draw_lines(
        ImageDraw.Draw(shadow), lines, font, centre_x=centre_x, top=top, fill=(255, 255, 255, 255)
    )
    return shadow


class _ShotRenderer:
    """Static layers of one shot, built once, and the cheap per-frame composition of them."""

    def __init__(
        self,
        *,
        request: GenerationRequest,
        shot: ShotSpec,
        position: int,
        reference: _ReferenceImage,
    ):
        width, height = request.width, request.height
        self.size = (width, height)
        self.frame_count = shot.num_frames
        rng = _shot_random(shot)
        palette = _palette(shot.prompt, rng)
        margin_x, margin_y = round(width * SAFE_MARGIN), round(height * SAFE_MARGIN)

        canvas_width = max(2, round(width * BACKGROUND_OVERSCAN * BACKGROUND_SCALE))
        canvas_height = max(2, round(height * BACKGROUND_OVERSCAN * BACKGROUND_SCALE))
        self.background = _background(canvas_width, canvas_height, palette, rng)
        self.background_path = _camera_path(canvas_width, canvas_height, BACKGROUND_OVERSCAN, rng)

        self.under: list[_Sprite] = []
        self.over: list[_Sprite] = []

        counter_top = self._add_counter(position, len(request.shots), margin_x, margin_y)
        text = shot.scene_text.strip() or shot.prompt.strip()
        band_top = self._add_scene_text(text, margin_x, margin_y) if text else height - margin_y

        self.panel: Image.Image | None = None
        if reference:
            self._add_panel(reference, rng, margin_x, counter_top, band_top, palette)

        self.title_frames = 0
        if position == 0 and request.title.strip():
            self._add_title(request.title.strip(), request.fps, palette, margin_x, margin_y)

    def _add_counter(self, position: int, count: int, margin_x: int, margin_y: int) -> int:
        """A small "2 / 3" pill in the top right corner; returns the y below it."""
        width, height = self.size
        font = load_font(max(8, round(height * 0.034)))
        label = f"{position + 1} / {count}"
        left, top, right, bottom = font.getbbox(label)
        pad_x, pad_y = round(font.size * 0.6), round(font.size * 0.35)
        box = (
            width - margin_x - (right - left) - 2 * pad_x,
            margin_y,
            width - margin_x,
            margin_y + (bottom - top) + 2 * pad_y,
        )
        layer = Image.new("RGBA", self.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        # Boxes here are (left, top, right, bottom) with right and bottom exclusive; Pillow's
        # rectangles include their last pixel.
        draw.rounded_rectangle(
            (box[0], box[1], box[2] - 1, box[3] - 1),
            radius=(box[3] - box[1]) // 2,
            fill=(12, 14, 20, 130),
        )
        draw.text(
            (box[0] + pad_x - left, box[1] + pad_y - top),
            label,
            font=font,
            fill=(255, 255, 255, 235),
        )
        sprite = _Sprite.from_layer(layer)
        if sprite is not None:
            self.over.append(sprite)
        return box[3]

    def _add_scene_text(self, text: str, margin_x: int, margin_y: int) -> int:
        """The shot's text, wrapped on a translucent band at the bottom; returns the band's top."""
        width, height = self.size
        pad = max(4, round(height * 0.025))
        font, lines = _fit_text(
            text,
            max_width=width - 2 * margin_x - 2 * pad,
            max_lines=3,
            size=max(10, round(height * 0.058)),
            min_size=max(8, round(height * 0.04)),
        )
        ascent, descent = font.getmetrics()
        text_height = _line_height(font) * (len(lines) - 1) + ascent + descent
        band = (
            margin_x,
            height - margin_y - text_height - 2 * pad,
            width - margin_x,
            height - margin_y,
        )
        layer = Image.new("RGBA", self.size, (0, 0, 0, 0))
        ImageDraw.Draw(layer).rounded_rectangle(
            (band[0], band[1], band[2] - 1, band[3] - 1), radius=pad, fill=(10, 12, 18, 150)
        )
        text_layer = _text_layer(
            self.size,
            lines,
            font,
            centre_x=width / 2,
            top=band[1] + pad,
            shadow_radius=max(1.0, height / 400),
        )
        sprite = _Sprite.from_layer(Image.alpha_composite(layer, text_layer))
        if sprite is not None:
            self.over.append(sprite)
        return band[1]

    def _add_panel(
        self,
        reference: _ReferenceImage,
        rng: random.Random,
        margin_x: int,
        top: int,
        bottom: int,
        palette: _Palette,
    ) -> None:
        """The reference image in a framed panel above the text, pre-scaled for the camera."""
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

    def _add_title(
        self, title: str, fps: int, palette: _Palette, margin_x: int, margin_y: int
    ) -> None:
        """The opening card: a dark scrim over the moving scene and the personalised title."""
        width, height = self.size
        self.title_frames = min(round(fps * TITLE_SECONDS), max(1, self.frame_count * 2 // 3))
        self.title_fade_out = min(round(fps * TITLE_FADE_OUT_SECONDS), self.title_frames // 3)
        self.title_rise_frames = min(round(fps * TITLE_RISE_SECONDS), self.title_frames // 3)
        self.title_rise_pixels = max(1, round(height * 0.025))

        scrim = Image.new("RGBA", self.size, (*_mix(palette.dark, (0, 0, 0), 0.55), 228))
        self.title_scrim = _Sprite.from_layer(scrim)

        font, lines = _fit_text(
            title,
            max_width=width - 4 * margin_x,
            max_lines=2,
            size=max(12, round(height * 0.12)),
            min_size=max(9, round(height * 0.06)),
        )
        ascent, descent = font.getmetrics()
        line_height = _line_height(font)
        text_height = line_height * (len(lines) - 1) + ascent + descent
        rule_gap, rule_thickness = round(height * 0.03), max(2, round(height * 0.008))
        top = (height - text_height - rule_gap - rule_thickness) / 2
        layer = _text_layer(
            self.size,
            lines,
            font,
            centre_x=width / 2,
            top=top,
            shadow_radius=max(1.0, height / 200),
        )
        rule_width = min(max(_measure(font, line) for line in lines), width - 4 * margin_x) * 0.5
        rule_top = round(top + text_height + rule_gap)
        ImageDraw.Draw(layer).rectangle(
            (
                round((width - rule_width) / 2),
                rule_top,
                round((width + rule_width) / 2),
                rule_top + rule_thickness - 1,
            ),
            fill=(*palette.accent, 255),
        )
        self.title_text = _Sprite.from_layer(layer)

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
        for sprite in self.over:
            sprite.paste(frame)
        if index < self.title_frames:
            self._paste_title(frame, index)
        return frame

    def _paste_title(self, frame: Image.Image, index: int) -> None:
        remaining = self.title_frames - index
        fade_out = min(1.0, remaining / (self.title_fade_out + 1)) if self.title_fade_out else 1.0
        rise = min(1.0, index / self.title_rise_frames) if self.title_rise_frames else 1.0
        if self.title_scrim is not None:
            self.title_scrim.paste(frame, opacity=fade_out)
        if self.title_text is not None:
            # The name is fully drawn from the first frame (a poster may be taken there); it only
            # drifts up into place.
            offset = round(self.title_rise_pixels * (1 - _smoothstep(rise)))
            self.title_text.paste(frame, opacity=fade_out, offset_y=offset)


def _mix(colour: RGB, other: RGB, amount: float) -> RGB:
    return (
        round(colour[0] + (other[0] - colour[0]) * amount),
        round(colour[1] + (other[1] - colour[1]) * amount),
        round(colour[2] + (other[2] - colour[2]) * amount),
    )
