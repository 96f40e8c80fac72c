"""Billing's periodic tasks: installed once, and safe to run again."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule, Task
from django_q.tasks import async_task

from billing import tasks
from billing.models import RollupHour
from billing.selectors import hour_floor

pytestmark = pytest.mark.django_db


def test_billing_schedules_are_installed_once():
    call_command("billing_schedules")
    call_command("billing_schedules")

    assert sorted(Schedule.objects.values_list("name", "func", "schedule_type", "minutes")) == [
        ("billing-catch-up-stripe-events", "billing.tasks.catch_up_stripe_events", "D", None),
        ("billing-enforce-dunning", "billing.tasks.enforce_dunning", "I", 15),
        ("billing-push-meter-events", "billing.tasks.push_meter_events", "I", 1),
        ("billing-reconcile-meters", "billing.tasks.reconcile_meters", "H", None),
        ("billing-rollup-usage", "billing.tasks.rollup_usage", "H", None),
    ]


def test_the_rollup_task_recomputes_the_last_three_whole_hours(settings):
    settings.BILLING_ROLLUP_DELAY_S = 0
    last = hour_floor(timezone.now()) - timedelta(hours=1)

    tasks.rollup_usage()
    tasks.rollup_usage()

    assert sorted(RollupHour.objects.values_list("hour", flat=True)) == [
        last - timedelta(hours=2),
        last - timedelta(hours=1),
        last,
    ]


def test_tasks_for_a_tenant_that_is_gone_return_quietly():
    assert tasks.usage_followups("00000000-0000-0000-0000-000000000000") == {}
    assert tasks.notify_usage_alert(123456) is False
    assert tasks.push_meter_events()["stopped"] == "Stripe is not configured"


def test_the_stripe_catch_up_with_stripe_off_logs_one_info_line_and_no_error(settings, caplog):
    settings.STRIPE_SECRET_KEY = ""
    caplog.set_level(logging.DEBUG)

    task_id = async_task("billing.tasks.catch_up_stripe_events", sync=True)

    task = Task.objects.get(id=task_id)
    assert (task.success, task.result) == (True, 0)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [
        (r.name, r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "billing.services"
    ] == [
        (
            "billing.services",
            "INFO",
            "Stripe off (STRIPE_SECRET_KEY is not set): no Stripe events to catch up",
        )
    ]
