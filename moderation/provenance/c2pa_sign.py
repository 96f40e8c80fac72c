"""C2PA content credentials for delivered MP4s, signed offline with c2pa-python.

What it protects: every delivered MP4 says, in a signed manifest a third party can check, that
it was made by a trained algorithm (``c2pa.created`` with the IPTC ``trainedAlgorithmicMedia``
source type), by which generator and model, and which watermark payload and fingerprint it
carries; changing one byte of the media after signing makes validation fail.

The watermark is also declared the way C2PA 2.x says a soft binding is: a ``c2pa.soft-binding``
assertion (``alg`` names the algorithm, one block whose empty ``scope`` covers the whole video and
whose ``value`` is the 8-byte big-endian payload the watermark carries in every frame). A copy
that lost its manifest (re-encoded, stripped) still carries the watermark, and the watermark
finds the manifest again in our store (``manifest_bytes`` of a signing, kept per job).

Signing must be the very last write: the manifest's hard binding (``c2pa.hash.bmff``) covers
every other box, so anything written afterwards invalidates it. c2pa inserts its ``uuid`` box
before ``moov``, so a faststart file (moov before mdat) stays faststart.

Nothing here touches the network unless an RFC 3161 time-stamp authority is configured: no OCSP,
no remote manifests. With one, every signature is countersigned by it (the manifest then proves
when it was signed and, if the authority is trusted, stays valid after the signing certificate
expires), and a failed time stamp fails the signing: a video is never delivered unsigned, nor
signed without the time stamp the operator asked for. c2pa's HTTP client gives up on an
authority that does not answer after 30 s (its default; c2pa 0.38 has no setting for it).
This is the only module that imports c2pa.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import c2pa
import numpy as np

from moderation.provenance.devcert import SigningCredentials

MIME_TYPE = "video/mp4"
GENERATOR_NAME = "Reelcast"
PROVENANCE_LABEL = "com.reelcast.provenance"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
WATERMARK_SCHEME = "reelcast-luma-spread-spectrum-v1"
SOFT_BINDING_LABEL = "c2pa.soft-binding"
# Ours, not (yet) on the C2PA soft-binding algorithm list: a reverse-domain name, as it asks.
SOFT_BINDING_ALG = "org.reelcast.watermark.v1"

_OFFLINE_SETTINGS: dict[str, Any] = {
    "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    "builder": {"thumbnail": {"enabled": False}},
}


@dataclass(frozen=True)
class ManifestFields:
    """What the manifest says about one video.

    ``fingerprint`` is the video's PDQ hashes ((n, 32) uint8, or hex strings);
    ``job_reference`` an opaque code for the job (never a tenant's or person's name).
    """

    title: str
    model_name: str
    watermark_payload: int
    fingerprint: np.ndarray | Sequence[str]
    generator_version: str = "0.1.0"
    job_reference: str | None = None


class SigningError(RuntimeError):
    """The MP4 could not be signed, and nothing was written: it must not be delivered."""


class Signer:
    """A reusable ES256 C2PA signer made from a certificate chain and its private key.

    ``timestamp_url`` is an RFC 3161 time-stamp authority (http or https) that c2pa calls on
    every signature; None (or "") signs without a time stamp.
    """

    def __init__(self, credentials: SigningCredentials, *, timestamp_url: str | None = None):
        timestamp_url = timestamp_url or None
        if timestamp_url is not None and not timestamp_url.startswith(("http://", "https://")):
            raise ValueError(
                f"timestamp_url must be an http:// or https:// URL, got {timestamp_url!r}"
            )
        info = c2pa.C2paSignerInfo(
            c2pa.C2paSigningAlg.ES256,
            credentials.certificate_chain_pem.encode(),
            credentials.private_key_pem.encode(),
            timestamp_url,
        )
        self._signer = c2pa.Signer.from_info(info)
        self.credentials = credentials
        self.timestamp_url = timestamp_url

    def close(self) -> None:
        self._signer.close()

    def __enter__(self) -> Signer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _fingerprint_hex(fingerprint: np.ndarray | Sequence[str]) -> list[str]:
    if isinstance(fingerprint, np.ndarray):
        if fingerprint.ndim != 2 or fingerprint.dtype != np.uint8:
            raise ValueError(f"fingerprint must be uint8 (n, 32), got {fingerprint.shape}")
        return [row.tobytes().hex() for row in fingerprint]
    return [str(value) for value in fingerprint]


def manifest_definition(fields: ManifestFields) -> dict[str, Any]:
    """The c2pa manifest definition (JSON-ready) for ``fields``."""
    if not 0 <= fields.watermark_payload < 1 << 64:
        raise ValueError("watermark_payload must be a 64-bit unsigned integer")
    provenance: dict[str, Any] = {
        "watermark": {
            "scheme": WATERMARK_SCHEME,
            "payload": f"{fields.watermark_payload:016x}",
            "payload_bits": 64,
        },
        "fingerprint": {"algorithm": "pdq", "hashes": _fingerprint_hex(fields.fingerprint)},
        "model": fields.model_name,
    }
    if fields.job_reference is not None:
        provenance["job"] = fields.job_reference
    return {
        "claim_generator_info": [{"name": GENERATOR_NAME, "version": fields.generator_version}],
        "title": fields.title,
        "format": MIME_TYPE,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                            "softwareAgent": {"name": fields.model_name},
                        }
                    ]
                },
            },
            {"label": PROVENANCE_LABEL, "data": provenance},
            {"label": SOFT_BINDING_LABEL, "data": soft_binding(fields.watermark_payload)},
        ],
    }


def soft_binding(payload: int) -> dict[str, Any]:
    """The ``c2pa.soft-binding`` assertion's data for a watermark carrying ``payload``.

    ``value`` is a byte string in the spec's CDDL; c2pa takes it from JSON as a list of byte
    values and its Reader gives it back base64-encoded. The empty scope is the whole asset:
    the watermark is in every frame.
    """
    return {
        "alg": SOFT_BINDING_ALG,
        "name": "Reelcast invisible watermark: the job's 64-bit payload in every frame",
        "blocks": [{"scope": {}, "value": list(payload.to_bytes(8, "big"))}],
    }


def soft_binding_payloads(manifest: dict) -> list[int]:
    """The watermark payloads our soft-binding assertions in ``manifest`` (one manifest of a
    Reader's store) declare."""
    payloads = []
    for assertion in manifest.get("assertions", []):
        data = assertion.get("data") or {}
        if assertion.get("label") != SOFT_BINDING_LABEL or data.get("alg") != SOFT_BINDING_ALG:
            continue
        for block in data.get("blocks", []):
            value = base64.b64decode(block.get("value", ""))
            if len(value) == 8:
                payloads.append(int.from_bytes(value, "big"))
    return payloads


def _context(trust_anchors_pem: str | None = None) -> c2pa.Context:
    settings = json.loads(json.dumps(_OFFLINE_SETTINGS))
    if trust_anchors_pem:
        settings["trust"] = {"user_anchors": trust_anchors_pem}
    return c2pa.Context.from_dict(settings)


@dataclass(frozen=True)
class Signed:
    """A signed MP4 and the manifest store embedded in it, as the raw JUMBF bytes c2pa wrote
    (what a Reader takes as ``manifest_data`` to read it apart from the asset)."""

    mp4: bytes
    manifest_bytes: bytes


def sign_mp4(mp4_bytes: bytes, *, manifest_fields: ManifestFields, signer: Signer) -> bytes:
    """The MP4 with a signed C2PA manifest embedded (time-stamped when the signer has a
    time-stamp authority); raises SigningError if it cannot, time stamp included."""
    return sign_mp4_keeping_manifest(mp4_bytes, manifest_fields=manifest_fields, signer=signer).mp4


def sign_mp4_keeping_manifest(
    mp4_bytes: bytes, *, manifest_fields: ManifestFields, signer: Signer
) -> Signed:
    """``sign_mp4``, also returning the manifest store's bytes, to be kept apart from the
    video so that a copy which lost its manifest can be given it back (soft binding)."""
    builder = c2pa.Builder(manifest_definition(manifest_fields), context=_context())
    try:
        output = io.BytesIO()
        manifest_bytes = builder.sign(signer._signer, MIME_TYPE, io.BytesIO(mp4_bytes), output)
    except c2pa.C2paError as exc:
        if signer.timestamp_url:
            raise SigningError(
                "C2PA signing failed with an RFC 3161 time stamp requested (is the time-stamp "
                f"authority up?); the video is not delivered unsigned: {exc}"
            ) from exc
        raise SigningError(f"C2PA signing failed: {exc}") from exc
    finally:
        builder.close()
    return Signed(mp4=output.getvalue(), manifest_bytes=bytes(manifest_bytes))


def read_manifest(
    mp4_bytes: bytes,
    *,
    trust_anchors_pem: str | None = None,
    manifest_bytes: bytes | None = None,
) -> dict | None:
    """The active manifest of an MP4 as c2pa's own Reader validates it, or None if it has none.

    With ``manifest_bytes`` (a manifest store kept apart, as ``Signed.manifest_bytes``) that
    store is read and validated against ``mp4_bytes`` instead of one embedded in it: its
    signature still checks out on a re-encoded copy, its hard binding
    (``assertion.bmffHash.mismatch``) does not.

    Keys: ``validation_state`` ("Trusted", "Valid" or "Invalid"), ``valid`` (the signature and
    every hash check out), ``trusted`` (and the chain ends in one of ``trust_anchors_pem``),
    ``failures`` (c2pa's failure codes), ``claim_generator`` ("Reelcast/0.1.0"), ``actions``,
    ``provenance`` (our assertion's data), ``signature`` and ``manifest`` (all of it), and
    ``soft_binding_payloads`` (what our ``c2pa.soft-binding`` assertions declare), ``store``
    (the whole manifest store as the Reader gives it) and ``timestamp``: None without an RFC 3161 time stamp, else ``time`` (aware datetime),
    ``validated`` (its signature and imprint check out), ``trusted`` (the authority's chain ends
    in one of ``trust_anchors_pem``) and ``codes`` (c2pa's ``timeStamp.*`` codes). A time stamp
    that does not check out is informational to c2pa: it never makes the manifest invalid.
    """
    try:
        reader = c2pa.Reader(
            MIME_TYPE,
            io.BytesIO(mp4_bytes),
            manifest_data=manifest_bytes,
            context=_context(trust_anchors_pem),
        )
    except c2pa.C2paError.ManifestNotFound:
        return None
    try:
        store = json.loads(reader.json())
        state = reader.get_validation_state()
    finally:
        reader.close()
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    results = store.get("validation_results", {}).get("activeManifest", {})
    failures = [item.get("code", "") for item in results.get("failure", [])]
    successes = [item.get("code", "") for item in results.get("success", [])]
    assertions = {item.get("label"): item.get("data") for item in manifest.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get(
        "actions", []
    )
    generator = (manifest.get("claim_generator_info") or [{}])[0]
    return {
        "validation_state": state,
        "valid": state in ("Valid", "Trusted")
        and all(code == "signingCredential.untrusted" for code in failures),
        "trusted": state == "Trusted",
        "failures": failures,
        "claim_generator": f"{generator.get('name', '')}/{generator.get('version', '')}",
        "actions": actions,
        "provenance": assertions.get(PROVENANCE_LABEL),
        "soft_binding_payloads": soft_binding_payloads(manifest),
        "signature": manifest.get("signature_info", {}),
        "timestamp": _timestamp(manifest.get("signature_info", {}), results, successes),
        "manifest": manifest,
        "store": store,
    }


def manifest_in_upload(
    data: bytes, *, trust_anchors_pem: str | None = None, manifest_bytes: bytes | None = None
) -> dict | None:
    """``read_manifest`` of an uploaded file that may be any video (a WebM, a MOV): None where
    c2pa cannot read a manifest in it (or ``manifest_bytes`` against it), whatever the reason."""
    try:
        return read_manifest(
            data, trust_anchors_pem=trust_anchors_pem, manifest_bytes=manifest_bytes
        )
    except c2pa.C2paError:
        return None


def _timestamp(signature: dict, results: dict, successes: list[str]) -> dict | None:
    codes = [
        item.get("code", "")
        for kind in ("success", "informational", "failure")
        for item in results.get(kind, [])
        if item.get("code", "").startswith("timeStamp.")
    ]
    if not codes and not signature.get("time"):
        return None
    time = signature.get("time")
    return {
        "time": datetime.datetime.fromisoformat(time) if time else None,
        "validated": "timeStamp.validated" in successes,
        "trusted": "timeStamp.trusted" in successes,
        "codes": codes,
    }
