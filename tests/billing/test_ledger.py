"""Roll-ups, period totals and usage alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from billing import selectors
from billing.models import Plan, RollupHour, UsageAlert, UsageEvent, UsageRollup
from billing.services import (
    subscription_assign,
    usage_alerts_check,
    usage_correct,
    usage_rollup_hour,
)
from tests import factories

pytestmark = pytest.mark.django_db

HOUR = datetime(2026, 11, 2, 10, tzinfo=UTC)
alert_hook_calls: list[UsageAlert] = []


def record_alert(*, alert: UsageAlert) -> None:
    alert_hook_calls.append(alert)


def _usage(tenant, ms_by_shot, *, at, hardware="h100", end_user=""):
    return factories.make_usage(tenant, ms_by_shot, at=at, hardware=hardware, end_user=end_user)


def test_an_hour_rolls_up_per_tenant_class_and_end_user_the_same_every_time(tenant, other_tenant):
    _usage(tenant, [100, 200], at=HOUR + timedelta(minutes=5), end_user="s1")
    _usage(tenant, [50], at=HOUR + timedelta(minutes=59), end_user="s1")
    _usage(tenant, [7], at=HOUR + timedelta(minutes=30), hardware="cpu")
    _usage(other_tenant, [1000], at=HOUR + timedelta(minutes=1))
    _usage(tenant, [999], at=HOUR + timedelta(hours=1))  # the next hour

    first = usage_rollup_hour(hour=HOUR + timedelta(minutes=17))
    second = usage_rollup_hour(hour=HOUR)

    rows = sorted(
        UsageRollup.objects.values_list(
            "tenant__name", "hardware_class", "end_user", "milliseconds", "events"
        )
    )
    assert (first, second) == (3, 3)
    assert rows == [
        ("Maple School", "cpu", "", 7, 1),
        ("Maple School", "h100", "s1", 350, 3),
        ("Other Shop", "h100", "", 1000, 1),
    ]
    assert list(RollupHour.objects.values_list("hour", "rows")) == [(HOUR, 3)]


def test_period_totals_read_rolled_hours_and_the_ledger_tail_and_agree(tenant):
    start = HOUR - timedelta(minutes=30)  # a period that starts mid-hour
    _usage(tenant, [1], at=HOUR - timedelta(minutes=31))  # before the period
    _usage(tenant, [10], at=HOUR - timedelta(minutes=10))
    _usage(tenant, [100, 200], at=HOUR + timedelta(minutes=10))
    _usage(tenant, [1000], at=HOUR + timedelta(hours=2, minutes=1))
    end = HOUR + timedelta(hours=3)
    raw = selectors.usage_ms_by_class(tenant=tenant, start=start, end=end)

    usage_rollup_hour(hour=HOUR)
    usage_rollup_hour(hour=HOUR + timedelta(hours=1))
    UsageRollup.objects.filter(hour=HOUR).update(milliseconds=300_000)  # mark what is read
    mixed = selectors.usage_ms_by_class(tenant=tenant, start=start, end=end)

    assert raw == {"h100": 1310}
    assert mixed == {"h100": 10 + 300_000 + 1000}


def test_a_correction_is_a_new_row_and_counts_in_the_totals(tenant):
    job = _usage(tenant, [500], at=HOUR)
    original = UsageEvent.objects.get(job=job)

    row = usage_correct(
        usage_event=original, milliseconds_delta=-120, reason="clock skew", key="ticket-42"
    )
    usage_correct(
        usage_event=original, milliseconds_delta=-120, reason="clock skew", key="ticket-42"
    )

    assert (row.pk, row.kind, row.milliseconds) == (
        f"correction:{original.pk}:ticket-42",
        "correction",
        -120,
    )
    assert UsageEvent.objects.filter(job=job).count() == 2
    assert selectors.usage_ms_by_class(
        tenant=tenant, start=HOUR - timedelta(days=1), end=datetime.now(UTC) + timedelta(days=1)
    ) == {"h100": 380}


def test_alerts_fire_at_80_and_100_percent_once_per_period(tenant):
    call_command("seed_plans")
    period_start = datetime.now(UTC) - timedelta(days=1)
    subscription_assign(
        tenant=tenant,
        plan=Plan.objects.get(slug="school"),
        period_start=period_start,
        period_end=period_start + timedelta(days=30),
    )
    now = datetime.now(UTC)
    included_ms = 3600 * 1000  # school plan: 3600 h100 seconds included

    _usage(tenant, [int(included_ms * 0.79)], at=now)
    assert usage_alerts_check(tenant=tenant) == []
    _usage(tenant, [int(included_ms * 0.02)], at=now)
    fired_80 = usage_alerts_check(tenant=tenant)
    again = usage_alerts_check(tenant=tenant)
    _usage(tenant, [int(included_ms * 0.5)], at=now)
    fired_100 = usage_alerts_check(tenant=tenant)

    assert [a.threshold_percent for a in fired_80] == [80]
    assert again == []
    assert [a.threshold_percent for a in fired_100] == [100]
    assert list(
        UsageAlert.objects.order_by("threshold_percent").values_list(
            "hardware_class", "threshold_percent", "period_start"
        )
    ) == [("h100", 80, period_start), ("h100", 100, period_start)]


def test_an_alert_notifies_owners_and_admins_by_email_once_and_calls_the_hook(
    tenant, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.BILLING_USAGE_ALERT_HOOK = "tests.billing.test_ledger.record_alert"
    alert_hook_calls.clear()
    call_command("seed_plans")
    subscription_assign(tenant=tenant, plan=Plan.objects.get(slug="school"))
    for role, email in (
        ("owner", "head@maple.example"),
        ("admin", "it@maple.example"),
        ("viewer", "teacher@maple.example"),
    ):
        user = factories.make_member(tenant, role=role)
        user.email = email
        user.save()
    from billing.tasks import notify_usage_alert

    with django_capture_on_commit_callbacks(execute=True):
        _usage(tenant, [3600 * 1000], at=datetime.now(UTC))
    notify_usage_alert(UsageAlert.objects.get(threshold_percent=80).pk)  # a redelivered task

    assert [m.to for m in mailoutbox] == [["head@maple.example", "it@maple.example"]] * 2
    assert [m.subject for m in mailoutbox] == [
        "[Reelcast] Maple School: 80% of included h100 GPU time used",
        "[Reelcast] Maple School: 100% of included h100 GPU time used",
    ]
    assert sorted(a.threshold_percent for a in alert_hook_calls) == [80, 100]
    assert UsageAlert.objects.filter(notified_at__isnull=True).count() == 0
