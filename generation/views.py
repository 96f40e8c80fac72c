"""The signed download endpoint, and the root redirect into the dashboard.

The dashboard's pages live in ``generation/dashboard_views.py`` (routed by generation/urls.py).
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from generation import delivery
from generation.dashboard_views import home

__all__ = ["download", "home"]


@require_GET
def download(request: HttpRequest, token: str, filename: str) -> HttpResponse:
    key = delivery.resolve_token(token)
    if not key.endswith("/" + filename):
        raise Http404("invalid link")
    response = delivery.serve(request, key)
    response["Cache-Control"] = "private, max-age=300"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response
