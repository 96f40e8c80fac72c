"""The tenant's brand kit on the video: the corner logo and the intro, title and outro cards.

The logo goes in the corner the tenant chose unless that would touch the AI label; then it
moves to the nearest corner that does not (the other corner on the same edge first), and if a
canvas is so small that no corner is free, it shrinks until one is. The label's place never
depends on the brand kit.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from generation.fonts import load_font
from generation.postprocess.layout import (
    CORNERS,
    Box,
    Overlay,
    corner_box,
    parse_colour,
    text_colour_on,
)
from generation.postprocess.text import fit, line_height

MAX_LOGO_SIZE = 0.3  # of the shorter side
MAX_LOGO_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class BrandKit:
    """A tenant's look: plain data, so it can come from a model, an API body or a test.

    ``logo_size`` is the logo's longer side as a fraction of the canvas's shorter side.
    Colours are ``"#RRGGBB"``: cards are painted in ``primary_colour`` with an accent rule in
    ``secondary_colour`` and text in black or white, whichever reads better on the primary.
    A card with zero seconds is left out.
    """

    logo_png: bytes | None = None
    logo_corner: str = "top-right"
    logo_size: float = 0.12
    primary_colour: str = "#1F2A44"
    secondary_colour: str = "#F2A900"
    intro_text: str = ""
    intro_seconds: float = 0.0
    outro_text: str = ""
    outro_seconds: float = 0.0

    def validate(self) -> None:
        if self.logo_corner not in CORNERS:
            raise ValueError(f"logo_corner must be one of {CORNERS} (got {self.logo_corner!r})")
        if not 0 < self.logo_size <= MAX_LOGO_SIZE:
            raise ValueError(f"logo_size must be in (0, {MAX_LOGO_SIZE}] (got {self.logo_size})")
        parse_colour(self.primary_colour)
        parse_colour(self.secondary_colour)
        if self.intro_seconds < 0 or self.outro_seconds < 0:
            raise ValueError("card durations cannot be negative")


def load_logo(data: bytes) -> Image.Image:
    """The logo as RGBA; ValueError for bytes that are not an image or absurdly large."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_LOGO_PIXELS:
            raise ValueError(f"the logo is {image.width}x{image.height}; at most 4096x4096")
        return image.convert("RGBA")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"the logo is not a readable image: {error}") from error


def scaled(image: Image.Image, longest: int) -> Image.Image:
    scale = longest / max(image.width, image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def corner_preference(corner: str) -> list[str]:
    """The chosen corner, then the other on the same edge, the one below/above, the opposite."""
    vertical, horizontal = corner.split("-")
    flip_v = {"top": "bottom", "bottom": "top"}[vertical]
    flip_h = {"left": "right", "right": "left"}[horizontal]
    return [corner, f"{vertical}-{flip_h}", f"{flip_v}-{horizontal}", f"{flip_v}-{flip_h}"]


def place_logo(
    logo: Image.Image, *, corner: str, size: float, width: int, height: int, label: Box
) -> tuple[Image.Image, Box]:
    """The scaled logo and its box, which never touches the label (a gap of 1 % of the short
    side is kept between them)."""
    short = min(width, height)
    gap = max(2, round(0.01 * short))
    keep_out = label.inflate(gap)
    longest = max(2, round(size * short))
    while True:
        image = scaled(logo, longest)
        for candidate in corner_preference(corner):
            box = corner_box(candidate, image.width, image.height, width=width, height=height)
            if box.inside(width, height) and not box.intersects(keep_out):
                return image, box
        if longest <= 2:
            raise ValueError(f"no corner of a {width}x{height} canvas leaves the AI label free")
        longest = max(2, int(longest * 0.8))


def logo_overlay(image: Image.Image, box: Box) -> Overlay | None:
    return Overlay.from_rgba(image, box.x, box.y)


def render_card(
    text: str,
    *,
    width: int,
    height: int,
    kit: BrandKit,
    logo: Image.Image | None = None,
    text_size: float = 0.09,
) -> np.ndarray:
    """A still card: the primary colour, an optional centred logo, text, an accent rule."""
    background = parse_colour(kit.primary_colour)
    accent = parse_colour(kit.secondary_colour)
    ink = text_colour_on(background)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    logo_image = scaled(logo, round(0.28 * short)) if logo is not None else None
    fitted = None
    if text.strip():
        size = max(8, round(text_size * short))
        fitted = fit(
            text, max_width=width * 0.8, max_lines=2, size=size, min_size=max(8, round(size * 0.45))
        )
    gap = round(0.04 * short)
    rule_h = max(2, round(0.012 * short))
    text_h = 0
    if fitted is not None:
        ascent, descent = load_font(fitted.size).getmetrics()
        text_h = line_height(fitted.size) * (len(fitted.lines) - 1) + ascent + descent
    total = (logo_image.height + gap if logo_image is not None else 0) + text_h
    total += gap + rule_h if fitted is not None else 0
    y = (height - total) // 2
    if logo_image is not None:
        image.paste(logo_image, ((width - logo_image.width) // 2, y), logo_image)
        y += logo_image.height + gap
    if fitted is not None:
        font = fitted.font
        ascent, _ = font.getmetrics()
        step = line_height(fitted.size)
        widest = 0
        for number, line in enumerate(fitted.lines):
            line_w = font.getlength(line)
            widest = max(widest, line_w)
            draw.text(
                ((width - line_w) / 2, y + ascent + number * step),
                line,
                font=font,
                fill=ink,
                anchor="ls",
            )
        y += text_h + gap
        rule_w = max(rule_h * 4, round(min(widest, width * 0.8) * 0.4))
        draw.rectangle(
            ((width - rule_w) // 2, y, (width + rule_w) // 2, y + rule_h - 1), fill=accent
        )
    return np.asarray(image)
