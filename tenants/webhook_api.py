"""REST API v1 for tenant webhooks: endpoints, secret rotation, the delivery log, replay.

People only (admin and owner); secret keys are refused. An endpoint is a standing channel out of
the platform that receives every later event of the tenant (end users' values, errors) and
holds a signing secret: a leaked server key must not be able to open one quietly, just as it
cannot mint keys. Tenants automate jobs with keys and manage webhooks in the dashboard.
"""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from config.api import CreatedCursorPagination, StrictSerializer
from tenants import webhooks
from tenants.models import Role, WebhookDelivery, WebhookEndpoint
from tenants.scoping import TenantScopedViewSet

MAX_OVERLAP_S = 7 * 24 * 3600


class WebhookEndpointSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    description = serializers.CharField()
    event_types = serializers.ListField(
        child=serializers.CharField(), help_text="Empty: every event type."
    )
    enabled = serializers.BooleanField()
    disabled_reason = serializers.CharField()
    previous_secret_expires_at = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_previous_secret_expires_at(self, endpoint: WebhookEndpoint) -> str | None:
        if not endpoint.previous_secret or endpoint.previous_secret_expires_at is None:
            return None
        return serializers.DateTimeField().to_representation(endpoint.previous_secret_expires_at)


class WebhookEndpointCreateSerializer(StrictSerializer):
    url = serializers.CharField(max_length=2000)
    description = serializers.CharField(max_length=300, required=False, allow_blank=True)
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=webhooks.EVENT_TYPES),
        required=False,
        max_length=len(webhooks.EVENT_TYPES),
    )
    enabled = serializers.BooleanField(required=False, default=True)


class WebhookEndpointUpdateSerializer(WebhookEndpointCreateSerializer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False
        self.fields["enabled"].default = serializers.empty


class RotateSecretSerializer(StrictSerializer):
    overlap_s = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_OVERLAP_S,
        help_text="How long the old secret keeps signing (default 24 h; 0 drops it at once).",
    )


IssuedSecretSerializer = inline_serializer(
    "IssuedWebhookSecret",
    {"secret": serializers.CharField(), "endpoint": WebhookEndpointSerializer()},
)


WebhookEventSerializer = inline_serializer(
    "WebhookEvent",
    {
        "id": serializers.CharField(help_text="The webhook-id header (evt_…)."),
        "type": serializers.CharField(),
        "created_at": serializers.DateTimeField(),
        "payload": serializers.JSONField(help_text="The body that is signed and sent."),
    },
)


class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    endpoint = serializers.UUIDField(source="endpoint_id")
    event = serializers.SerializerMethodField()
    attempt = serializers.IntegerField()
    manual = serializers.BooleanField()
    status = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True)
    response_snippet = serializers.CharField()
    duration_ms = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    due_at = serializers.DateTimeField()
    attempted_at = serializers.DateTimeField(allow_null=True)
    next_retry_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    @extend_schema_field(WebhookEventSerializer)
    def get_event(self, delivery: WebhookDelivery) -> dict:
        event = delivery.event
        return {
            "id": event.id,
            "type": event.type,
            "created_at": serializers.DateTimeField().to_representation(event.created_at),
            "payload": event.payload,
        }


class WebhookEndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Webhook endpoints: `GET/POST /api/v1/webhooks/endpoints/`, `GET/PATCH/DELETE …/{id}/`,
    `POST …/{id}/rotate-secret/`. The signing secret is in the response once, at creation and at
    rotation."""

    model = WebhookEndpoint
    serializer_class = WebhookEndpointSerializer
    pagination_class = CreatedCursorPagination
    allow_secret_keys = False
    min_roles = {
        "list": Role.ADMIN,
        "retrieve": Role.ADMIN,
        "create": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
        "rotate_secret": Role.ADMIN,
    }

    @extend_schema(request=WebhookEndpointCreateSerializer, responses={201: IssuedSecretSerializer})
    def create(self, request):
        body = WebhookEndpointCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        issued = webhooks.webhook_endpoint_create(
            tenant=self.tenant_context.tenant,
            url=data["url"],
            description=data.get("description", ""),
            event_types=data.get("event_types"),
            enabled=data.get("enabled", True),
            created_by=self.tenant_context.user,
        )
        return Response(
            {"secret": issued.secret, "endpoint": WebhookEndpointSerializer(issued.endpoint).data},
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        request=WebhookEndpointUpdateSerializer, responses={200: WebhookEndpointSerializer}
    )
    def partial_update(self, request, pk=None):
        endpoint = self.get_object()
        body = WebhookEndpointUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        endpoint = webhooks.webhook_endpoint_update(
            endpoint=endpoint,
            url=data.get("url"),
            description=data.get("description"),
            event_types=data.get("event_types"),
            enabled=data.get("enabled"),
        )
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        webhooks.webhook_endpoint_delete(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=RotateSecretSerializer, responses={200: IssuedSecretSerializer})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        endpoint = self.get_object()
        body = RotateSecretSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        issued = webhooks.webhook_secret_rotate(
            endpoint=endpoint, overlap_s=body.validated_data.get("overlap_s")
        )
        return Response(
            {"secret": issued.secret, "endpoint": WebhookEndpointSerializer(issued.endpoint).data}
        )


def _delivery_filters(params) -> dict[str, str]:
    filters: dict[str, str] = {}
    errors: dict[str, str] = {}
    endpoint = params.get("endpoint")
    if endpoint:
        try:
            filters["endpoint_id"] = str(serializers.UUIDField().to_internal_value(endpoint))
        except ValidationError:
            errors["endpoint"] = "Must be an endpoint id."
    event_type = params.get("event_type")
    if event_type:
        if event_type not in webhooks.EVENT_TYPES:
            errors["event_type"] = f"Must be one of {', '.join(webhooks.EVENT_TYPES)}."
        filters["event__type"] = event_type
    event = params.get("event")
    if event:
        filters["event_id"] = event
    delivery_status = params.get("status")
    if delivery_status:
        if delivery_status not in WebhookDelivery.Status.values:
            errors["status"] = f"Must be one of {', '.join(WebhookDelivery.Status.values)}."
        filters["status"] = delivery_status
    if errors:
        raise ValidationError(errors)
    return filters


class WebhookDeliveryViewSet(TenantScopedViewSet):
    """The delivery log, one row per attempt: `GET /api/v1/webhooks/deliveries/?endpoint=&
    event_type=&event=&status=`, `GET …/{id}/`, and `POST …/{id}/replay/` (a new attempt)."""

    model = WebhookDelivery
    serializer_class = WebhookDeliverySerializer
    pagination_class = CreatedCursorPagination
    allow_secret_keys = False
    min_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN, "replay": Role.ADMIN}

    def scope_queryset(self, queryset):
        if self.action == "list":
            queryset = queryset.filter(**_delivery_filters(self.request.query_params))
        return queryset.select_related("event", "endpoint")

    @extend_schema(
        parameters=[
            OpenApiParameter("endpoint", str, description="Endpoint id"),
            OpenApiParameter("event_type", str, enum=list(webhooks.EVENT_TYPES)),
            OpenApiParameter("event", str, description="Event id (evt_…)"),
            OpenApiParameter("status", str, enum=WebhookDelivery.Status.values),
            OpenApiParameter("limit", int),
        ]
    )
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(WebhookDeliverySerializer(self.get_object()).data)

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        replay = webhooks.webhook_replay(delivery=self.get_object())
        replay.refresh_from_db()
        return Response(WebhookDeliverySerializer(replay).data, status=status.HTTP_202_ACCEPTED)
