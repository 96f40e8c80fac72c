"""Tenant tasks on django-q2: webhook delivery. The only tenants module that enqueues.

Tasks take ids and re-read their rows; a delivery is claimed by a conditional update before it is
sent, so a task run twice (or beside the periodic catch-up) sends an attempt once.
"""

from __future__ import annotations

from datetime import datetime

from django_q.tasks import async_task

from tenants import webhooks

CPU_CLUSTER = "default"


def _enqueue(func: str, *args: object, name: str) -> None:
    # Name the cluster: inside a GPU pool worker django-q2 would default to the pool's own
    # queue, and webhook delivery belongs on the CPU (default) cluster.
    async_task(func, *args, task_name=name, cluster=CPU_CLUSTER)


def enqueue_deliveries(delivery_ids: list[object]) -> None:
    for delivery_id in delivery_ids:
        _enqueue("tenants.tasks.deliver_webhook", str(delivery_id), name=f"webhook-{delivery_id}")


def deliver_webhook(delivery_id: str) -> str | None:
    """Make one attempt; returns its status, or None when it was gone or already taken."""
    delivery = webhooks.webhook_attempt(delivery_id=delivery_id)
    return delivery.status if delivery is not None else None


def deliver_due_webhooks(now: datetime | None = None) -> int:
    """Every minute: queue the retries that are due (and attempts whose first queueing failed)."""
    due = webhooks.webhook_due_ids(now=now)
    enqueue_deliveries(due)
    return len(due)


def sweep_webhooks() -> dict[str, int]:
    """Daily: drop events and delivery logs past REELCAST_WEBHOOK_RETENTION_DAYS."""
    return webhooks.webhook_sweep()
