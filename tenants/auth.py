"""Who is calling, and for which tenant.

Both authentication classes return a ``TenantContext`` as ``request.auth``; views read the tenant
from there and nowhere else (never from the request body).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from config.logging import bind_log_context
from tenants.models import ApiKey, Membership, Tenant
from tenants.selectors import membership_for
from tenants.services import apikey_authenticate

SESSION_TENANT_KEY = "reelcast_tenant_id"


@dataclass(frozen=True)
class TenantContext:
    tenant: Tenant
    role: str  # a membership role, or "server" / "publishable" for API keys
    user: AbstractBaseUser | None = None
    api_key: ApiKey | None = None

    @property
    def is_publishable(self) -> bool:
        return self.api_key is not None and self.api_key.is_publishable

    @property
    def actor_label(self) -> str:
        if self.api_key is not None:
            return f"key:{self.api_key.prefix}"
        return f"user:{self.user.pk}" if self.user is not None else "unknown"


class KeyPrincipal:
    """Stands in for ``request.user`` when a key authenticates (DRF wants a user object)."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    pk = None

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key

    def __str__(self) -> str:
        return f"api key {self.api_key.prefix}…"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer sk_…`` or ``Bearer pk_…``."""

    keyword = "Bearer"

    def authenticate(self, request: Request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not raw.strip():
            raise exceptions.AuthenticationFailed(
                "Use 'Authorization: Bearer <api key>'.", code="malformed_credentials"
            )
        api_key = apikey_authenticate(raw_key=raw.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed(
                "The API key is unknown or revoked.", code="invalid_api_key"
            )
        role = "publishable" if api_key.is_publishable else "server"
        bind_log_context(tenant_id=api_key.tenant_id)
        return KeyPrincipal(api_key), TenantContext(
            tenant=api_key.tenant, role=role, api_key=api_key
        )

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class TenantSessionAuthentication(authentication.SessionAuthentication):
    """A signed-in dashboard user acting in the tenant chosen in their session (CSRF enforced)."""

    def authenticate(self, request: Request):
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        membership: Membership | None = membership_for(
            user=user, tenant_id=request._request.session.get(SESSION_TENANT_KEY)
        )
        if membership is None:
            raise exceptions.PermissionDenied(
                "You are not a member of any tenant.", code="no_membership"
            )
        bind_log_context(tenant_id=membership.tenant_id)
        return user, TenantContext(tenant=membership.tenant, role=membership.role, user=user)
