"""The storefront widget's files, served from /embed/v1/ so that any shop page can load them.

A shop pastes ``<script src="https://HOST/embed/v1/widget.js" data-key="pk_…"
data-template="…">``; the script then loads ``widget.css`` into its own shadow root. Both are
plain files from ``platform/static/embed/v1/``, served here rather than from /static/ because
the URL is a public contract (it must not change with a static-files hash or a CDN move) and
because /embed/ is where the security headers let other origins load and frame what we serve
(``REELCAST_FRAMEABLE_PATHS``: no X-Frame-Options, ``Cross-Origin-Resource-Policy:
cross-origin``).

Caching: the file under a version path changes only with a deploy, so browsers keep it for
five minutes and then revalidate with its ETag (a 304 costs one small round trip); a fix
therefore reaches every storefront within minutes without the shop changing its snippet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe

WIDGET_DIR = Path(settings.BASE_DIR) / "platform" / "static" / "embed" / "v1"
CONTENT_TYPES = {
    "widget.js": "text/javascript; charset=utf-8",
    "widget.css": "text/css; charset=utf-8",
}
MAX_AGE_S = 300


@dataclass(frozen=True)
class _Asset:
    mtime_ns: int
    body: bytes
    etag: str


_loaded: dict[str, _Asset] = {}


def _asset(name: str) -> _Asset:
    """The file's bytes and ETag, read again only when the file changed on disk."""
    path = WIDGET_DIR / name
    try:
        mtime_ns = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise Http404("no such widget file") from None
    cached = _loaded.get(name)
    if cached is None or cached.mtime_ns != mtime_ns:
        body = path.read_bytes()
        cached = _Asset(mtime_ns, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        _loaded[name] = cached
    return cached


@require_safe
def widget_asset(request: HttpRequest, name: str) -> HttpResponse:
    """``GET /embed/v1/widget.js`` and ``/embed/v1/widget.css``."""
    if name not in CONTENT_TYPES:
        raise Http404("no such widget file")
    asset = _asset(name)
    if asset.etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        response: HttpResponse = HttpResponseNotModified()
    else:
        response = HttpResponse(asset.body, content_type=CONTENT_TYPES[name])
    response["ETag"] = asset.etag
    patch_cache_control(response, public=True, max_age=MAX_AGE_S)
    # Loaded by <script>/<link> from every shop's origin, including pages that isolate
    # themselves with Cross-Origin-Embedder-Policy.
    response["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response
