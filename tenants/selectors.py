"""Reads for tenants, members and keys."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from tenants.models import ApiKey, Membership, Tenant


def membership_for(*, user: AbstractBaseUser, tenant_id: str | None) -> Membership | None:
    """The user's membership in ``tenant_id``, or their first one when none is chosen."""
    memberships = Membership.objects.select_related("tenant").filter(
        user=user
    )  # unscoped: finds the tenant
    memberships = memberships.order_by("created_at")
    if tenant_id:
        return memberships.filter(tenant_id=tenant_id).first()
    return memberships.first()


def memberships_of(*, user: AbstractBaseUser) -> QuerySet[Membership]:
    memberships = Membership.objects.select_related("tenant").filter(user=user)  # unscoped: by user
    return memberships.order_by("tenant__name")


def apikey_list(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.for_tenant(tenant).order_by("-created_at")
