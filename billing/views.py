"""The billing page of the dashboard: plan, usage and cost this period, invoices, plan changes."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework.exceptions import APIException

from billing import selectors, services
from tenants.models import Role
from tenants.web import current_membership

USAGE_GROUPS = (
    ("day", "By day"),
    ("template", "By template"),
    ("end_user", "By end user"),
    ("hardware_class", "By hardware"),
)


@login_required
def billing_page(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    tenant = membership.tenant
    subscription = selectors.subscription_for(tenant=tenant)
    plan = selectors.effective_plan(subscription=subscription)
    cost = selectors.cost_summary(tenant=tenant)
    breakdowns = [
        (
            label,
            selectors.usage_breakdown(
                tenant=tenant, start=cost.period.start, end=cost.period.end, by=key
            ),
        )
        for key, label in USAGE_GROUPS
    ]
    return render(
        request,
        "billing/page.html",
        {
            "membership": membership,
            "tenant": tenant,
            "subscription": subscription,
            "plan": plan,
            "cost": cost,
            "breakdowns": breakdowns,
            "alerts": selectors.alert_list(tenant=tenant, since=cost.period.start),
            "invoices": selectors.invoice_list(tenant=tenant)[:24],
            "plans": selectors.plan_list(),
            "can_manage": membership.has_role(Role.ADMIN),
        },
    )


@login_required
@require_POST
def checkout(request: HttpRequest, plan_slug: str) -> HttpResponse:
    membership = current_membership(request)
    if not membership.has_role(Role.ADMIN):
        messages.error(request, "Only admins and owners change the plan.")
        return redirect("billing")
    plan = selectors.plan_list().filter(slug=plan_slug).first()
    if plan is None:
        messages.error(request, "No such plan.")
        return redirect("billing")
    try:
        result = services.checkout_start(tenant=membership.tenant, plan=plan)
    except APIException as exc:
        messages.error(request, str(exc.detail))
        return redirect("billing")
    if result.url:
        return redirect(result.url)
    messages.success(request, f"You are now on the {plan.name} plan.")
    return redirect("billing")


@login_required
@require_POST
def portal(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    if not membership.has_role(Role.ADMIN):
        messages.error(request, "Only admins and owners manage payment details.")
        return redirect("billing")
    try:
        return redirect(services.portal_link(tenant=membership.tenant))
    except APIException as exc:
        messages.error(request, str(exc.detail))
        return redirect("billing")
