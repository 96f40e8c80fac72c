"""PDQ video fingerprints, the exact Hamming index, and tracing an attacked copy."""

from __future__ import annotations

import numpy as np
import pytest

from moderation.provenance import fingerprint, watermark
from moderation.provenance.fingerprint import FingerprintIndex, query_hashes, video_hashes
from moderation.provenance.trace import trace
from tests.moderation import clips

FPS = 24
KEY = b"reelcast-test-watermark-key-0001"
MOVING, STATIC = 103, 106


@pytest.fixture(scope="module")
def library() -> dict[int, list[np.ndarray]]:
    """Six delivered 3-second 640x360 videos, by video id: 101-105 pan; 106 is a still camera
    whose last two seconds hold one frame (a product shot), so some samples repeat."""
    videos = {
        video_id: clips.make_clip(200 + video_id, height=360, width=640, frames=3 * FPS)
        for video_id in range(101, 106)
    }
    moving = clips.make_clip(306, height=360, width=640, frames=FPS + 1, pan_px=0.0)
    videos[STATIC] = moving + [moving[-1]] * (2 * FPS - 1)
    return videos


@pytest.fixture(scope="module")
def index(library) -> FingerprintIndex:
    index = FingerprintIndex()
    for video_id, frames in library.items():
        index.add(video_id, video_hashes(frames, FPS))
    return index


ATTACKS = {
    "h264_crf28": lambda f, rng: clips.decode(clips.encode(f, fps=FPS, crf=28)),
    "half_scale_crf28": lambda f, rng: clips.decode(
        clips.encode(clips.scale(f, 0.5), fps=FPS, crf=28)
    ),
    "brightness_plus_20": lambda f, rng: clips.brightness(f, 1.2),
    "brightness_minus_20": lambda f, rng: clips.brightness(f, 0.8),
    "mirrored": lambda f, rng: [np.ascontiguousarray(x[:, ::-1]) for x in f],
    "centred_crop_10_percent": lambda f, rng: clips.crop(f, 0.1, rng, centred=True),
    "every_other_frame_dropped": lambda f, rng: f[1::2],
    "a_random_quarter_of_frames_dropped": lambda f, rng: [x for x in f if rng.random() >= 0.25],
    "two_second_excerpt": lambda f, rng: f[13 : 13 + 2 * FPS],
    "one_second_excerpt": lambda f, rng: f[30 : 30 + FPS],
}


@pytest.fixture(scope="module")
def copy_hashes(library):
    """The query hashes of ``attack`` applied to video ``video_id`` (computed once)."""
    computed: dict[tuple[str, int], np.ndarray] = {}

    def hashes(attack: str, video_id: int) -> np.ndarray:
        if (attack, video_id) not in computed:
            copy = ATTACKS[attack](library[video_id], np.random.default_rng(1))
            computed[attack, video_id] = query_hashes(copy, FPS)
        return computed[attack, video_id]

    return hashes


def _flip_bits(hash_row: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(hash_row, bitorder="little")
    bits[rng.choice(256, count, replace=False)] ^= 1
    return np.packbits(bits, bitorder="little")


def _exact(
    stored: np.ndarray, video_ids: np.ndarray, queries: np.ndarray, radius: int
) -> list[tuple[int, int]]:
    """(video, smallest distance) within ``radius`` of any query, by comparing every row."""
    best: dict[int, int] = {}
    for query in queries:
        distances = fingerprint.hamming(stored, query)
        for row in np.flatnonzero(distances <= radius):
            video = int(video_ids[row])
            best[video] = min(best.get(video, 256), int(distances[row]))
    return sorted(best.items(), key=lambda item: (item[1], item[0]))


def test_video_hashes_samples_once_a_second_with_variants(library):
    frames = library[101]

    plain = video_hashes(frames, FPS, variants=False)
    with_variants = video_hashes(frames, FPS)

    assert plain.dtype == np.uint8 and plain.shape[1] == 32
    assert len(plain) == 3  # frames 0, 24 and 48
    assert len(plain) < len(with_variants) <= 4 * 3


@pytest.mark.parametrize("video_id", [MOVING, STATIC])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attacked_copy_finds_its_source_first(index, copy_hashes, attack, video_id):
    matches = index.search(copy_hashes(attack, video_id))

    assert matches, f"{attack}: no match"
    assert matches[0][0] == video_id
    assert matches[0][1] <= 31
    print(f"{attack} of {video_id}: {matches}")


def test_the_rows_kept_trace_every_attacked_copy_that_all_samples_would(
    library, copy_hashes, monkeypatch
):
    """One sample a second with near-duplicates dropped, against two a second with none."""
    kept = video_hashes(library[STATIC], FPS)
    monkeypatch.setattr(fingerprint, "DUPLICATE_RADIUS", -1)
    every = video_hashes(library[STATIC], FPS, samples_per_second=2.0)
    monkeypatch.undo()
    assert len(every) == 4 * 6
    assert len(kept) < 4 * 3  # a near-duplicate was dropped, not just half the samples

    for attack in ATTACKS:
        query = copy_hashes(attack, STATIC)
        nearest_kept = min(int(fingerprint.hamming(kept, row).min()) for row in query)
        nearest_every = min(int(fingerprint.hamming(every, row).min()) for row in query)
        print(f"{attack}: nearest kept row {nearest_kept}, nearest of every sample {nearest_every}")
        assert nearest_every <= 31
        assert nearest_kept <= 31, attack


def test_an_unrelated_video_matches_nothing(index):
    stranger = clips.make_clip(999, height=360, width=640, frames=3 * FPS)

    assert index.search(query_hashes(stranger, FPS)) == []


@pytest.mark.parametrize("tables", [16, 14, 12, 11])
def test_search_equals_an_exact_scan_with_rows_planted_at_every_distance(tables, monkeypatch):
    monkeypatch.setattr(fingerprint, "_choose_layout", lambda rows: fingerprint._layout(tables))
    rng = np.random.default_rng(tables)
    queries = rng.integers(0, 256, (6, 32), dtype=np.uint8)
    planted = np.stack(
        [_flip_bits(query, distance, rng) for query in queries for distance in range(41)]
    )
    background = rng.integers(0, 256, (20_000, 32), dtype=np.uint8)
    stored = np.concatenate([background, planted])
    # Background videos have 4 rows each; every planted row is a video of its own, 1_000_000 +
    # 41 * query + distance.
    video_ids = np.concatenate(
        [np.arange(len(background)) // 4, 1_000_000 + np.arange(len(planted))]
    )
    index = FingerprintIndex()
    index.add_many(video_ids, stored)
    index.build()

    for number, query in enumerate(queries):
        matches = index.search(query[None, :])
        assert matches == [(1_000_000 + 41 * number + distance, distance) for distance in range(32)]
    for radius in (0, 7, 31, 40):
        assert index.search(queries, radius=radius) == _exact(stored, video_ids, queries, radius)
    strangers = rng.integers(0, 256, (10, 32), dtype=np.uint8)
    assert index.search(strangers) == _exact(stored, video_ids, strangers, 31) == []
    # A copy's many hashes are probed in batches.
    many = np.concatenate([strangers, queries, planted[::3], strangers])
    assert len(many) > 2 * fingerprint.PROBE_BATCH
    assert index.search(many) == _exact(stored, video_ids, many, 31)


@pytest.mark.parametrize("tables", [16, 11])
def test_rows_added_after_a_build_are_merged_into_the_tables_exactly(tables, monkeypatch):
    monkeypatch.setattr(fingerprint, "_choose_layout", lambda rows: fingerprint._layout(tables))
    rng = np.random.default_rng(4)
    first = rng.integers(0, 256, (20_000, 32), dtype=np.uint8)
    index = FingerprintIndex()
    index.add_many(np.arange(len(first)) // 4, first)
    index.build()
    queries = rng.integers(0, 256, (4, 32), dtype=np.uint8)
    planted = np.stack(
        [_flip_bits(query, distance, rng) for query in queries for distance in range(41)]
    )
    late = np.concatenate(
        [rng.integers(0, 256, (fingerprint.TAIL_MERGE_ROWS, 32), dtype=np.uint8), planted]
    )
    late_ids = 100_000 + np.arange(len(late)) // 2
    index.add_many(late_ids, late)
    # Enough rows for a merge, too few to choose a layout again: no new build.
    monkeypatch.setattr(FingerprintIndex, "_build", lambda self: pytest.fail("rebuilt"))

    stored = np.concatenate([first, late])
    video_ids = np.concatenate([np.arange(len(first)) // 4, late_ids])
    for radius in (0, 31, 40):
        assert index.search(queries, radius=radius) == _exact(stored, video_ids, queries, radius)
    assert len(index) == len(stored)


def test_rows_added_after_a_build_are_found_and_survive_save_and_load(tmp_path):
    rng = np.random.default_rng(3)
    index = FingerprintIndex()
    index.add_many(np.arange(5000), rng.integers(0, 256, (5000, 32), dtype=np.uint8))
    index.build()
    late = rng.integers(0, 256, (2, 32), dtype=np.uint8)
    index.add(777, late)
    query = _flip_bits(late[1], 20, rng)[None, :]

    assert index.search(query) == [(777, 20)]
    index.save(tmp_path / "index.npz")
    loaded = FingerprintIndex.load(tmp_path / "index.npz")
    assert len(loaded) == 5002
    assert loaded.search(query) == [(777, 20)]


def test_it_refuses_hashes_of_the_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        FingerprintIndex().add(1, np.zeros((3, 16), dtype=np.uint8))


def test_trace_names_the_job_and_the_video_of_an_attacked_copy(library):
    payload = 0x0000_0042_0000_0103
    hook = watermark.make_frame_hook(payload, KEY)
    frames = clips.make_clip(203, height=360, width=640, frames=5 * FPS)
    delivered = clips.decode(
        clips.encode([hook(i, f) for i, f in enumerate(frames)], fps=FPS, crf=20)
    )
    index = FingerprintIndex()
    index.add(103, video_hashes(delivered, FPS))
    for video_id in (101, 102, 104):
        index.add(video_id, video_hashes(library[video_id], FPS))
    leaked = clips.decode(
        clips.encode(
            clips.crop(delivered, 0.1, np.random.default_rng(4), centred=True), fps=FPS, crf=26
        )
    )

    result = trace(leaked, FPS, key=KEY, index=index)

    assert result.watermark_payload == payload
    assert result.matches and result.matches[0][0] == 103
    assert [video for video, _ in result.matches] == [103]
