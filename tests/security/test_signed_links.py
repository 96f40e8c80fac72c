"""Signed download links are opaque (issue #15): a link holder learns neither the tenant id nor
the storage key, and cannot alter either."""

from __future__ import annotations

import base64
import binascii
import contextlib
import time
import zlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from generation import delivery

pytestmark = pytest.mark.django_db


def _decodings(token: str) -> list[bytes]:
    """Everything a curious holder could read out of the token's parts."""
    out = []
    for part in token.replace(":", ".").split("."):
        padded = part + "=" * (-len(part) % 4)
        try:
            raw = base64.urlsafe_b64decode(padded)
        except (binascii.Error, ValueError):
            continue
        out.append(raw)
        with contextlib.suppress(zlib.error):
            out.append(zlib.decompress(raw))
    return out


def test_a_link_reveals_neither_tenant_nor_storage_key(client, tenant):
    key = default_storage.save(f"tenants/{tenant.id}/jobs/x/video.mp4", ContentFile(b"mp4-bytes"))
    link = delivery.signed_link(tenant=tenant, key=key)
    token = link.url.split("/dl/", 1)[1].split("/", 1)[0]

    for needle in (str(tenant.id), str(tenant.id).replace("-", ""), "tenants/", "video.mp4"):
        assert needle not in token
        assert all(needle.encode() not in raw for raw in _decodings(token)), needle
    response = client.get(link.url.split("127.0.0.1:8000", 1)[1])
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"mp4-bytes"


def test_an_altered_or_expired_link_is_refused(client, tenant):
    key = default_storage.save(f"tenants/{tenant.id}/jobs/y/video.mp4", ContentFile(b"x"))
    link = delivery.signed_link(tenant=tenant, key=key)
    path = link.url.split("127.0.0.1:8000", 1)[1]
    token = path.split("/")[2]
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    assert client.get(path.replace(token, flipped)).status_code == 404

    old = delivery.signed_link(tenant=tenant, key=key, ttl_s=60, now=time.time() - 120)
    assert client.get(old.url.split("127.0.0.1:8000", 1)[1]).status_code == 404


def test_a_link_made_before_a_secret_key_rotation_keeps_working(client, tenant, settings):
    key = default_storage.save(f"tenants/{tenant.id}/jobs/z/video.mp4", ContentFile(b"z"))
    link = delivery.signed_link(tenant=tenant, key=key)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "n" * 40
    assert client.get(link.url.split("127.0.0.1:8000", 1)[1]).status_code == 200
    settings.SECRET_KEY_FALLBACKS = []
    assert client.get(link.url.split("127.0.0.1:8000", 1)[1]).status_code == 404


def test_another_tenant_cannot_be_named_in_a_link(tenant, other_tenant):
    # The key must lie under the tenant the link was made for, even for a well-formed token.
    with pytest.raises(Exception, match="invalid link"):
        delivery.resolve_token(
            delivery.signed_link(tenant=tenant, key=f"tenants/{other_tenant.id}/jobs/q/video.mp4")
            .url.split("/dl/", 1)[1]
            .split("/", 1)[0]
        )
