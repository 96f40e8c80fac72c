"""The API base class: every queryset is the caller's tenant's, and subclasses cannot change that.

A subclass sets ``model`` and may narrow with ``scope_queryset()``; defining ``get_queryset``,
``queryset`` or ``get_object`` is refused when the class is created, and the tenant filter is
applied again after the hook so that no hook can widen it. Another tenant's object is therefore
always a 404, indistinguishable from one that does not exist.
"""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import viewsets

from tenants.auth import TenantContext
from tenants.models import Role, TenantOwnedModel

_SEALED = ("get_queryset", "queryset", "get_object")


class TenantScopedViewSet(viewsets.GenericViewSet):
    model: type[TenantOwnedModel]
    min_roles: dict[str, str] = {
        "list": Role.VIEWER,
        "retrieve": Role.VIEWER,
        "create": Role.EDITOR,
        "update": Role.EDITOR,
        "partial_update": Role.EDITOR,
        "destroy": Role.ADMIN,
    }
    publishable_actions: tuple[str, ...] = ()
    allow_secret_keys = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _SEALED:
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} may not define {name}; narrow the tenant's rows in "
                    "scope_queryset() instead."
                )

    @property
    def tenant_context(self) -> TenantContext:
        return self.request.auth

    def scope_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no caller
            return self.model.objects.none()
        tenant = self.tenant_context.tenant
        base = self.model.objects.for_tenant(tenant)
        return self.scope_queryset(base).filter(tenant=tenant)
