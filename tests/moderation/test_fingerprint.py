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


@pytest.fixture(scope="module")
def library() -> dict[int, list[np.ndarray]]:
    """Five delivered 3-second 640x360 videos, by video id."""
    return {
        video_id: clips.make_clip(200 + video_id, height=360, width=640, frames=3 * FPS)
        for video_id in range(101, 106)
    }


@pytest.fixture(scope="module")
def index(library) -> FingerprintIndex:
    index = FingerprintIndex()
    for video_id, frames in library.items():
        index.add(video_id, video_hashes(frames, FPS))
    return index


def _flip_bits(hash_row: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(hash_row, bitorder="little")
    bits[rng.choice(256, count, replace=False)] ^= 1
    return np.packbits(bits, bitorder="little")


def test_video_hashes_samples_twice_a_second_with_variants(library):
    frames = library[101]

    plain = video_hashes(frames, FPS, variants=False)
    with_variants = video_hashes(frames, FPS)

    assert plain.dtype == np.uint8 and plain.shape[1] == 32
    assert 1 <= len(plain) <= 6
    assert len(plain) < len(with_variants) <= 4 * 6


ATTACKS = {
    "h264_crf28": lambda f, rng: clips.decode(clips.encode(f, fps=FPS, crf=28)),
    "half_scale_crf28": lambda f, rng: clips.decode(
        clips.encode(clips.scale(f, 0.5), fps=FPS, crf=28)
    ),
    "brightness_plus_20": lambda f, rng: clips.brightness(f, 1.2),
    "mirrored": lambda f, rng: [np.ascontiguousarray(x[:, ::-1]) for x in f],
    "centred_crop_10_percent": lambda f, rng: clips.crop(f, 0.1, rng, centred=True),
    "one_second_excerpt": lambda f, rng: f[30 : 30 + FPS],
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attacked_copy_finds_its_source_first(library, index, attack):
    copy = ATTACKS[attack](library[103], np.random.default_rng(1))

    matches = index.search(query_hashes(copy, FPS))

    assert matches, f"{attack}: no match"
    assert matches[0][0] == 103
    assert matches[0][1] <= 31
    print(f"{attack}: {matches}")


def test_an_unrelated_video_matches_nothing(index):
    stranger = clips.make_clip(999, height=360, width=640, frames=3 * FPS)

    assert index.search(query_hashes(stranger, FPS)) == []


def test_search_is_exact_against_a_brute_force_scan():
    rng = np.random.default_rng(2)
    stored = rng.integers(0, 256, (20_000, 32), dtype=np.uint8)
    video_ids = np.arange(len(stored)) // 4
    index = FingerprintIndex()
    index.add_many(video_ids, stored)
    index.build()
    # Queries at every distance around the radius from known rows, plus strangers.
    queries = [
        _flip_bits(stored[row], distance, rng)
        for row, distance in zip(rng.integers(0, len(stored), 48), np.arange(48))
    ]
    queries += list(rng.integers(0, 256, (4, 32), dtype=np.uint8))

    for query in queries:
        distances = fingerprint.hamming(stored, query)
        expected: dict[int, int] = {}
        for row in np.nonzero(distances <= 31)[0]:
            video = int(video_ids[row])
            expected[video] = min(expected.get(video, 256), int(distances[row]))
        got = index.search(query[None, :], radius=31)
        assert got == sorted(expected.items(), key=lambda item: (item[1], item[0]))


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
