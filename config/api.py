"""Pieces every API module shares."""

from __future__ import annotations

from rest_framework import exceptions, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, instead of silently dropping them."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = set(data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {name: "Unknown field." for name in sorted(unknown)}
                )
        return super().to_internal_value(data)


class CsvRenderer(BaseRenderer):
    """Lets an endpoint that answers CSV accept ``Accept: text/csv`` (DRF's negotiation would
    answer 406). The view returns the CSV bytes itself; what DRF renders here is only an error,
    a problem document, which stays JSON under its own ``application/problem+json`` type."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if isinstance(data, bytes):
            return data
        return JSONRenderer().render(data)


class CreatedCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class MethodCheckedFirst(APIView):
    """A method the route does not serve is a 405 with ``Allow`` for whoever asks, before the
    role matrix runs: "this route takes POST" is true for a viewer as for an owner, and a 403
    would send a caller looking for a role that cannot help. The caller must still be
    authenticated (401 otherwise), and throttles still count the request.

    OPTIONS is not served when the view has no metadata class (the API's setting): it is
    refused like any other method and left out of ``Allow``.
    """

    def serves_method(self, method: str) -> bool:
        name = method.lower()
        if name not in self.http_method_names:
            return False
        if name == "options" and self.metadata_class is None:
            return False
        return callable(getattr(self, name, None))

    @property
    def allowed_methods(self) -> list[str]:
        return [m.upper() for m in self.http_method_names if self.serves_method(m)]

    def http_method_not_allowed(self, request, *args, **kwargs):
        allowed = ", ".join(m for m in self.allowed_methods if m != "HEAD")
        raise exceptions.MethodNotAllowed(
            request.method, detail=f"{request.method} is not allowed here; use {allowed}."
        )

    def check_permissions(self, request: Request) -> None:
        if self.serves_method(request.method):
            super().check_permissions(request)
        elif request.successful_authenticator is None:
            self.permission_denied(request)  # 401 (or 403 where no scheme can challenge)
        # else: the dispatch answers 405 through http_method_not_allowed
