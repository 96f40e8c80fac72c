"""Perceptual fingerprints of videos (PDQ) and an exact index of them by Hamming distance.

What it protects: given any copy of a delivered video (re-encoded, scaled, brightened, flipped,
cropped, excerpted), ``FingerprintIndex.search`` names every indexed video that has a frame
within the radius of one of the copy's frames, and never misses one (full recall).

Hashes: PDQ (256 bits) of frames sampled ``SAMPLES_PER_SECOND`` times a second, computed on the
frame scaled to fit 512 x 512 (PDQ's own reference does the same). Frames whose PDQ quality is
below 50 (flat frames: fades, black) say nothing and are skipped. For indexing, each sampled
frame also gives the hash of its mirror image and of two centre crops (90% and 80%), because
plain PDQ does not survive a 10% crop; consecutive samples within ``DUPLICATE_RADIUS`` of one
already kept for the same variant are dropped (a static shot adds one row, not one a second).

PDQ is not shift-invariant: a camera pan of 2.5% of the width moves a hash by about 50 bits,
and so does an off-centre crop, so a copy's frames must be compared with indexed frames of the
same instant and framing. The index keeps 2 samples a second; a query (``query_hashes``) hashes
every frame of the copy, up to ``QUERY_MAX_FRAMES``, so some of them coincide in time with
indexed samples whatever the copy's start or frame rate. An off-centre crop is the watermark's
job: the fingerprint finds centred crops only.

Index: multi-index hashing (Norouzi et al.). A 256-bit hash is cut into 16 substrings of 16
bits; if two hashes are within distance r, then by the pigeonhole principle one of their 16
substrings differs in at most floor(r / 16) bits. Each substring has a table sorted by its
value, so a query probes, per substring, its value and every value within floor(r / 16) bits
(17 values for r = 31), collects the rows found and checks their full distance with popcounts.
The answer is exact: every row within r is found, none beyond it is returned. Rows added since
the tables were last built sit in a tail that is scanned in full until it is merged.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

HASH_BYTES = 32
SUBSTRINGS = 16
SUBSTRING_BITS = 256 // SUBSTRINGS
DEFAULT_RADIUS = 31
SAMPLES_PER_SECOND = 2.0
MIN_QUALITY = 50
DUPLICATE_RADIUS = 8
CENTRE_CROPS = (0.9, 0.8)
QUERY_MAX_FRAMES = 240
PDQ_MAX_SIDE = 512
# The tail is merged into the tables once it holds this many rows, or a tenth of the tables.
TAIL_MERGE_ROWS = 65_536


def pdq_hash(frame: np.ndarray) -> tuple[np.ndarray, int]:
    """PDQ hash of one RGB uint8 frame as 32 bytes (bit i of the hash is bit i % 8 of byte
    i // 8, PDQ's own order), and its quality (0..100)."""
    image = Image.fromarray(np.ascontiguousarray(frame))
    if max(image.size) > PDQ_MAX_SIDE:
        ratio = PDQ_MAX_SIDE / max(image.size)
        size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    bits, quality = pdqhash.compute(np.asarray(image))
    packed = np.packbits(np.asarray(bits, dtype=np.uint8), bitorder="little")
    return packed, int(quality)


def _variants(frame: np.ndarray) -> list[np.ndarray]:
    height, width = frame.shape[:2]
    variants = [frame, frame[:, ::-1]]
    for keep in CENTRE_CROPS:
        crop_h, crop_w = round(height * keep), round(width * keep)
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        variants.append(frame[top : top + crop_h, left : left + crop_w])
    return variants


def hamming(hashes: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Distances between rows of ``hashes`` (..., 32) and ``other`` (32,) or (..., 32), uint8
    bytes or the same bits as uint64 words (..., 4)."""
    a = hashes if hashes.dtype == np.uint64 else np.ascontiguousarray(hashes).view(np.uint64)
    b = other if other.dtype == np.uint64 else np.ascontiguousarray(other).view(np.uint64)
    counts = np.bitwise_count(np.bitwise_xor(a, b))
    # Four explicit adds: numpy's reduction over a length-4 axis costs several times more.
    return counts[..., 0].astype(np.int64) + counts[..., 1] + counts[..., 2] + counts[..., 3]


class VideoHasher:
    """Feeds on a video's frames one at a time and keeps the sampled PDQ hashes.

    With ``variants`` each sample also gives the mirrored and centre-cropped hashes (for
    indexing a delivered video); without, only the frame's own (for a query). Frames from
    ``max_frames`` on are ignored.
    """

    def __init__(
        self,
        fps: float,
        *,
        variants: bool,
        samples_per_second: float = SAMPLES_PER_SECOND,
        max_frames: int | None = None,
    ):
        if fps <= 0 or samples_per_second <= 0:
            raise ValueError(f"fps and samples_per_second must be positive (got {fps})")
        self._step = max(1.0, fps / samples_per_second)
        self._max_frames = max_frames
        self._variants = variants
        self._next_sample = 0.0
        self._index = 0
        self._kept: dict[int, list[np.ndarray]] = {}

    def add(self, frame: np.ndarray) -> None:
        index = self._index
        self._index += 1
        if index + 1e-9 < self._next_sample:
            return
        if self._max_frames is not None and index >= self._max_frames:
            return
        self._next_sample += self._step
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame, got {frame.shape} {frame.dtype}")
        images = _variants(frame) if self._variants else [frame]
        for variant, image in enumerate(images):
            packed, quality = pdq_hash(image)
            if quality < MIN_QUALITY:
                continue
            kept = self._kept.setdefault(variant, [])
            if kept and hamming(np.stack(kept), packed).min() <= DUPLICATE_RADIUS:
                continue
            kept.append(packed)

    def hashes(self) -> np.ndarray:
        rows = [row for variant in sorted(self._kept) for row in self._kept[variant]]
        if not rows:
            return np.zeros((0, HASH_BYTES), dtype=np.uint8)
        return np.stack(rows)


def video_hashes(
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    variants: bool = True,
    samples_per_second: float = SAMPLES_PER_SECOND,
    max_frames: int | None = None,
) -> np.ndarray:
    """PDQ hashes (n, 32) uint8 of a video's frames; see ``VideoHasher``."""
    hasher = VideoHasher(
        fps, variants=variants, samples_per_second=samples_per_second, max_frames=max_frames
    )
    for frame in frames:
        hasher.add(frame)
    return hasher.hashes()


def query_hashes(
    frames: Iterable[np.ndarray], fps: float, *, max_frames: int = QUERY_MAX_FRAMES
) -> np.ndarray:
    """PDQ hashes of every frame of a copy (up to ``max_frames``), for ``FingerprintIndex.search``."""
    return video_hashes(frames, fps, variants=False, samples_per_second=fps, max_frames=max_frames)


def _probe_masks(flips: int) -> np.ndarray:
    masks = [0]
    for count in range(1, flips + 1):
        for bits in itertools.combinations(range(SUBSTRING_BITS), count):
            masks.append(sum(1 << bit for bit in bits))
    return np.array(masks, dtype=np.int64)


def _substring_keys(hashes: np.ndarray) -> np.ndarray:
    """(n, 16) int64: substring j is bytes 2j and 2j+1 of the hash."""
    return np.ascontiguousarray(hashes, dtype=np.uint8).view("<u2").astype(np.int64)


class FingerprintIndex:
    """Video ids and their PDQ hashes, searchable by Hamming distance with full recall."""

    def __init__(self) -> None:
        self._hashes = np.zeros((0, HASH_BYTES), dtype=np.uint8)
        self._video_ids = np.zeros(0, dtype=np.int64)
        self._indexed = 0  # rows [0, indexed) are in the tables; the rest is the tail
        self._order = np.zeros((SUBSTRINGS, 0), dtype=np.int32)
        self._starts = np.zeros((SUBSTRINGS, (1 << SUBSTRING_BITS) + 1), dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self._video_ids) + sum(len(ids) for _, ids in self._pending)

    def add(self, video_id: int, hashes: np.ndarray) -> None:
        """Index ``hashes`` (n, 32) uint8 under ``video_id``."""
        hashes = np.asarray(hashes)
        if hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES or hashes.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 hashes of shape (n, {HASH_BYTES}), got {hashes.shape}"
            )
        self.add_many(np.full(len(hashes), video_id, dtype=np.int64), hashes)

    def add_many(self, video_ids: np.ndarray, hashes: np.ndarray) -> None:
        """Index many rows at once: ``video_ids`` (n,) and ``hashes`` (n, 32)."""
        if len(video_ids) != len(hashes):
            raise ValueError("video_ids and hashes differ in length")
        if len(hashes):
            self._pending.append(
                (
                    np.ascontiguousarray(hashes, dtype=np.uint8),
                    np.asarray(video_ids, dtype=np.int64),
                )
            )

    def _collect(self) -> None:
        if self._pending:
            self._hashes = np.concatenate([self._hashes, *(h for h, _ in self._pending)])
            self._video_ids = np.concatenate([self._video_ids, *(v for _, v in self._pending)])
            self._pending = []
        tail = len(self._video_ids) - self._indexed
        if tail >= TAIL_MERGE_ROWS or (tail * 10 > max(self._indexed, 1) and tail > 1024):
            self.build()

    def build(self) -> None:
        """Put every row in the substring tables (done on its own when the tail grows)."""
        if self._pending:
            self._pending, pending = [], self._pending
            self._hashes = np.concatenate([self._hashes, *(h for h, _ in pending)])
            self._video_ids = np.concatenate([self._video_ids, *(v for _, v in pending)])
        # uint16 keys, not int64: at 10 million rows the difference is a gigabyte.
        keys = np.ascontiguousarray(self._hashes).view("<u2")
        order = np.empty((SUBSTRINGS, len(keys)), dtype=np.int32)
        starts = np.empty((SUBSTRINGS, (1 << SUBSTRING_BITS) + 1), dtype=np.int64)
        for j in range(SUBSTRINGS):
            column = keys[:, j]
            order[j] = np.argsort(column, kind="stable")
            starts[j, 0] = 0
            np.cumsum(np.bincount(column, minlength=1 << SUBSTRING_BITS), out=starts[j, 1:])
        self._order, self._starts, self._indexed = order, starts, len(keys)

    def _candidates(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows whose 16-bit substrings are within radius // 16 bits of a query's somewhere, in
        one array grouped by query, and how many belong to each query.

        A row close to a query on several substrings comes more than once; that is harmless.
        """
        masks = _probe_masks(radius // SUBSTRINGS)
        keys = _substring_keys(queries)  # (q, 16)
        probes = (keys[:, :, None] ^ masks[None, None, :]).reshape(len(queries), -1)
        table = np.broadcast_to(
            np.repeat(np.arange(SUBSTRINGS), len(masks))[None, :], probes.shape
        ).ravel()
        flat_probes = table * self._starts.shape[1] + probes.ravel()
        starts = self._starts.ravel()
        begin = np.take(starts, flat_probes)
        lengths = np.take(starts, flat_probes + 1) - begin
        per_query = lengths.reshape(len(queries), -1).sum(axis=1)
        total = int(per_query.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64), per_query
        # Positions begin..end-1 of every probed bucket, gathered without a Python loop, as
        # flat indices into the (16, rows) order table.
        offsets = np.repeat(begin - (np.cumsum(lengths) - lengths) + table * self._indexed, lengths)
        rows = np.take(self._order.ravel(), np.arange(total) + offsets)
        return rows, per_query

    def search(self, hashes: np.ndarray, radius: int = DEFAULT_RADIUS) -> list[tuple[int, int]]:
        """Every video with a row within ``radius`` of one of ``hashes``: (video_id, distance),
        the smallest distance per video, nearest first (ties by video id)."""
        queries = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, HASH_BYTES)
        if not 0 <= radius < 256:
            raise ValueError(f"radius must be in [0, 256) (got {radius})")
        self._collect()
        total_rows = len(self._video_ids)
        if len(queries) == 0 or total_rows == 0:
            return []
        if radius // SUBSTRINGS > 2:
            # Too many probes to beat a scan: compare with every row.
            rows, per_query = np.zeros(0, dtype=np.int64), np.zeros(len(queries), dtype=np.int64)
            tail = np.arange(total_rows)
        else:
            rows, per_query = self._candidates(queries, radius)
            tail = np.arange(self._indexed, total_rows)
        # 64-bit words and np.take: several times faster than fancy-indexing 32-byte rows.
        stored = self._hashes.view(np.uint64)
        query_words = queries.view(np.uint64)
        found_rows, found_distances = [], []
        end = 0
        for number, count in enumerate(per_query.tolist()):
            begin, end = end, end + count
            candidates = np.concatenate([rows[begin:end], tail]) if len(tail) else rows[begin:end]
            distances = hamming(np.take(stored, candidates, axis=0), query_words[number])
            close = distances <= radius
            found_rows.append(candidates[close])
            found_distances.append(distances[close])
        video_ids = self._video_ids[np.concatenate(found_rows)]
        distances = np.concatenate(found_distances)
        if len(video_ids) == 0:
            return []
        # The smallest distance per video: sort by (video, distance), keep each video's first.
        order = np.lexsort((distances, video_ids))
        video_ids, distances = video_ids[order], distances[order]
        first = np.concatenate([[True], video_ids[1:] != video_ids[:-1]])
        matches = sorted(zip(distances[first].tolist(), video_ids[first].tolist(), strict=True))
        return [(video_id, distance) for distance, video_id in matches]

    def save(self, path: str | Path) -> None:
        """Write the rows to ``path`` (an .npz file); the tables are rebuilt on load."""
        self._collect()
        with open(path, "wb") as file:
            np.savez(file, hashes=self._hashes, video_ids=self._video_ids)

    @classmethod
    def load(cls, path: str | Path) -> FingerprintIndex:
        with np.load(path, allow_pickle=False) as data:
            hashes, video_ids = data["hashes"], data["video_ids"]
        if hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES or len(hashes) != len(video_ids):
            raise ValueError(f"{path} is not a fingerprint index")
        index = cls()
        index.add_many(video_ids, hashes)
        index.build()
        return index
