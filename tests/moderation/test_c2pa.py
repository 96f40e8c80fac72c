"""C2PA credentials: signed offline with a local chain, read back by c2pa's own Reader."""

from __future__ import annotations

import base64
import datetime
import io
import json
import struct

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from generation.postprocess.encode import mp4_top_level_boxes
from moderation.provenance.c2pa_sign import (
    PROVENANCE_LABEL,
    TRAINED_ALGORITHMIC_MEDIA,
    ManifestFields,
    Signer,
    read_manifest,
    sign_mp4,
    sign_mp4_keeping_manifest,
)
from moderation.provenance.devcert import generate_dev_chain, load_credentials, write_dev_chain

PAYLOAD = 0x0123_4567_89AB_CDEF
FINGERPRINT = np.arange(64, dtype=np.uint8).reshape(2, 32)


def _fields(**changes) -> ManifestFields:
    values = dict(
        title="job-000042.mp4",
        model_name="Wan2.2-TI2V-5B",
        watermark_payload=PAYLOAD,
        fingerprint=FINGERPRINT,
        generator_version="0.1.0",
        job_reference="J000042",
    )
    values.update(changes)
    return ManifestFields(**values)


@pytest.fixture(scope="module")
def signed(credentials, mp4) -> bytes:
    with Signer(credentials) as signer:
        return sign_mp4(mp4, manifest_fields=_fields(), signer=signer)


def _mdat_range(data: bytes) -> tuple[int, int]:
    offset = 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        if kind == b"mdat":
            return offset + 8, offset + size
        offset += size
    raise AssertionError("no mdat")


def test_the_signed_mp4_validates_and_says_what_made_it(credentials, signed):
    manifest = read_manifest(signed, trust_anchors_pem=credentials.root_pem)

    assert manifest["validation_state"] == "Trusted"
    assert manifest["valid"] is True and manifest["trusted"] is True
    assert manifest["failures"] == []
    assert manifest["claim_generator"] == "Reelcast/0.1.0"
    assert manifest["actions"] == [
        {
            "action": "c2pa.created",
            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            "softwareAgent": {"name": "Wan2.2-TI2V-5B"},
        }
    ]
    assert manifest["provenance"] == {
        "watermark": {
            "scheme": "reelcast-luma-spread-spectrum-v1",
            "payload": "0123456789abcdef",
            "payload_bits": 64,
        },
        "fingerprint": {
            "algorithm": "pdq",
            "hashes": [bytes(range(32)).hex(), bytes(range(32, 64)).hex()],
        },
        "model": "Wan2.2-TI2V-5B",
        "job": "J000042",
    }
    assert manifest["signature"]["common_name"] == "Reelcast Development C2PA Signer"


def test_c2pa_s_own_reader_sees_the_custom_assertion(credentials, signed):
    context = c2pa.Context.from_dict(
        {
            "trust": {"user_anchors": credentials.root_pem},
            "verify": {"remote_manifest_fetch": False},
        }
    )
    reader = c2pa.Reader("video/mp4", io.BytesIO(signed), context=context)
    store = json.loads(reader.json())

    active = store["manifests"][store["active_manifest"]]
    assert PROVENANCE_LABEL in [assertion["label"] for assertion in active["assertions"]]
    assert reader.get_validation_state() == "Trusted"


def test_the_soft_binding_declares_the_watermark_payload(credentials, signed):
    manifest = read_manifest(signed, trust_anchors_pem=credentials.root_pem)
    binding = next(
        a["data"] for a in manifest["manifest"]["assertions"] if a["label"] == "c2pa.soft-binding"
    )
    assert binding["alg"] == "org.reelcast.watermark.v1"
    assert [base64.b64decode(block["value"]) for block in binding["blocks"]] == [
        PAYLOAD.to_bytes(8, "big")
    ]
    assert manifest["soft_binding_payloads"] == [PAYLOAD]


def test_the_kept_manifest_bytes_read_apart_from_the_video(credentials, mp4):
    with Signer(credentials) as signer:
        signed = sign_mp4_keeping_manifest(mp4, manifest_fields=_fields(), signer=signer)
    # Against the signed video: the same, trusted manifest.
    apart = read_manifest(
        signed.mp4, trust_anchors_pem=credentials.root_pem, manifest_bytes=signed.manifest_bytes
    )
    assert (apart["validation_state"], apart["soft_binding_payloads"]) == ("Trusted", [PAYLOAD])
    # Against other bytes (the unsigned encode): the signature holds, the hard binding does not.
    other = read_manifest(
        mp4, trust_anchors_pem=credentials.root_pem, manifest_bytes=signed.manifest_bytes
    )
    assert (other["validation_state"], other["failures"]) == (
        "Invalid",
        ["assertion.bmffHash.mismatch"],
    )


def test_a_flipped_byte_in_mdat_fails_validation(credentials, signed):
    start, end = _mdat_range(signed)
    tampered = bytearray(signed)
    tampered[(start + end) // 2] ^= 0x01

    manifest = read_manifest(bytes(tampered), trust_anchors_pem=credentials.root_pem)

    assert manifest["validation_state"] == "Invalid"
    assert manifest["valid"] is False
    assert "assertion.bmffHash.mismatch" in manifest["failures"]


def test_a_faststart_input_stays_faststart(mp4, signed):
    before = mp4_top_level_boxes(mp4)
    after = mp4_top_level_boxes(signed)

    assert before.index("moov") < before.index("mdat")
    assert after.index("moov") < after.index("mdat")
    assert "uuid" in after and after.index("uuid") < after.index("mdat")


def test_without_the_root_the_signature_is_valid_but_not_trusted(signed):
    manifest = read_manifest(signed)

    assert manifest["validation_state"] == "Valid"
    assert manifest["valid"] is True and manifest["trusted"] is False
    assert manifest["failures"] == ["signingCredential.untrusted"]


def test_a_chain_from_another_root_is_not_trusted(signed):
    stranger = generate_dev_chain(organisation="Someone Else")

    manifest = read_manifest(signed, trust_anchors_pem=stranger.root_pem)

    assert manifest["trusted"] is False


def test_an_unsigned_mp4_has_no_manifest(mp4):
    assert read_manifest(mp4) is None


def test_the_signing_certificate_is_what_c2pa_checks_for(credentials):
    certificate = x509.load_pem_x509_certificate(credentials.certificate_chain_pem.encode())
    root = x509.load_pem_x509_certificate(credentials.root_pem.encode())

    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert certificate.issuer == root.subject != certificate.subject
    certificate.verify_directly_issued_by(root)
    assert certificate.not_valid_after_utc > datetime.datetime.now(datetime.UTC)


def test_the_dev_chain_is_written_with_a_private_key_file_and_read_back(tmp_path, credentials, mp4):
    paths = write_dev_chain(tmp_path / "c2pa", credentials)

    assert paths["signing-key.pem"].stat().st_mode & 0o777 == 0o600
    loaded = load_credentials(tmp_path / "c2pa")
    assert loaded == credentials
    with Signer(loaded) as signer:
        signed = sign_mp4(mp4, manifest_fields=_fields(job_reference=None), signer=signer)
    manifest = read_manifest(signed, trust_anchors_pem=loaded.root_pem)
    assert manifest["trusted"] is True
    assert "job" not in manifest["provenance"]


def test_it_refuses_a_payload_wider_than_64_bits(credentials, mp4):
    with Signer(credentials) as signer, pytest.raises(ValueError, match="64-bit"):
        sign_mp4(mp4, manifest_fields=_fields(watermark_payload=1 << 64), signer=signer)
