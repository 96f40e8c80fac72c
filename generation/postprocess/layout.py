"""Canvas geometry and the two per-frame primitives: fitting a shot and blending an overlay.

Everything drawn on a video (subtitles, logo, the AI label) is rendered once as RGBA with
Pillow and turned into an ``Overlay``: the premultiplied colour and the inverse alpha of just
the pixels it covers, as uint16. Per frame, blending is then three integer operations on a
small region, which keeps the finishing pass close to the cost of the encode itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

ORIENTATIONS = ("landscape", "portrait")
# Title-safe area: 5 % in from every edge, where broadcasters and platforms promise not to crop.
TITLE_SAFE = 0.05
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


class Box(NamedTuple):
    """A pixel rectangle: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    def intersects(self, other: Box) -> bool:
        return (
            self.x < other.x + other.w
            and other.x < self.x + self.w
            and self.y < other.y + other.h
            and other.y < self.y + self.h
        )

    def inflate(self, by: int) -> Box:
        return Box(self.x - by, self.y - by, self.w + 2 * by, self.h + 2 * by)

    def inside(self, width: int, height: int) -> bool:
        return (
            self.x >= 0 and self.y >= 0 and self.x + self.w <= width and self.y + self.h <= height
        )


def canvas_size(orientation: str, short_side: int) -> tuple[int, int]:
    """(width, height) of a 16:9 landscape or 9:16 portrait canvas, both sides even."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS} (got {orientation!r})")
    long_side = round(short_side * 16 / 9 / 2) * 2
    short_side = round(short_side / 2) * 2
    if orientation == "landscape":
        return long_side, short_side
    return short_side, long_side


def check_canvas(width: int, height: int, orientation: str) -> None:
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS} (got {orientation!r})")
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(
            f"the canvas needs even sides of at least 16 pixels (got {width}x{height})"
        )
    if orientation == "landscape" and width < height:
        raise ValueError(f"a landscape canvas is wider than it is tall (got {width}x{height})")
    if orientation == "portrait" and height <= width:
        raise ValueError(f"a portrait canvas is taller than it is wide (got {width}x{height})")


def safe_margins(width: int, height: int) -> tuple[int, int]:
    """(x, y) distance of the title-safe area from the left/right and top/bottom edges."""
    return round(width * TITLE_SAFE), round(height * TITLE_SAFE)


def corner_box(corner: str, w: int, h: int, *, width: int, height: int) -> Box:
    """A ``w`` x ``h`` box in ``corner`` of the canvas, inside the title-safe area."""
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {CORNERS} (got {corner!r})")
    margin_x, margin_y = safe_margins(width, height)
    x = margin_x if corner.endswith("left") else width - margin_x - w
    y = margin_y if corner.startswith("top") else height - margin_y - h
    return Box(x, y, w, h)


def parse_colour(colour: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """``"#RRGGBB"`` (or ``"#RGB"``) or an (r, g, b) tuple, as an (r, g, b) tuple."""
    if isinstance(colour, tuple):
        if len(colour) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in colour):
            raise ValueError(f"a colour tuple needs three integers 0-255 (got {colour!r})")
        return colour
    text = colour.strip().lstrip("#")
    if len(text) == 3:
        text = "".join(c * 2 for c in text)
    if len(text) != 6:
        raise ValueError(f"a colour is #RRGGBB (got {colour!r})")
    try:
        value = int(text, 16)
    except ValueError as error:
        raise ValueError(f"a colour is #RRGGBB (got {colour!r})") from error
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


def relative_luminance(colour: tuple[int, int, int]) -> float:
    """WCAG relative luminance of an sRGB colour, 0 (black) to 1 (white)."""

    def linear(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_colour_on(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``background``."""
    luminance = relative_luminance(background)
    return (0, 0, 0) if (luminance + 0.05) / 0.05 > 1.05 / (luminance + 0.05) else (255, 255, 255)


@dataclass(frozen=True, eq=False)
class Overlay:
    """Pre-rendered RGBA, premultiplied, cropped to what it covers, ready to blend per frame.

    Alpha is rescaled from 0-255 to 0-256 so the per-frame blend divides by a shift:
    ``(pixel * (256 - a) + colour * a + 128) >> 8``. Fully opaque and fully transparent pixels
    come out exact; partial ones are within one level of the 0-255 blend.
    """

    box: Box
    premultiplied: np.ndarray  # (h, w, 3) uint16: colour * a + 128, a in 0-256
    inverse_alpha: np.ndarray  # (h, w, 1) uint16: 256 - a

    @classmethod
    def from_rgba(cls, rgba: Image.Image | np.ndarray, x: int, y: int) -> Overlay | None:
        """The overlay of ``rgba`` placed with its top-left corner at (x, y); None if empty."""
        pixels = np.asarray(rgba.convert("RGBA") if isinstance(rgba, Image.Image) else rgba)
        if pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.dtype != np.uint8:
            raise ValueError("an overlay is built from RGBA uint8 pixels")
        alpha = pixels[:, :, 3]
        rows = np.flatnonzero(alpha.any(axis=1))
        cols = np.flatnonzero(alpha.any(axis=0))
        if rows.size == 0:
            return None
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        pixels = pixels[top:bottom, left:right]
        a = (pixels[:, :, 3:4].astype(np.uint32) * 256 + 127) // 255
        return cls(
            box=Box(int(x + left), int(y + top), int(right - left), int(bottom - top)),
            premultiplied=(pixels[:, :, :3].astype(np.uint32) * a + 128).astype(np.uint16),
            inverse_alpha=(256 - a).astype(np.uint16),
        )

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Blend onto ``frame`` in place (and return it); the overlay must lie inside it."""
        x, y, w, h = self.box
        region = frame[y : y + h, x : x + w]
        if region.shape[:2] != (h, w):
            raise ValueError(
                f"overlay {self.box} does not fit a {frame.shape[1]}x{frame.shape[0]} frame"
            )
        mixed = region.astype(np.uint16)
        mixed *= self.inverse_alpha
        mixed += self.premultiplied
        mixed >>= 8
        region[...] = mixed
        return frame


class Fitter:
    """Maps frames of one source size onto the canvas: centre-crop ("crop") or letterbox ("pad").

    Crop fills the canvas and loses the edges of a source of another shape; pad keeps the whole
    picture and fills the rest with ``pad_colour``. A source already the canvas size passes through.
    """

    def __init__(
        self,
        source: tuple[int, int],
        canvas: tuple[int, int],
        *,
        mode: str = "crop",
        pad_colour: tuple[int, int, int] = (0, 0, 0),
    ):
        if mode not in ("crop", "pad"):
            raise ValueError(f"fit must be 'crop' or 'pad' (got {mode!r})")
        source_h, source_w = source
        self.width, self.height = canvas
        self.identity = (source_w, source_h) == canvas
        self.mode = mode
        self.pad_colour = np.array(pad_colour, np.uint8)
        if mode == "crop":
            scale = max(self.width / source_w, self.height / source_h)
            crop_w = min(source_w, round(self.width / scale))
            crop_h = min(source_h, round(self.height / scale))
            self.crop = Box((source_w - crop_w) // 2, (source_h - crop_h) // 2, crop_w, crop_h)
            self.target = Box(0, 0, self.width, self.height)
        else:
            scale = min(self.width / source_w, self.height / source_h)
            target_w = min(self.width, max(1, round(source_w * scale)))
            target_h = min(self.height, max(1, round(source_h * scale)))
            self.crop = Box(0, 0, source_w, source_h)
            self.target = Box(
                (self.width - target_w) // 2, (self.height - target_h) // 2, target_w, target_h
            )

    def source(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` on the canvas, to be read, never written: a view where no scaling is
        needed (a source already the canvas size, or a crop without resize), else a new
        array."""
        x, y, w, h = self.crop
        picture = frame if self.identity else frame[y : y + h, x : x + w]
        tx, ty, tw, th = self.target
        if (w, h) != (tw, th):
            image = Image.fromarray(np.ascontiguousarray(picture), "RGB")
            picture = np.asarray(
                image.resize((tw, th), Image.Resampling.BILINEAR, reducing_gap=2.0)
            )
        if (tw, th) == (self.width, self.height):
            return picture
        canvas = np.empty((self.height, self.width, 3), np.uint8)
        canvas[...] = self.pad_colour
        canvas[ty : ty + th, tx : tx + tw] = picture
        return canvas


def cross_fade(
    outgoing: np.ndarray,
    incoming: np.ndarray,
    weight: float,
    *,
    out: np.ndarray | None = None,
    scratch: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``outgoing * (1 - weight) + incoming * weight`` in integer arithmetic.

    Written into ``out`` when given (else a new frame); ``scratch``, two uint16 arrays of the
    frame's shape, saves allocating them for every frame of a dissolve.
    """
    w = min(256, max(0, round(weight * 256)))
    if scratch is None:
        scratch = (np.empty(outgoing.shape, np.uint16), np.empty(outgoing.shape, np.uint16))
    mixed, other = scratch
    np.multiply(outgoing, np.uint16(256 - w), out=mixed, dtype=np.uint16)
    np.multiply(incoming, np.uint16(w), out=other, dtype=np.uint16)
    mixed += other
    mixed += 128
    mixed >>= 8
    if out is None:
        return mixed.astype(np.uint8)
    np.copyto(out, mixed, casting="unsafe")
    return out
