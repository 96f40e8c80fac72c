"""Backends by name. The ``wan`` backend is imported only when asked for, so web processes and
CPU workers never load torch."""

from __future__ import annotations

from functools import cache

from generation.backends.base import Backend


@cache
def get_backend(name: str) -> Backend:
    if name == "preview":
        from generation.backends.preview import PreviewBackend

        return PreviewBackend()
    if name == "wan":
        from generation.backends.wan import WanBackend

        return WanBackend()
    raise KeyError(f"unknown backend {name!r}")
