"""The implicit label's (GB 45438 ``AIGC`` tag's) codes and signature; standard library only, so
settings can check the producer code at start.

What it protects: a label that says a video came from us can be checked to have come from us.
``ReservedCode1`` carries a keyed signature over ``ContentProducer`` and ``ProduceID`` (an
HMAC-SHA256 under a key derived from the watermark key, truncated to 128 bits, base64url without
padding) and ``ReservedCode2`` the id of the key that made it, so a trace can tell a genuine label
from one copied onto another video with its ProduceID changed, or one written by someone else.
The standard leaves both reserved fields to the producer's use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

# GB 45438 asks for the producer's name or code; we take a code: letters and digits first, then
# letters, digits, ".", "_", ":" or "-", at most 64 in all. No "|": it separates the signed fields.
PRODUCER_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
SIGNATURE_BYTES = 16
KEY_ID_PREFIX = "rcaigc1-"
FIELDS = (
    "Label",
    "ContentProducer",
    "ProduceID",
    "ReservedCode1",
    "ContentPropagator",
    "PropagateID",
    "ReservedCode2",
)


def derive_key(watermark_key: bytes) -> bytes:
    """The label's signing key, derived from the watermark key: labels verify as long as
    videos stay traceable, and neither key reveals the other."""
    return hmac.new(watermark_key, b"reelcast-aigc-label-v1", hashlib.sha256).digest()


def check_producer_code(code: str) -> str:
    """``code`` if it is a valid ContentProducer code, else ValueError saying what one is."""
    if not PRODUCER_CODE.fullmatch(code):
        raise ValueError(
            "the AIGC ContentProducer code must be 1-64 characters: a letter or digit, then "
            f'letters, digits, ".", "_", ":" or "-" (got {code!r})'
        )
    return code


def key_id(key: bytes) -> str:
    """The id ``ReservedCode2`` carries: names the signing key without revealing it."""
    digest = hashlib.sha256(b"reelcast-aigc-key-id|" + key).hexdigest()
    return KEY_ID_PREFIX + digest[:12]


def signature(*, key: bytes, content_producer: str, produce_id: str) -> str:
    """``ReservedCode1``: HMAC-SHA256 over "ContentProducer|ProduceID", 128 bits, base64url."""
    check_producer_code(content_producer)
    message = f"reelcast-aigc-v1|{content_producer}|{produce_id}".encode()
    mac = hmac.new(key, message, hashlib.sha256).digest()[:SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


@dataclass(frozen=True)
class LabelCheck:
    """What an ``AIGC`` tag says and whether its signature is ours.

    ``status``: "valid" (signed with our current key over these fields), "invalid" (our key id,
    but the signature does not match the fields: altered or forged), "unknown_key" (signed with a
    key id we do not hold), "unsigned" (no signature) or "malformed" (not the standard's JSON).
    """

    status: str
    content_producer: str | None
    produce_id: str | None
    message: str

    @property
    def valid(self) -> bool:
        return self.status == "valid"


def verify(tag: str, *, key: bytes) -> LabelCheck:
    """Check an ``AIGC`` tag's signature against ``key``."""
    try:
        fields = json.loads(tag)
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or not all(
        isinstance(fields.get(name), str) for name in FIELDS
    ):
        return LabelCheck("malformed", None, None, "implicit label present but malformed")
    producer, produce_id = fields["ContentProducer"], fields["ProduceID"]
    signed, signed_by = fields["ReservedCode1"], fields["ReservedCode2"]
    if not signed:
        return LabelCheck("unsigned", producer, produce_id, "implicit label present but not signed")
    if signed_by != key_id(key):
        return LabelCheck(
            "unknown_key",
            producer,
            produce_id,
            f"implicit label signed with a key we do not hold ({signed_by or 'no key id'})",
        )
    expected = (
        signature(key=key, content_producer=producer, produce_id=produce_id)
        if PRODUCER_CODE.fullmatch(producer)
        else ""
    )
    if not expected or not hmac.compare_digest(signed.encode(), expected.encode()):
        return LabelCheck(
            "invalid",
            producer,
            produce_id,
            "implicit label present but signature invalid (forged or altered)",
        )
    return LabelCheck(
        "valid", producer, produce_id, f"implicit label: valid signature for job {produce_id}"
    )
