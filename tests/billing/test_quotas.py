"""Quotas refuse with a reason (402, or 429 with Retry-After); quotes come from measured shots."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import Plan
from billing.services import Measurement, quota_check, quote, subscription_assign, usage_record
from config.problems import PaymentRequired, Problem
from generation.models import Job
from generation.services import JobRequest, job_create
from tests import factories

pytestmark = pytest.mark.django_db

WAN = "wan2.2-ti2v-5b"


@pytest.fixture(autouse=True)
def _pools(settings):
    settings.REELCAST_POOLS = {
        "default": {"hardware_class": "cpu", "capacity": 1, "models": ["preview"]},
        "h100": {"hardware_class": "h100", "capacity": 1, "models": [WAN]},
    }


@pytest.fixture
def plans(db):
    call_command("seed_plans")
    return {plan.slug: plan for plan in Plan.objects.all()}


def _on(tenant, plan):
    subscription_assign(tenant=tenant, plan=plan)


def _check(tenant, **overrides):
    args = {
        "tenant": tenant,
        "model": "preview",
        "width": 128,
        "height": 96,
        "duration_s": 1.0,
        "end_user": "",
    }
    return quota_check(**{**args, **overrides})


def _refusal(tenant, **overrides) -> Problem:
    with pytest.raises(Problem) as caught:
        _check(tenant, **overrides)
    return caught.value


def _use(tenant, *, ms, hardware="h100", model=WAN, shot=0, job=None):
    job = (
        job
        or job_create(
            tenant=tenant,
            request=JobRequest(template=factories.make_template(tenant), values={"name": "Ada"}),
        ).job
    )
    usage_record(
        tenant=tenant,
        job_id=job.id,
        measurements=[
            Measurement(
                stage="generate",
                shot_index=shot,
                hardware_class=hardware,
                model=model,
                milliseconds=ms,
            )
        ],
    )
    return job


def test_a_suspended_tenant_is_refused_with_402_and_the_reason(tenant, plans):
    _on(tenant, plans["school"])
    tenant.status, tenant.suspended_reason = "suspended", "Payment overdue since 2026-11-01"

    refusal = _refusal(tenant)

    assert (refusal.status_code, refusal.code) == (402, "tenant_suspended")
    assert str(refusal.detail) == "The tenant is suspended: Payment overdue since 2026-11-01."


def test_what_the_plan_does_not_include_is_402_with_the_limit(tenant, plans):
    _on(tenant, plans["school"])

    model = _refusal(tenant, model="wan2.2-t2v-a14b")
    size = _refusal(tenant, width=1920, height=1080)
    length = _refusal(tenant, duration_s=25)

    assert [(r.status_code, r.code) for r in (model, size, length)] == [
        (402, "model_not_in_plan"),
        (402, "resolution_over_plan"),
        (402, "duration_over_plan"),
    ]
    assert str(model.detail) == (
        "The School plan does not include the model 'wan2.2-t2v-a14b' "
        "(it includes preview, wan2.2-ti2v-5b)."
    )
    assert str(size.detail) == "1920x1080 is larger than the School plan allows (1280x720)."
    assert str(length.detail) == "25 s is longer than the School plan allows (20 s)."
    assert _check(tenant, width=720, height=1280) is None  # portrait fits the same plan


def test_the_hard_cap_refuses_at_the_cap_and_a_job_that_would_pass_it(tenant, plans):
    _on(tenant, plans["school"])  # h100 hard cap: 36000 GPU-seconds
    args = {"model": WAN, "width": 1280, "height": 704, "duration_s": 5.0}
    job = _use(tenant, ms=35_999_000)

    would = _refusal(tenant, **args)
    _use(tenant, ms=1_000, shot=1, job=job)
    reached = _refusal(tenant, **args)

    assert (would.status_code, would.code) == (402, "hard_cap_would_exceed")
    assert "only 1.0 of the h100 hard cap are left" in str(would.detail)
    assert (reached.status_code, reached.code) == (402, "hard_cap_reached")
    assert "hard cap of 36000 GPU-seconds for this period is used up (36000.0 s)" in str(
        reached.detail
    )
    assert _check(tenant) is None  # the cpu class has no cap


def test_a_full_backlog_is_429_with_retry_after(tenant, template, plans, settings):
    settings.BILLING_CONCURRENCY_RETRY_AFTER_S = 45
    Plan.objects.filter(slug="school").update(max_queued_jobs=2)
    _on(tenant, Plan.objects.get(slug="school"))
    for name in ("Ada", "Ben"):
        job_create(tenant=tenant, request=JobRequest(template=template, values={"name": name}))

    refusal = _refusal(tenant)
    Job.objects.filter(tenant=tenant).update(state="succeeded")

    assert (refusal.status_code, refusal.code) == (429, "too_many_queued_jobs")
    assert refusal.headers == {"Retry-After": "45"}
    assert str(refusal.detail) == (
        "2 jobs are queued or running; the School plan allows 2 at once. Retry when some finish."
    )
    assert _check(tenant) is None


def test_a_shoppers_daily_quota_is_429_until_the_oldest_video_ages_out(tenant, template, plans):
    Plan.objects.filter(slug="shop").update(end_user_jobs_per_day=2)
    _on(tenant, Plan.objects.get(slug="shop"))
    now = timezone.now()
    for hours_ago in (23, 1):
        job = job_create(
            tenant=tenant,
            request=JobRequest(template=template, values={"name": "Ada"}, end_user="shopper-1"),
        ).job
        Job.objects.filter(pk=job.pk).update(
            created_at=now - timedelta(hours=hours_ago), state="succeeded"
        )

    refusal = _refusal(tenant, end_user="shopper-1", now=now)

    assert (refusal.status_code, refusal.code) == (429, "end_user_quota_exceeded")
    assert refusal.headers == {"Retry-After": "3600"}
    assert _check(tenant, end_user="shopper-2", now=now) is None
    assert _check(tenant, end_user="shopper-1", now=now + timedelta(hours=1, seconds=1)) is None


def test_without_a_plan_jobs_pass_unless_a_plan_is_required(tenant, settings):
    assert _check(tenant) is None
    settings.BILLING_REQUIRE_PLAN = True

    refusal = _refusal(tenant)

    assert (refusal.status_code, refusal.code) == (402, "no_plan")
    assert isinstance(refusal, PaymentRequired)


def test_the_default_plan_applies_to_tenants_without_a_subscription(tenant, plans, settings):
    settings.BILLING_DEFAULT_PLAN = "school"

    assert _refusal(tenant, duration_s=25).code == "duration_over_plan"


def test_quota_check_is_a_few_reads_and_no_writes(tenant, plans):
    _on(tenant, plans["school"])
    _use(tenant, ms=1_000)

    with CaptureQueriesContext(connection) as queries:
        _check(tenant, model=WAN, width=1280, height=704, duration_s=5.0, end_user="x")

    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert set(statements) == {"SELECT"}
    assert len(statements) <= 10


def test_a_quote_is_the_median_of_measured_shots_scaled_to_the_job(tenant, plans):
    # preview jobs of the factory template: 128x96, one shot of 8 frames
    for ms in (1200, 800, 1000, 900, 1100):
        _use(tenant, ms=ms, hardware="cpu", model="preview")

    estimate = quote(tenant=tenant, model="preview", width=128, height=96, frames_total=16)
    larger = quote(tenant=tenant, model="preview", width=256, height=192, frames_total=8)

    assert (estimate.gpu_ms_estimate, estimate.based_on, estimate.samples) == (2000, "history", 5)
    assert estimate.hardware_class == "cpu"
    assert larger.gpu_ms_estimate == 4000
    assert estimate.cost_estimate == Decimal("0")  # no plan, no price


def test_a_quote_prices_only_what_passes_the_included_seconds(tenant, plans):
    _on(tenant, plans["school"])  # cpu: 36000 s included, then 0.001 cents per second
    for ms in (1000,) * 5:
        _use(tenant, ms=ms, hardware="cpu", model="preview")
    _use(tenant, ms=36_000_000 - 5000 + 500, hardware="cpu", model="preview", shot=1)

    estimate = quote(tenant=tenant, model="preview", width=128, height=96, frames_total=16)

    assert estimate.gpu_ms_estimate == 2000
    assert estimate.cost_estimate == Decimal("0.0020")  # 2000 ms past the included amount


def test_without_history_a_quote_falls_back_to_the_configured_rate(tenant, settings):
    settings.BILLING_QUOTE_FALLBACK = {WAN: 2000.0}

    estimate = quote(tenant=tenant, model=WAN, width=1280, height=704, frames_total=121)
    fewer_steps = quote(
        tenant=tenant, model=WAN, width=1280, height=704, frames_total=121, steps=25
    )

    assert (estimate.gpu_ms_estimate, estimate.based_on, estimate.samples) == (218072, "config", 0)
    assert estimate.hardware_class == "h100"
    assert fewer_steps.gpu_ms_estimate == 109036  # half the model's 50 steps
