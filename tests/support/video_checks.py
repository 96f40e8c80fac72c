"""Checks on delivered video pixels: decode a frame at a time, find the caption blocks in it.

``caption_blocks`` looks for what ``generation.postprocess.subtitles`` draws: white letters
(``TEXT_RGBA``) on a dark translucent plate (black at ``PLATE_ALPHA``), in the lower part of the
frame. Its thresholds come from that renderer, with slack for yuv420p and x264:

- a letter pixel is near white: every channel at least ``LETTER_MIN``;
- a plate pixel is at most what the plate leaves of a white picture, ``255 * (255 -
  PLATE_ALPHA) / 255``, plus ``CODEC_SLACK``;
- a caption pixel is a letter pixel with a plate pixel within ``REACH`` columns on its row (the
  edge of a stroke). A smooth picture (sky, a gradient, a soft blur) has no such edges;
- a row with at least ``MIN_ROW_STROKES`` strokes (runs of caption pixels) on one unbroken
  stretch of plate is a text row (the bright frame of a photo with a drop shadow has one stroke
  per side, with the photo between them); text rows closer than one subtitle line step
  (``text.line_height`` at the renderer's full size) are one block, the lines of one caption,
  and a block takes in the rows next to it with fewer strokes (descenders, the tops of a few
  tall letters), up to ``EDGE_ROWS`` of the font size.

Any caption drawn the same way (white on a dark band, as the preview storyboard once drew its
scene text) is found too: that is the point, a second caption must not hide (one dimmed under
another caption's plate is grey, not white, and only its rows outside that plate are seen).
What is not a caption: text on a card (an intro, title or outro card), where the dark pixels around the
letters are the card's own colour rather than the picture dimmed by a plate.
"""

from __future__ import annotations

import io
import math

import av
import numpy as np

from generation.postprocess.subtitles import PLATE_ALPHA, SIZE, TEXT_RGBA
from generation.postprocess.text import line_height

CODEC_SLACK = 25
LETTER_MIN = min(TEXT_RGBA[:3]) - 55
PLATE_MAX = round(255 * (255 - PLATE_ALPHA) / 255) + CODEC_SLACK
REACH = 4
MIN_ROW_STROKES = 2
# A block grows by up to this much of the font size over rows with fewer strokes (descenders).
EDGE_ROWS = 0.5
LOWER_PART = 0.5  # the rows searched: the lower half, where subtitles go (the AI label is top-left)
# What a plate leaves of the picture behind it, with room for x264: the dark pixels around a
# caption's letters are at most this much of the brightest of their rows away from the text.
DIMMED = (255 - PLATE_ALPHA) / 255 + 0.3


def decode_frame_at(mp4_bytes: bytes, t_s: float) -> np.ndarray:
    """The video frame shown at ``t_s`` seconds (RGB uint8, (height, width, 3)).

    That is the last frame whose presentation time is at or before ``t_s``; a time before the
    first frame or after the last one ends is a ValueError.
    """
    with av.open(io.BytesIO(mp4_bytes)) as container:
        stream = container.streams.video[0]
        shown = None
        for frame in container.decode(stream):
            if frame.time is None or frame.time > t_s + 1e-9:
                break
            shown = frame
        else:
            if shown is not None and t_s >= shown.time + 1 / float(stream.average_rate):
                raise ValueError(f"no frame is shown at {t_s} s: the video ends before it")
        if shown is None:
            raise ValueError(f"no frame is shown at {t_s} s: the video starts later")
        return shown.to_ndarray(format="rgb24")


def _letters_and_plate(frame_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of letter pixels at the edge of a dark plate, and of plate pixels beside letters."""
    _check_frame(frame_rgb)
    letter = frame_rgb.min(axis=2) >= LETTER_MIN
    plate = frame_rgb.max(axis=2) <= PLATE_MAX
    return letter & _within_reach(plate), plate & _within_reach(letter)


def _within_reach(mask: np.ndarray) -> np.ndarray:
    """Pixels with a pixel of ``mask`` at most ``REACH`` columns away on the same row."""
    near = np.zeros_like(mask)
    for shift in range(1, REACH + 1):
        near[:, shift:] |= mask[:, :-shift]
        near[:, :-shift] |= mask[:, shift:]
    return near


def caption_pixels(frame_rgb: np.ndarray) -> np.ndarray:
    """A boolean mask of letter pixels that sit at the edge of a dark plate on their row."""
    return _letters_and_plate(frame_rgb)[0]


def caption_blocks(frame_rgb: np.ndarray) -> list[tuple[int, int]]:
    """Row ranges ``[start, end)`` of the caption blocks in the lower part of ``frame_rgb``.

    One block per caption however many lines it has; top to bottom. Text on a card (its dark
    pixels are the card's own colour, not a dimmed picture) is not a caption and is not
    returned.
    """
    height, width = frame_rgb.shape[:2]
    size = max(8, round(SIZE * min(width, height)))
    top = math.floor(height * (1 - LOWER_PART))
    letters, plate = _letters_and_plate(frame_rgb)
    letters[:top] = False
    strokes = _strokes_on_one_plate(letters, plate)
    join_gap = line_height(size)
    blocks: list[tuple[int, int]] = []
    for row in np.flatnonzero(strokes >= MIN_ROW_STROKES):
        if blocks and row - blocks[-1][1] < join_gap:
            blocks[-1] = (blocks[-1][0], int(row) + 1)
        else:
            blocks.append((int(row), int(row) + 1))
    # Rows of a lone descender or accent (fewer strokes) belong to the line next to them.
    reach = math.ceil(size * EDGE_ROWS)
    grown: list[tuple[int, int]] = []
    for start, end in blocks:
        lowest_start = max(grown[-1][1] if grown else top, start - reach)
        while start > lowest_start and strokes[start - 1]:
            start -= 1
        highest_end = min(height, end + reach)
        while end < highest_end and strokes[end]:
            end += 1
        grown.append((start, end))
    return [block for block in grown if _over_a_dimmed_picture(frame_rgb, letters, plate, block)]


def _strokes_on_one_plate(letters: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """Per row, the most letter strokes found on one unbroken stretch of plate and letters.

    A caption's strokes on a row are joined by its plate (and the blur at their edges); two
    bright edges of a photo far apart are not, whatever lies between them.
    """
    on_plate = letters | plate | _within_reach(letters)
    counts = np.zeros(letters.shape[0], np.int64)
    for row in np.flatnonzero(letters.any(axis=1)):
        stretch = np.cumsum(np.diff(on_plate[row], prepend=False) & on_plate[row])
        stroke_starts = np.diff(letters[row], prepend=False) & letters[row]
        counts[row] = np.bincount(stretch[stroke_starts]).max()
    return counts


def _over_a_dimmed_picture(
    frame_rgb: np.ndarray, letters: np.ndarray, plate: np.ndarray, block: tuple[int, int]
) -> bool:
    """True when the dark pixels around the block's letters are the picture dimmed by a plate:
    darker than ``DIMMED`` times the brightest of the same rows away from the text. On a card
    they are the card's own colour, as bright as the rest of the row."""
    start, end = block
    rows = frame_rgb[start:end].astype(np.float32).mean(axis=2)
    columns = np.flatnonzero(letters[start:end].any(axis=0))
    height, width = frame_rgb.shape[:2]
    keep_clear = max(4, round(SIZE * min(width, height)))  # wider than the plate's padding
    left, right = int(columns[0]) - keep_clear, int(columns[-1]) + 1 + keep_clear
    away = np.concatenate([rows[:, : max(0, left)].ravel(), rows[:, min(width, right) :].ravel()])
    if away.size == 0:  # text from edge to edge: nothing to compare with
        return True
    behind = float(np.median(rows[plate[start:end]]))
    return behind <= DIMMED * float(np.percentile(away, 95))


def _check_frame(frame_rgb: np.ndarray) -> None:
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
        raise ValueError(f"a frame is RGB uint8 (height, width, 3), got {frame_rgb.shape}")
