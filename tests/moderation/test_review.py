"""The review queue: a flagged job waits in_review, an operator approves or rejects it, every step
is in the append-only audit log, the tenant is told why, and only operators see the queue."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import RequestFactory
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.test import APIClient

from config.problems import ConflictProblem
from generation.models import TRANSITIONS, Job, JobState
from moderation.models import AppendOnlyError, AuditEntry, ModerationDecision, ReviewCase
from moderation.services import (
    moderation_judge_text,
    policy_set,
    review_approve,
    review_reject,
)
from tests import factories
from tests.conftest import key_client

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.moderation.fixtures.urls")]

CASES = "/api/v1/moderation/cases/"
AUDIT = "/api/v1/moderation/audit/"


def _operator(username: str = "moderator", *, permission: bool = True, staff: bool = True):
    user = get_user_model().objects.create_user(username, password="pw-for-tests-123")
    user.is_staff = staff
    user.save()
    if permission:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="moderation", codename="review_case")
        )
    return get_user_model().objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def operator():
    return _operator()


@pytest.fixture
def console(operator) -> APIClient:
    client = APIClient()
    client.force_login(operator)
    return client


@pytest.fixture
def held(tenant, template, api, run_on_commit):
    """A school's job that went through the whole pipeline and was held for review because its
    policy sends what no local model can check (violence) to a human."""
    policy_set(tenant=tenant, preset="strict", review_unchecked=["violence_gore"])
    response = run_on_commit(
        api.post,
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": "Ada"}},
        format="json",
    )
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    assert job.state == JobState.IN_REVIEW, _why(job)
    return ReviewCase.objects.get(job=job)


def _why(job: Job) -> tuple:
    """What a job that ended elsewhere was told, and by which checks (for a failure message)."""
    return (
        job.state,
        job.error_code,
        job.error_message,
        job.seed,
        list(job.moderation_decisions.values("stage", "verdict", "reasons", "scores")),
    )


def _actions(case: ReviewCase) -> list[tuple[str, str]]:
    return [
        (e.action, e.actor_username) for e in AuditEntry.objects.filter(case=case).order_by("id")
    ]


# --- services ---------------------------------------------------------------------------------


def test_a_flagged_job_waits_in_review_with_an_open_case_and_an_audit_row(held):
    assert (held.status, held.stage) == ("open", "frames")
    assert held.decision.verdict == "review"
    assert held.decision.stage == "frames"
    assert [t.to_state for t in held.job.transitions.all()][-2:] == ["moderating", "in_review"]
    assert _actions(held) == [("case_opened", "")]
    assert held.job.video_key  # the video exists, it is just not delivered


def test_approving_delivers_the_job_and_is_audited(held, operator, api):
    review_approve(case=held, operator=operator, reason="A playground scene, nothing violent.")
    held.refresh_from_db()
    assert (held.status, held.decided_by, held.decision_reason) == (
        "approved",
        operator,
        "A playground scene, nothing violent.",
    )
    assert held.job.state == JobState.SUCCEEDED
    assert held.job.transitions.last().reason == f"review approved: case {held.pk}"
    assert _actions(held) == [("case_opened", ""), ("case_approved", "moderator")]
    entry = AuditEntry.objects.get(action="case_approved")
    assert (entry.reason, entry.tenant_id, entry.job_id, entry.tenant_name) == (
        "A playground scene, nothing violent.",
        held.tenant_id,
        held.job_id,
        "Maple School",
    )
    assert api.get(f"/api/v1/jobs/{held.job_id}/").json()["state"] == "succeeded"


def test_rejecting_blocks_the_job_and_the_tenant_reads_why(held, operator, api):
    review_reject(case=held, operator=operator, reason="Shows a fight between pupils.")
    held.refresh_from_db()
    assert held.status == "rejected"
    body = api.get(f"/api/v1/jobs/{held.job_id}/").json()
    assert body["state"] == "blocked"
    assert body["error"] == {
        "code": "moderation_rejected",
        "message": "Blocked after moderation review. Moderation: violence and gore. "
        "Shows a fight between pupils.",
    }
    assert _actions(held) == [("case_opened", ""), ("case_rejected", "moderator")]


def test_a_case_is_decided_once(held, operator):
    review_reject(case=held, operator=operator, reason="No.")
    with pytest.raises(ConflictProblem) as raised:
        review_approve(case=held, operator=_operator("second"), reason="Yes.")
    assert raised.value.code == "case_already_decided"
    held.refresh_from_db()
    assert (held.status, held.job.state) == ("rejected", JobState.BLOCKED)
    assert _actions(held) == [("case_opened", ""), ("case_rejected", "moderator")]


@pytest.mark.parametrize(
    "who",
    ["staff_without_permission", "tenant_owner", "inactive_operator"],
)
def test_only_active_staff_with_the_permission_may_decide(held, tenant, who):
    if who == "staff_without_permission":
        user = _operator("plain-staff", permission=False)
    elif who == "tenant_owner":
        user = factories.make_member(tenant, role="owner")
    else:
        user = _operator("gone")
        user.is_active = False
        user.save()
    with pytest.raises(PermissionDenied):
        review_approve(case=held, operator=user, reason="looks fine")
    held.refresh_from_db()
    assert (held.status, held.job.state) == ("open", JobState.IN_REVIEW)
    assert _actions(held) == [("case_opened", "")]


def test_a_decision_needs_a_reason(held, operator):
    with pytest.raises(ValidationError):
        review_reject(case=held, operator=operator, reason="   ")
    held.refresh_from_db()
    assert (held.status, held.job.state) == ("open", JobState.IN_REVIEW)


def test_a_request_held_before_generation_goes_to_the_queue_when_approved(
    tenant, template, operator, monkeypatch, run_on_commit
):
    # The lead's job_create creates a job that text moderation sent to review directly in
    # in_review, and generation.models allows in_review -> queued; until then, arrange it here.
    monkeypatch.setitem(
        TRANSITIONS, JobState.IN_REVIEW, TRANSITIONS[JobState.IN_REVIEW] | {JobState.QUEUED}
    )
    from generation.services import JobRequest, job_create

    job = job_create(tenant=tenant, request=JobRequest(template=template, values={"name": "Ada"}))
    Job.objects.filter(pk=job.job.pk).update(state=JobState.IN_REVIEW)  # arrange only
    moderation_judge_text(tenant=tenant, job=job.job, texts={"shots.0.prompt": "Ada meets 习近平"})
    case = ReviewCase.objects.get(job=job.job)
    assert case.stage == "request"
    run_on_commit(review_approve, case=case, operator=operator, reason="A history lesson.")
    finished = Job.objects.get(pk=job.job.pk)
    # Approved before generation: queued, then the (synchronous) pipeline ran it to the end.
    assert [t.to_state for t in finished.transitions.all()][-5:] == [
        "queued",
        "running",
        "postprocessing",
        "moderating",
        "succeeded",
    ]


# --- the audit log is append-only -------------------------------------------------------------


def test_audit_entries_cannot_be_updated_or_deleted(held):
    entry = AuditEntry.objects.get(action="case_opened")
    entry.reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).reason == "frames: review"


def test_the_audit_log_outlives_the_job_and_case_it_names(held):
    job_id = held.job_id
    Job.objects.filter(pk=job_id).delete()  # cascades to the case and decisions, not the log
    assert ReviewCase.objects.count() == ModerationDecision.objects.count() == 0
    assert list(
        AuditEntry.objects.filter(case_id=held.pk).values_list("action", "tenant_name", "job_id")
    ) == [("case_opened", "Maple School", job_id)]


def test_the_admin_offers_no_way_to_change_the_audit_log(operator):
    superuser = get_user_model().objects.create_superuser("root", password="pw-for-tests-123")
    request = RequestFactory().get("/admin/")
    request.user = superuser
    model_admin = admin.site._registry[AuditEntry]
    assert model_admin.has_add_permission(request) is False
    assert model_admin.has_change_permission(request) is False
    assert model_admin.has_delete_permission(request) is False
    assert model_admin.get_actions(request) == {}
    decisions = admin.site._registry[ModerationDecision]
    assert decisions.has_change_permission(request) is False


# --- the operator API -------------------------------------------------------------------------


def test_operators_list_open_cases_with_reasons_scores_and_flagged_frames(held, console):
    response = console.get(CASES)
    assert response.status_code == 200
    [item] = response.json()["results"]
    assert (item["id"], item["status"], item["stage"], item["verdict"]) == (
        held.pk,
        "open",
        "frames",
        "review",
    )
    assert item["tenant"]["slug"] == held.tenant.slug
    assert item["job"]["state"] == "in_review"
    assert item["categories"] == ["violence_gore"]
    assert item["reasons"][0]["rule"] == "review_unchecked"
    assert item["scores"]["sampled_frames"] == 2  # 8 frames at 8 fps: frames 0 and 7
    assert item["flagged_frames"] == []  # nothing seen, it is held for what was not checked


def test_operators_see_every_tenants_queue_and_can_filter_it(held, console):
    other = factories.make_tenant(kind="shop")
    job = factories.make_template(other)
    from generation.services import JobRequest, job_create

    other_job = job_create(
        tenant=other, request=JobRequest(template=job, values={"name": "Bo"})
    ).job
    moderation_judge_text(
        tenant=other, job=other_job, texts={"values.name": "Bo 13812345678 ID 11010519491231002X"}
    )
    both = console.get(CASES).json()["results"]
    assert {c["tenant"]["slug"] for c in both} == {held.tenant.slug, other.slug}
    only = console.get(CASES, {"tenant": other.slug}).json()["results"]
    assert [(c["tenant"]["slug"], c["stage"]) for c in only] == [(other.slug, "request")]
    assert [m["term"] for m in only[0]["text_matches"]] == ["cn_mobile", "cn_resident_id"]
    assert console.get(CASES, {"status": "nonsense"}).status_code == 400


def test_retrieve_shows_decisions_media_links_and_the_audit_trail(held, console):
    body = console.get(f"{CASES}{held.pk}/").json()
    # the text check at creation, then the frames check that held the finished video
    assert [d["stage"] for d in body["decisions"]] == ["text", "frames"]
    assert body["media"]["video"]["url"].startswith("http")
    assert [a["action"] for a in body["audit"]] == ["case_opened"]
    for missing in ("999999", "not-a-number"):
        response = console.get(f"{CASES}{missing}/")
        assert (response.status_code, response.json()) == (
            404,
            {
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": "Not found.",
                "code": "not_found",
            },
        )


def test_approve_and_reject_through_the_api(held, console, api):
    response = console.post(f"{CASES}{held.pk}/reject/", {"reason": "Unsafe."}, format="json")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["job"]["state"]) == ("rejected", "blocked")
    again = console.post(f"{CASES}{held.pk}/approve/", {"reason": "Oops."}, format="json")
    assert (again.status_code, again.json()["code"]) == (409, "case_already_decided")
    assert console.get(CASES).json()["results"] == []
    closed = console.get(CASES, {"status": "rejected"}).json()["results"]
    assert [c["id"] for c in closed] == [held.pk]
    log = console.get(AUDIT, {"case": held.pk}).json()["results"]
    assert [(e["action"], e["actor"], e["reason"]) for e in log] == [
        ("case_rejected", "moderator", "Unsafe."),
        ("case_opened", "", "frames: review"),
    ]
    assert api.get(f"/api/v1/jobs/{held.job_id}/").json()["error"]["code"] == "moderation_rejected"


def test_a_decision_without_a_reason_is_400_and_changes_nothing(held, console):
    response = console.post(f"{CASES}{held.pk}/approve/", {}, format="json")
    assert (response.status_code, response.json()["errors"][0]["field"]) == (400, "reason")
    held.refresh_from_db()
    assert held.status == "open"


@pytest.mark.parametrize(
    "caller", ["tenant_owner", "tenant_api_key", "staff_without_permission", "anonymous"]
)
def test_no_one_but_an_operator_sees_or_decides_the_queue(held, tenant, caller):
    if caller == "tenant_api_key":
        client = key_client(factories.make_secret_key(tenant))
    else:
        client = APIClient()
        if caller == "tenant_owner":
            client.force_login(factories.make_member(tenant, role="owner"))
        elif caller == "staff_without_permission":
            client.force_login(_operator("plain-staff", permission=False))
    responses = [
        client.get(CASES),
        client.get(f"{CASES}{held.pk}/"),
        client.post(f"{CASES}{held.pk}/approve/", {"reason": "mine"}, format="json"),
        client.get(AUDIT),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403, 403]
    assert {r["Content-Type"] for r in responses} == {"application/problem+json"}
    held.refresh_from_db()
    assert (held.status, held.job.state) == ("open", JobState.IN_REVIEW)
    assert list(AuditEntry.objects.values_list("action", flat=True)) == [
        "policy_changed",
        "case_opened",
    ]
