"""Signed, expiring download links, and serving them with HTTP Range.

On S3-compatible storage the link is the store's own presigned URL (the store handles Range).
On local storage it is ``/dl/<token>/<filename>``, where the token is an encrypted and
authenticated (tenant, key, expiry) triple, opaque to whoever holds it: tampering with any
part, or using it after expiry, is refused (404). A good token whose file was deleted since is
answered by the view (410).
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


class FileMissing(Exception):
    """The storage has no file at the key a good token names."""


def serve(request: HttpRequest, key: str) -> HttpResponse:
    """The file at ``key``, whole or the single byte range asked for (206 / 416).

    HEAD gets the same status and headers (Content-Type, Content-Length, Accept-Ranges and, for
    a range, Content-Range) and no body; the file is not opened. FileMissing when there is no
    file at ``key``.
    """
    if not default_storage.exists(key):
        raise FileMissing(key)
    try:
        size = default_storage.size(key)
    except FileNotFoundError:  # deleted since the check
        raise FileMissing(key) from None
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    header = request.headers.get("Range", "").strip()
    start, end = 0, size - 1
    if header:
        match = _RANGE_RE.match(header)
        if not match or match.groups() == ("", ""):
            return _unsatisfiable(size)
        start_s, end_s = match.groups()
        if start_s == "":
            start = max(0, size - int(end_s))
        else:
            start = int(start_s)
            end = min(int(end_s), size - 1) if end_s else size - 1
        if start >= size or start > end:
            return _unsatisfiable(size)
    status = 206 if header else 200
    response: HttpResponse
    if request.method == "HEAD":
        response = HttpResponse(status=status, content_type=content_type)
    elif not header:
        response = FileResponse(_open(key), content_type=content_type)
    else:
        response = StreamingHttpResponse(
            _chunks(_open(key), start, end - start + 1), status=206, content_type=content_type
        )
    if header:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    return response


def _chunks(handle, start: int, remaining: int, block: int = 256 * 1024):
    try:
        handle.seek(start)
        while remaining > 0:
            data = handle.read(min(block, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    finally:
        handle.close()


def _open(key: str):
    try:
        return default_storage.open(key, "rb")
    except FileNotFoundError:  # deleted since the check
        raise FileMissing(key) from None


def _unsatisfiable(size: int) -> HttpResponse:
    response = HttpResponse(status=416)
    response["Content-Range"] = f"bytes */{size}"
    return response
