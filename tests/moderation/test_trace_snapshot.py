"""The trace index is shared by the processes of a host through a snapshot mapped read-only:
it answers exactly as the index it was written from, what was delivered after it is still
found, deleted records are never named, and a stale snapshot is replaced."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from generation.services import JobRequest, job_create
from moderation.models import ProvenanceRecord
from moderation.provenance.fingerprint import FingerprintIndex
from moderation.provenance_service import (
    _index,
    _LiveIndex,
    matched_records,
    trace_index_dir,
    trace_index_snapshot,
)
from tests import factories

ROOT = Path(__file__).resolve().parents[2]


def _rows(rng: np.random.Generator, videos: int, per_video: int = 20):
    bases = rng.integers(0, 256, (videos, 32), dtype=np.uint8)
    hashes = np.repeat(bases, per_video, axis=0)
    flips = rng.random((*hashes.shape, 8)) < 1 / 16
    hashes ^= np.packbits(flips, axis=-1, bitorder="little")[..., 0]
    return np.repeat(np.arange(videos, dtype=np.int64), per_video), hashes


def _near(hashes: np.ndarray, rng: np.random.Generator, bits: int) -> np.ndarray:
    """Each hash with ``bits`` random bits flipped."""
    unpacked = np.unpackbits(hashes, axis=1, bitorder="little")
    for row in unpacked:
        row[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(unpacked, axis=1, bitorder="little")


def test_a_mapped_snapshot_answers_exactly_as_the_index_it_was_written_from(tmp_path):
    rng = np.random.default_rng(5)
    video_ids, hashes = _rows(rng, 3000)
    index = FingerprintIndex()
    index.add_many(video_ids, hashes)
    index.build()
    folder = index.write_snapshot(tmp_path, meta={"last_id": 2999, "records": 3000})
    assert FingerprintIndex.current_snapshot(tmp_path) == folder

    mapped, meta = FingerprintIndex.open_snapshot(folder)
    assert meta == {"last_id": 2999, "records": 3000}
    assert len(mapped) == len(index) == 60_000
    # Read-only maps of the files: every process of the host shares the page cache.
    for array in (mapped._words, mapped._order, mapped._starts, mapped._video_ids):
        assert isinstance(array, np.memmap) and not array.flags.writeable
    for distance in (0, 12, 31, 32, 60):
        queries = _near(hashes[rng.integers(0, len(hashes), 10)], rng, distance)
        assert mapped.search(queries) == index.search(queries)
    assert mapped.search(_near(hashes[:1], rng, 5))[0][0] == 0

    with pytest.raises(ValueError, match="read-only"):
        mapped.add(7, hashes[:2])


def test_a_new_snapshot_replaces_the_old_while_a_reader_still_maps_it(tmp_path):
    rng = np.random.default_rng(6)
    video_ids, hashes = _rows(rng, 200)
    first = FingerprintIndex()
    first.add_many(video_ids, hashes)
    old_folder = first.write_snapshot(tmp_path)
    reader, _ = FingerprintIndex.open_snapshot(old_folder)

    second = FingerprintIndex()
    second.add_many(video_ids + 1000, hashes)
    new_folder = second.write_snapshot(tmp_path)
    assert FingerprintIndex.current_snapshot(tmp_path) == new_folder
    assert not old_folder.exists()  # removed from the folder...
    assert reader.search(hashes[:1])[0] == (0, 0)  # ...and still readable where it is mapped


def test_another_process_opens_the_snapshot_without_building(tmp_path):
    rng = np.random.default_rng(7)
    video_ids, hashes = _rows(rng, 500)
    index = FingerprintIndex()
    index.add_many(video_ids, hashes)
    index.write_snapshot(tmp_path)
    query = _near(hashes[4321:4322], rng, 10)
    script = (
        "import sys, json, numpy as np\n"
        "from moderation.provenance.fingerprint import FingerprintIndex\n"
        "folder = FingerprintIndex.current_snapshot(sys.argv[1])\n"
        "index, _ = FingerprintIndex.open_snapshot(folder)\n"
        "query = np.frombuffer(bytes.fromhex(sys.argv[2]), dtype=np.uint8).reshape(-1, 32)\n"
        "print(json.dumps(index.search(query)))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), query.tobytes().hex()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [tuple(match) for match in json.loads(output)] == index.search(query)


def test_a_damaged_snapshot_is_refused(tmp_path):
    index = FingerprintIndex()
    index.add(1, np.zeros((3, 32), dtype=np.uint8))
    folder = index.write_snapshot(tmp_path)
    header = json.loads((folder / "header.json").read_text())
    (folder / "header.json").write_text(json.dumps({**header, "rows": 4}))
    with pytest.raises(ValueError, match="damaged"):
        FingerprintIndex.open_snapshot(folder)
    (folder / "header.json").write_text(json.dumps({**header, "format": 99}))
    with pytest.raises(ValueError, match="format"):
        FingerprintIndex.open_snapshot(folder)


def _record(tenant, hashes: np.ndarray, payload: int) -> ProvenanceRecord:
    template = factories.make_template(tenant)
    job = job_create(
        tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"})
    ).job
    # (In a transactional test the job runs and is delivered: its record is replaced.)
    record, _ = ProvenanceRecord.objects.update_or_create(
        job=job,
        defaults={
            "tenant": tenant,
            "watermark_payload": payload,
            "fingerprint": hashes.tobytes(),
            "c2pa_signed": True,
        },
    )
    return record


@pytest.mark.django_db
def test_the_live_index_maps_the_snapshot_and_finds_what_came_after_it(tenant, settings):
    settings.REELCAST_TRACE_INDEX_TAIL_ROWS = 40
    rng = np.random.default_rng(8)
    _, hashes = _rows(rng, 5)
    first = _record(tenant, hashes[0:20], 1)
    deleted = _record(tenant, hashes[20:40], 2)

    live = _index().refresh()  # no snapshot yet: this process writes one
    folder = FingerprintIndex.current_snapshot(trace_index_dir())
    assert live.snapshot is not None and live.snapshot.frozen and live.snapshot_folder == folder
    assert len(live.snapshot) == 40 and len(live.tail) == 0

    later = _record(tenant, hashes[40:60], 3)  # delivered after the snapshot
    live = _index().refresh()
    assert live.snapshot_folder == folder and len(live.tail) == 20
    assert live.search(hashes[45:46], radius=31)[0] == (later.pk, 0)
    assert live.search(hashes[5:6], radius=31)[0] == (first.pk, 0)

    assert trace_index_snapshot() is None  # 20 rows after it: not stale yet
    ProvenanceRecord.objects.filter(pk=deleted.pk).delete()
    replaced = trace_index_snapshot()  # a record it holds was deleted: stale
    assert replaced is not None and replaced != folder

    live = _index().refresh()
    assert live.snapshot_folder == replaced and len(live.snapshot) == 40 and len(live.tail) == 0
    assert live.search(hashes[25:26], radius=31) == []  # the deleted video is gone
    assert live.search(hashes[45:46], radius=31)[0] == (later.pk, 0)

    _record(tenant, hashes[60:80], 4)
    assert trace_index_snapshot() is None  # 20 rows after it
    _record(tenant, hashes[80:100], 5)
    assert trace_index_snapshot() is not None  # 40 rows after it: the limit


@pytest.mark.django_db
def test_a_trace_never_names_a_record_deleted_after_the_snapshot(tenant):
    rng = np.random.default_rng(9)
    _, hashes = _rows(rng, 2)
    kept = _record(tenant, hashes[0:20], 11)
    gone = _record(tenant, hashes[20:40], 12)
    live = _LiveIndex().refresh()
    ProvenanceRecord.objects.filter(pk=gone.pk).delete()
    # The mapped snapshot still holds the deleted record's rows...
    assert {video for video, _ in live.search(hashes[[0, 20]], radius=31)} == {kept.pk, gone.pk}
    # ...and the trace names only records that exist.
    matches = matched_records(live.search(hashes[[0, 20]], radius=31))
    assert [(record.pk, distance) for record, distance in matches] == [(kept.pk, 0)]


@pytest.mark.django_db(transaction=True)
def test_a_process_whose_tail_outgrew_its_limit_writes_the_next_snapshot(tenant, settings):
    """A web host with its own folder (no scheduled task writes there) still moves on."""
    settings.REELCAST_TRACE_INDEX_TAIL_ROWS = 40
    rng = np.random.default_rng(10)
    _, hashes = _rows(rng, 3)
    _record(tenant, hashes[0:20], 21)
    live = _LiveIndex().refresh()
    first = live.snapshot_folder
    _record(tenant, hashes[20:40], 22)
    _record(tenant, hashes[40:60], 23)
    live.refresh()  # 40 rows in the tail: a thread writes the next snapshot
    assert live.builder is not None
    live.builder.join(timeout=60)
    assert FingerprintIndex.current_snapshot(trace_index_dir()) != first
    live.refresh()
    assert live.snapshot_folder != first and len(live.snapshot) == 60 and len(live.tail) == 0


@pytest.mark.django_db
def test_an_operator_writes_a_snapshot_with_a_command(tenant):
    from io import StringIO

    from django.core.management import call_command

    rng = np.random.default_rng(11)
    _, hashes = _rows(rng, 1)
    _record(tenant, hashes, 31)
    out = StringIO()
    call_command("trace_index_snapshot", stdout=out)
    first = FingerprintIndex.current_snapshot(trace_index_dir())
    assert first is not None and f"wrote {first}" in out.getvalue()
    call_command("trace_index_snapshot", stdout=out)  # fresh: nothing written
    assert FingerprintIndex.current_snapshot(trace_index_dir()) == first
    assert "is current" in out.getvalue()
    call_command("trace_index_snapshot", "--force", stdout=out)
    assert FingerprintIndex.current_snapshot(trace_index_dir()) != first
