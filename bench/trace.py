"""Fingerprint index: query time at 10k, 100k and 1M delivered videos vs an exact scan.

The index holds rows (256-bit PDQ hashes), and a delivered video adds several: one per sample
and variant (the frame, its mirror image, two centre crops), near-duplicates dropped. How many
is measured first, in the same run, by the production hasher on synthetic 5-second clips
(``tests/moderation/clips.py``: a still camera with moving objects, a slow pan and a faster one;
``--samples-per-second`` measures another sampling rate), and every synthetic video of the
index gets their mean (``rows_per_video``): a random base hash per video, each row the base with
about 32 bits flipped, as samples of one video differ.

A query is a copy's hashes (``--query-hashes``, 10 by default): each a random row of a random
indexed video with 0 to 60 bits flipped, so about half lie within the radius (frames at a
sample's instant, attacked) and half just outside it (frames between samples); for one query
in ten, random hashes (a copy of nothing we made). A real trace sends every distinct frame of
the copy, often many more than 10 hashes: the same clips' count is printed, and at the largest
size 100 queries of their median size are timed too (checked against faiss's exact scan where
it is installed, the numpy scan being slow at that size).

The reference, measured in the same run on the same queries, is an exact numpy scan (XOR and
popcount over every row, 64 bits at a time, in cache-sized chunks); faiss-cpu's
IndexBinaryFlat range search is shown beside it where faiss is installed. Recall is the share
of the exact scan's (video, smallest distance) pairs that the index returned; it must also
return nothing else. Both are asserted: a wrong answer is a bug, not a slow run.

The timed index is the one traces use: the built tables written as a snapshot and mapped
read-only (``FingerprintIndex.open_snapshot``, as ``provenance_service`` does); the same tables
in the memory of the process that built them are timed beside it, with the same answers. Each
index first answers 20 untimed queries, as a long-running process already has.

    .venv/bin/python bench/trace.py [--videos 10000,100000,1000000] [--queries 1000]

Prints figures and never asserts a time; the last line is the headline.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from moderation.provenance.fingerprint import (
    DEFAULT_RADIUS,
    SAMPLES_PER_SECOND,
    TAIL_MERGE_ROWS,
    FingerprintIndex,
    hamming,
    query_hashes,
    video_hashes,
)

CLIP_FPS = 24
CLIP_SECONDS = 5
CLIP_PANS = (0.0, 1.0, 3.0)  # pixels a frame: a static camera, a slow pan, a faster one
EXACT_QUERIES = {10_000: 100, 100_000: 30, 1_000_000: 8}
SCAN_CHUNK = 32_768
WARM_UP_QUERIES = 20


def _measure_clips(samples_per_second: float) -> tuple[list[int], list[int]]:
    """Rows the production hasher keeps for each clip, and its copy's query hashes."""
    from tests.moderation import clips

    rows, queries = [], []
    for seed, pan in enumerate(CLIP_PANS):
        frames = clips.make_clip(
            300 + seed, height=360, width=640, frames=CLIP_SECONDS * CLIP_FPS, pan_px=pan
        )
        rows.append(len(video_hashes(frames, CLIP_FPS, samples_per_second=samples_per_second)))
        queries.append(len(query_hashes(frames, CLIP_FPS)))
    return rows, queries


def _sparse_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random 64-bit words with each bit set with probability 1/8."""
    mask = rng.integers(0, 2**64, shape, dtype=np.uint64)
    mask &= rng.integers(0, 2**64, shape, dtype=np.uint64)
    mask &= rng.integers(0, 2**64, shape, dtype=np.uint64)
    return mask


def _synthetic_index(
    videos: int, rows_per_video: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Video ids (n,) and hashes as words (n, 4): each row a video's base, 1/8 of bits flipped."""
    bases = rng.integers(0, 2**64, (videos, 4), dtype=np.uint64)
    words = np.repeat(bases, rows_per_video, axis=0)
    del bases
    for start in range(0, len(words), 1 << 20):  # bounded temporaries whatever the size
        chunk = words[start : start + (1 << 20)]
        chunk ^= _sparse_mask(chunk.shape, rng)
    video_ids = np.repeat(np.arange(videos, dtype=np.int64), rows_per_video)
    return video_ids, words


def _flip_bits(words: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each row of ``words`` (n, 4) with ``counts[i]`` distinct random bits flipped."""
    bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")
    chosen = np.argsort(rng.random(bits.shape), axis=1) < counts[:, None]
    return np.packbits(bits ^ chosen, axis=1, bitorder="little").view(np.uint64)


def _queries(
    words: np.ndarray, rows_per_video: int, count: int, size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    videos = len(words) // rows_per_video
    queries = []
    for number in range(count):
        if number % 10 == 9:
            queries.append(rng.integers(0, 2**64, (size, 4), dtype=np.uint64))
            continue
        video = int(rng.integers(0, videos))
        rows = video * rows_per_video + rng.integers(0, rows_per_video, size)
        queries.append(_flip_bits(words[rows], rng.integers(0, 61, size), rng))
    return queries


def _exact(words: np.ndarray, video_ids: np.ndarray, query: np.ndarray) -> list[tuple[int, int]]:
    """(video, smallest distance) of every row within the radius: a plain numpy scan."""
    best: dict[int, int] = {}
    for start in range(0, len(words), SCAN_CHUNK):
        chunk = words[start : start + SCAN_CHUNK]
        for row in query:
            distances = hamming(chunk, row)
            for index in np.flatnonzero(distances <= DEFAULT_RADIUS):
                video = int(video_ids[start + index])
                best[video] = min(best.get(video, 256), int(distances[index]))
    return sorted(best.items(), key=lambda item: (item[1], item[0]))


def _time_queries(
    index: FingerprintIndex, queries: list[np.ndarray]
) -> tuple[list[float], list[float], list[list[tuple[int, int]]]]:
    # A server process answers traces all day: the first searches of a process pay once for
    # the plan's masks and for the allocator's first pages (glibc maps large temporaries
    # fresh until its threshold has grown), so they are run first and not timed.
    for query in queries[:WARM_UP_QUERIES]:
        index.search(query.view(np.uint8))
    wall, cpu, answers = [], [], []
    for query in queries:
        hashes = query.view(np.uint8)
        start, start_cpu = time.perf_counter(), time.thread_time()
        answers.append(index.search(hashes))
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return wall, cpu, answers


def _exact_answers(
    words: np.ndarray, video_ids: np.ndarray, queries: list[np.ndarray]
) -> tuple[list[list[tuple[int, int]]], list[float]]:
    answers, timings = [], []
    for query in queries:
        start = time.perf_counter()
        answers.append(_exact(words, video_ids, query))
        timings.append(time.perf_counter() - start)
    return answers, timings


def _faiss_answers(
    faiss, words: np.ndarray, video_ids: np.ndarray, queries: list[np.ndarray]
) -> tuple[list[list[tuple[int, int]]], list[float]]:
    """faiss-cpu IndexBinaryFlat range search: another exact scan, in C++."""
    flat = faiss.IndexBinaryFlat(256)
    flat.add(words.view(np.uint8))
    answers, timings = [], []
    for query in queries:
        start = time.perf_counter()
        _, distances, rows = flat.range_search(query.view(np.uint8), DEFAULT_RADIUS + 1)
        timings.append(time.perf_counter() - start)
        best: dict[int, int] = {}
        for row, distance in zip(video_ids[rows].tolist(), distances.tolist(), strict=True):
            best[row] = min(best.get(row, 256), distance)
        answers.append(sorted(best.items(), key=lambda item: (item[1], item[0])))
    return answers, timings


def _recall(
    truths: list[list[tuple[int, int]]], answers: list[list[tuple[int, int]]]
) -> tuple[int, int, int]:
    """found / expected / extra (video, distance) pairs."""
    found = expected = extra = 0
    for truth, answer in zip(truths, answers, strict=False):
        expected += len(truth)
        found += len(set(truth) & set(answer))
        extra += len(set(answer) - set(truth))
    return found, expected, extra


def _label(videos: int) -> str:
    if videos % 1_000_000 == 0:
        return f"{videos // 1_000_000}m"
    if videos % 1000 == 0:
        return f"{videos // 1000}k"
    return str(videos)


def _ms(values: list[float], percentile: float) -> float:
    return float(np.percentile(values, percentile)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--query-hashes", type=int, default=10)
    parser.add_argument(
        "--rows-per-video", type=int, default=0, help="0: measure on synthetic clips"
    )
    parser.add_argument("--samples-per-second", type=float, default=SAMPLES_PER_SECOND)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(size) for size in args.videos.split(",")]
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:
        faiss = None
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}, python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    start = time.perf_counter()
    clip_rows, clip_queries = _measure_clips(args.samples_per_second)
    rows_per_video = args.rows_per_video or round(statistics.mean(clip_rows))
    trace_hashes = round(statistics.median(clip_queries))
    print(
        f"{CLIP_SECONDS}-s 640x360 clips (pans {', '.join(f'{pan:g}' for pan in CLIP_PANS)} px a "
        f"frame), {args.samples_per_second:g} samples/s, 4 variants: rows kept {clip_rows}; "
        f"a copy's query hashes {clip_queries} ({time.perf_counter() - start:.0f} s)"
    )
    print(
        f"rows_per_video={rows_per_video}; radius {DEFAULT_RADIUS}; a query is "
        f"{args.query_hashes} hashes; single-threaded; times are wall clock (cpu: this thread)"
    )
    rng = np.random.default_rng(args.seed)
    headline: dict[str, float] = {}
    for videos in sizes:
        last = videos == sizes[-1]
        video_ids, words = _synthetic_index(videos, rows_per_video, rng)
        queries = _queries(words, rows_per_video, args.queries, args.query_hashes, rng)
        trace_queries = _queries(words, rows_per_video, 100, trace_hashes, rng) if last else []
        # The references first, so that the index does not share memory with them.
        exact_count = min(len(queries), EXACT_QUERIES.get(videos, 8))
        truths, exact = _exact_answers(words, video_ids, queries[:exact_count])
        faiss_ms, trace_truths, trace_reference = float("nan"), [], "numpy scan"
        if faiss is not None:
            faiss_truths, faiss_timings = _faiss_answers(
                faiss, words, video_ids, queries[:exact_count]
            )
            assert faiss_truths == truths  # two exact scans agree
            faiss_ms = statistics.median(faiss_timings) * 1000
            if last:
                trace_truths, _ = _faiss_answers(faiss, words, video_ids, trace_queries[:3])
                trace_reference = "faiss flat scan"
        elif last:
            trace_truths, _ = _exact_answers(words, video_ids, trace_queries[:1])
        rows = len(words)
        index = FingerprintIndex()
        index.add_many(video_ids, words.view(np.uint8))
        del words, video_ids
        start = time.perf_counter()
        index.build()
        build_s = time.perf_counter() - start
        # Traces are answered from the host's snapshot, mapped read-only (provenance_service):
        # that is the index timed for the headline; the one just built in memory is timed too.
        snapshot_dir = tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent)
        start = time.perf_counter()
        folder = index.write_snapshot(snapshot_dir.name)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        mapped, _ = FingerprintIndex.open_snapshot(folder)
        open_ms = (time.perf_counter() - start) * 1000
        wall, cpu, answers = _time_queries(mapped, queries)
        found, expected, extra = _recall(truths, answers)
        recall = found / expected if expected else 1.0
        assert recall == 1.0 and extra == 0, (found, expected, extra)
        memory_wall, memory_cpu, memory_answers = _time_queries(index, queries)
        assert memory_answers == answers  # the same tables, in memory or read from the files
        exact_ms = statistics.median(exact) * 1000
        p50, p99 = _ms(wall, 50), _ms(wall, 99)
        matched = sum(1 for answer in answers if answer)
        print(
            f"{videos:>9,d} videos ({rows:,d} rows, {len(index._layout)} substring tables): "
            f"build {build_s:.1f} s, {index.nbytes / 2**20:,.0f} MiB; snapshot written in "
            f"{write_s:.1f} s, mapped in {open_ms:.1f} ms; mapped index p50 {p50:.2f} ms p99 "
            f"{p99:.2f} ms (cpu p50 {_ms(cpu, 50):.2f} p99 {_ms(cpu, 99):.2f}); in memory p50 "
            f"{_ms(memory_wall, 50):.2f} p99 {_ms(memory_wall, 99):.2f} (cpu p99 "
            f"{_ms(memory_cpu, 99):.2f}); exact numpy scan {exact_ms:,.1f} ms; "
            f"faiss flat {faiss_ms:,.1f} ms; speedup {exact_ms / p50:,.0f}x; "
            f"recall {recall:.3f} ({found}/{expected}), extra {extra}; "
            f"queries with a match {matched}/{len(queries)}"
        )
        label = _label(videos)
        headline[f"p99_ms_{label}"] = p99
        headline[f"cpu_p99_ms_{label}"] = _ms(cpu, 99)
        headline[f"speedup_{label}"] = exact_ms / p50
        headline[f"recall_{label}"] = recall
        if last:
            wall, cpu, answers = _time_queries(mapped, trace_queries)
            found, expected, extra = _recall(trace_truths, answers)
            assert found == expected and extra == 0, (found, expected, extra)
            print(
                f"{'':>9} a copy's {trace_hashes} hashes ({len(trace_queries)} queries): "
                f"p50 {_ms(wall, 50):.2f} ms p99 {_ms(wall, 99):.2f} ms (cpu p50 "
                f"{_ms(cpu, 50):.2f} p99 {_ms(cpu, 99):.2f}), {_ms(cpu, 50) / trace_hashes * 1000:.0f}"
                f" us cpu a hash; recall 1.000 on {len(trace_truths)} checked by {trace_reference}"
            )
        del mapped
        snapshot_dir.cleanup()
        if last:
            # A live index grows by a tail that is merged into the tables, not rebuilt.
            added = TAIL_MERGE_ROWS // rows_per_video + 1
            more_ids, more_words = _synthetic_index(added, rows_per_video, rng)
            index.add_many(more_ids + videos, more_words.view(np.uint8))
            start = time.perf_counter()
            index.search(queries[0].view(np.uint8))
            print(
                f"{'':>9} adding {added} videos ({added * rows_per_video} rows): merged into the "
                f"tables in {time.perf_counter() - start:.2f} s (a full build: {build_s:.1f} s)"
            )
        del index
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak memory of this process: {peak_mib:,.0f} MiB; load average now "
        f"{os.getloadavg()[0]:.1f} (wall times include waiting for a core; cpu times do not)"
    )
    last = _label(sizes[-1])
    worst_recall = min(value for key, value in headline.items() if key.startswith("recall_"))
    print(
        f"p99_ms_{last}={headline[f'p99_ms_{last}']:.2f} "
        f"speedup_vs_exact_scan={headline[f'speedup_{last}']:.0f} recall={worst_recall:.3f} "
        f"cpu_p99_ms_{last}={headline[f'cpu_p99_ms_{last}']:.2f} "
        f"rows_per_video={rows_per_video} query_hashes={args.query_hashes}"
    )


if __name__ == "__main__":
    main()
