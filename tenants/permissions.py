"""The role matrix, in one place.

Views name the minimum role per action in ``min_roles``; API keys act as ``server`` (the
tenant's back end: templates and jobs, not people or keys) or ``publishable`` (only the actions
in the view's ``publishable_actions``, for the templates and origins the key names).
"""

from __future__ import annotations

from rest_framework import permissions

from tenants.auth import TenantContext
from tenants.models import ROLE_RANK, Role

SERVER_RANK = ROLE_RANK[Role.EDITOR]


class TenantRolePermission(permissions.BasePermission):
    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        context = request.auth
        if not isinstance(context, TenantContext):
            return False
        action = getattr(view, "action", None) or request.method.lower()
        min_roles: dict[str, str] = getattr(view, "min_roles", {})
        needed = min_roles.get(action, Role.ADMIN)
        if context.role == "publishable":
            return action in getattr(view, "publishable_actions", ())
        if context.role == "server":
            if not getattr(view, "allow_secret_keys", True):
                return False
            return ROLE_RANK[Role(needed)] <= SERVER_RANK
        return ROLE_RANK[Role(context.role)] >= ROLE_RANK[Role(needed)]
