"""Writes for tenants, members and API keys. Services are the only writers."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from tenants.models import ApiKey, Membership, Role, Tenant

KEY_PREFIX_LENGTH = 12
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def tenant_create(
    *,
    name: str,
    kind: str = Tenant.Kind.OTHER,
    slug: str | None = None,
    owner: AbstractBaseUser | None = None,
) -> Tenant:
    """Create a tenant (and make ``owner`` its owner). The slug is unique platform-wide."""
    with transaction.atomic():
        tenant = Tenant.objects.create(name=name, kind=kind, slug=slug or slugify(name)[:64])
        if owner is not None:
            Membership.objects.create(tenant=tenant, user=owner, role=Role.OWNER)
    return tenant


def membership_set(*, tenant: Tenant, user: AbstractBaseUser, role: str) -> Membership:
    """Give ``user`` exactly ``role`` in ``tenant``."""
    membership, _ = Membership.objects.update_or_create(
        tenant=tenant, user=user, defaults={"role": Role(role)}
    )
    return membership


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw_key: str  # shown to the user once, never stored


def apikey_create(
    *,
    tenant: Tenant,
    kind: str,
    name: str,
    created_by: AbstractBaseUser | None = None,
    allowed_origins: list[str] | None = None,
    allowed_template_ids: list[str] | None = None,
) -> IssuedKey:
    """Mint a key; only its hash and prefix are kept."""
    kind = ApiKey.Kind(kind)
    marker = "sk_" if kind == ApiKey.Kind.SECRET else "pk_"
    for _ in range(5):
        raw = marker + secrets.token_urlsafe(30)
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    tenant=tenant,
                    kind=kind,
                    name=name,
                    prefix=raw[:KEY_PREFIX_LENGTH],
                    key_hash=hash_key(raw),
                    created_by=created_by,
                    allowed_origins=list(allowed_origins or []),
                    allowed_template_ids=[str(t) for t in allowed_template_ids or []],
                )
            return IssuedKey(api_key=api_key, raw_key=raw)
        except IntegrityError:  # prefix collision: astronomically rare, try another key
            continue
    raise RuntimeError("could not allocate a unique API key prefix")


def apikey_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke at once; a revoked key never authenticates again."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def apikey_authenticate(*, raw_key: str) -> ApiKey | None:
    """The live key that ``raw_key`` is, or None. Records the last-use time (to the minute)."""
    if not raw_key.startswith(("sk_", "pk_")) or len(raw_key) < KEY_PREFIX_LENGTH + 8:
        return None
    api_key = (
        ApiKey.objects.select_related("tenant").filter(prefix=raw_key[:KEY_PREFIX_LENGTH]).first()
    )
    if api_key is None or not hmac.compare_digest(api_key.key_hash, hash_key(raw_key)):
        return None
    if api_key.is_revoked:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > _LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
