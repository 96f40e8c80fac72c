"""The implicit label's signature: ReservedCode1 is ours over ContentProducer|ProduceID, checked
by the key id in ReservedCode2; an altered ProduceID, a foreign key or a bad producer code shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from generation.postprocess import aigc
from generation.postprocess.label import AigcLabel

KEY = b"k" * 32
JOB_HEX = "0f" * 16


def _signed_tag(*, key: bytes = KEY, producer: str = "RC0001", produce_id: str = JOB_HEX) -> str:
    return AigcLabel(
        content_producer=producer,
        produce_id=produce_id,
        reserved_code1=aigc.signature(key=key, content_producer=producer, produce_id=produce_id),
        reserved_code2=aigc.key_id(key),
    ).to_json()


def test_a_signed_label_carries_its_signature_and_key_id_in_the_reserved_codes():
    fields = json.loads(_signed_tag())
    assert (fields["ContentProducer"], fields["ProduceID"], fields["PropagateID"]) == (
        "RC0001",
        JOB_HEX,
        JOB_HEX,
    )
    assert len(fields["ReservedCode1"]) == 22  # 128 bits, base64url without padding
    assert fields["ReservedCode2"] == aigc.key_id(KEY) and fields["ReservedCode2"].startswith(
        "rcaigc1-"
    )
    check = aigc.verify(_signed_tag(), key=KEY)
    assert (check.status, check.produce_id, check.message) == (
        "valid",
        JOB_HEX,
        f"implicit label: valid signature for job {JOB_HEX}",
    )


@pytest.mark.parametrize("field", ["ProduceID", "ContentProducer"])
def test_an_altered_field_makes_the_signature_invalid(field):
    fields = json.loads(_signed_tag())
    fields[field] = "1f" * 16 if field == "ProduceID" else "RC0002"
    check = aigc.verify(json.dumps(fields), key=KEY)
    assert (check.status, check.message) == (
        "invalid",
        "implicit label present but signature invalid (forged or altered)",
    )


def test_a_label_signed_with_another_key_or_not_at_all_is_not_valid():
    foreign = aigc.verify(_signed_tag(key=b"x" * 32), key=KEY)
    assert foreign.status == "unknown_key"
    unsigned = aigc.verify(
        AigcLabel(content_producer="RC0001", produce_id=JOB_HEX).to_json(), key=KEY
    )
    assert unsigned.status == "unsigned"
    assert aigc.verify("not json", key=KEY).status == "malformed"
    assert aigc.verify('{"Label":"1"}', key=KEY).status == "malformed"


@pytest.mark.parametrize("code", ["", "has space", "a|b", "-lead", "x" * 65, "名字"])
def test_it_refuses_a_producer_code_out_of_format(code):
    with pytest.raises(ValueError):
        aigc.check_producer_code(code)
    with pytest.raises(ValueError):
        AigcLabel(content_producer=code, produce_id=JOB_HEX).to_json()


def test_a_deployment_with_a_bad_producer_code_does_not_start():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_DEBUG": "1", "REELCAST_AIGC_PRODUCER_CODE": "Reel cast"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=root, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: REELCAST_AIGC_PRODUCER_CODE" in result.stderr
