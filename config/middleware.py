"""Request guards that must run before a view reads anything."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from config.problems import problem_response


class BodySizeLimitMiddleware:
    """Refuse API bodies over REELCAST_MAX_BODY_BYTES with a 413 before reading them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            raw = request.META.get("CONTENT_LENGTH") or "0"
            try:
                length = int(raw)
            except ValueError:
                return problem_response(
                    400, detail="Content-Length is not a number.", code="bad_content_length"
                )
            limit = settings.REELCAST_MAX_BODY_BYTES
            if length > limit:
                return problem_response(
                    413,
                    detail=f"The body is {length} bytes; the limit is {limit} bytes.",
                    code="payload_too_large",
                )
        return self.get_response(request)
