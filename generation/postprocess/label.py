"""The AI-generated label: the visible one drawn on frames, and the implicit one in metadata.

Visible: GB 45438-2025 as implementations quote it asks video to show the label from the first
frame for at least 2 s with text at least 5 % of the shorter side high. We draw it on every
frame, top-left inside the title-safe area, white on a dark plate (contrast at least 12:1 over
any picture), with the cap height of "AI" (the shortest glyphs in either text) at least 5.5 %
of the shorter side, a margin over the rule so encoding blur cannot take it under.
``apply_ai_label`` is the one function every output path calls; there is no option to skip or
restyle it, and nothing is drawn over it afterwards (frame hooks only add invisible marks).

Implicit: the ``AIGC`` MP4 metadata tag, a JSON object of the standard's seven fields; the two
reserved codes carry our signature over it (``generation.postprocess.aigc``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from generation.fonts import load_font
from generation.postprocess.aigc import check_producer_code
from generation.postprocess.layout import Box, Overlay, corner_box

LABEL_TEXTS = {"zh-Hans": "AI生成", "en": "AI-generated"}
LOCALES = tuple(LABEL_TEXTS)
LABEL_CORNER = "top-left"
MIN_TEXT_HEIGHT = 0.05  # of the shorter side: the rule
TEXT_HEIGHT = 0.055  # what we draw: the rule plus a margin for blur and rounding
PLATE_RGBA = (0, 0, 0, 204)  # 80 % black
TEXT_RGBA = (255, 255, 255, 255)


@dataclass(frozen=True)
class LabelLayout:
    """Where and how big the visible label is on a ``width`` x ``height`` canvas."""

    text: str
    font_size: int
    box: Box  # the plate; the label's whole footprint
    text_origin: tuple[int, int]  # where Pillow's text anchor "la" goes, in canvas pixels
    cap_height: int  # ink height of "AI" at font_size, in pixels


def _check_locale(locale: str) -> str:
    if locale not in LABEL_TEXTS:
        raise ValueError(f"locale must be one of {LOCALES} (got {locale!r})")
    return locale


@lru_cache(maxsize=32)
def label_layout(width: int, height: int, locale: str) -> LabelLayout:
    """The label's text, size and box: a function of the canvas and locale only."""
    text = LABEL_TEXTS[_check_locale(locale)]
    target = math.ceil(TEXT_HEIGHT * min(width, height))
    size = max(6, target)
    while _cap_height(size) < target:
        size += 1
    cap = _cap_height(size)
    if cap < MIN_TEXT_HEIGHT * min(width, height):  # the rule itself, whatever TEXT_HEIGHT says
        raise AssertionError(f"label cap height {cap} px is under the rule on {width}x{height}")
    font = load_font(size)
    left, top, right, bottom = font.getbbox(text, anchor="la")
    pad_x = max(2, round(cap * 0.45))
    pad_y = max(2, round(cap * 0.35))
    w = (right - left) + 2 * pad_x
    h = (bottom - top) + 2 * pad_y
    box = corner_box(LABEL_CORNER, w, h, width=width, height=height)
    if not box.inside(width, height):
        raise ValueError(f"a {width}x{height} canvas is too small for the AI label")
    origin = (box.x + pad_x - left, box.y + pad_y - top)
    return LabelLayout(text=text, font_size=size, box=box, text_origin=origin, cap_height=cap)


def label_box(width: int, height: int, locale: str) -> Box:
    """The rectangle the visible label covers; nothing else may be placed over it."""
    return label_layout(width, height, locale).box


@lru_cache(maxsize=32)
def _label_overlay(width: int, height: int, locale: str) -> Overlay:
    layout = label_layout(width, height, locale)
    x, y, w, h = layout.box
    image = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=max(1, h // 6), fill=PLATE_RGBA)
    text_layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    ImageDraw.Draw(text_layer).text(
        (layout.text_origin[0] - x, layout.text_origin[1] - y),
        layout.text,
        font=load_font(layout.font_size),
        fill=TEXT_RGBA,
        anchor="la",
    )
    overlay = Overlay.from_rgba(Image.alpha_composite(image, text_layer), x, y)
    assert overlay is not None
    return overlay


def apply_ai_label(frame: np.ndarray, *, locale: str) -> np.ndarray:
    """Draw the visible AI label onto ``frame`` (uint8 RGB, in place) and return it.

    Every frame of every output (video, poster, preview) passes through here.
    """
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError("the AI label is drawn on uint8 RGB frames (height, width, 3)")
    height, width = frame.shape[:2]
    return _label_overlay(width, height, locale).apply(frame)


def _cap_height(size: int) -> int:
    _, top, _, bottom = load_font(size).getbbox("AI", anchor="ls")
    return bottom - top


# Printable ASCII without space, quotes or backslash: codes, not names, and nothing a naive
# reader of the JSON could trip over.
_CODE = re.compile(r"[!#-&(-\[\]-~]*")


@dataclass(frozen=True)
class AigcLabel:
    """The implicit label's fields, in the standard's order, written as the ``AIGC`` tag.

    On first write (which ``finish`` is) the propagator is the producer and the propagate id
    the produce id; left empty they are filled in so, and given otherwise they are refused.
    (Nothing republishes a delivered video through the platform, so there is no later write.)
    ``reserved_code1`` / ``reserved_code2``: the signature and its key id (``aigc.signature``,
    ``aigc.key_id``).
    """

    content_producer: str
    produce_id: str
    label: str = "1"
    reserved_code1: str = ""
    content_propagator: str = ""
    propagate_id: str = ""
    reserved_code2: str = ""

    def fields(self) -> dict[str, str]:
        propagator = self.content_propagator or self.content_producer
        propagate_id = self.propagate_id or self.produce_id
        values = {
            "Label": self.label,
            "ContentProducer": self.content_producer,
            "ProduceID": self.produce_id,
            "ReservedCode1": self.reserved_code1,
            "ContentPropagator": propagator,
            "PropagateID": propagate_id,
            "ReservedCode2": self.reserved_code2,
        }
        if self.label != "1":
            # The producer knows its own output is generated; other values are for platforms
            # that only suspect it.
            raise ValueError(f"the producer's AIGC Label is '1' (got {self.label!r})")
        for key, value in values.items():
            if not _CODE.fullmatch(value):
                raise ValueError(
                    f"AIGC {key} must be a code without spaces, quotes or "
                    f"backslashes (got {value!r})"
                )
        if not values["ContentProducer"] or not values["ProduceID"]:
            raise ValueError("AIGC ContentProducer and ProduceID are required")
        check_producer_code(values["ContentProducer"])
        if propagator != self.content_producer or propagate_id != self.produce_id:
            raise ValueError(
                "on first write the AIGC propagator and propagate id are the "
                "producer's and the produce id"
            )
        return values

    def to_json(self) -> str:
        """Compact JSON (no spaces), fields in the standard's order."""
        return json.dumps(self.fields(), separators=(",", ":"), ensure_ascii=True)
