"""Tenants, their members, and the API keys that act for them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Tenant(models.Model):
    """An organisation (a school, a shop). Every piece of tenant data hangs off one of these."""

    class Kind(models.TextChoices):
        SCHOOL = "school", "School"
        SHOP = "shop", "Shop"
        OTHER = "other", "Other"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OTHER)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    suspended_reason = models.CharField(max_length=300, blank=True)
    fair_share_weight = models.PositiveSmallIntegerField(
        default=1, help_text="Share of GPU time relative to other tenants when pools are busy."
    )
    max_concurrent_jobs = models.PositiveSmallIntegerField(
        default=4, help_text="Jobs of this tenant dispatched to GPUs at once."
    )
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Delete finished videos after this many days (empty: the plan's retention).",
    )
    download_ttl_s = models.PositiveIntegerField(
        default=24 * 3600, help_text="How long a signed download link stays valid."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class TenantQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Tenant) -> TenantQuerySet:
        return self.filter(tenant=tenant)


class TenantOwnedModel(models.Model):
    """Base of every tenant-owned row: the tenant is structural, never taken from a body."""

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="%(app_label)s_%(class)s_set"
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"


ROLE_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.ADMIN: 3, Role.OWNER: 4}


class Membership(TenantOwnedModel):
    """A user's role in one tenant; a user may belong to several tenants."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(minimum)]


class ApiKey(TenantOwnedModel):
    """A credential for a tenant's servers (``sk_``) or storefront (``pk_``).

    The key itself is shown once at creation; only its SHA-256 is stored, found through the
    unique ``prefix`` (the first characters of the key). A publishable key may only create jobs
    from ``allowed_template_ids`` and only from ``allowed_origins``.
    """

    class Kind(models.TextChoices):
        SECRET = "secret", "Secret (sk_)"
        PUBLISHABLE = "publishable", "Publishable (pk_)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    allowed_origins = models.JSONField(default=list, blank=True)
    allowed_template_ids = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="apikey_tenant_created")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_publishable(self) -> bool:
        return self.kind == self.Kind.PUBLISHABLE
