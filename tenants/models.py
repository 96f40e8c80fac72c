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
    photo_retention_days = models.PositiveIntegerField(
        default=7,
        help_text="Delete end users' uploaded photos, and every file made from them, after "
        "this many days.",
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


class Invitation(TenantOwnedModel):
    """An offer of ``role`` in a tenant to one person, named by username or email.

    The link's token is shown to the inviter once; only its SHA-256 is kept. Only a signed-in
    user whose username or email is ``invitee`` (case-insensitively) can accept it, once, before
    ``expires_at`` and unless it was revoked: a forwarded or leaked link is useless to anyone
    else, and a removed member cannot rejoin through an old link.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    invitee = models.CharField(max_length=254, help_text="A username or an email address.")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="invitation_tenant_created")]

    def __str__(self) -> str:
        return f"{self.invitee} → {self.tenant} ({self.role})"

    def is_pending(self, now) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > now


class ApiKey(TenantOwnedModel):
    """A credential for a tenant's servers (``sk_``) or storefront (``pk_``).

    The key itself is shown once at creation; only its SHA-256 is stored, found through the
    unique ``prefix`` (the first characters of the key). A publishable key may only create jobs
    from ``allowed_template_ids`` and only from ``allowed_origins``, and at most
    ``storefront_jobs_per_hour`` / ``storefront_jobs_per_day`` of them in any rolling hour / day
    (empty: no storefront budget; the plan's quotas still apply).
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
    storefront_jobs_per_hour = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Publishable keys: jobs this key may create in any rolling hour; empty is "
        "no limit.",
    )
    storefront_jobs_per_day = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Publishable keys: jobs this key may create in any rolling 24 hours; empty is "
        "no limit.",
    )
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


# --- tenant webhooks ----------------------------------------------------------------------------


class WebhookEndpoint(TenantOwnedModel):
    """A URL of the tenant's that receives signed events (the Standard Webhooks scheme).

    ``event_types`` filters what it receives (empty: every event). ``secret`` is the current
    ``whsec_`` signing secret; during a rotation ``previous_secret`` also signs, until
    ``previous_secret_expires_at``, so a receiver can swap secrets without dropping a message.
    Secrets are kept in clear because signing needs them; the API shows one only when it is made.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=300, blank=True)
    event_types = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    secret = models.CharField(max_length=200)
    previous_secret = models.CharField(max_length=200, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="whendpoint_tenant_created"),
        ]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookEvent(TenantOwnedModel):
    """The outbox: one event that happened, sent to every endpoint that wanted it at the time.

    ``id`` (``evt_…``) is the ``webhook-id`` header: the same for every attempt of the event, so
    receivers can use it as an idempotency key. ``payload`` is the body's ``{type, timestamp,
    data}``; it never changes after the event is written.
    """

    id = models.CharField(primary_key=True, max_length=40, editable=False)
    type = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="whevent_tenant_created"),
            models.Index(fields=["tenant", "type"], name="whevent_tenant_type"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.type}"


class WebhookDelivery(TenantOwnedModel):
    """One attempt to POST one event to one endpoint: the delivery log, a row per attempt.

    A row is ``pending`` until ``due_at``, ``sending`` while one worker holds it (claimed by a
    conditional update, so two workers never send the same attempt), then ``succeeded`` or
    ``failed``. A failed automatic attempt with retries left names ``next_retry_at`` and has a
    pending successor with ``attempt + 1``; a manual replay is one attempt of its own.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    attempt = models.PositiveSmallIntegerField(default=1)
    manual = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    due_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempted_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_snippet = models.CharField(max_length=2000, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="whdelivery_tenant_created"),
            # the delivery worker's scan is across tenants, by due time
            models.Index(fields=["status", "due_at"], name="whdelivery_due"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "endpoint", "event", "attempt"],
                name="whdelivery_unique_attempt",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} #{self.attempt} ({self.status})"


class WebhookThrottle(TenantOwnedModel):
    """When an event of a throttled kind (``job.progress:<job id>``) was last emitted.

    Held in the database, not a per-process cache, so that every worker shares one clock.
    """

    key = models.CharField(max_length=120)
    last_emitted_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="whthrottle_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} @ {self.last_emitted_at}"
