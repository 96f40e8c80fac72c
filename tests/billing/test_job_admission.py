"""The plan is applied where jobs are admitted and scheduled, through the public API."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from billing.models import Plan
from billing.services import subscription_assign
from generation import scheduler
from generation.models import Job, Priority

pytestmark = pytest.mark.django_db


@pytest.fixture
def plans(db):
    call_command("seed_plans")
    return {plan.slug: plan for plan in Plan.objects.all()}


def _post(api, template, **body):
    return api.post(
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": "Ada"}, **body},
        format="json",
    )


def test_a_model_outside_the_plan_is_402_with_the_reason_and_nothing_is_queued(
    api, tenant, template, plans
):
    Plan.objects.filter(pk=plans["school"].pk).update(allowed_models=["preview"])
    subscription_assign(tenant=tenant, plan=Plan.objects.get(pk=plans["school"].pk))
    response = _post(
        api, template, model="wan2.2-ti2v-5b", width=1280, height=704, fps=24, duration_s=5
    )
    assert response.status_code == 402
    assert response.json()["code"] == "model_not_in_plan"
    assert "does not include the model 'wan2.2-ti2v-5b'" in response.json()["detail"]
    assert Job.objects.count() == 0


def test_a_full_backlog_is_429_with_retry_after_through_the_api(api, tenant, template, plans):
    Plan.objects.filter(pk=plans["school"].pk).update(max_queued_jobs=1)
    subscription_assign(tenant=tenant, plan=Plan.objects.get(pk=plans["school"].pk))
    assert _post(api, template).status_code == 201
    refused = _post(api, template)
    assert refused.status_code == 429
    assert refused["Retry-After"].isdigit()
    assert refused.json()["code"] == "too_many_queued_jobs"
    assert Job.objects.count() == 1


def test_the_plan_sets_the_priority_class_and_the_running_cap(
    api, tenant, template, plans, settings
):
    settings.REELCAST_POOLS = {
        "default": {"hardware_class": "cpu", "capacity": 5, "models": ["preview"]}
    }
    Plan.objects.filter(pk=plans["school"].pk).update(
        priority_class=Plan.PriorityClass.BULK, max_concurrent_jobs=2
    )
    subscription_assign(tenant=tenant, plan=Plan.objects.get(pk=plans["school"].pk))
    for _ in range(4):
        assert _post(api, template).status_code == 201
    assert set(Job.objects.values_list("priority", flat=True)) == {Priority.BULK}
    assert len(scheduler.dispatch_pool(scheduler.pools()[0])) == 2  # the plan's cap, not 5
