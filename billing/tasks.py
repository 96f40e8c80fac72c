"""Billing's tasks on django-q2; the only billing module that enqueues.

Tasks take ids, re-read what they need and return quietly when it is gone. Every one is
idempotent (outbox claims, unique alerts, whole-hour roll-ups, processed-event ids), so a task
delivered twice or run by two workers at once does no harm. Periodic ones are installed as
django-q2 schedules by ``manage.py billing_schedules``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.tasks import async_task

from billing import selectors, services
from billing.models import UsageAlert
from tenants.models import Tenant

logger = logging.getLogger(__name__)


def _enqueue(func: str, *args: object, name: str) -> None:
    # Name the cluster: inside a GPU pool worker the default queue is that pool's, and billing
    # work belongs on the CPU (default) cluster.
    async_task(func, *args, task_name=name, cluster=settings.Q_CLUSTER.get("name", "default"))


def enqueue_usage_followups(tenant_id: object) -> None:
    _enqueue("billing.tasks.usage_followups", str(tenant_id), name=f"usage-followups-{tenant_id}")


def enqueue_alert_notifications(alert_ids: list[int]) -> None:
    for alert_id in alert_ids:
        _enqueue("billing.tasks.notify_usage_alert", alert_id, name=f"usage-alert-{alert_id}")


def usage_followups(tenant_id: str) -> dict:
    """After new usage: fire any usage alerts and push the tenant's due meter events."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return {}
    alerts = services.usage_alerts_check(tenant=tenant)
    pushed = services.meter_events_push(tenant_id=tenant.pk, limit=100)
    return {"alerts": len(alerts), **asdict(pushed)}


def notify_usage_alert(alert_id: int) -> bool:
    # unscoped: a task, by id
    alert = UsageAlert.objects.select_related("tenant").filter(pk=alert_id).first()
    return services.usage_alert_notify(alert=alert) if alert is not None else False


# --- periodic ---------------------------------------------------------------------------------


def push_meter_events() -> dict:
    """Every minute: drain the outbox (retries come due here)."""
    return asdict(services.meter_events_push())


def rollup_usage() -> int:
    """Hourly: recompute the last few whole hours of UsageRollup."""
    return services.usage_rollup_recent()


def reconcile_meters() -> dict:
    """Hourly: compare the hour that ended BILLING_RECONCILE_DELAY_S ago with Stripe.

    Stripe aggregates meter events asynchronously, so the newest hour is left to settle.
    """
    delay = timedelta(seconds=int(getattr(settings, "BILLING_RECONCILE_DELAY_S", 3600)))
    window_end = selectors.hour_floor(timezone.now() - delay)
    reports = services.reconcile_window(
        window_start=window_end - timedelta(hours=1), window_end=window_end
    )
    counts: dict[str, int] = {}
    for report in reports:
        counts[report.status] = counts.get(report.status, 0) + 1
    return counts


def enforce_dunning() -> int:
    """Every 15 minutes: suspend tenants past the dunning grace period."""
    return services.dunning_enforce()


def catch_up_stripe_events() -> int:
    """Nightly: apply Stripe events that no webhook delivered."""
    return services.stripe_events_catch_up()


# (function, schedule type, minutes between runs for MINUTES schedules)
SCHEDULES: list[tuple[str, str, int]] = [
    ("billing.tasks.push_meter_events", "I", 1),
    ("billing.tasks.rollup_usage", "H", 0),
    ("billing.tasks.reconcile_meters", "H", 0),
    ("billing.tasks.enforce_dunning", "I", 15),
    ("billing.tasks.catch_up_stripe_events", "D", 0),
]


def schedules_install() -> list[str]:
    """Create or update the django-q2 schedules above (one per function); returns their names."""
    from django_q.models import Schedule

    names = []
    for func, kind, minutes in SCHEDULES:
        name = func.rsplit(".", 1)[1].replace("_", "-")
        defaults: dict = {
            "func": func,
            "schedule_type": kind,
            "repeats": -1,
            "cluster": settings.Q_CLUSTER.get("name", "default"),
        }
        if kind == "I":
            defaults["minutes"] = minutes
        Schedule.objects.update_or_create(name=f"billing-{name}", defaults=defaults)
        names.append(f"billing-{name}")
    return names
