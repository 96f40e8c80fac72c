"""RFC 3161 time stamps on C2PA signatures, from a real time-stamp authority on loopback
(tests/support/tsa.py), read back by c2pa's own Reader."""

from __future__ import annotations

import datetime
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from generation.models import Job
from moderation.models import ProvenanceRecord
from moderation.provenance.c2pa_sign import (
    ManifestFields,
    Signer,
    SigningError,
    read_manifest,
    sign_mp4,
)
from tests import factories
from tests.support.tsa import TimeStampAuthority

SIZE = {"width": 320, "height": 180, "fps": 12, "duration_s": 2.0}


@pytest.fixture
def tsa():
    with TimeStampAuthority() as authority:
        yield authority


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsa"


def _fields() -> ManifestFields:
    return ManifestFields(
        title="job-000043.mp4",
        model_name="Wan2.2-TI2V-5B",
        watermark_payload=0x0123_4567_89AB_CDEF,
        fingerprint=np.arange(32, dtype=np.uint8).reshape(1, 32),
        job_reference="J000043",
    )


def _sign(credentials, mp4: bytes, timestamp_url: str | None) -> bytes:
    with Signer(credentials, timestamp_url=timestamp_url) as signer:
        return sign_mp4(mp4, manifest_fields=_fields(), signer=signer)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def test_a_signature_carries_a_trusted_time_stamp_from_the_configured_tsa(credentials, mp4, tsa):
    signed = _sign(credentials, mp4, tsa.url)

    manifest = read_manifest(signed, trust_anchors_pem=credentials.root_pem + tsa.root_pem)

    [issued] = tsa.issued
    assert (issued.hash_algorithm, issued.cert_req) == ("sha256", True)
    assert issued.nonce is not None  # c2pa sends one; the authority echoed it, c2pa checked it
    assert manifest["validation_state"] == "Trusted"
    assert manifest["valid"] is True and manifest["failures"] == []
    stamp = manifest["timestamp"]
    assert stamp["time"] == issued.gen_time
    assert abs(_now() - stamp["time"]) < datetime.timedelta(minutes=1)
    assert stamp["validated"] is True and stamp["trusted"] is True
    assert stamp["codes"] == ["timeStamp.validated", "timeStamp.trusted"]


def test_without_the_tsa_root_the_time_stamp_is_untrusted_but_the_manifest_validates(
    credentials, mp4, tsa
):
    signed = _sign(credentials, mp4, tsa.url)

    manifest = read_manifest(signed, trust_anchors_pem=credentials.root_pem)

    assert manifest["validation_state"] == "Trusted"
    assert manifest["valid"] is True and manifest["failures"] == []
    stamp = manifest["timestamp"]
    assert stamp["time"] == tsa.issued[0].gen_time
    assert stamp["validated"] is True and stamp["trusted"] is False
    assert stamp["codes"] == ["timeStamp.validated", "timeStamp.untrusted"]


def test_with_no_anchors_at_all_only_the_signing_credential_is_a_failure(credentials, mp4, tsa):
    signed = _sign(credentials, mp4, tsa.url)

    manifest = read_manifest(signed)

    assert manifest["validation_state"] == "Valid"
    assert manifest["valid"] is True
    assert manifest["failures"] == ["signingCredential.untrusted"]
    assert manifest["timestamp"]["codes"] == ["timeStamp.validated", "timeStamp.untrusted"]


def test_another_authority_s_root_does_not_make_the_time_stamp_trusted(credentials, mp4, tsa):
    signed = _sign(credentials, mp4, tsa.url)
    stranger = TimeStampAuthority()  # same names, different keys: never started

    manifest = read_manifest(signed, trust_anchors_pem=credentials.root_pem + stranger.root_pem)

    assert manifest["timestamp"]["validated"] is True
    assert manifest["timestamp"]["trusted"] is False


def test_without_a_tsa_the_signature_has_no_time_stamp(credentials, mp4, tsa):
    signed = _sign(credentials, mp4, None)

    manifest = read_manifest(signed, trust_anchors_pem=credentials.root_pem + tsa.root_pem)

    assert manifest["validation_state"] == "Trusted" and manifest["failures"] == []
    assert manifest["timestamp"] is None
    assert "time" not in manifest["signature"]
    assert tsa.issued == []


def test_signing_fails_at_once_with_a_clear_error_when_the_tsa_is_down(
    credentials, mp4, closed_port_url
):
    started = time.monotonic()
    with pytest.raises(SigningError, match=r"time stamp requested .*not delivered unsigned"):
        _sign(credentials, mp4, closed_port_url)

    assert time.monotonic() - started < 5


def test_a_signer_refuses_a_tsa_url_that_is_not_http(credentials):
    with pytest.raises(ValueError, match="http:// or https://"):
        Signer(credentials, timestamp_url="timestamp.example:318")


@pytest.mark.slow
def test_a_tsa_that_never_answers_fails_the_signing_after_c2pa_s_http_timeout(credentials, mp4):
    # c2pa 0.38 has no timeout setting: its HTTP client's own 30 s is what keeps a worker from
    # hanging. If an upgrade drops it, this test hangs or fails instead of production.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # the kernel accepts the connection; nobody ever answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/tsa"
        started = time.monotonic()
        with pytest.raises(SigningError, match="time stamp requested"):
            _sign(credentials, mp4, url)
        elapsed = time.monotonic() - started

    assert 25 < elapsed < 45


# --- the delivery pipeline ------------------------------------------------------------------------


def _submit(tenant, run_on_commit) -> Job:
    template = factories.make_template(tenant, prompt="{name} flies a kite.", **SIZE)
    from tests.conftest import key_client

    response = run_on_commit(
        key_client(factories.make_secret_key(tenant)).post,
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": "Ada"}},
        format="json",
    )
    return Job.objects.get(pk=response.json()["id"])


@pytest.mark.django_db
def test_a_delivered_video_is_time_stamped_by_the_configured_tsa(
    tenant, run_on_commit, settings, tsa
):
    settings.REELCAST_C2PA_TSA_URL = tsa.url
    from generation.storage import get_bytes

    job = _submit(tenant, run_on_commit)

    assert job.state == "succeeded", (job.error_code, job.error_message)
    root = (Path(settings.REELCAST_C2PA_DIR) / "root-ca.pem").read_text()
    manifest = read_manifest(get_bytes(job.video_key), trust_anchors_pem=root + tsa.root_pem)
    assert manifest["trusted"] is True and manifest["failures"] == []
    assert manifest["timestamp"]["trusted"] is True
    assert manifest["timestamp"]["time"] in [issued.gen_time for issued in tsa.issued]


@pytest.mark.django_db
def test_with_the_tsa_down_the_job_fails_instead_of_delivering_an_unsigned_video(
    tenant, run_on_commit, settings, closed_port_url
):
    settings.REELCAST_C2PA_TSA_URL = closed_port_url

    job = _submit(tenant, run_on_commit)

    assert job.state == "failed"
    assert job.error_code == "postprocess_error"
    assert job.error_message.startswith("SigningError: C2PA signing failed with an RFC 3161")
    assert job.video_key == ""
    assert not ProvenanceRecord.objects.filter(job=job).exists()
