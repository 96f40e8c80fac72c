"""Pieces every API module shares."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.pagination import CursorPagination


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


class CreatedCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200
