"""The API base class: every queryset is the caller's tenant's, and subclasses cannot change that.

A subclass sets ``model`` and may narrow with ``scope_queryset()``; defining ``get_queryset``,
``queryset`` or ``get_object`` is refused when the class is created, and the tenant filter is
applied again after the hook so that no hook can widen it. Another tenant's object is therefore
always a 404, indistinguishable from one that does not exist.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404
from rest_framework import viewsets

from config.api import MethodCheckedFirst
from tenants.auth import TenantContext
from tenants.models import Role, TenantOwnedModel

_SEALED = ("get_queryset", "queryset", "get_object")


class TenantScopedViewSet(MethodCheckedFirst, viewsets.GenericViewSet):
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
    # The fields the URL's {id} may name, in order (default: lookup_field alone): the first
    # whose type can hold the value is the one looked up (templates: ("pk", "slug"), so a UUID
    # is only ever an id, as job creation reads a template reference).
    lookup_fields: tuple[str, ...] = ()

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

    def get_object(self) -> Model:
        queryset = self.filter_queryset(self.get_queryset())
        value = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        meta = queryset.model._meta
        for name in self.lookup_fields or (self.lookup_field,):
            field = meta.pk if name == "pk" else meta.get_field(name)
            try:
                field.to_python(value)
            except ValidationError:
                continue
            obj = queryset.filter(**{name: value}).first()
            break
        else:
            obj = None
        if obj is None:
            raise Http404
        self.check_object_permissions(self.request, obj)
        return obj
