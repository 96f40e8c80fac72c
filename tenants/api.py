"""REST API v1 for API keys (people only: a key cannot mint keys)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api import CreatedCursorPagination, StrictSerializer
from tenants import services
from tenants.models import ApiKey, Role
from tenants.scoping import TenantScopedViewSet


class ApiKeySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    allowed_origins = serializers.ListField(child=serializers.CharField())
    allowed_template_ids = serializers.ListField(child=serializers.CharField())
    storefront_jobs_per_hour = serializers.IntegerField(allow_null=True)
    storefront_jobs_per_day = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)


class StorefrontBudgetSerializer(StrictSerializer):
    storefront_jobs_per_hour = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=1_000_000,
        help_text="Publishable keys: jobs the storefront may create in any rolling hour "
        "(null: no limit). Over it, 429 storefront_budget_exceeded.",
    )
    storefront_jobs_per_day = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=10_000_000,
        help_text="Publishable keys: jobs the storefront may create in any rolling 24 hours "
        "(null: no limit).",
    )


class ApiKeyCreateSerializer(StorefrontBudgetSerializer):
    kind = serializers.ChoiceField(choices=ApiKey.Kind.choices)
    name = serializers.CharField(max_length=100)
    allowed_origins = serializers.ListField(
        child=serializers.URLField(), required=False, max_length=20
    )
    allowed_template_ids = serializers.ListField(
        child=serializers.UUIDField(), required=False, max_length=100
    )

    def validate(self, attrs):
        budget = {"storefront_jobs_per_hour", "storefront_jobs_per_day"} & set(attrs)
        if attrs["kind"] != ApiKey.Kind.PUBLISHABLE and budget:
            raise serializers.ValidationError(
                {name: "Only a publishable key has a storefront budget." for name in budget}
            )
        if attrs["kind"] == ApiKey.Kind.PUBLISHABLE:
            if not attrs.get("allowed_origins") or not attrs.get("allowed_template_ids"):
                raise serializers.ValidationError(
                    "A publishable key must name its allowed origins and templates."
                )
            for origin in attrs["allowed_origins"]:
                if origin.rstrip("/").count("/") != 2:
                    raise serializers.ValidationError(
                        {"allowed_origins": f"{origin} is not an origin (scheme://host[:port])."}
                    )
            attrs["allowed_origins"] = [o.rstrip("/") for o in attrs["allowed_origins"]]
        return attrs


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """API keys: list, create (the key is in the response once), revoke."""

    model = ApiKey
    serializer_class = ApiKeySerializer
    pagination_class = CreatedCursorPagination
    allow_secret_keys = False
    min_roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "revoke": Role.ADMIN,
        "partial_update": Role.ADMIN,
    }

    @extend_schema(
        request=ApiKeyCreateSerializer,
        responses={
            201: inline_serializer(
                "IssuedApiKey", {"key": serializers.CharField(), "api_key": ApiKeySerializer()}
            )
        },
    )
    def create(self, request):
        body = ApiKeyCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        tenant = self.tenant_context.tenant
        template_ids = [str(t) for t in data.get("allowed_template_ids", [])]
        from generation.models import Template

        known = {
            str(pk)
            for pk in Template.objects.for_tenant(tenant)
            .filter(pk__in=template_ids)
            .values_list("pk", flat=True)
        }
        missing = [t for t in template_ids if t not in known]
        if missing:
            raise serializers.ValidationError(
                {"allowed_template_ids": f"Unknown templates: {', '.join(missing)}."}
            )
        issued = services.apikey_create(
            tenant=tenant,
            kind=data["kind"],
            name=data["name"],
            created_by=self.tenant_context.user,
            allowed_origins=data.get("allowed_origins"),
            allowed_template_ids=template_ids,
            storefront_jobs_per_hour=data.get("storefront_jobs_per_hour"),
            storefront_jobs_per_day=data.get("storefront_jobs_per_day"),
        )
        return Response(
            {"key": issued.raw_key, "api_key": ApiKeySerializer(issued.api_key).data},
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=StorefrontBudgetSerializer, responses={200: ApiKeySerializer})
    def partial_update(self, request, pk=None):
        """Change a publishable key's storefront budget (the only thing a key lets change)."""
        api_key = self.get_object()
        body = StorefrontBudgetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not api_key.is_publishable:
            raise serializers.ValidationError(
                {"kind": "Only a publishable key has a storefront budget."}
            )
        data = body.validated_data
        api_key = services.apikey_set_storefront_budget(
            api_key=api_key,
            jobs_per_hour=data.get("storefront_jobs_per_hour", api_key.storefront_jobs_per_hour),
            jobs_per_day=data.get("storefront_jobs_per_day", api_key.storefront_jobs_per_day),
        )
        return Response(ApiKeySerializer(api_key).data)

    @extend_schema(request=None, responses={200: ApiKeySerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        api_key = services.apikey_revoke(api_key=self.get_object())
        return Response(ApiKeySerializer(api_key).data)
