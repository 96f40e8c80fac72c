"""Tracing a copy of a video back to the jobs that may have made it.

What it protects: one pass over the copy's frames gives both answers an operator needs, the
watermark (which names exactly one job, or nothing) and the fingerprint matches (every indexed
video that looks like it, with distances), so a copy whose watermark did not survive can still
be traced, and one that does not look like anything we made says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from moderation.provenance.fingerprint import (
    DEFAULT_RADIUS,
    QUERY_MAX_FRAMES,
    VideoHasher,
)
from moderation.provenance.watermark import DEFAULT_MAX_FRAMES, Detection, Extractor


class Searchable(Protocol):
    """A fingerprint index (``FingerprintIndex``, or a snapshot with what came after it)."""

    def search(self, hashes: np.ndarray, radius: int) -> list[tuple[int, int]]: ...


@dataclass(frozen=True)
class TraceResult:
    """``watermark_payload`` is the decoded job payload or None; ``matches`` are
    (video_id, distance), nearest first; ``detection`` and ``query_hashes`` are the evidence."""

    watermark_payload: int | None
    matches: list[tuple[int, int]]
    detection: Detection
    query_hashes: np.ndarray


def trace(
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    key: bytes,
    index: Searchable,
    radius: int = DEFAULT_RADIUS,
    max_watermark_frames: int = DEFAULT_MAX_FRAMES,
) -> TraceResult:
    """Decode the watermark and search the fingerprint index for RGB uint8 frames of a copy."""
    extractor = Extractor(key=key, max_frames=max_watermark_frames)
    # Every frame, as fingerprint.query_hashes does: PDQ needs the same instants.
    hasher = VideoHasher(fps, variants=False, samples_per_second=fps, max_frames=QUERY_MAX_FRAMES)
    for frame in frames:
        extractor.add(frame)
        hasher.add(frame)
    detection = extractor.result()
    query_hashes = hasher.hashes()
    matches = index.search(query_hashes, radius=radius) if len(query_hashes) else []
    return TraceResult(detection.payload, matches, detection, query_hashes)
