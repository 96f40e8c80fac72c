"""Public detection: did this platform make this video? Free, without an account.

What it protects: anyone may learn whether a video was made here, when, and what its signed
manifest generically claims, and nothing else. The answer is computed by the production trace
(watermark decode under the platform's key, the fingerprint index, c2pa's own validation) but
never carries a tenant, template, job, requester, title, prompt, watermark payload or
fingerprint distance: only three signal flags, a date and the manifest's generic claims.

Abuse limits: the upload's size (REELCAST_DETECT_MAX_BYTES, refused before it is read, see
config/middleware.py), the frames decoded (the first REELCAST_DETECT_MAX_SECONDS seconds, at
most REELCAST_TRACE_MAX_FRAMES frames, each at most MAX_FRAME_PIXELS, decoded one at a time so
memory stays bounded) and the requests per client address (REELCAST_RATE_DETECT).
"""

from __future__ import annotations

import datetime
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import av
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from config.security import client_ip, rate_limit_take, throttle_rate
from moderation.models import ProvenanceRecord
from moderation.provenance_service import c2pa_dir, matched_records, trace_frames

logger = logging.getLogger(__name__)

MAX_FRAME_PIXELS = 3840 * 2160  # a 4K UHD frame; larger ones are refused, not decoded
CREATED_ACTION = "c2pa.created"


class DetectionRefused(ValueError):
    """The upload is not a video this endpoint will read; ``str()`` says why (for the caller)."""


@dataclass(frozen=True)
class Detection:
    """What the public may know about one uploaded video.

    ``certainty`` is ``"certain"`` when the watermark decoded under this platform's key (its
    keyed check passes for an unmarked video about once in 3.6 × 10⁸) or a C2PA manifest
    signed by this platform's certificate chain validates; ``"likely"`` when only the
    fingerprint index finds a near-duplicate of a delivered video (a copy whose watermark did
    not survive, or a look-alike); ``"none"`` otherwise."""

    made_by_this_platform: bool
    certainty: str
    watermark: bool
    fingerprint: bool
    c2pa: str  # "valid" | "invalid" | "absent"
    generated_on: datetime.date | None
    c2pa_claims: list[dict[str, str]] = field(default_factory=list)


def platform_name() -> str:
    return settings.REELCAST_PLATFORM_NAME


def detect_attempt_take(request: HttpRequest) -> int | None:
    """Spend one detection from the caller's address (REELCAST_RATE_DETECT); the seconds to
    wait when the budget is spent. Every upload counts, readable or not: decoding is the cost."""
    rate = throttle_rate("detect")
    if rate is None:
        return None
    return rate_limit_take(f"detect:ip:{client_ip(request)}", rate)


def _frames(container, stream, *, max_frames: int, max_seconds: float) -> Iterator:
    """RGB frames of the first ``max_seconds`` seconds, one at a time; a stream that breaks
    part-way ends there (what was decoded is still examined)."""
    decoded = 0
    try:
        for frame in container.decode(stream):
            if frame.time is not None and frame.time > max_seconds:
                return
            yield frame.to_ndarray(format="rgb24")
            decoded += 1
            if decoded >= max_frames:
                return
    except (av.error.FFmpegError, ValueError):
        if decoded == 0:
            raise DetectionRefused("The file is not a readable video.") from None


class _Counted:
    """Frames passed through, counted: the trace must have seen at least one."""

    def __init__(self, frames: Iterator) -> None:
        self.frames, self.count = frames, 0

    def __iter__(self) -> Iterator:
        for frame in self.frames:
            self.count += 1
            yield frame


def _trace(data: bytes):
    try:
        container = av.open(io.BytesIO(data))
    except (av.error.FFmpegError, ValueError):
        raise DetectionRefused("The file is not a readable video.") from None
    with container:
        if not container.streams.video:
            raise DetectionRefused("The file has no video stream.")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > MAX_FRAME_PIXELS:
            raise DetectionRefused(
                f"The video is {width}×{height}; at most {MAX_FRAME_PIXELS:,} pixels a frame "
                "are read."
            )
        fps = float(stream.average_rate or 24)
        frames = _Counted(
            _frames(
                container,
                stream,
                max_frames=settings.REELCAST_TRACE_MAX_FRAMES,
                max_seconds=settings.REELCAST_DETECT_MAX_SECONDS,
            )
        )
        result = trace_frames(frames=frames, fps=fps)
    if frames.count == 0:
        raise DetectionRefused("The video has no frames.")
    return result


def _manifest(data: bytes) -> dict[str, Any] | None:
    from moderation.provenance.c2pa_sign import read_manifest

    root = c2pa_dir() / "root-ca.pem"
    anchors = root.read_text() if root.exists() else None
    try:
        return read_manifest(data, trust_anchors_pem=anchors)
    except Exception:  # c2pa rejects some containers outright: no manifest it can read
        logger.info("c2pa could not read an uploaded video's manifest", exc_info=True)
        return None


def _c2pa(manifest: dict[str, Any] | None) -> tuple[str, list[dict[str, str]]]:
    """The manifest's state and, when it is this platform's and validates, its generic claims:
    the claim generator and each ``c2pa.created`` action's digitalSourceType. The title, the
    model and our provenance assertion (watermark payload, fingerprint, job) are left out."""
    if manifest is None:
        return "absent", []
    if not (manifest["valid"] and manifest["trusted"]):
        return "invalid", []  # tampered, or signed by someone else's certificate
    claims = [{"claim": "claim_generator", "value": manifest["claim_generator"]}]
    for action in manifest["actions"]:
        if action.get("action") == CREATED_ACTION:
            claims.append({"claim": "action", "value": CREATED_ACTION})
            source = action.get("digitalSourceType")
            if isinstance(source, str):
                claims.append({"claim": "digitalSourceType", "value": source})
    return "valid", claims


def _record_date(record: ProvenanceRecord | None) -> datetime.date | None:
    if record is None:
        return None
    return timezone.localdate(record.created_at, timezone=datetime.UTC)


def _payload_record(payload: int | None) -> ProvenanceRecord | None:
    if payload is None:
        return None
    # unscoped: the public answer needs only the date; nothing of the record leaves here
    return ProvenanceRecord.objects.filter(watermark_payload=payload).only("created_at").first()


def _manifest_payload(manifest: dict[str, Any] | None) -> int | None:
    try:
        return int(manifest["provenance"]["watermark"]["payload"], 16)  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


def provenance_detect(*, data: bytes) -> Detection:
    """Did this platform make the video in ``data``? DetectionRefused if it is not a video."""
    result = _trace(data)
    read = _manifest(data)
    c2pa_state, claims = _c2pa(read)
    manifest = read if c2pa_state == "valid" else None  # only a validated one is believed
    watermark = result.watermark_payload is not None
    record = _payload_record(result.watermark_payload) or _payload_record(
        _manifest_payload(manifest)
    )
    nearest = matched_records(result.matches, limit=1)
    fingerprint = bool(nearest)
    if watermark or c2pa_state == "valid":
        certainty = "certain"
    elif fingerprint:
        certainty = "likely"
        record = nearest[0][0]
    else:
        certainty = "none"
    generated_on = _record_date(record)
    if (
        generated_on is None
        and manifest is not None
        and (manifest.get("timestamp") or {}).get("time")
    ):
        generated_on = manifest["timestamp"]["time"].astimezone(datetime.UTC).date()
    return Detection(
        made_by_this_platform=certainty != "none",
        certainty=certainty,
        watermark=watermark,
        fingerprint=fingerprint,
        c2pa=c2pa_state,
        generated_on=generated_on if certainty != "none" else None,
        c2pa_claims=claims,
    )


def detection_statement(detection: Detection) -> str:
    """One sentence for people: what the answer means, in the platform's name."""
    name = platform_name()
    on = f" on {detection.generated_on.isoformat()}" if detection.generated_on else ""
    if detection.certainty == "certain":
        return f"AI-generated by {name}{on}."
    if detection.certainty == "likely":
        return (
            f"Likely AI-generated by {name}{on}: it closely resembles a video {name} made, "
            "but carries neither its watermark nor its signed manifest."
        )
    return f"No sign that {name} made this video."


def detection_document(detection: Detection) -> dict[str, Any]:
    """The JSON answer of ``POST /api/v1/detect/``."""
    return {
        "made_by_this_platform": detection.made_by_this_platform,
        "certainty": detection.certainty,
        "signals": {
            "watermark": detection.watermark,
            "fingerprint": detection.fingerprint,
            "c2pa": detection.c2pa,
        },
        "statement": detection_statement(detection),
        "generated_on": detection.generated_on.isoformat() if detection.generated_on else None,
        "c2pa_claims": detection.c2pa_claims,
    }
