"""Writes for tenants, members and API keys. Services are the only writers."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError

from config.problems import ConflictProblem
from tenants.models import ROLE_RANK, ApiKey, Invitation, Membership, Role, Tenant

logger = logging.getLogger(__name__)

KEY_PREFIX_LENGTH = 12
_LAST_USED_RESOLUTION = timedelta(minutes=1)
INVITATION_TTL = timedelta(days=7)


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


# --- the team: roles, removal, invitations ------------------------------------------------------


def _rank(role: str) -> int:
    return ROLE_RANK[Role(role)]


def _check_manages(*, actor: Membership, target: Membership | None, role: str | None) -> None:
    """Admins and owners manage the team; nobody grants a role above their own, or changes or
    removes someone who outranks them (an admin cannot touch an owner)."""
    if not actor.has_role(Role.ADMIN):
        raise PermissionDenied(gettext("Only admins and owners manage the team."))
    if role is not None and _rank(role) > _rank(actor.role):
        raise PermissionDenied(gettext("You cannot give a role above your own."))
    if target is not None and _rank(target.role) > _rank(actor.role):
        raise PermissionDenied(gettext("You cannot change a member whose role is above yours."))


def _lock_owners(tenant: Tenant) -> list[Membership]:
    # Every owner row is locked, in one order, before the target is changed: two owners who
    # demote each other at once are serialised, and the second sees that only one owner is left.
    return list(
        Membership.objects.select_for_update()
        .for_tenant(tenant)
        .filter(role=Role.OWNER)
        .order_by("pk")
    )


def membership_role_change(*, membership: Membership, role: str, actor: Membership) -> Membership:
    """Give a member another role. A tenant always keeps at least one owner."""
    role = Role(role)
    with transaction.atomic():
        owners = _lock_owners(membership.tenant)
        target = (
            Membership.objects.select_for_update()
            .for_tenant(membership.tenant)
            .get(pk=membership.pk)
        )
        _check_manages(actor=actor, target=target, role=role)
        if target.role == Role.OWNER and role != Role.OWNER and len(owners) <= 1:
            raise ConflictProblem(
                gettext("The last owner cannot be demoted; make someone else an owner first."),
                code="last_owner",
            )
        if target.role != role:
            target.role = role
            target.save(update_fields=["role"])
    return target


def membership_remove(*, membership: Membership, actor: Membership) -> None:
    """Remove a member from the tenant. The last owner cannot be removed."""
    with transaction.atomic():
        owners = _lock_owners(membership.tenant)
        target = (
            Membership.objects.select_for_update()
            .for_tenant(membership.tenant)
            .get(pk=membership.pk)
        )
        _check_manages(actor=actor, target=target, role=None)
        if target.role == Role.OWNER and len(owners) <= 1:
            raise ConflictProblem(
                gettext("The last owner cannot be removed; make someone else an owner first."),
                code="last_owner",
            )
        target.delete()


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # the link's secret part, shown to the inviter once, never stored


def _is_invitee(user: AbstractBaseUser, invitee: str) -> bool:
    wanted = invitee.casefold()
    email = (getattr(user, "email", "") or "").casefold()
    return user.get_username().casefold() == wanted or (bool(email) and email == wanted)


def invitation_is_for(*, invitation: Invitation, user: AbstractBaseUser) -> bool:
    """Whether ``user`` is the person the invitation names (by username or email)."""
    return _is_invitee(user, invitation.invitee)


def invitation_create(
    *, tenant: Tenant, invitee: str, role: str, actor: Membership
) -> IssuedInvitation:
    """Invite one person, by username or email, to ``role``; returns the link's token once.

    Whether an account with that name exists is not revealed (an invitation is made either
    way), so the form cannot be used to discover other tenants' users. An earlier pending
    invitation of the same person is revoked: one live link per person.
    """
    invitee = invitee.strip()
    role = Role(role)
    _check_manages(actor=actor, target=None, role=role)
    if not invitee:
        raise ValidationError({"invitee": gettext("Enter a username or an email address.")})
    members = Membership.objects.for_tenant(tenant).select_related("user")
    if any(_is_invitee(member.user, invitee) for member in members):
        raise ValidationError({"invitee": gettext("This person is already a member.")})
    now = timezone.now()
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        Invitation.objects.for_tenant(tenant).filter(
            invitee__iexact=invitee, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=now)
        invitation = Invitation.objects.create(
            tenant=tenant,
            invitee=invitee,
            role=role,
            token_hash=hash_key(token),
            invited_by=actor.user,
            expires_at=now + INVITATION_TTL,
        )
    return IssuedInvitation(invitation=invitation, token=token)


def invitation_revoke(*, invitation: Invitation, actor: Membership) -> Invitation:
    """Withdraw a pending invitation; its link stops working at once."""
    _check_manages(actor=actor, target=None, role=invitation.role)
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
    return invitation


def invitation_pending(*, token: str) -> Invitation | None:
    """The live invitation a link's token stands for, or None (unknown, used, revoked, expired)."""
    invitation = (
        Invitation.objects.select_related("tenant")  # unscoped: the token names the tenant
        .filter(token_hash=hash_key(token))
        .first()
    )
    if invitation is None or not invitation.is_pending(timezone.now()):
        return None
    return invitation


def invitation_accept(*, token: str, user: AbstractBaseUser) -> Membership:
    """Make the signed-in invitee a member with the invited role, once.

    Someone who is already a member keeps their role: an invitation never demotes.
    """
    invitation = invitation_pending(token=token)
    if invitation is None:
        raise NotFound(gettext("This invitation is not valid any more."))
    if not _is_invitee(user, invitation.invitee):
        raise PermissionDenied(
            gettext("This invitation is for another account. Sign in as the person invited.")
        )
    now = timezone.now()
    with transaction.atomic():
        claimed = Invitation.objects.filter(  # unscoped: by primary key, found by its token
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(accepted_at=now, accepted_by=user)
        if not claimed:
            raise NotFound(gettext("This invitation is not valid any more."))
        membership, _created = Membership.objects.get_or_create(
            tenant=invitation.tenant, user=user, defaults={"role": invitation.role}
        )
    return membership


def tenant_suspend(*, tenant: Tenant, reason: str, actor: AbstractBaseUser | None = None) -> Tenant:
    """Suspend ``tenant`` for an operator's ``reason`` (shown to the tenant: its API calls that
    would spend anything get 402 ``tenant_suspended`` with it; queued jobs wait, nothing is
    deleted). A reason is required; suspending a suspended tenant only replaces the reason."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "A suspension needs a reason the tenant can read."})
    Tenant.objects.filter(pk=tenant.pk).update(
        status=Tenant.Status.SUSPENDED, suspended_reason=reason[:300]
    )
    logger.warning(
        "tenant %s suspended by %s: %s",
        tenant.pk,
        actor.get_username() if actor is not None else "system",
        reason,
    )
    tenant.refresh_from_db()
    return tenant


def tenant_reinstate(*, tenant: Tenant, actor: AbstractBaseUser | None = None) -> Tenant:
    """Lift a suspension (an operator's or billing's): the tenant is active again at once."""
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.ACTIVE, suspended_reason="")
    logger.warning(
        "tenant %s reinstated by %s",
        tenant.pk,
        actor.get_username() if actor is not None else "system",
    )
    tenant.refresh_from_db()
    return tenant


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
    storefront_jobs_per_hour: int | None = None,
    storefront_jobs_per_day: int | None = None,
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
                    storefront_jobs_per_hour=storefront_jobs_per_hour,
                    storefront_jobs_per_day=storefront_jobs_per_day,
                )
            return IssuedKey(api_key=api_key, raw_key=raw)
        except IntegrityError:  # prefix collision: astronomically rare, try another key
            continue
    raise RuntimeError("could not allocate a unique API key prefix")


def apikey_origin_add(*, api_key: ApiKey, origin: str) -> ApiKey:
    """Let a publishable key be used from one more origin (``scheme://host[:port]``, as the
    browser sends it); an origin it lists already changes nothing."""
    with transaction.atomic():
        api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)  # unscoped: by id
        if origin not in api_key.allowed_origins:
            api_key.allowed_origins = [*api_key.allowed_origins, origin]
            api_key.save(update_fields=["allowed_origins"])
    return api_key


def apikey_set_storefront_budget(
    *, api_key: ApiKey, jobs_per_hour: int | None, jobs_per_day: int | None
) -> ApiKey:
    """Set a publishable key's storefront budget (None: no limit in that window); the next
    job create reads it from the locked row, so it applies at once."""
    if not api_key.is_publishable:
        raise ValueError("only a publishable key has a storefront budget")
    api_key.storefront_jobs_per_hour = jobs_per_hour
    api_key.storefront_jobs_per_day = jobs_per_day
    api_key.save(update_fields=["storefront_jobs_per_hour", "storefront_jobs_per_day"])
    return api_key


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
