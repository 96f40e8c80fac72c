"""Moderation and provenance work that runs on the CPU cluster."""

from __future__ import annotations

from moderation.provenance_service import trace_index_snapshot


def snapshot_trace_index() -> str:
    """Scheduled: write a new trace index snapshot if the current one is missing or stale."""
    folder = trace_index_snapshot()
    return str(folder) if folder else "current snapshot still good"
