"""Line breaking and fitting for mixed Chinese and Latin text, measured with the real font.

Chinese (and Japanese, Korean, full-width forms) may break between any two characters; Latin
breaks at spaces, and a word wider than the line is split by character as a last resort.
Closing punctuation (，。！？」 and .,!?) never starts a line and opening punctuation （「“ never
ends one, the minimum of the line-breaking rules every Chinese typesetter follows.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from PIL import ImageFont

from generation.fonts import load_font

CLOSING = set("，。、．！？；：）」』】〉》〕”’…—·%‰,.!?;:)]}»")
OPENING = set("（「『【〈《〔“‘([{«")
ELLIPSIS = "…"


def is_wide(character: str) -> bool:
    """True for characters set on a square (CJK ideographs, kana, hangul, full-width forms)."""
    return unicodedata.east_asian_width(character) in ("W", "F")


def tokens(text: str) -> list[str]:
    """Unbreakable pieces, with single spaces as their own tokens where a break may fall."""
    pieces: list[str] = []
    word = ""
    for character in " ".join(text.split()):
        if character == " ":
            if word:
                pieces.append(word)
                word = ""
            pieces.append(" ")
        elif is_wide(character):
            if word:
                pieces.append(word)
                word = ""
            pieces.append(character)
        else:
            word += character
    if word:
        pieces.append(word)
    # Keep punctuation with its neighbour: closing marks join the piece before, opening marks
    # the piece after.
    joined: list[str] = []
    for piece in pieces:
        if (joined and piece != " " and piece[0] in CLOSING and joined[-1] != " ") or (
            joined and joined[-1] != " " and joined[-1][-1] in OPENING
        ):
            joined[-1] += piece
        else:
            joined.append(piece)
    return joined


def wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Greedy line breaking of ``text`` into lines no wider than ``max_width`` pixels."""
    lines: list[str] = []
    line = ""
    for piece in tokens(text):
        if piece == " ":
            if line:
                line += " "
            continue
        candidate = line + piece
        if font.getlength(candidate) <= max_width:
            line = candidate
            continue
        if line.strip():
            lines.append(line.rstrip())
            line = ""
        # A piece wider than a whole line (a long word or URL) is split by character.
        for character in piece:
            if line and font.getlength(line + character) > max_width:
                lines.append(line)
                line = ""
            line += character
    if line.strip():
        lines.append(line.rstrip())
    return lines


@dataclass(frozen=True)
class FittedText:
    """Lines and the font size that makes them fit."""

    lines: tuple[str, ...]
    size: int
    truncated: bool

    @property
    def font(self) -> ImageFont.FreeTypeFont:
        return load_font(self.size)


def fit(text: str, *, max_width: float, max_lines: int, size: int, min_size: int) -> FittedText:
    """The largest size from ``size`` down to ``min_size`` at which ``text`` fits ``max_lines``.

    At ``min_size`` text that still does not fit is cut at the end of the last line with an
    ellipsis, so nothing is ever drawn outside the box.
    """
    if max_lines < 1 or min_size < 1 or size < min_size:
        raise ValueError("fit needs max_lines >= 1 and 1 <= min_size <= size")
    candidate = size
    while True:
        font = load_font(candidate)
        lines = wrap(text, font, max_width)
        if len(lines) <= max_lines:
            return FittedText(tuple(lines), candidate, truncated=False)
        if candidate == min_size:
            break
        candidate = max(min_size, int(candidate * 0.92))
    kept = lines[:max_lines]
    last = kept[-1]
    while last and font.getlength(last + ELLIPSIS) > max_width:
        last = last[:-1]
    kept[-1] = last.rstrip() + ELLIPSIS
    return FittedText(tuple(kept), min_size, truncated=True)


def line_height(size: int) -> int:
    """Baseline-to-baseline distance for two lines of subtitles or a title at ``size``."""
    ascent, descent = load_font(size).getmetrics()
    return round((ascent + descent) * 1.05)
