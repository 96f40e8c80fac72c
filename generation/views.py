"""The signed download endpoint, and the root redirect into the dashboard.

The dashboard's pages live in ``generation/dashboard_views.py`` (routed by generation/urls.py).
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse

from config.problems import problem_response
from generation import delivery, selectors
from generation.dashboard_views import home

__all__ = ["download", "home"]

DOWNLOAD_METHODS = ("GET", "HEAD")


def download(request: HttpRequest, token: str, filename: str) -> HttpResponse:
    """``GET``/``HEAD /dl/<token>/<filename>``: a forged, altered or expired token is a 404; a
    good token whose file was deleted (on request, by retention, by a consent's end) is a 410
    ``gone``; HEAD answers the headers a GET would, without the body."""
    if request.method not in DOWNLOAD_METHODS:
        return problem_response(
            405,
            detail=f"{request.method} is not allowed here; use GET.",
            code="method_not_allowed",
            headers={"Allow": ", ".join(DOWNLOAD_METHODS)},
        )
    key = delivery.resolve_token(token)
    if not key.endswith("/" + filename):
        raise Http404("invalid link")
    try:
        response = delivery.serve(request, key)
    except delivery.FileMissing:
        receipt = selectors.deletion_receipt_for_key(key=key)
        if receipt is None:
            raise Http404("no such file") from None
        return problem_response(
            410,
            detail=f"This file was deleted on {receipt.created_at:%Y-%m-%d}; "
            "the link no longer works.",
            code="gone",
        )
    response["Cache-Control"] = "private, max-age=300"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response
