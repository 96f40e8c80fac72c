"""The billing page of the dashboard: plan, usage and cost this period, charts, invoices, plans.

The charts' numbers go into the page as JSON (Django's ``json_script``: data that is never
executed, so the CSP allows it) and ``static/js/charts.js`` draws them with the vendored
Chart.js. Every chart also has a plain table, for screen readers and for people without scripts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_POST
from rest_framework.exceptions import APIException

from billing import selectors, services
from tenants.models import Role, Tenant
from tenants.selectors import memberships_of
from tenants.web import current_membership

END_USER_ROWS = 20
TEMPLATE_BARS = 12


def _seconds(milliseconds: int) -> float:
    return round(milliseconds / 1000, 3)


def _days(start: datetime, end: datetime) -> list[str]:
    """Every UTC day from ``start`` to ``end`` inclusive, as ISO dates."""
    day, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    days = []
    while day <= last:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def _template_names(tenant: Tenant, keys: list[str]) -> dict[str, str]:
    from generation.models import Template

    ids = [key for key in keys if key]
    return {
        str(pk): name
        for pk, name in Template.objects.for_tenant(tenant)
        .filter(pk__in=ids)
        .values_list("pk", "name")
    }


def _breakdowns(tenant: Tenant, period: selectors.Period, now: datetime) -> dict[str, Any]:
    """The period's usage by day (every day so far, zeros included), template, hardware class
    and end user: rows for the tables and series for the charts."""

    def rows(by: str) -> list[dict]:
        return selectors.usage_breakdown(tenant=tenant, start=period.start, end=period.end, by=by)

    by_day = {row["key"]: row for row in rows("day")}
    last_day = min(now, period.end - timedelta(microseconds=1))
    days = _days(period.start, max(last_day, period.start))
    days += sorted(set(by_day) - set(days))  # usage dated after today: still shown
    day_rows = [by_day.get(day, {"key": day, "milliseconds": 0, "events": 0}) for day in days]

    template_rows = rows("template")
    names = _template_names(tenant, [row["key"] for row in template_rows])
    for row in template_rows:
        row["label"] = names.get(row["key"]) or row["key"] or gettext("(no template)")
    hardware_rows = rows("hardware_class")
    end_user_rows = rows("end_user")[:END_USER_ROWS]

    unit = gettext("GPU-seconds")
    charts = {
        "day": {
            "type": "bar",
            "labels": [row["key"] for row in day_rows],
            "datasets": [
                {"label": unit, "data": [_seconds(row["milliseconds"]) for row in day_rows]}
            ],
            "unit": unit,
        },
        "template": {
            "type": "bar",
            "horizontal": True,
            "labels": [row["label"] for row in template_rows[:TEMPLATE_BARS]],
            "datasets": [
                {
                    "label": unit,
                    "data": [
                        _seconds(row["milliseconds"]) for row in template_rows[:TEMPLATE_BARS]
                    ],
                }
            ],
            "unit": unit,
        },
        "hardware": {
            "type": "doughnut",
            "labels": [row["key"] for row in hardware_rows],
            "datasets": [
                {"label": unit, "data": [_seconds(row["milliseconds"]) for row in hardware_rows]}
            ],
            "unit": unit,
        },
    }
    return {
        "charts": charts,
        "day_rows": [row for row in day_rows if row["events"]],
        "template_rows": template_rows,
        "hardware_rows": hardware_rows,
        "end_user_rows": end_user_rows,
        "has_usage": bool(hardware_rows),
    }


@login_required
def billing_page(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    tenant = membership.tenant
    now = timezone.now()
    subscription = selectors.subscription_for(tenant=tenant)
    plan = selectors.effective_plan(subscription=subscription)
    cost = selectors.cost_summary(tenant=tenant, now=now)
    return render(
        request,
        "billing/page.html",
        {
            "membership": membership,
            "memberships": memberships_of(user=request.user),
            "tenant": tenant,
            "subscription": subscription,
            "plan": plan,
            "cost": cost,
            **_breakdowns(tenant, cost.period, now),
            "alerts": selectors.alert_list(tenant=tenant, since=cost.period.start),
            "invoices": selectors.invoice_list(tenant=tenant)[:24],
            "plans": selectors.plan_list(),
            "can_manage": membership.has_role(Role.ADMIN),
        },
    )


ONLY_ADMINS_PLAN = gettext_lazy("Only admins and owners change the plan.")
ONLY_ADMINS_PAYMENT = gettext_lazy("Only admins and owners manage payment details.")


@login_required
@require_POST
def checkout(request: HttpRequest, plan_slug: str) -> HttpResponse:
    membership = current_membership(request)
    if not membership.has_role(Role.ADMIN):
        messages.error(request, ONLY_ADMINS_PLAN)
        return redirect("billing")
    plan = selectors.plan_list().filter(slug=plan_slug).first()
    if plan is None:
        messages.error(request, gettext("No such plan."))
        return redirect("billing")
    try:
        result = services.checkout_start(tenant=membership.tenant, plan=plan)
    except APIException as exc:
        messages.error(request, str(exc.detail))
        return redirect("billing")
    if result.url:
        return redirect(result.url)
    messages.success(request, gettext("You are now on the %(plan)s plan.") % {"plan": plan.name})
    return redirect("billing")


@login_required
@require_POST
def portal(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    if not membership.has_role(Role.ADMIN):
        messages.error(request, ONLY_ADMINS_PAYMENT)
        return redirect("billing")
    try:
        return redirect(services.portal_link(tenant=membership.tenant))
    except APIException as exc:
        messages.error(request, str(exc.detail))
        return redirect("billing")
