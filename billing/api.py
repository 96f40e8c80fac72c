"""REST API v1 for billing: the plan, usage and cost of the period, invoices, checkout, portal.

Reads are for every role (viewer and up, and secret keys); starting a checkout, changing plan
and opening the customer portal are for admins and owners. Publishable keys see nothing here.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from billing import selectors, services
from billing.models import Invoice, Plan, Subscription
from config.api import StrictSerializer
from tenants.models import Role
from tenants.scoping import TenantScopedViewSet

# --- serializers ------------------------------------------------------------------------------


class PlanRateSerializer(serializers.Serializer):
    hardware_class = serializers.CharField()
    included_gpu_seconds = serializers.IntegerField()
    overage_cents_per_gpu_second = serializers.DecimalField(max_digits=14, decimal_places=6)
    hard_cap_gpu_seconds = serializers.IntegerField(allow_null=True)


class PlanSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    currency = serializers.CharField()
    monthly_fee_cents = serializers.IntegerField()
    max_concurrent_jobs = serializers.IntegerField()
    priority_class = serializers.CharField(source="get_priority_class_display")
    max_width = serializers.IntegerField()
    max_height = serializers.IntegerField()
    max_duration_s = serializers.FloatField()
    allowed_models = serializers.ListField(child=serializers.CharField())
    storage_retention_days = serializers.IntegerField()
    end_user_jobs_per_day = serializers.IntegerField()
    rates = PlanRateSerializer(many=True, source="rates.all")
    purchasable = serializers.SerializerMethodField()

    def get_purchasable(self, plan: Plan) -> bool:
        return bool(plan.stripe_price_id)


class SubscriptionSerializer(serializers.Serializer):
    status = serializers.CharField()
    current_period_start = serializers.DateTimeField(allow_null=True)
    current_period_end = serializers.DateTimeField(allow_null=True)
    cancel_at_period_end = serializers.BooleanField()
    past_due_since = serializers.DateTimeField(allow_null=True)


class ClassCostSerializer(serializers.Serializer):
    hardware_class = serializers.CharField()
    used_ms = serializers.IntegerField()
    included_ms = serializers.IntegerField()
    overage_ms = serializers.IntegerField()
    overage_cents = serializers.DecimalField(max_digits=20, decimal_places=4)


class AlertSerializer(serializers.Serializer):
    hardware_class = serializers.CharField()
    threshold_percent = serializers.IntegerField()
    used_ms = serializers.IntegerField()
    included_ms = serializers.IntegerField()
    created_at = serializers.DateTimeField()


OverviewSerializer = inline_serializer(
    "BillingOverview",
    {
        "tenant_status": serializers.CharField(),
        "suspended_reason": serializers.CharField(),
        "plan": PlanSerializer(allow_null=True),
        "subscription": SubscriptionSerializer(allow_null=True),
        "period": inline_serializer(
            "BillingPeriod",
            {"start": serializers.DateTimeField(), "end": serializers.DateTimeField()},
        ),
        "usage": ClassCostSerializer(many=True),
        "cost": inline_serializer(
            "BillingCost",
            {
                "currency": serializers.CharField(),
                "fee_cents": serializers.IntegerField(),
                "so_far_cents": serializers.IntegerField(),
                "projected_cents": serializers.IntegerField(),
            },
        ),
        "alerts": AlertSerializer(many=True),
    },
)

UsageRowSerializer = inline_serializer(
    "BillingUsageRow",
    {
        "key": serializers.CharField(),
        "milliseconds": serializers.IntegerField(),
        "events": serializers.IntegerField(),
    },
)
UsageSerializer = inline_serializer(
    "BillingUsage",
    {
        "group_by": serializers.CharField(),
        "start": serializers.DateTimeField(),
        "end": serializers.DateTimeField(),
        "results": serializers.ListField(child=UsageRowSerializer),
    },
)


class InvoiceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    stripe_invoice_id = serializers.CharField()
    number = serializers.CharField()
    status = serializers.CharField()
    currency = serializers.CharField()
    amount_due = serializers.IntegerField()
    amount_paid = serializers.IntegerField()
    total = serializers.IntegerField()
    hosted_invoice_url = serializers.CharField()
    invoice_pdf = serializers.CharField()
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    created = serializers.DateTimeField(source="stripe_created")


class CheckoutRequestSerializer(StrictSerializer):
    plan = serializers.SlugField(help_text="The slug of the plan to subscribe or move to.")


CheckoutResponseSerializer = inline_serializer(
    "BillingCheckout",
    {
        "url": serializers.CharField(help_text="Send the user here ('' when changed in place)."),
        "changed": serializers.BooleanField(
            help_text="True when the live subscription was moved to the plan at once."
        ),
    },
)
PortalResponseSerializer = inline_serializer("BillingPortal", {"url": serializers.URLField()})

USAGE_GROUPS = ("day", "template", "end_user", "hardware_class")

# --- views ------------------------------------------------------------------------------------


class BillingViewSet(TenantScopedViewSet):
    """`/api/v1/billing/overview/`, `usage/`, `plans/`, `checkout/`, `portal/`."""

    model = Subscription
    min_roles = {
        "overview": Role.VIEWER,
        "usage": Role.VIEWER,
        "plans": Role.VIEWER,
        "checkout": Role.ADMIN,
        "portal": Role.ADMIN,
    }
    allow_secret_keys = True

    @extend_schema(responses={200: OverviewSerializer})
    @action(detail=False, methods=["get"])
    def overview(self, request):
        tenant = self.tenant_context.tenant
        subscription = self.get_queryset().select_related("plan").first()
        plan = selectors.effective_plan(subscription=subscription)
        cost = selectors.cost_summary(tenant=tenant)
        alerts = selectors.alert_list(tenant=tenant, since=cost.period.start)
        return Response(
            {
                "tenant_status": tenant.status,
                "suspended_reason": tenant.suspended_reason,
                "plan": PlanSerializer(plan).data if plan else None,
                "subscription": SubscriptionSerializer(subscription).data if subscription else None,
                "period": {"start": cost.period.start, "end": cost.period.end},
                "usage": ClassCostSerializer(cost.classes, many=True).data,
                "cost": {
                    "currency": cost.currency,
                    "fee_cents": cost.fee_cents,
                    "so_far_cents": cost.so_far_cents,
                    "projected_cents": cost.projected_cents,
                },
                "alerts": AlertSerializer(alerts, many=True).data,
            }
        )

    @extend_schema(
        responses={200: UsageSerializer},
        parameters=[
            OpenApiParameter(
                "group_by",
                str,
                enum=list(USAGE_GROUPS),
                description="How to group this period's usage (default: day).",
            ),
        ],
    )
    @action(detail=False, methods=["get"])
    def usage(self, request):
        group_by = request.query_params.get("group_by") or "day"
        if group_by not in USAGE_GROUPS:
            raise ValidationError({"group_by": f"Must be one of {', '.join(USAGE_GROUPS)}."})
        tenant = self.tenant_context.tenant
        subscription = self.get_queryset().first()
        period = selectors.current_period(subscription=subscription)
        rows = selectors.usage_breakdown(
            tenant=tenant, start=period.start, end=period.end, by=group_by
        )
        return Response(
            {"group_by": group_by, "start": period.start, "end": period.end, "results": rows}
        )

    @extend_schema(responses={200: PlanSerializer(many=True)})
    @action(detail=False, methods=["get"])
    def plans(self, request):
        return Response(PlanSerializer(selectors.plan_list(), many=True).data)

    @extend_schema(request=CheckoutRequestSerializer, responses={200: CheckoutResponseSerializer})
    @action(detail=False, methods=["post"])
    def checkout(self, request):
        body = CheckoutRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        plan = selectors.plan_list().filter(slug=body.validated_data["plan"]).first()
        if plan is None:
            raise ValidationError({"plan": "No such plan."})
        result = services.checkout_start(tenant=self.tenant_context.tenant, plan=plan)
        return Response({"url": result.url, "changed": result.changed})

    @extend_schema(request=None, responses={200: PortalResponseSerializer})
    @action(detail=False, methods=["post"])
    def portal(self, request):
        return Response({"url": services.portal_link(tenant=self.tenant_context.tenant)})


class InvoiceViewSet(TenantScopedViewSet):
    """`/api/v1/billing/invoices/`: the tenant's Stripe invoices with their hosted links."""

    model = Invoice
    serializer_class = InvoiceSerializer
    min_roles = {"list": Role.VIEWER, "retrieve": Role.VIEWER}

    def scope_queryset(self, queryset):
        return queryset.order_by("-stripe_created", "-id")

    def list(self, request):
        return Response(InvoiceSerializer(self.get_queryset()[:100], many=True).data)

    def retrieve(self, request, pk=None):
        return Response(InvoiceSerializer(self.get_object()).data)
