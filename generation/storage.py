"""Where job files live. Keys always start with the tenant id."""

from __future__ import annotations

import contextlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage


def tenant_key(tenant_id: object, *parts: str) -> str:
    return "/".join(["tenants", str(tenant_id), *parts])


def job_key(job, name: str) -> str:
    return tenant_key(job.tenant_id, "jobs", str(job.id), name)


def put_bytes(key: str, data: bytes) -> str:
    """Write ``data`` at exactly ``key`` (replacing what a failed earlier attempt left)."""
    if default_storage.exists(key):
        default_storage.delete(key)
    try:
        saved = default_storage.save(key, ContentFile(data))
    except Exception:
        # A write that failed part-way (disk full, connection reset) may leave a truncated
        # file at the key; nothing may ever read it as the real thing.
        with contextlib.suppress(Exception):
            if default_storage.exists(key):
                default_storage.delete(key)
        raise
    if saved != key:  # a storage that renames would break tenant-scoped keys
        raise RuntimeError(f"storage saved {key!r} as {saved!r}")
    return key


def get_bytes(key: str) -> bytes:
    with default_storage.open(key, "rb") as handle:
        return handle.read()


def delete_keys(keys: list[str]) -> list[str]:
    deleted = []
    for key in keys:
        if key and default_storage.exists(key):
            default_storage.delete(key)
            deleted.append(key)
    return deleted
