"""Burned-in subtitles and their SRT and WebVTT sidecars.

A shot's subtitle is laid out once: wrapped to the title-safe width (Chinese per character,
Latin per word), at most two lines, shrunk when it does not fit, white on a translucent dark
plate, centred at the bottom of the safe area (higher on portrait canvases, where phone apps put
their own buttons and captions). The sidecars carry the same cues at the same times as the
burned-in text, so a player that shows the sidecar over a clean copy agrees with the picture.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from PIL import Image, ImageDraw

from generation.fonts import load_font
from generation.postprocess.layout import Box, Overlay, safe_margins
from generation.postprocess.text import FittedText, fit, line_height

MAX_LINES = 2
SIZE = 0.055  # of the shorter side
MIN_SIZE = 0.035
PORTRAIT_BOTTOM = 0.10  # of the height, above phone apps' captions and buttons
PLATE_ALPHA = 150
TEXT_RGBA = (255, 255, 255, 255)


@dataclass(frozen=True)
class RenderedSubtitle:
    """One shot's subtitle: the overlay to blend and where each line's baseline starts."""

    text: FittedText
    overlay: Overlay
    baselines: tuple[tuple[int, int], ...]  # (x, y) per line, Pillow anchor "ls"

    @property
    def box(self) -> Box:
        return self.overlay.box


def _sizes(width: int, height: int) -> tuple[int, int, int, int]:
    """(full font size, smallest font size, plate padding x, plate padding y) on a canvas."""
    short = min(width, height)
    size = max(8, round(SIZE * short))
    min_size = min(size, max(8, round(MIN_SIZE * short)))
    return size, min_size, max(2, round(size * 0.35)), max(1, round(size * 0.12))


def _bottom_margin(width: int, height: int) -> int:
    return round(height * PORTRAIT_BOTTOM) if height > width else safe_margins(width, height)[1]


def subtitle_area(*, width: int, height: int) -> Box:
    """Where subtitles go on a ``width`` x ``height`` canvas with nothing to clear: the
    footprint of the tallest one (``MAX_LINES`` lines at the full size). The finishing pass owns
    this band; a picture that keeps its subject above it is never covered by a subtitle."""
    size, _min_size, _pad_x, pad_y = _sizes(width, height)
    ascent, descent = load_font(size).getmetrics()
    block_h = line_height(size) * (MAX_LINES - 1) + ascent + descent + 2 * pad_y
    margin_x = safe_margins(width, height)[0]
    bottom = height - _bottom_margin(width, height)
    top = max(0, bottom - block_h)
    return Box(margin_x, top, width - 2 * margin_x, bottom - top)


def render_subtitle(
    text: str, *, width: int, height: int, avoid: Iterable[Box] = ()
) -> RenderedSubtitle | None:
    """Lay out and draw ``text`` for a ``width`` x ``height`` canvas; None for blank text.

    The subtitle moves up until it clears every box in ``avoid`` that sits in the lower half
    of the canvas (a logo in a bottom corner).
    """
    if not text.strip():
        return None
    margin_x = safe_margins(width, height)[0]
    size, min_size, pad_x, pad_y = _sizes(width, height)
    fitted = fit(
        text,
        max_width=width - 2 * margin_x - 2 * pad_x,
        max_lines=MAX_LINES,
        size=size,
        min_size=min_size,
    )
    font = load_font(fitted.size)
    ascent, descent = font.getmetrics()
    step = line_height(fitted.size)
    bottom_margin = _bottom_margin(width, height)
    block_h = step * (len(fitted.lines) - 1) + ascent + descent + 2 * pad_y
    top = height - bottom_margin - block_h
    footprint = Box(margin_x, top, width - 2 * margin_x, block_h)
    # Only what sits in the lower half can be cleared by moving up.
    below = [box for box in avoid if box.y + box.h / 2 > height / 2]
    for obstacle in sorted(below, key=lambda box: box.y, reverse=True):
        if footprint.intersects(obstacle):
            top = obstacle.y - block_h - max(2, pad_y)
            footprint = Box(margin_x, top, width - 2 * margin_x, block_h)
    top = max(0, top)

    plate = Image.new("RGBA", (width, block_h), (0, 0, 0, 0))
    letters = Image.new("RGBA", (width, block_h), (0, 0, 0, 0))
    plate_draw = ImageDraw.Draw(plate)
    letter_draw = ImageDraw.Draw(letters)
    baselines = []
    for number, line in enumerate(fitted.lines):
        line_w = round(font.getlength(line))
        x = (width - line_w) // 2
        baseline = pad_y + ascent + number * step
        plate_draw.rounded_rectangle(
            (x - pad_x, baseline - ascent - pad_y, x + line_w + pad_x, baseline + descent + pad_y),
            radius=max(1, size // 4),
            fill=(0, 0, 0, PLATE_ALPHA),
        )
        letter_draw.text((x, baseline), line, font=font, fill=TEXT_RGBA, anchor="ls")
        baselines.append((x, top + baseline))
    overlay = Overlay.from_rgba(Image.alpha_composite(plate, letters), 0, top)
    assert overlay is not None
    return RenderedSubtitle(text=fitted, overlay=overlay, baselines=tuple(baselines))


@dataclass(frozen=True)
class Cue:
    """One subtitle cue, in frames of the composed video: shown for [start, end)."""

    start_frame: int
    end_frame: int
    fps: int
    text: str

    @property
    def start_s(self) -> float:
        return self.start_frame / self.fps

    @property
    def end_s(self) -> float:
        return self.end_frame / self.fps

    def start_ms(self) -> int:
        return round(Fraction(self.start_frame * 1000, self.fps))

    def end_ms(self) -> int:
        return round(Fraction(self.end_frame * 1000, self.fps))


def _timestamp(ms: int, separator: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def _cue_lines(text: str) -> list[str]:
    # A blank line ends a cue in both formats, so the text keeps only its non-blank lines.
    return [line.strip() for line in text.splitlines() if line.strip()]


def to_srt(cues: Iterable[Cue]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, blank line between cues."""
    blocks = []
    for number, cue in enumerate((c for c in cues if _cue_lines(c.text)), start=1):
        timing = f"{_timestamp(cue.start_ms(), ',')} --> {_timestamp(cue.end_ms(), ',')}"
        blocks.append("\n".join([str(number), timing, *_cue_lines(cue.text)]))
    return "".join(block + "\n\n" for block in blocks)


def to_vtt(cues: Iterable[Cue]) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues with ``HH:MM:SS.mmm`` and escaped text."""
    blocks = ["WEBVTT"]
    for cue in cues:
        lines = [_vtt_escape(line) for line in _cue_lines(cue.text)]
        if lines:
            timing = f"{_timestamp(cue.start_ms(), '.')} --> {_timestamp(cue.end_ms(), '.')}"
            blocks.append("\n".join([timing, *lines]))
    return "\n\n".join(blocks) + "\n"


def _vtt_escape(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
