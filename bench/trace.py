"""Fingerprint index: query time at 10k, 100k and 1M PDQ fingerprints vs an exact scan.

A fingerprint is one 256-bit PDQ row of the index (a delivered 5-second video adds about 8 to
40: 2 samples a second, each with mirrored and centre-cropped variants, near-duplicates
dropped). The synthetic index is made of videos of 10 rows each: a random base hash per
video, each row the base with 20 to 60 bits flipped, as frames of one shot differ. A query is
one copy's 10 hashes: rows of a random indexed video with 0 to 30 more bits flipped (an
attacked copy), or, for one query in ten, random hashes (a stranger).

The reference, measured in the same run on the same queries, is an exact numpy scan (XOR and
popcount over every row, 64 bits at a time); faiss-cpu's IndexBinaryFlat range search is shown
too where faiss is installed. Recall is the share of the exact scan's (video, distance) pairs
that the index returned; the index must return nothing else either.

    .venv/bin/python bench/trace.py [--sizes 10000,100000,1000000] [--queries 300]

Prints figures and never asserts; the last line is the headline.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from moderation.provenance.fingerprint import DEFAULT_RADIUS, FingerprintIndex, hamming

ROWS_PER_VIDEO = 10
QUERY_HASHES = 10
EXACT_QUERIES = {10_000: 100, 100_000: 60, 1_000_000: 25}


def _flip(rows: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(rows, axis=1, bitorder="little")
    for row, count in zip(bits, counts, strict=True):
        row[rng.choice(256, int(count), replace=False)] ^= 1
    return np.packbits(bits, axis=1, bitorder="little")


def _synthetic_index(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    videos = rows // ROWS_PER_VIDEO
    bases = rng.integers(0, 256, (videos, 32), dtype=np.uint8)
    video_ids = np.repeat(np.arange(videos, dtype=np.int64), ROWS_PER_VIDEO)
    hashes = np.repeat(bases, ROWS_PER_VIDEO, axis=0)
    # Flipping random bits row by row is slow in Python at 1M rows; XOR with a sparse random
    # mask (each bit set with probability p) gives the same distribution of differences. In
    # chunks, so the float mask stays at 100 MB whatever the size.
    for start in range(0, len(hashes), 100_000):
        chunk = hashes[start : start + 100_000]
        probability = rng.uniform(20 / 256, 60 / 256, size=(len(chunk), 1))
        mask_bits = rng.random((len(chunk), 256), dtype=np.float32) < probability
        chunk ^= np.packbits(mask_bits, axis=1, bitorder="little")
    return video_ids, hashes


def _queries(hashes: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    queries = []
    videos = len(hashes) // ROWS_PER_VIDEO
    for number in range(count):
        if number % 10 == 9:
            queries.append(rng.integers(0, 256, (QUERY_HASHES, 32), dtype=np.uint8))
            continue
        video = int(rng.integers(0, videos))
        rows = hashes[video * ROWS_PER_VIDEO : (video + 1) * ROWS_PER_VIDEO]
        queries.append(_flip(rows.copy(), rng.integers(0, 31, len(rows)), rng))
    return queries


def _exact(hashes: np.ndarray, video_ids: np.ndarray, query: np.ndarray) -> list[tuple[int, int]]:
    best: dict[int, int] = {}
    for row in query:
        distances = hamming(hashes, row)
        for index in np.nonzero(distances <= DEFAULT_RADIUS)[0]:
            video = int(video_ids[index])
            best[video] = min(best.get(video, 256), int(distances[index]))
    return sorted(best.items(), key=lambda item: (item[1], item[0]))


def _label(size: int) -> str:
    if size % 1_000_000 == 0:
        return f"{size // 1_000_000}m"
    if size % 1000 == 0:
        return f"{size // 1000}k"
    return str(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:
        faiss = None
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(f"radius {DEFAULT_RADIUS}; a query is {QUERY_HASHES} hashes; single-threaded")
    rng = np.random.default_rng(args.seed)
    headline: dict[str, float] = {}
    for size in sizes:
        video_ids, hashes = _synthetic_index(size, rng)
        index = FingerprintIndex()
        index.add_many(video_ids, hashes)
        start = time.perf_counter()
        index.build()
        build_s = time.perf_counter() - start
        memory_mb = (
            hashes.nbytes + video_ids.nbytes + index._order.nbytes + index._starts.nbytes
        ) / 2**20
        queries = _queries(hashes, args.queries, rng)
        index.search(queries[0])  # first call pays for imports and caches
        timings, answers = [], []
        for query in queries:
            start = time.perf_counter()
            answers.append(index.search(query))
            timings.append(time.perf_counter() - start)
        exact_count = min(len(queries), EXACT_QUERIES.get(size, 20))
        exact_timings, found, expected, extra = [], 0, 0, 0
        for query, answer in zip(queries[:exact_count], answers, strict=False):
            start = time.perf_counter()
            truth = _exact(hashes, video_ids, query)
            exact_timings.append(time.perf_counter() - start)
            expected += len(truth)
            found += len(set(truth) & set(answer))
            extra += len(set(answer) - set(truth))
        faiss_ms = float("nan")
        if faiss is not None:
            flat = faiss.IndexBinaryFlat(256)
            flat.add(hashes)
            faiss_timings = []
            for query in queries[:exact_count]:
                start = time.perf_counter()
                flat.range_search(query, DEFAULT_RADIUS + 1)  # faiss's radius is exclusive
                faiss_timings.append(time.perf_counter() - start)
            faiss_ms = float(np.median(faiss_timings)) * 1000
            del flat
        p50, p99 = (np.percentile(timings, [50, 99]) * 1000).tolist()
        exact_ms = float(np.median(exact_timings)) * 1000
        recall = found / expected if expected else 1.0
        matched = sum(1 for answer in answers if answer)
        print(
            f"{size:>9,d} rows: build {build_s:.2f} s, {memory_mb:.0f} MiB; index p50 {p50:.2f} ms "
            f"p99 {p99:.2f} ms; exact numpy scan {exact_ms:.1f} ms; faiss flat {faiss_ms:.1f} ms; "
            f"speedup {exact_ms / p50:.0f}x; recall {recall:.3f} ({found}/{expected}), "
            f"extra {extra}; queries with a match {matched}/{len(queries)}"
        )
        label = _label(size)
        headline[f"p99_ms_{label}"] = p99
        headline[f"speedup_{label}"] = exact_ms / p50
        headline[f"recall_{label}"] = recall
        del index, hashes, video_ids
    last = _label(sizes[-1])
    worst_recall = min(value for key, value in headline.items() if key.startswith("recall_"))
    print(
        f"p99_ms_{last}={headline[f'p99_ms_{last}']:.2f} "
        f"speedup_vs_exact_scan={headline[f'speedup_{last}']:.0f} recall={worst_recall:.3f}"
    )


if __name__ == "__main__":
    main()
