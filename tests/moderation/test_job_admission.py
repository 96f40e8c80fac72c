"""Moderation where jobs are admitted: a block is a 422 before anything exists; a request held
for review waits outside the queue until an operator approves it, then runs."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from billing.models import UsageEvent
from generation import scheduler
from generation.models import Job, JobState
from moderation.models import ReviewCase

pytestmark = pytest.mark.django_db


def _post(api, template, name):
    return api.post(
        "/api/v1/jobs/", {"template": str(template.id), "values": {"name": name}}, format="json"
    )


def test_a_blocked_name_is_a_422_with_the_rule_and_nothing_is_created(api, template):
    response = _post(api, template, "ｎａｋｅｄ")  # full-width evasion of a sexual term
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "content_blocked"
    assert body["errors"][0]["field"] == "values.name"
    assert Job.objects.count() == 0
    assert ReviewCase.objects.count() == 0


def test_a_held_request_waits_for_an_operator_then_runs(api, tenant, template, run_on_commit):
    # Personal data in a school's request: the strict preset sends it to review.
    response = run_on_commit(
        api.post,
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": "Ada 13812345678"}},
        format="json",
    )
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    assert job.state == JobState.IN_REVIEW
    assert scheduler.dispatch_pool(scheduler.pools()[0]) == []  # not in the queue
    assert UsageEvent.objects.count() == 0  # no GPU time before the operator decides
    case = ReviewCase.objects.get(job=job)
    assert case.stage == "request"

    operator = get_user_model().objects.create_user(
        "op", password="pw-for-tests-123", is_staff=True
    )
    operator.user_permissions.add(
        Permission.objects.get(content_type__app_label="moderation", codename="review_case")
    )
    console = APIClient()
    console.force_login(operator)
    approved = run_on_commit(
        console.post,
        f"/api/v1/moderation/cases/{case.pk}/approve/",
        {"reason": "a phone number in a name is fine here"},
        format="json",
    )
    assert approved.status_code == 200, approved.content
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
    assert [t.to_state for t in job.transitions.all()][:3] == ["in_review", "queued", "running"]


def test_a_held_request_can_be_canceled_by_the_tenant(api, template):
    job_id = _post(api, template, "Ada 13812345678").json()["id"]
    response = api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert (response.status_code, response.json()["state"]) == (200, "canceled")
