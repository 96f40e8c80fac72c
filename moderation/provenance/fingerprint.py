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
same instant and framing. The index keeps one sample a second, so a 5-second video adds at
most 20 rows (fewer where a shot holds still; two samples a second doubled the index, made a
query 1.7 times slower, and found no copy in the attack tests that one a second misses); a
query (``query_hashes``) hashes every frame of the copy, up to ``QUERY_MAX_FRAMES``, so one of
them coincides in time with each indexed sample the copy spans, whatever its start or frame
rate. An off-centre crop is the watermark's job: the fingerprint finds centred crops only.

Index: multi-index hashing (Norouzi et al.). A 256-bit hash is cut into m substrings; if two
hashes are within distance r then, for any radii r_j that sum (each plus one) to r + 1, they
differ in at most r_j bits of some substring j (pigeonhole). Each substring has a table of row
numbers sorted by its value and the offset of every value's bucket, so a query probes, per
substring, every value within r_j bits of its own, gathers the rows found and checks their full
distance with popcounts, for all of its hashes at once. The answer is exact: every row within r
is found, none beyond it is returned. Substrings of about log2(rows) bits keep the buckets
small: 16 of 16 bits, probed at 1 bit, up to about half a million rows; at 20 million (a
million videos) 11 of 23-24 bits, ten probed at 2 bits and one at 1, visit about 2,900 buckets
and 5,800 candidate rows per query hash where 16-bit substrings would check 83,000. Rows added
since the last build sit in a tail that is scanned in full until it is merged into the tables
(an insertion into each, not a new sort); the layout is chosen again when the rows double.
Searches and additions take a lock: a search may merge the tail, and the live index is shared
by the threads of a process.

Snapshots: ``write_snapshot`` writes the built tables as .npy files and ``open_snapshot`` maps
them read-only, so every process of a host shares one copy in the page cache (2 GB at a million
videos) and opening one takes milliseconds where building takes tens of seconds. A mapped index
is frozen; what was delivered after it goes in a small index beside it (``provenance_service``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image

HASH_BYTES = 32
HASH_BITS = 256
DEFAULT_RADIUS = 31
SAMPLES_PER_SECOND = 1.0
MIN_QUALITY = 50
DUPLICATE_RADIUS = 8
CENTRE_CROPS = (0.9, 0.8)
QUERY_MAX_FRAMES = 240
PDQ_MAX_SIDE = 512
# The tail is merged into the tables once it holds this many rows, or a tenth of the tables:
# every query compares each of its hashes with every tail row.
TAIL_MERGE_ROWS = 8192
# Substring tables address their buckets directly: 2**bits offsets of 4 bytes each.
MAX_SUBSTRING_BITS = 24
STARTS_PER_ROW = 20
PROBE_BATCH = 32  # query hashes probed together
SNAPSHOT_FORMAT = 1


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


def _layout(substrings: int) -> tuple[tuple[int, int], ...]:
    """(first bit, bit count) of each substring: the 256 bits cut into nearly equal runs."""
    size, longer = divmod(HASH_BITS, substrings)
    counts = [size + 1] * longer + [size] * (substrings - longer)
    firsts = itertools.accumulate(counts[:-1], initial=0)
    return tuple(zip(firsts, counts, strict=True))


@cache
def _ball(bits: int, radius: int) -> int:
    """How many values lie within ``radius`` bits of one value of ``bits`` bits."""
    return sum(math.comb(bits, flips) for flips in range(radius + 1))


def _probe_work(bits: int, radius: int, rows: int) -> float:
    """Expected bucket lookups plus candidate rows for probing one substring table."""
    if radius < 0:
        return 0.0
    return _ball(bits, radius) * (1.0 + rows / 2**bits)


def _probe_radii(layout: tuple[tuple[int, int], ...], radius: int, rows: int) -> list[int]:
    """How many bits each substring's probes flip (-1: the table is not probed).

    The radii plus one sum to ``radius + 1``: a row that differs from the query in more than
    r_j bits of every probed substring j differs in at least radius + 1 bits in all, so every
    row within ``radius`` is found (pigeonhole). The bits go one at a time to the table where
    they add the least expected work.
    """
    radii = [-1] * len(layout)
    for _ in range(radius + 1):
        extra = [
            _probe_work(bits, radii[j] + 1, rows) - _probe_work(bits, radii[j], rows)
            for j, (_, bits) in enumerate(layout)
        ]
        radii[extra.index(min(extra))] += 1
    return radii


def _expected_work(layout: tuple[tuple[int, int], ...], radius: int, rows: int) -> float:
    radii = _probe_radii(layout, radius, rows)
    return sum(_probe_work(bits, r, rows) for (_, bits), r in zip(layout, radii, strict=True))


def _choose_layout(rows: int) -> tuple[tuple[int, int], ...]:
    """The substring layout with the least expected work per query hash at ``DEFAULT_RADIUS``.

    Substrings of about log2(rows) bits keep buckets small: 16 of 16 bits up to a few hundred
    thousand rows, 12 of 21-22 bits at a few million, 11 of 23-24 bits from about ten million.
    Bucket offsets take 4 bytes per possible value, so a layout may have at most
    ``STARTS_PER_ROW`` of them per row (at 20 million rows, 470 MB of them).
    """
    allowed = max(1 << 20, STARTS_PER_ROW * rows)
    best: tuple[float, tuple[tuple[int, int], ...]] | None = None
    for substrings in range(math.ceil(HASH_BITS / MAX_SUBSTRING_BITS), 17):
        layout = _layout(substrings)
        if sum(1 << bits for _, bits in layout) > allowed:
            continue
        work = _expected_work(layout, DEFAULT_RADIUS, rows)
        if best is None or work < best[0]:
            best = (work, layout)
    assert best is not None  # 16 substrings of 16 bits always fit
    return best[1]


def _substring_values(words: np.ndarray, first: int, bits: int) -> np.ndarray:
    """Bits first..first+bits-1 of each hash (rows of four little-endian 64-bit words)."""
    word, shift = divmod(first, 64)
    values = words[:, word] >> np.uint64(shift)
    if shift + bits > 64:
        values |= words[:, word + 1] << np.uint64(64 - shift)
    return (values & np.uint64((1 << bits) - 1)).astype(np.uint32)


@cache
def _flip_masks(bits: int, radius: int) -> np.ndarray:
    """Every value of ``bits`` bits with at most ``radius`` bits set, 0 first."""
    masks = [0]
    for count in range(1, radius + 1):
        for flipped in itertools.combinations(range(bits), count):
            masks.append(sum(1 << bit for bit in flipped))
    result = np.array(masks, dtype=np.int64)
    result.flags.writeable = False
    return result


def _words(hashes: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 hashes as (n, 4) little-endian 64-bit words (the same bits)."""
    return np.ascontiguousarray(hashes, dtype=np.uint8).view("<u8")


class FingerprintIndex:
    """Video ids and their PDQ hashes, searchable by Hamming distance with full recall."""

    def __init__(self) -> None:
        # Rows live in buffers with room to grow, so adding a video does not copy them all.
        self._word_buffer = np.zeros((0, HASH_BYTES // 8), dtype="<u8")
        self._id_buffer = np.zeros(0, dtype=np.int64)
        self._words = self._word_buffer  # the rows held: views of the buffers
        self._video_ids = self._id_buffer
        self._indexed = 0  # rows [0, indexed) are in the tables; the rest is the tail
        self._built = 0  # rows at the last full build: the layout was chosen for them
        self._layout: tuple[tuple[int, int], ...] = ()
        # Table j holds the row numbers sorted by substring j, at [j * indexed, (j+1) * indexed)
        # of one flat array, so that one np.take serves every probe of every table.
        self._order = np.zeros(0, dtype=np.uint32)
        # Table j's bucket for value v is _order[starts[bases[j] + v] : starts[bases[j] + v + 1]].
        self._starts = np.zeros(0, dtype=np.uint32)
        self._bases: list[int] = [0]
        self._plans: dict[int, list[tuple[int, int, np.ndarray, int]] | None] = {}
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._lock = threading.RLock()
        self.frozen = False  # mapped from a snapshot: read-only

    def __len__(self) -> int:
        return len(self._video_ids) + sum(len(ids) for _, ids in self._pending)

    @property
    def nbytes(self) -> int:
        """Memory held by the rows (with their room to grow) and the tables."""
        arrays = (self._word_buffer, self._id_buffer, self._order, self._starts)
        return sum(array.nbytes for array in arrays) + sum(
            hashes.nbytes + ids.nbytes for hashes, ids in self._pending
        )

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
        if self.frozen:
            raise ValueError("a snapshot is read-only: add to an index beside it")
        if len(hashes):
            rows = (_words(hashes), np.asarray(video_ids, dtype=np.int64))
            with self._lock:
                self._pending.append(rows)

    def _absorb_pending(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        rows = len(self._video_ids)
        needed = rows + sum(len(ids) for _, ids in pending)
        if needed > len(self._id_buffer):
            capacity = max(needed, len(self._id_buffer) * 5 // 4)
            word_buffer = np.empty((capacity, HASH_BYTES // 8), dtype="<u8")
            id_buffer = np.empty(capacity, dtype=np.int64)
            word_buffer[:rows], id_buffer[:rows] = self._words, self._video_ids
            self._word_buffer, self._id_buffer = word_buffer, id_buffer
        for words, ids in pending:
            self._word_buffer[rows : rows + len(ids)] = words
            self._id_buffer[rows : rows + len(ids)] = ids
            rows += len(ids)
        self._words, self._video_ids = self._word_buffer[:rows], self._id_buffer[:rows]

    def _collect(self) -> None:
        self._absorb_pending()
        tail = len(self._video_ids) - self._indexed
        if tail >= TAIL_MERGE_ROWS or (tail * 10 > self._indexed and tail > 1024):
            if self._indexed and len(self._video_ids) < 2 * self._built:
                self._merge_tail()
            else:
                self._build()

    def build(self) -> None:
        """Put every row in the substring tables, choosing their layout for the current size
        (done on its own once the rows have doubled since the last build)."""
        with self._lock:
            self._build()

    def _build(self) -> None:
        self._absorb_pending()
        rows = len(self._video_ids)
        if rows >= 2**32:
            raise ValueError("the index holds at most 2**32 - 1 rows")
        layout = _choose_layout(rows)
        order = np.empty(len(layout) * rows, dtype=np.uint32)
        bases = list(itertools.accumulate(((1 << bits) + 1 for _, bits in layout), initial=0))
        starts = np.empty(bases[-1], dtype=np.uint32 if len(order) < 2**32 else np.int64)
        numbers = np.arange(rows, dtype=np.uint64)
        for j, (first, bits) in enumerate(layout):
            values = _substring_values(self._words, first, bits)
            # Sorting (value << 32 | row) as one uint64 is several times faster than argsort.
            packed = (values.astype(np.uint64) << np.uint64(32)) | numbers
            packed.sort()
            order[j * rows : (j + 1) * rows] = packed  # the low 32 bits: the row
            del packed
            block = starts[bases[j] : bases[j + 1]]
            block[0] = 0
            np.cumsum(np.bincount(values, minlength=1 << bits).astype(block.dtype), out=block[1:])
            block += j * rows
        self._order, self._starts, self._bases, self._layout = order, starts, bases, layout
        self._indexed = self._built = rows
        self._plans = {}

    def _merge_tail(self) -> None:
        """Insert the tail's rows into the tables (same layout): one pass over each table
        instead of sorting it again."""
        old, rows = self._indexed, len(self._video_ids)
        tail = self._words[old:]
        order = np.empty(len(self._layout) * rows, dtype=np.uint32)
        starts = self._starts.astype(np.uint32 if len(order) < 2**32 else np.int64)
        for j, (first, bits) in enumerate(self._layout):
            values = _substring_values(tail, first, bits)
            by_value = np.argsort(values, kind="stable")
            block = starts[self._bases[j] : self._bases[j + 1]]
            # After the last old row of each value, so the table stays sorted by value.
            at = block[values[by_value].astype(np.int64) + 1].astype(np.int64) - j * old
            order[j * rows : (j + 1) * rows] = np.insert(
                self._order[j * old : (j + 1) * old], at, (by_value + old).astype(np.uint32)
            )
            # Each offset moves by the tail rows of smaller values and the longer tables before.
            moved = np.zeros(len(block), dtype=block.dtype)
            np.add.at(moved, values.astype(np.int64) + 1, 1)
            np.cumsum(moved, out=moved)
            moved += j * (rows - old)
            block += moved
        self._order, self._starts, self._indexed = order, starts, rows
        self._plans = {}

    def _plan(self, radius: int) -> list[tuple[int, int, np.ndarray, int]] | None:
        """Per probed table: its substring, the masks its probes flip and where its offsets
        begin; None where probing would cost more than scanning every row."""
        if radius not in self._plans:
            rows = self._indexed
            plan = None
            if rows and _expected_work(self._layout, radius, rows) < rows:
                radii = _probe_radii(self._layout, radius, rows)
                plan = [
                    (first, bits, _flip_masks(bits, flips), base)
                    for (first, bits), flips, base in zip(
                        self._layout, radii, self._bases[:-1], strict=True
                    )
                    if flips >= 0
                ]
            self._plans[radius] = plan
        return self._plans[radius]

    def _probe(
        self, queries: np.ndarray, plan: list[tuple[int, int, np.ndarray, int]], radius: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows within ``radius`` of a query found through the tables, and their distances
        (a row close to a query on several substrings may come more than once)."""
        probes = np.concatenate(
            [
                (_substring_values(queries, first, bits).astype(np.int64)[:, None] ^ masks) + base
                for first, bits, masks, base in plan
            ],
            axis=1,
        )
        per_query = probes.shape[1]
        probes = probes.ravel()  # grouped by query
        begin = np.take(self._starts, probes).astype(np.int64)
        lengths = np.take(self._starts, probes + 1).astype(np.int64) - begin
        ends = np.cumsum(lengths)
        total = int(ends[-1])
        if total == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        # Positions begin..end-1 of every probed bucket, gathered without a Python loop.
        positions = np.repeat(begin - (ends - lengths), lengths) + np.arange(total)
        rows = np.take(self._order, positions)
        candidates_per_query = np.diff(ends[per_query - 1 :: per_query], prepend=0)
        query_of = np.repeat(np.arange(len(queries)), candidates_per_query)
        distances = hamming(np.take(self._words, rows, axis=0), np.take(queries, query_of, axis=0))
        close = distances <= radius
        return rows[close].astype(np.int64), distances[close]

    def _scan(self, queries: np.ndarray, begin: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows from ``begin`` on within ``radius`` of a query, compared one by one."""
        stored = self._words[begin:]
        found_rows, found_distances = [], []
        for query in queries:
            distances = hamming(stored, query)
            close = np.flatnonzero(distances <= radius)
            found_rows.append(close + begin)
            found_distances.append(distances[close])
        return np.concatenate(found_rows), np.concatenate(found_distances)

    def search(self, hashes: np.ndarray, radius: int = DEFAULT_RADIUS) -> list[tuple[int, int]]:
        """Every video with a row within ``radius`` of one of ``hashes``: (video_id, distance),
        the smallest distance per video, nearest first (ties by video id)."""
        queries = _words(np.asarray(hashes, dtype=np.uint8).reshape(-1, HASH_BYTES))
        if not 0 <= radius < HASH_BITS:
            raise ValueError(f"radius must be in [0, {HASH_BITS}) (got {radius})")
        with self._lock:
            return self._search(queries, radius)

    def _search(self, queries: np.ndarray, radius: int) -> list[tuple[int, int]]:
        self._collect()
        total_rows = len(self._video_ids)
        if len(queries) == 0 or total_rows == 0:
            return []
        plan = self._plan(radius)
        if plan is None:
            found = [self._scan(queries, 0, radius)]
        else:
            # A batch at a time: a 100-hash query's temporaries (tens of MB) came from fresh
            # pages on every search, a third of its time spent in page faults.
            found = [
                self._probe(queries[begin : begin + PROBE_BATCH], plan, radius)
                for begin in range(0, len(queries), PROBE_BATCH)
            ]
            if self._indexed < total_rows:
                found.append(self._scan(queries, self._indexed, radius))
        rows = np.concatenate([batch_rows for batch_rows, _ in found])
        distances = np.concatenate([batch_distances for _, batch_distances in found])
        if len(rows) == 0:
            return []
        video_ids = self._video_ids[rows]
        # The smallest distance per video: sort by (video, distance), keep each video's first.
        order = np.lexsort((distances, video_ids))
        video_ids, distances = video_ids[order], distances[order]
        first = np.concatenate([[True], video_ids[1:] != video_ids[:-1]])
        matches = sorted(zip(distances[first].tolist(), video_ids[first].tolist(), strict=True))
        return [(video_id, distance) for distance, video_id in matches]

    def save(self, path: str | Path) -> None:
        """Write the rows to ``path`` (an .npz file); the tables are rebuilt on load."""
        with self._lock:
            self._absorb_pending()
            hashes, video_ids = self._words.view(np.uint8), self._video_ids
        with open(path, "wb") as file:
            np.savez(file, hashes=hashes, video_ids=video_ids)

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

    def write_snapshot(self, directory: str | Path, *, meta: dict | None = None) -> Path:
        """Write the built tables into a new folder under ``directory`` and make it the one
        ``open_snapshot`` finds (``current``, a symbolic link replaced atomically). Older
        snapshots are removed: processes that still map them keep reading them until they
        open the new one (POSIX keeps an open file's data until it is closed). Returns the
        new folder."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._pending or self._indexed < len(self._video_ids) or not self._layout:
                self._build()
            arrays = {
                "words": self._words,
                "video_ids": self._video_ids,
                "order": self._order,
                "starts": self._starts,
            }
            header = {
                "format": SNAPSHOT_FORMAT,
                "rows": len(self._video_ids),
                "layout": [list(substring) for substring in self._layout],
                "bases": list(self._bases),
                "meta": meta or {},
            }
            folder = directory / f"snapshot-{time.time_ns()}-{os.getpid()}"
            folder.mkdir()
            for name, array in arrays.items():
                np.save(folder / f"{name}.npy", np.ascontiguousarray(array))
            (folder / "header.json").write_text(json.dumps(header))
        link = directory / f"current.{os.getpid()}.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(folder.name)
        os.replace(link, directory / "current")
        for old in directory.glob("snapshot-*"):
            if old.name != folder.name:
                shutil.rmtree(old, ignore_errors=True)
        return folder

    @staticmethod
    def current_snapshot(directory: str | Path) -> Path | None:
        """The folder of the current snapshot under ``directory``, if there is one."""
        link = Path(directory) / "current"
        try:
            folder = link.parent / os.readlink(link)
        except OSError:
            return None
        return folder if (folder / "header.json").exists() else None

    @classmethod
    def open_snapshot(cls, folder: str | Path) -> tuple[FingerprintIndex, dict]:
        """Map a snapshot's tables read-only; returns the frozen index and its ``meta``."""
        folder = Path(folder)
        header = json.loads((folder / "header.json").read_text())
        if header.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"{folder} is not a snapshot of format {SNAPSHOT_FORMAT}")
        index = cls()
        arrays = {
            name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            for name in ("words", "video_ids", "order", "starts")
        }
        rows = header["rows"]
        if arrays["words"].shape != (rows, HASH_BYTES // 8) or len(arrays["video_ids"]) != rows:
            raise ValueError(f"{folder} is damaged: its arrays do not match its header")
        index._word_buffer = index._words = arrays["words"]
        index._id_buffer = index._video_ids = arrays["video_ids"]
        index._order, index._starts = arrays["order"], arrays["starts"]
        index._layout = tuple(tuple(substring) for substring in header["layout"])
        index._bases = header["bases"]
        index._indexed = index._built = rows
        index.frozen = True
        return index, header["meta"]
