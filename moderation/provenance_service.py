"""Provenance, applied in one place: every delivered video is watermarked (inside the single
finishing pass), fingerprinted into the trace index and C2PA-signed as the very last write.
None of it is optional per tenant. The pure algorithms live in moderation/provenance/."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import av
import numpy as np
from django.conf import settings
from django.db import transaction

from moderation.models import ProvenanceRecord
from moderation.provenance.c2pa_sign import ManifestFields, Signer, sign_mp4
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


def watermark_payload(job) -> int:
    """63 bits of the job's id: unique in practice, fits a signed 64-bit column."""
    return job.id.int >> 65


@dataclass
class ProvenanceHooks:
    """The frame hooks the finishing pass runs last on every frame, and what they gathered."""

    payload: int
    hasher: VideoHasher

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


@cache
def _signer() -> Signer:
    directory = c2pa_dir()
    if not (directory / "signing-chain.pem").exists():
        if not settings.REELCAST_C2PA_DEV_CHAIN:
            raise RuntimeError(
                f"No C2PA signing certificate in {directory}: put signing-chain.pem, "
                "signing-key.pem and root-ca.pem there (or allow a development chain)."
            )
        ensure_dev_chain()
    return Signer(load_credentials(directory))


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
        return sign_mp4(mp4, manifest_fields=fields, signer=_signer())


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
        },
    )
    transaction.on_commit(lambda: _index().add(record))
    return record


class _LiveIndex:
    """The fingerprint index of this process, filled from the database and kept current.

    New rows are added incrementally; when the table no longer matches what was loaded (rows
    deleted with their jobs, or ids reused) the index is rebuilt from scratch.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.index = FingerprintIndex()
        self.last_id = 0
        self.loaded = 0

    def refresh(self) -> FingerprintIndex:
        rows = ProvenanceRecord.objects.all()  # unscoped: the operator's trace index
        with self.lock:
            for pk, fingerprint in (
                rows.filter(pk__gt=self.last_id).order_by("pk").values_list("pk", "fingerprint")
            ):
                self._add(pk, fingerprint)
            if rows.count() != self.loaded:  # something was deleted or an id was reused
                self._reset()
                for pk, fingerprint in rows.order_by("pk").values_list("pk", "fingerprint"):
                    self._add(pk, fingerprint)
            return self.index

    def add(self, record: ProvenanceRecord) -> None:
        self.refresh()

    def _add(self, pk: int, fingerprint: bytes) -> None:
        hashes = np.frombuffer(bytes(fingerprint), dtype=np.uint8).reshape(-1, 32)
        if len(hashes):
            self.index.add(pk, hashes)
        self.last_id = max(self.last_id, pk)
        self.loaded += 1


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


@dataclass(frozen=True)
class TraceAnswer:
    watermark_record: ProvenanceRecord | None
    matches: list[tuple[ProvenanceRecord, int]]
    result: TraceResult


def provenance_trace(*, data: bytes) -> TraceAnswer:
    """Which delivered video is this copy? Watermark first (exact), fingerprints beside it."""
    frames, fps = decode_upload(data, max_frames=settings.REELCAST_TRACE_MAX_FRAMES)
    result = trace(frames, fps, key=watermark_key(), index=_index().refresh())
    exact = None
    if result.watermark_payload is not None:
        exact = (
            ProvenanceRecord.objects.select_related(  # unscoped: operator's trace tool
                "job", "tenant", "job__template"
            )
            .filter(watermark_payload=result.watermark_payload)
            .first()
        )
    ids = [video_id for video_id, _ in result.matches[:20]]
    records = ProvenanceRecord.objects.select_related(  # unscoped: operator's trace tool
        "job", "tenant", "job__template"
    ).in_bulk(ids)
    matches = [(records[i], d) for i, d in result.matches[:20] if i in records]
    return TraceAnswer(watermark_record=exact, matches=matches, result=result)
