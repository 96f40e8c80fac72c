"""Provenance, applied in one place: every delivered video is watermarked (inside the single
finishing pass), fingerprinted into the trace index and C2PA-signed as the very last write.
None of it is optional per tenant. The pure algorithms live in moderation/provenance/."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import io
import json
import logging
import threading
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import av
import numpy as np
from django.conf import settings
from django.db import connection

from generation.postprocess import aigc
from generation.postprocess.label import AigcLabel
from moderation.models import ProvenanceRecord
from moderation.provenance.c2pa_sign import (
    SOFT_BINDING_ALG,
    ManifestFields,
    Signer,
    manifest_in_upload,
    read_manifest,
    sign_mp4_keeping_manifest,
    soft_binding_payloads,
)
from moderation.provenance.devcert import generate_dev_chain, load_credentials, write_dev_chain
from moderation.provenance.fingerprint import FingerprintIndex, VideoHasher
from moderation.provenance.trace import TraceResult, trace
from moderation.provenance.watermark import make_frame_hook

logger = logging.getLogger(__name__)


def watermark_key() -> bytes:
    """The watermark key: REELCAST_WATERMARK_KEY, else derived from the secret key. Videos
    stay traceable only while it is unchanged, so production sets it explicitly."""
    configured = settings.REELCAST_WATERMARK_KEY
    if configured:
        return configured.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"reelcast-watermark-v1", hashlib.sha256).digest()


def aigc_label_key() -> bytes:
    """The key that signs the implicit label (``AIGC`` ReservedCode1)."""
    return aigc.derive_key(watermark_key())


def implicit_label(job) -> AigcLabel:
    """The job's ``AIGC`` tag: our producer code, the job id as ProduceID, and our signature
    over both in the reserved codes."""
    producer, produce_id, key = settings.REELCAST_AIGC_PRODUCER_CODE, job.id.hex, aigc_label_key()
    return AigcLabel(
        content_producer=producer,
        produce_id=produce_id,
        reserved_code1=aigc.signature(key=key, content_producer=producer, produce_id=produce_id),
        reserved_code2=aigc.key_id(key),
    )


def watermark_payload(job) -> int:
    """63 bits of the job's id: unique in practice, fits a signed 64-bit column."""
    return job.id.int >> 65


@dataclass
class ProvenanceHooks:
    """The frame hooks the finishing pass runs last on every frame, and what they gathered;
    ``seal`` adds the signed manifest store (raw bytes, and as c2pa's Reader reads it back)."""

    payload: int
    hasher: VideoHasher
    manifest_bytes: bytes = b""
    manifest_store: dict | None = None

    def frame_hooks(self):
        mark = make_frame_hook(self.payload, watermark_key())

        def fingerprint(frame_index: int, frame: np.ndarray) -> np.ndarray:
            self.hasher.add(frame)  # hashes computed at once: no reference is kept
            return frame

        return (mark, fingerprint)  # the fingerprint sees the frame as delivered


def provenance_hooks(job) -> ProvenanceHooks:
    return ProvenanceHooks(
        payload=watermark_payload(job), hasher=VideoHasher(job.fps, variants=True)
    )


def c2pa_dir() -> Path:
    return Path(settings.REELCAST_C2PA_DIR)


def ensure_dev_chain() -> Path:
    """Generate the development certificate chain if none is there (setup, tests)."""
    directory = c2pa_dir()
    if not (directory / "signing-chain.pem").exists():
        write_dev_chain(directory, generate_dev_chain())
    return directory


_signer_lock = threading.Lock()


def _signer() -> Signer:
    return _signer_for(settings.REELCAST_C2PA_TSA_URL)


@cache  # one per authority, so an overridden REELCAST_C2PA_TSA_URL (tests) is the one used
def _signer_for(timestamp_url: str) -> Signer:
    directory = c2pa_dir()
    if not (directory / "signing-chain.pem").exists():
        if not settings.REELCAST_C2PA_DEV_CHAIN:
            raise RuntimeError(
                f"No C2PA signing certificate in {directory}: put signing-chain.pem, "
                "signing-key.pem and root-ca.pem there (or allow a development chain)."
            )
        ensure_dev_chain()
    return Signer(load_credentials(directory), timestamp_url=timestamp_url or None)


def seal(job, mp4: bytes, hooks: ProvenanceHooks) -> bytes:
    """Sign ``mp4`` (the last write: nothing may change a byte after this)."""
    fields = ManifestFields(
        title=f"Reelcast video {job.id.hex[:12]}",  # no names of people in the manifest
        model_name=job.model,
        watermark_payload=hooks.payload,
        fingerprint=hooks.hasher.hashes(),
        job_reference=job.id.hex,
    )
    with _signer_lock:  # one signer per process, used by one thread at a time
        signed = sign_mp4_keeping_manifest(mp4, manifest_fields=fields, signer=_signer())
    read_back = read_manifest(signed.mp4, trust_anchors_pem=trust_anchors())
    hooks.manifest_bytes = signed.manifest_bytes
    hooks.manifest_store = read_back["store"] if read_back else None
    return signed.mp4


def trust_anchors() -> str | None:
    """The root our signing chain ends in, where the credentials directory has it."""
    root = c2pa_dir() / "root-ca.pem"
    return root.read_text() if root.exists() else None


def provenance_record(*, job, hooks: ProvenanceHooks, extra_hashes=()) -> ProvenanceRecord:
    hashes = (
        np.concatenate([hooks.hasher.hashes(), *extra_hashes])
        if extra_hashes
        else hooks.hasher.hashes()
    )
    record, _ = ProvenanceRecord.objects.update_or_create(
        job=job,
        defaults={
            "tenant_id": job.tenant_id,
            "watermark_payload": hooks.payload,
            "fingerprint": hashes.tobytes(),
            "c2pa_signed": True,
            "c2pa_manifest": hooks.manifest_bytes,
            "c2pa_manifest_json": hooks.manifest_store,
        },
    )
    return record  # the trace index reads it from the database on the next trace


def trace_index_dir() -> Path:
    return Path(settings.REELCAST_TRACE_INDEX_DIR)


def _stored_index() -> tuple[FingerprintIndex, int, int]:
    """Every stored fingerprint in one index: (index, records, the last record id)."""
    index, records, last_id = FingerprintIndex(), 0, 0
    rows = ProvenanceRecord.objects.order_by("pk").values_list("pk", "fingerprint")
    for pk, fingerprint in rows.iterator(chunk_size=2000):  # unscoped: the operator's index
        hashes = np.frombuffer(bytes(fingerprint), dtype=np.uint8).reshape(-1, 32)
        if len(hashes):
            index.add(pk, hashes)
        records, last_id = records + 1, pk
    return index, records, last_id


def trace_index_snapshot(*, force: bool = False) -> Path | None:
    """Write a snapshot of the trace index when the current one is missing or stale: at least
    ``REELCAST_TRACE_INDEX_TAIL_ROWS`` rows were delivered after it, or records it holds were
    deleted. One process at a time builds (a file lock); returns the new snapshot, or None
    where the current one is still good."""
    directory = trace_index_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # others wait, then find it fresh
        if not force and not _snapshot_stale(directory):
            return None
        index, records, last_id = _stored_index()
        folder = index.write_snapshot(directory, meta={"records": records, "last_id": last_id})
        logger.info("trace index snapshot %s: %d records, %d rows", folder, records, len(index))
        return folder


def _snapshot_stale(directory: Path) -> bool:
    folder = FingerprintIndex.current_snapshot(directory)
    if folder is None:
        return True
    meta = json.loads((folder / "header.json").read_text())["meta"]
    stored = ProvenanceRecord.objects.all()  # unscoped: the operator's index
    if stored.filter(pk__lte=meta["last_id"]).count() < meta["records"]:
        return True  # deleted since: their rows would keep being searched
    newer = stored.filter(pk__gt=meta["last_id"]).values_list("fingerprint", flat=True)
    tail_rows = sum(len(fingerprint) // 32 for fingerprint in newer.iterator())
    return tail_rows >= settings.REELCAST_TRACE_INDEX_TAIL_ROWS


class _LiveIndex:
    """This process's view of the trace index: the host's current snapshot, mapped read-only
    and shared with every other process (built here only when there is none), and a small
    index of what was delivered after it, read from the database on each trace.

    A snapshot may still hold rows of records deleted since it was written; the trace drops
    matches without a record, and the next snapshot leaves them out.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.snapshot: FingerprintIndex | None = None
        self.snapshot_folder: Path | None = None
        self.tail = FingerprintIndex()
        self.last_id = 0
        self.builder: threading.Thread | None = None

    def refresh(self) -> _LiveIndex:
        directory = trace_index_dir()
        with self.lock:
            folder = FingerprintIndex.current_snapshot(directory)
            if folder is None:
                trace_index_snapshot()
                folder = FingerprintIndex.current_snapshot(directory)
            if folder != self.snapshot_folder:
                self.snapshot, meta = FingerprintIndex.open_snapshot(folder)
                self.snapshot_folder, self.tail = folder, FingerprintIndex()
                self.last_id = meta["last_id"]
            newer = ProvenanceRecord.objects.filter(pk__gt=self.last_id)  # unscoped: index
            for pk, fingerprint in newer.order_by("pk").values_list("pk", "fingerprint"):
                hashes = np.frombuffer(bytes(fingerprint), dtype=np.uint8).reshape(-1, 32)
                if len(hashes):
                    self.tail.add(pk, hashes)
                self.last_id = pk
            if len(self.tail) >= settings.REELCAST_TRACE_INDEX_TAIL_ROWS:
                self._snapshot_in_background()
        return self

    def _snapshot_in_background(self) -> None:
        """Where no scheduled task writes this host's snapshots (a web host with its own
        folder), the process that sees the tail outgrow its limit writes the next one, in a
        thread: this trace goes on with the tail, a later one switches to the new snapshot."""
        if self.builder is not None and self.builder.is_alive():
            return

        def build() -> None:
            try:
                trace_index_snapshot()
            except Exception:
                logger.exception("the trace index snapshot could not be written")
            finally:
                connection.close()  # this thread's own database connection

        self.builder = threading.Thread(target=build, name="trace-index-snapshot", daemon=True)
        self.builder.start()

    def search(self, hashes: np.ndarray, radius: int) -> list[tuple[int, int]]:
        """(record id, distance) of every video within ``radius``, nearest first."""
        best: dict[int, int] = {}
        for index in (self.snapshot, self.tail):
            if index is not None:
                for video_id, distance in index.search(hashes, radius=radius):
                    best[video_id] = min(distance, best.get(video_id, distance))
        return sorted(best.items(), key=lambda item: (item[1], item[0]))


@cache
def _index() -> _LiveIndex:
    return _LiveIndex()


def decode_upload(data: bytes, *, max_frames: int = 240) -> tuple[list[np.ndarray], float]:
    """Frames (RGB) and frame rate of an uploaded video; ValueError if it is not one."""
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 24)
            frames = []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        raise ValueError("The file is not a readable video.") from exc
    if not frames:
        raise ValueError("The video has no frames.")
    return frames, fps


def _active_manifest(store: dict) -> dict:
    return store.get("manifests", {}).get(store.get("active_manifest"), {})


SOFT_BINDING_NOTE = "manifest recovered from the watermark (soft binding)"


@dataclass(frozen=True)
class ManifestAnswer:
    """The C2PA manifest of a traced copy: the one embedded in it (``source`` "embedded"), or,
    where it has none, the one we stored for the job its watermark names (``source``
    "soft_binding"). ``validation_state`` and ``failures`` are c2pa's, for that manifest
    against the copy's bytes: a recovered manifest's signature checks out, its hard binding
    does not match a re-encoded copy. ``soft_binding_match``: the manifest's soft-binding
    assertion declares the payload the copy's watermark decoded to."""

    source: str
    note: str
    validation_state: str
    failures: list[str]
    soft_binding_alg: str | None
    soft_binding_match: bool
    store: dict


@dataclass(frozen=True)
class LabelAnswer:
    """The copy's implicit label (``AIGC`` tag) and what its signature says; ``record`` is the
    delivered video its ProduceID names, where the signature is valid and we have one."""

    tag: str
    check: aigc.LabelCheck
    record: ProvenanceRecord | None


@dataclass(frozen=True)
class TraceAnswer:
    watermark_record: ProvenanceRecord | None
    matches: list[tuple[ProvenanceRecord, int]]
    result: TraceResult
    manifest: ManifestAnswer | None = None
    implicit_label: LabelAnswer | None = None


def trace_frames(*, frames, fps: float) -> TraceResult:
    """The production trace of decoded RGB frames (any iterable, consumed once): the
    watermark under this platform's key and the live fingerprint index."""
    return trace(frames, fps, key=watermark_key(), index=_index().refresh())


def provenance_trace(*, data: bytes) -> TraceAnswer:
    """Which delivered video is this copy? Watermark first (exact), fingerprints beside it,
    and its C2PA manifest: embedded, or recovered through the watermark where it was lost."""
    frames, fps = decode_upload(data, max_frames=settings.REELCAST_TRACE_MAX_FRAMES)
    result = trace_frames(frames=frames, fps=fps)
    exact = None
    if result.watermark_payload is not None:
        exact = (
            ProvenanceRecord.objects.select_related(  # unscoped: operator's trace tool
                "job", "tenant", "job__template"
            )
            .filter(watermark_payload=result.watermark_payload)
            .first()
        )
    return TraceAnswer(
        watermark_record=exact,
        matches=matched_records(result.matches),
        result=result,
        manifest=_manifest_answer(data, result.watermark_payload, exact),
        implicit_label=_label_answer(data),
    )


def aigc_tag(data: bytes) -> str | None:
    """The ``AIGC`` metadata tag of an uploaded video, or None where it has none."""
    try:
        with av.open(io.BytesIO(data)) as container:
            tags = {key.upper(): value for key, value in container.metadata.items()}
    except (av.error.FFmpegError, ValueError):
        return None
    return tags.get("AIGC")


def _label_answer(data: bytes) -> LabelAnswer | None:
    tag = aigc_tag(data)
    if tag is None:
        return None
    check = aigc.verify(tag, key=aigc_label_key())
    record = None
    if check.valid and check.produce_id:
        try:
            job_id = uuid.UUID(hex=check.produce_id)
        except ValueError:
            job_id = None
        if job_id is not None:
            record = (
                ProvenanceRecord.objects.select_related(  # unscoped: operator's trace tool
                    "job", "tenant", "job__template"
                )
                .filter(job_id=job_id)
                .first()
            )
    return LabelAnswer(tag=tag, check=check, record=record)


def _manifest_answer(
    data: bytes, payload: int | None, record: ProvenanceRecord | None
) -> ManifestAnswer | None:
    embedded = manifest_in_upload(data, trust_anchors_pem=trust_anchors())
    if embedded is not None:
        source, note, read = "embedded", "manifest embedded in the file", embedded
    elif record is not None and record.c2pa_manifest:
        read = manifest_in_upload(
            data, trust_anchors_pem=trust_anchors(), manifest_bytes=bytes(record.c2pa_manifest)
        )
        if read is None:  # c2pa cannot read this container: the stored store, unvalidated
            read = {
                "validation_state": "Unknown",
                "failures": [],
                "soft_binding_payloads": soft_binding_payloads(
                    _active_manifest(record.c2pa_manifest_json or {})
                ),
                "store": record.c2pa_manifest_json or {},
            }
        source, note = "soft_binding", SOFT_BINDING_NOTE
    else:
        return None
    declared = read["soft_binding_payloads"]
    return ManifestAnswer(
        source=source,
        note=note,
        validation_state=read["validation_state"],
        failures=read["failures"],
        soft_binding_alg=SOFT_BINDING_ALG if declared else None,
        soft_binding_match=payload is not None and payload in declared,
        store=record.c2pa_manifest_json
        if source == "soft_binding" and record is not None and record.c2pa_manifest_json
        else read["store"],
    )


def matched_records(
    matches: list[tuple[int, int]], *, limit: int = 20
) -> list[tuple[ProvenanceRecord, int]]:
    """The records of the nearest ``limit`` fingerprint matches. A snapshot may still hold
    records deleted since it was written: they are left out."""
    ids = [video_id for video_id, _ in matches[: limit * 10]]
    records = ProvenanceRecord.objects.select_related(  # unscoped: operator's trace tool
        "job", "tenant", "job__template"
    ).in_bulk(ids)
    return [(records[i], d) for i, d in matches[: limit * 10] if i in records][:limit]
