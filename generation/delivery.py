"""Signed, expiring download links, and serving them with HTTP Range.

On S3-compatible storage the link is the store's own presigned URL (the store handles Range).
On local storage it is ``/dl/<token>/<filename>``, where the token is an encrypted and
authenticated (tenant, key, expiry) triple, opaque to whoever holds it: tampering with any
part, or using it after expiry, is refused.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.crypto import salted_hmac

SALT = "reelcast.download.v1"
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class SignedLink:
    url: str
    expires_at: datetime


def signed_link(
    *, tenant, key: str, ttl_s: int | None = None, now: float | None = None
) -> SignedLink:
    ttl = ttl_s or tenant.download_ttl_s or settings.REELCAST_DOWNLOAD_TTL_S
    expires = int((now if now is not None else time.time()) + ttl)
    expires_at = datetime.fromtimestamp(expires, tz=UTC)
    if settings.REELCAST_STORAGE == "s3":
        return SignedLink(url=default_storage.url(key, expire=ttl), expires_at=expires_at)
    payload = json.dumps({"t": str(tenant.id), "k": key, "e": expires}, separators=(",", ":"))
    token = _fernet().encrypt(payload.encode()).decode()
    path = reverse("download", kwargs={"token": token, "filename": os.path.basename(key)})
    return SignedLink(url=f"{settings.REELCAST_PUBLIC_URL}{path}", expires_at=expires_at)


def _fernet_key(secret: str) -> bytes:
    digest = salted_hmac(SALT, "download-link-key", secret=secret, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest)


def _fernet() -> MultiFernet:
    """Links are encrypted as well as signed (Fernet: AES-128-CBC with an HMAC-SHA256), so a
    link shows neither the tenant id nor the storage key; keys come from the secret key, and
    links made under a key in SECRET_KEY_FALLBACKS keep working until they expire."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([Fernet(_fernet_key(secret)) for secret in secrets])


def resolve_token(token: str, *, now: float | None = None) -> str:
    """The storage key a token grants, or Http404 when it is forged, altered or expired."""
    try:
        payload = json.loads(_fernet().decrypt(token.encode()))
    except (InvalidToken, ValueError, UnicodeError):
        raise Http404("invalid link") from None
    if not isinstance(payload, dict) or {"t", "k", "e"} - payload.keys():
        raise Http404("invalid link")
    if (now if now is not None else time.time()) > payload["e"]:
        raise Http404("expired link")
    key = payload["k"]
    if not key.startswith(f"tenants/{payload['t']}/"):
        raise Http404("invalid link")
    return key


def serve(request: HttpRequest, key: str) -> HttpResponse:
    """The file at ``key``, whole or the single byte range asked for (206 / 416)."""
    if not default_storage.exists(key):
        raise Http404("gone")
    size = default_storage.size(key)
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    header = request.headers.get("Range", "").strip()
    if not header:
        response: HttpResponse = FileResponse(
            default_storage.open(key, "rb"), content_type=content_type
        )
        response["Content-Length"] = str(size)
        response["Accept-Ranges"] = "bytes"
        return response
    match = _RANGE_RE.match(header)
    if not match or match.groups() == ("", ""):
        return _unsatisfiable(size)
    start_s, end_s = match.groups()
    if start_s == "":
        length = int(end_s)
        start, end = max(0, size - length), size - 1
    else:
        start = int(start_s)
        end = min(int(end_s), size - 1) if end_s else size - 1
    if start >= size or start > end:
        return _unsatisfiable(size)
    handle = default_storage.open(key, "rb")
    handle.seek(start)

    def chunks(remaining: int = end - start + 1, block: int = 256 * 1024):
        try:
            while remaining > 0:
                data = handle.read(min(block, remaining))
                if not data:
                    break
                remaining -= len(data)
                yield data
        finally:
            handle.close()

    response = StreamingHttpResponse(chunks(), status=206, content_type=content_type)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    return response


def _unsatisfiable(size: int) -> HttpResponse:
    response = HttpResponse(status=416)
    response["Content-Range"] = f"bytes */{size}"
    return response
