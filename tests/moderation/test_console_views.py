"""The operator console (/console/): staff only, every page renders, approve and reject change
what the tenant sees, every decision is audited, suspension reaches the tenant's API, the trace
tool finds a leaked copy's job, and the browser's language chooses the console's."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from PIL import Image

from billing.models import Plan, Subscription
from generation.models import Job, JobState, WorkerHeartbeat
from generation.storage import get_bytes
from moderation import images
from moderation.models import AuditEntry, ReviewCase
from moderation.services import evidence_frame_key, policy_set
from tenants.models import Tenant
from tests import factories
from tests.conftest import key_client

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-123"
PERMISSIONS = [
    ("moderation", "review_case"),
    ("tenants", "change_tenant"),
    ("billing", "change_subscription"),
]


def make_operator(username: str = "moderator", *, permissions=PERMISSIONS, staff: bool = True):
    user = get_user_model().objects.create_user(username, password=PASSWORD, is_staff=staff)
    for app_label, codename in permissions:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return get_user_model().objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def operator():
    return make_operator()


@pytest.fixture
def console(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def _create(api, template, name: str, run_on_commit) -> Job:
    response = run_on_commit(
        api.post,
        "/api/v1/jobs/",
        {"template": str(template.id), "values": {"name": name}},
        format="json",
    )
    assert response.status_code == 201, response.content
    return Job.objects.get(pk=response.json()["id"])


@pytest.fixture
def held(tenant, template, api, run_on_commit) -> ReviewCase:
    """A school's finished video held because its policy sends violence (which no local model
    checks) to a human: a case with reasons but no flagged frames."""
    policy_set(tenant=tenant, preset="strict", review_unchecked=["violence_gore"])
    job = _create(api, template, "Ada", run_on_commit)
    assert job.state == JobState.IN_REVIEW
    return ReviewCase.objects.get(job=job)


class _OneBoxDetector:
    """nudenet with its output replaced at the detector boundary (no explicit image needed):
    one covered-to-exposed grey-zone box, in the standard policy's review band (0.5–0.8)."""

    def detect(self, image):
        return [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.62, "box": [40, 30, 60, 50]}]


@pytest.fixture
def shop(db) -> Tenant:
    return factories.make_tenant(name="Coat Shop", kind="shop")


@pytest.fixture
def shop_api(shop):
    return key_client(factories.make_secret_key(shop))


@pytest.fixture
def flagged(shop, shop_api, run_on_commit, monkeypatch) -> ReviewCase:
    monkeypatch.setattr(images, "nude_detector", lambda: _OneBoxDetector())
    template = factories.make_template(shop, kind="product")
    job = _create(shop_api, template, "Bo", run_on_commit)
    assert job.state == JobState.IN_REVIEW, (job.error_code, job.error_message)
    return ReviewCase.objects.get(job=job)


def _audit(case: ReviewCase) -> list[tuple[str, str, str]]:
    return list(
        AuditEntry.objects.filter(case=case)
        .order_by("id")
        .values_list("action", "actor_username", "reason")
    )


# --- who may use it ---------------------------------------------------------------------------

PAGES = [
    "/console/",
    "/console/queue/",
    "/console/queue/rows/",
    "/console/audit/",
    "/console/trace/",
    "/console/tenants/",
    "/console/system/",
    "/console/system/panel/",
]


@pytest.mark.parametrize("path", PAGES)
def test_an_anonymous_visitor_is_sent_to_sign_in(path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


@pytest.mark.parametrize("path", PAGES)
def test_a_tenant_owner_who_is_not_staff_gets_403(path, tenant):
    client = Client()
    client.force_login(factories.make_member(tenant, role="owner"))
    assert client.get(path).status_code == 403


def test_a_non_staff_user_cannot_decide_suspend_or_change_plans(held, tenant):
    owner = factories.make_member(tenant, role="owner")
    owner.user_permissions.add(
        Permission.objects.get(content_type__app_label="moderation", codename="review_case")
    )
    client = Client()
    client.force_login(owner)
    responses = [
        client.get(f"/console/cases/{held.pk}/"),
        client.post(f"/console/cases/{held.pk}/approve/", {"reason": "mine now"}),
        client.post(f"/console/cases/{held.pk}/reject/", {"reason": "mine now"}),
        client.post(f"/console/tenants/{tenant.pk}/suspend/", {"reason": "no"}),
        client.post(f"/console/tenants/{tenant.pk}/plan/", {"plan": ""}),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403, 403, 403]
    held.refresh_from_db()
    tenant.refresh_from_db()
    assert (held.status, held.job.state, tenant.status) == ("open", JobState.IN_REVIEW, "active")
    assert _audit(held) == [("case_opened", "", "frames: review")]
    assert not Subscription.objects.filter(tenant=tenant).exists()


def test_staff_without_the_review_permission_see_the_system_but_not_the_queue(held):
    client = Client()
    client.force_login(make_operator("plain-staff", permissions=[]))
    assert client.get("/console/").url == "/console/system/"
    assert client.get("/console/system/").status_code == 200
    assert client.get("/console/queue/").status_code == 403
    assert client.get(f"/console/cases/{held.pk}/").status_code == 403
    response = client.post(f"/console/cases/{held.pk}/approve/", {"reason": "fine"})
    assert response.status_code == 403
    held.refresh_from_db()
    assert held.status == "open"


def test_decisions_are_posts_with_a_csrf_token(held, operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.get(f"/console/cases/{held.pk}/approve/").status_code == 405
    assert client.post(f"/console/cases/{held.pk}/approve/", {"reason": "ok"}).status_code == 403
    held.refresh_from_db()
    assert held.status == "open"


# --- the pages --------------------------------------------------------------------------------


def test_the_queue_lists_every_tenants_open_cases(held, flagged, console):
    response = console.get("/console/queue/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f'data-case="{held.pk}"' in page and f'data-case="{flagged.pk}"' in page
    assert "Maple School" in page and "Coat Shop" in page
    assert "Violence and gore" in page and "Sexual content" in page
    assert 'hx-trigger="every 30s"' in page  # the rows refresh themselves
    assert "js/console.js" in page

    only_shop = console.get("/console/queue/rows/", {"tenant": flagged.tenant.slug})
    rows = only_shop.content.decode()
    assert only_shop.templates[0].name == "console/_queue_rows.html"
    assert f'data-case="{flagged.pk}"' in rows and f'data-case="{held.pk}"' not in rows
    assert "<html" not in rows


def test_the_case_page_plays_the_video_and_shows_why(held, console):
    response = console.get(f"/console/cases/{held.pk}/")
    page = response.content.decode()
    video = response.context["media"]["video"].url
    assert video.startswith(f"{settings.REELCAST_PUBLIC_URL}/dl/")
    assert f'id="case-video" src="{video}" width="640"' in page
    served = console.get(video.removeprefix(settings.REELCAST_PUBLIC_URL))
    assert served.status_code == 200
    assert b"".join(served.streaming_content if served.streaming else [served.content]) == (
        get_bytes(held.job.video_key)
    )
    assert "Violence and gore" in page
    assert 'id="approve-form"' in page and 'id="reject-form"' in page
    assert 'hx-post="/console/cases/' in page
    assert "Case opened" in page  # the audit trail


def test_flagged_frames_are_kept_and_shown_with_their_boxes(flagged, console):
    response = console.get(f"/console/cases/{flagged.pk}/")
    page = response.content.decode()
    frames = response.context["frames"]
    assert [f["index"] for f in frames] == [0, 7]  # 8 frames at 8 fps: the first and the last
    for frame in frames:
        assert [(b.x, b.y, b.width, b.height, b.label) for b in frame["boxes"]] == [
            (40, 30, 60, 50, "FEMALE_BREAST_EXPOSED")
        ]
        assert frame["image"]
    assert page.count('data-x="40" data-y="30" data-width="60" data-height="50"') == 2
    assert "style=" not in page  # the CSP: console.js places the boxes
    key = evidence_frame_key(job=flagged.job, frame_index=7)
    assert key.startswith(f"tenants/{flagged.tenant_id}/jobs/{flagged.job_id}/")
    kept = Image.open(io.BytesIO(get_bytes(key)))
    assert (kept.format, kept.size) == ("JPEG", (flagged.job.width, flagged.job.height))
    link = frames[1]["image"]
    served = console.get(link[link.index("/dl/") :])
    assert served.status_code == 200
    assert b"".join(served.streaming_content if served.streaming else [served.content]) == (
        get_bytes(key)
    )


def test_a_clean_video_keeps_no_evidence_frames(tenant, template, api, run_on_commit):
    job = _create(api, template, "Cy", run_on_commit)
    assert job.state == JobState.SUCCEEDED
    assert not default_storage.exists(evidence_frame_key(job=job, frame_index=0))


def test_audit_trace_tenants_and_system_pages_render(held, console, tenant):
    audit = console.get("/console/audit/")
    assert audit.status_code == 200
    assert "Case opened" in audit.content.decode()
    filtered = console.get("/console/audit/", {"action": "policy_changed"})
    assert [row["entry"].action for row in filtered.context["rows"]] == ["policy_changed"]
    assert console.get("/console/trace/").status_code == 200
    tenants = console.get("/console/tenants/").content.decode()
    assert f'data-tenant="{tenant.slug}"' in tenants
    assert "1 case open" in tenants
    assert console.get("/console/system/").status_code == 200


# --- decisions change what the tenant sees -----------------------------------------------------


def test_approving_in_the_console_delivers_the_job_to_the_tenant(held, console, api):
    response = console.post(
        f"/console/cases/{held.pk}/approve/", {"reason": "A playground game, nothing violent."}
    )
    assert (response.status_code, response["Location"]) == (302, f"/console/cases/{held.pk}/")
    held.refresh_from_db()
    assert (held.status, held.decided_by.username) == ("approved", "moderator")
    assert held.job.state == JobState.SUCCEEDED
    body = api.get(f"/api/v1/jobs/{held.job_id}/").json()
    assert (body["state"], body["error"]) == ("succeeded", None)
    assert api.get(f"/api/v1/jobs/{held.job_id}/download/").status_code == 200
    assert _audit(held) == [
        ("case_opened", "", "frames: review"),
        ("case_approved", "moderator", "A playground game, nothing violent."),
    ]
    page = console.get(f"/console/cases/{held.pk}/").content.decode()
    assert "Approved: the tenant now sees the job as Succeeded." in page
    assert 'id="approve-form"' not in page


def test_rejecting_through_htmx_blocks_the_job_and_the_tenant_reads_the_reason(
    flagged, console, shop_api
):
    response = console.post(
        f"/console/cases/{flagged.pk}/reject/",
        {"reason": "Too revealing for a storefront."},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert response.templates[0].name == "console/_decision.html"
    panel = response.content.decode()
    assert 'id="decision"' in panel and "Rejected" in panel and "<html" not in panel
    body = shop_api.get(f"/api/v1/jobs/{flagged.job_id}/").json()
    assert body["state"] == "blocked"
    assert body["error"] == {
        "code": "moderation_rejected",
        "message": "Blocked after moderation review. Moderation: sexual content. "
        "Too revealing for a storefront.",
    }
    assert _audit(flagged) == [
        ("case_opened", "", "frames: review"),
        ("case_rejected", "moderator", "Too revealing for a storefront."),
    ]


@pytest.mark.parametrize("htmx", [False, True])
def test_a_decision_without_a_reason_changes_nothing(held, console, htmx):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = console.post(f"/console/cases/{held.pk}/reject/", {"reason": "  "}, **headers)
    assert response.status_code == 422
    assert "Give a reason: it is kept in the audit log." in response.content.decode()
    held.refresh_from_db()
    assert (held.status, held.job.state) == ("open", JobState.IN_REVIEW)
    assert _audit(held) == [("case_opened", "", "frames: review")]


def test_a_case_decided_by_someone_else_first_is_409_and_stays_as_it_was(held, console):
    assert console.post(f"/console/cases/{held.pk}/reject/", {"reason": "No."}).status_code == 302
    again = console.post(
        f"/console/cases/{held.pk}/approve/", {"reason": "Yes."}, HTTP_HX_REQUEST="true"
    )
    assert again.status_code == 409
    assert "Someone decided this case first" in again.content.decode()
    held.refresh_from_db()
    assert (held.status, held.job.state) == ("rejected", JobState.BLOCKED)
    assert [a for a, _, _ in _audit(held)] == ["case_opened", "case_rejected"]


def test_the_decided_queue_shows_who_decided(held, console):
    console.post(f"/console/cases/{held.pk}/approve/", {"reason": "Fine."})
    assert console.get("/console/queue/").context["rows"] == []
    decided = console.get("/console/queue/", {"status": "approved"})
    assert [row["case"].pk for row in decided.context["rows"]] == [held.pk]
    assert "moderator" in decided.content.decode()


# --- tenants ----------------------------------------------------------------------------------


def test_suspending_refuses_the_tenants_jobs_with_402_and_reinstating_restores(
    tenant, template, api, console
):
    response = console.post(
        f"/console/tenants/{tenant.pk}/suspend/",
        {"reason": "Repeated policy violations.", "next": "/console/tenants/?q=maple"},
    )
    assert (response.status_code, response["Location"]) == (302, "/console/tenants/?q=maple")
    tenant.refresh_from_db()
    assert (tenant.status, tenant.suspended_reason) == ("suspended", "Repeated policy violations.")
    job = {"template": str(template.id), "values": {"name": "Ada"}}
    refused = api.post("/api/v1/jobs/", job, format="json")
    assert refused.status_code == 402
    assert refused.json()["code"] == "tenant_suspended"
    assert "Repeated policy violations." in refused.json()["detail"]
    assert Job.objects.filter(tenant=tenant).count() == 0
    page = console.get("/console/tenants/").content.decode()
    assert 'data-status="suspended"' in page and 'class="reinstate-form"' in page

    console.post(f"/console/tenants/{tenant.pk}/reinstate/")
    tenant.refresh_from_db()
    assert (tenant.status, tenant.suspended_reason) == ("active", "")
    assert api.post("/api/v1/jobs/", job, format="json").status_code == 201


def test_a_suspension_needs_a_reason_and_redirects_only_inside_the_console(tenant, console):
    response = console.post(
        f"/console/tenants/{tenant.pk}/suspend/", {"reason": " ", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/console/tenants/"
    tenant.refresh_from_db()
    assert tenant.status == "active"


def test_changing_a_tenants_plan(tenant, console):
    plan = Plan.objects.create(slug="school-po", name="School (purchase order)", is_public=False)
    console.post(f"/console/tenants/{tenant.pk}/plan/", {"plan": "school-po"})
    subscription = Subscription.objects.get(tenant=tenant)
    assert (subscription.plan, subscription.status) == (plan, "active")
    page = console.get("/console/tenants/").content.decode()
    assert "School (purchase order)" in page
    assert console.post(f"/console/tenants/{tenant.pk}/plan/", {"plan": "nope"}).status_code == 302
    subscription.refresh_from_db()
    assert subscription.plan == plan


def test_tenant_actions_need_their_permissions(tenant, held):
    client = Client()
    client.force_login(make_operator("reviewer", permissions=[("moderation", "review_case")]))
    page = client.get("/console/tenants/").content.decode()
    assert 'class="suspend-form"' not in page and 'class="plan-form"' not in page
    refused = client.post(f"/console/tenants/{tenant.pk}/suspend/", {"reason": "x"})
    assert refused.status_code == 403
    tenant.refresh_from_db()
    assert tenant.status == "active"


# --- system -----------------------------------------------------------------------------------


def test_the_system_page_shows_queue_depth_workers_and_recent_failures(tenant, template, console):
    from generation.services import JobRequest, job_create

    waiting = job_create(tenant=tenant, request=JobRequest(template=template, values={"name": "A"}))
    assert waiting.job.state == JobState.QUEUED
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        worker="gpu-7:41",
        pool="default",
        host="gpu-7",
        pid=41,
        hardware_class="h100",
        gpu_name="NVIDIA H100 80GB HBM3",
        gpu_memory_total_mb=81559,
        gpu_memory_used_mb=40210,
        loaded_models=["wan2.2-t2v-a14b"],
        current_job=waiting.job.pk,
        started_at=now - timedelta(hours=2),
        last_seen=now,
    )
    for code, age in [("worker_lost", 10), ("worker_lost", 20), ("oom", 30), ("oom", 90)]:
        failed = job_create(
            tenant=tenant, request=JobRequest(template=template, values={"name": "B"})
        ).job
        Job.objects.filter(pk=failed.pk).update(  # arrange only
            state=JobState.FAILED, error_code=code, finished_at=now - timedelta(minutes=age)
        )
    response = console.get("/console/system/")
    context = response.context
    assert [(p["pool"].name, p["waiting"], p["slots"]) for p in context["pools"]] == [
        ("default", 1, 1)
    ]
    assert [(w["worker"].worker, w["alive"]) for w in context["workers"]] == [("gpu-7:41", True)]
    assert context["failures"] == [("worker_lost", 2), ("oom", 1)]  # the 90-minute-old one is out
    page = response.content.decode()
    assert "NVIDIA H100 80GB HBM3" in page and "wan2.2-t2v-a14b" in page
    assert str(waiting.job.pk) in page
    panel = console.get("/console/system/panel/")
    assert panel.templates[0].name == "console/_system_panel.html"


# --- trace ------------------------------------------------------------------------------------


def test_the_trace_tool_finds_the_tenant_and_job_of_a_reencoded_copy(
    tenant, other_tenant, run_on_commit, console
):
    from tests.moderation.test_provenance_pipeline import _deliver, _frames, _reencode

    job = _deliver(tenant, run_on_commit, name="Ada")
    _deliver(other_tenant, run_on_commit, name="Zed")
    leaked = _reencode(_frames(get_bytes(job.video_key)), crf=28, scale=0.75)
    response = console.post(
        "/console/trace/", {"file": SimpleUploadedFile("leak.mp4", leaked, "video/mp4")}
    )
    assert response.status_code == 200
    exact = response.context["exact"]
    assert (exact["job"].pk, exact["tenant"].slug) == (job.pk, tenant.slug)
    assert exact["requested_by"]["api_key"].startswith("sk_")
    assert response.context["matches"][0]["job"].pk == job.pk
    page = response.content.decode()
    assert f'<code id="trace-job">{job.pk}</code>' in page and "Maple School" in page
    assert '<article id="trace-manifest" data-source="soft_binding">' in page
    assert "Manifest recovered from the watermark (soft binding)." in page
    assert "matches the watermark" in page and job.id.hex in page
    assert '<p id="trace-no-label">' in page  # the re-encode dropped the AIGC tag
    entry = AuditEntry.objects.get(action="trace")
    assert (entry.actor_username, entry.job_id, entry.tenant_id) == ("moderator", job.pk, tenant.pk)


def test_the_trace_tool_shows_a_delivered_file_s_manifest_and_signed_label(
    tenant, run_on_commit, console
):
    from tests.moderation.test_provenance_pipeline import _deliver

    job = _deliver(tenant, run_on_commit)
    response = console.post(
        "/console/trace/",
        {"file": SimpleUploadedFile("v.mp4", get_bytes(job.video_key), "video/mp4")},
    )
    page = response.content.decode()
    assert '<article id="trace-manifest" data-source="embedded">' in page
    assert (
        '<p id="trace-label" data-status="valid"><strong class="good">'
        f"implicit label: valid signature for job {job.id.hex}</strong>"
    ) in page


def test_the_trace_tool_refuses_a_file_that_is_not_a_video(console):
    response = console.post(
        "/console/trace/", {"file": SimpleUploadedFile("x.mp4", b"not a video", "video/mp4")}
    )
    assert response.status_code == 422
    assert "That file is not a video we can read." in response.content.decode()
    assert not AuditEntry.objects.filter(action="trace").exists()


# --- languages --------------------------------------------------------------------------------


def test_a_chinese_browser_gets_the_console_in_chinese(held, console):
    page = console.get("/console/queue/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    assert '<html lang="zh-hans"' in page
    assert "审核队列" in page  # Review queue
    assert "暴力与血腥" in page  # Violence and gore
    assert "Review queue" not in page
    case = console.get(
        f"/console/cases/{held.pk}/", HTTP_ACCEPT_LANGUAGE="zh-Hans"
    ).content.decode()
    assert "批准" in case and "拒绝" in case  # Approve, Reject
    english = console.get("/console/queue/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Review queue" in english and "审核队列" not in english
