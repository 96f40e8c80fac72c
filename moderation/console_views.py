"""The operator console under /console/: the review queue, decisions, the audit log, the trace
tool, tenants and the system's state, as server-rendered pages.

Staff only: an anonymous visitor is sent to sign in, a signed-in user who is not active staff
gets 403. Each section also needs the permission its API counterpart needs, so the console never
grants more than ``/api/v1/moderation/`` does: the queue, cases, audit log and trace need
``moderation.review_case``; suspending and reinstating tenants ``tenants.change_tenant``;
changing a plan ``billing.change_subscription``; the system page only staff.

Writes go through the same services as the API (``review_approve`` / ``review_reject``, which
write the audit log; ``tenant_suspend`` / ``tenant_reinstate``; ``subscription_assign``). The
reads here span every tenant on purpose: each such query is marked ``# unscoped:``, which
tests/test_layout.py checks.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.db.models import Count, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from rest_framework.exceptions import PermissionDenied as ApiPermissionDenied
from rest_framework.exceptions import ValidationError

from billing import services as billing_services
from billing.models import Plan, Subscription, UsageEvent
from billing.selectors import default_plan
from config.problems import ConflictProblem
from generation.delivery import signed_link
from generation.models import Job, JobState, WorkerHeartbeat
from generation.scheduler import pools, slots
from moderation import selectors, services
from moderation.models import AuditEntry, Category, ReviewCase
from tenants import services as tenant_services
from tenants.models import Tenant

REVIEW = services.REVIEW_PERMISSION
SUSPEND = "tenants.change_tenant"
CHANGE_PLAN = "billing.change_subscription"
MEDIA_TTL_S = 900  # the API's links to held media last as long
PAGE_SIZE = 50

CATEGORY_LABELS = {
    Category.SEXUAL: gettext_lazy("Sexual content"),
    Category.MINORS: gettext_lazy("Minors"),
    Category.VIOLENCE_GORE: gettext_lazy("Violence and gore"),
    Category.HATE: gettext_lazy("Hate"),
    Category.SELF_HARM: gettext_lazy("Self-harm"),
    Category.POLITICALLY_SENSITIVE: gettext_lazy("Politically sensitive"),
    Category.PERSONAL_DATA: gettext_lazy("Personal data"),
    "provider": gettext_lazy("Moderation provider"),
    "custom": gettext_lazy("Custom check"),
}
STATE_LABELS = {
    JobState.QUEUED: gettext_lazy("Queued"),
    JobState.RUNNING: gettext_lazy("Running"),
    JobState.POSTPROCESSING: gettext_lazy("Post-processing"),
    JobState.MODERATING: gettext_lazy("Moderating"),
    JobState.IN_REVIEW: gettext_lazy("In review"),
    JobState.SUCCEEDED: gettext_lazy("Succeeded"),
    JobState.FAILED: gettext_lazy("Failed"),
    JobState.CANCELED: gettext_lazy("Canceled"),
    JobState.BLOCKED: gettext_lazy("Blocked"),
}
STATUS_LABELS = {
    ReviewCase.Status.OPEN: gettext_lazy("Open"),
    ReviewCase.Status.APPROVED: gettext_lazy("Approved"),
    ReviewCase.Status.REJECTED: gettext_lazy("Rejected"),
}
STAGE_LABELS = {
    ReviewCase.Stage.REQUEST: gettext_lazy("Before generation"),
    ReviewCase.Stage.FRAMES: gettext_lazy("Finished video"),
}
VERDICT_LABELS = {
    "pass": gettext_lazy("Pass"),
    "review": gettext_lazy("Review"),
    "block": gettext_lazy("Block"),
}
AUDIT_LABELS = {
    AuditEntry.Action.CASE_OPENED: gettext_lazy("Case opened"),
    AuditEntry.Action.CASE_APPROVED: gettext_lazy("Case approved"),
    AuditEntry.Action.CASE_REJECTED: gettext_lazy("Case rejected"),
    AuditEntry.Action.POLICY_CHANGED: gettext_lazy("Policy changed"),
    AuditEntry.Action.TRACE: gettext_lazy("Leaked copy traced"),
}
TENANT_STATUS_LABELS = {
    Tenant.Status.ACTIVE: gettext_lazy("Active"),
    Tenant.Status.SUSPENDED: gettext_lazy("Suspended"),
}
KIND_LABELS = {
    Tenant.Kind.SCHOOL: gettext_lazy("School"),
    Tenant.Kind.SHOP: gettext_lazy("Shop"),
    Tenant.Kind.OTHER: gettext_lazy("Other"),
}
TEMPLATE_KIND_LABELS = {
    "character": gettext_lazy("Character"),
    "product": gettext_lazy("Product"),
}


def _label(labels: dict, value: str) -> str:
    return str(labels.get(value, value))


# --- access -----------------------------------------------------------------------------------


def _is_operator(user) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def operator_required(permission: str | None = None) -> Callable:
    """Anonymous: to the sign-in page; not active staff, or without ``permission``: 403."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not _is_operator(request.user):
                raise PermissionDenied("The operator console is for platform staff.")
            if permission is not None and not request.user.has_perm(permission):
                raise PermissionDenied(f"This needs the {permission} permission.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200):
    user = request.user
    context = {
        "can_review": user.has_perm(REVIEW),
        "can_suspend": user.has_perm(SUSPEND),
        "can_change_plan": user.has_perm(CHANGE_PLAN),
        **context,
    }
    if context["can_review"] and "open_cases" not in context:
        context["open_cases"] = ReviewCase.objects.filter(  # unscoped: operator console
            status=ReviewCase.Status.OPEN
        ).count()
    return render(request, template, context, status=status)


def _query(request: HttpRequest, *names: str) -> str:
    """The request's own filters, to carry into pagination and refresh links."""
    return urlencode({name: request.GET[name] for name in names if request.GET.get(name)})


# --- review queue -----------------------------------------------------------------------------

_STATUS_FILTERS = ("open", "approved", "rejected", "all")


def _queue_context(request: HttpRequest) -> dict[str, Any]:
    status = request.GET.get("status") or "open"
    if status not in _STATUS_FILTERS:
        status = "open"
    stage = request.GET.get("stage") or None
    if stage not in ReviewCase.Stage.values:
        stage = None
    cases = selectors.review_case_list(
        filters=selectors.CaseFilters(
            status=None if status == "all" else status,
            tenant_slug=request.GET.get("tenant") or None,
            stage=stage,
        )
    )
    if status != "open":  # decided cases: the latest decisions first
        cases = cases.order_by("-decided_at", "-id")
    page = Paginator(cases, PAGE_SIZE).get_page(request.GET.get("page"))
    query = _query(request, "status", "tenant", "stage")
    return {
        "section": "queue",
        "page": page,
        "rows": [_case_row(case) for case in page],
        "status": status,
        "stage": stage or "",
        "tenant_slug": request.GET.get("tenant", ""),
        "statuses": [(s, _label(STATUS_LABELS, s)) for s in _STATUS_FILTERS[:3]],
        "stages": [(s, _label(STAGE_LABELS, s)) for s in ReviewCase.Stage.values],
        "query": query,
        "rows_url": f"{reverse('console:queue-rows')}?{query}",
    }


def _case_row(case: ReviewCase) -> dict[str, Any]:
    reasons = [r for r in case.decision.reasons if isinstance(r, dict)]
    categories = sorted({r.get("category", "") for r in reasons})
    scores = [r["score"] for r in reasons if isinstance(r.get("score"), int | float)]
    return {
        "case": case,
        "categories": [_label(CATEGORY_LABELS, c) for c in categories],
        "top_score": max(scores, default=None),
        "stage": _label(STAGE_LABELS, case.stage),
        "status": _label(STATUS_LABELS, case.status),
        "state": _label(STATE_LABELS, case.job.state),
        "flagged_frames": len({f["frame"] for f in case.decision.findings if "frame" in f}),
    }


@require_GET
@operator_required(REVIEW)
def queue(request: HttpRequest) -> HttpResponse:
    return _page(request, "console/queue.html", _queue_context(request))


@require_GET
@operator_required(REVIEW)
def queue_rows(request: HttpRequest) -> HttpResponse:
    """The queue's table alone: htmx refreshes it in place."""
    return _page(request, "console/_queue_rows.html", _queue_context(request))


# --- one case ---------------------------------------------------------------------------------


def _case_or_404(case_id: int) -> ReviewCase:
    case = selectors.review_case_get(case_id=case_id)
    if case is None:
        raise Http404("No such case.")
    return case


@dataclass
class _Box:
    number: int
    x: int
    y: int
    width: int
    height: int
    label: str
    score: float
    model: str


def _flagged_frames(case: ReviewCase) -> list[dict[str, Any]]:
    """Every frame a finding points at: its kept image (when there is one), numbered boxes and
    the frame-wide scores. Box geometry is in the frame's pixels; console.js scales it."""
    job = case.job
    by_frame: dict[int, list[dict]] = defaultdict(list)
    for finding in case.decision.findings:
        if isinstance(finding.get("frame"), int):
            by_frame[finding["frame"]].append(finding)
    frames = []
    for index in sorted(by_frame):
        boxes: list[_Box] = []
        whole: list[dict] = []
        for finding in by_frame[index]:
            box = finding.get("box")
            if isinstance(box, list) and len(box) == 4:
                boxes.append(
                    _Box(
                        len(boxes) + 1,
                        *(int(v) for v in box),
                        label=str(finding.get("label", "")),
                        score=float(finding.get("score") or 0),
                        model=str(finding.get("model", "")),
                    )
                )
            else:
                whole.append(finding)
        key = services.evidence_frame_key(job=job, frame_index=index)
        image = None
        if not job.files_deleted_at and default_storage.exists(key):
            image = signed_link(tenant=case.tenant, key=key, ttl_s=MEDIA_TTL_S).url
        frames.append(
            {
                "index": index,
                "seconds": index / job.fps if job.fps else None,
                "image": image,
                "boxes": boxes,
                "whole": whole,
            }
        )
    return frames


def _requested_by(job: Job) -> dict[str, str]:
    who: dict[str, str] = {}
    if job.created_by_id:
        who["user"] = job.created_by.get_username()
    elif job.created_by_key_id:
        who["api_key"] = f"{job.created_by_key.prefix}… ({job.created_by_key.name})"
    if job.end_user:
        who["end_user"] = job.end_user
    return who


def _media(case: ReviewCase) -> dict[str, Any]:
    job = case.job
    if not job.video_key or job.files_deleted_at:
        return {}
    media = {"video": signed_link(tenant=case.tenant, key=job.video_key, ttl_s=MEDIA_TTL_S)}
    if job.poster_key:
        media["poster"] = signed_link(tenant=case.tenant, key=job.poster_key, ttl_s=MEDIA_TTL_S)
    return media


def _decision_context(case: ReviewCase, **extra: Any) -> dict[str, Any]:
    next_case = (
        selectors.review_case_list().exclude(pk=case.pk).first() if not case.is_open else None
    )
    return {
        "case": case,
        "job": case.job,
        "job_state": _label(STATE_LABELS, case.job.state),
        "case_status": _label(STATUS_LABELS, case.status),
        "next_case": next_case,
        "errors": {},
        "values": {},
        **extra,
    }


def _case_context(case: ReviewCase, **extra: Any) -> dict[str, Any]:
    job = case.job
    decision = case.decision
    reasons = [
        {
            **r,
            "category_label": _label(CATEGORY_LABELS, r.get("category", "")),
            "action_label": _label(VERDICT_LABELS, r.get("action", "")),
        }
        for r in decision.reasons
        if isinstance(r, dict)
    ]
    scores = sorted(
        (
            (_label(CATEGORY_LABELS, name), value)
            for name, value in decision.scores.items()
            if name in CATEGORY_LABELS and isinstance(value, int | float)
        ),
        key=lambda item: -item[1],
    )
    signals = sorted(
        (name, value)
        for name, value in decision.scores.items()
        if name not in CATEGORY_LABELS and isinstance(value, int | float)
    )
    decisions = [
        {
            "decision": d,
            "verdict": _label(VERDICT_LABELS, d.verdict),
            "categories": sorted(
                {_label(CATEGORY_LABELS, r.get("category", "")) for r in d.reasons}
            ),
        }
        for d in selectors.job_decisions(case=case)
    ]
    audit = [
        _audit_row(entry)
        for entry in selectors.audit_list(filters=selectors.AuditFilters(case_id=case.pk)).order_by(
            "id"
        )
    ]
    return {
        "section": "queue",
        "tenant_kind": _label(KIND_LABELS, case.tenant.kind),
        "template_kind": _label(TEMPLATE_KIND_LABELS, job.template.kind),
        "stage_label": _label(STAGE_LABELS, case.stage),
        "verdict_label": _label(VERDICT_LABELS, decision.verdict),
        "reasons": reasons,
        "scores": scores,
        "signals": signals,
        "frames": _flagged_frames(case),
        "text_matches": [
            {**f, "category_label": _label(CATEGORY_LABELS, f.get("category", ""))}
            for f in decision.findings
            if "rule" in f
        ],
        "reference_findings": [f for f in decision.findings if "image" in f],
        "decisions": decisions,
        "audit": audit,
        "media": _media(case),
        # Shown larger than a small preview render, within the layout (attributes, not styles).
        "video_width": 640 if job.width >= job.height else 360,
        "frame_width": 320 if job.width >= job.height else 180,
        "requested_by": _requested_by(job),
        "policy_name": decision.policy.get("name", ""),
        **_decision_context(case, **extra),
    }


@require_GET
@operator_required(REVIEW)
def case_detail(request: HttpRequest, case_id: int) -> HttpResponse:
    return _page(request, "console/case.html", _case_context(_case_or_404(case_id)))


@require_POST
@operator_required(REVIEW)
def case_decide(request: HttpRequest, case_id: int, decision: str) -> HttpResponse:
    """Approve or reject with the operator's reason, through the API's services (which lock the
    case, move the job and write the audit log in one transaction). htmx gets the decision panel
    back; a plain form post is redirected to the case (post/redirect/get)."""
    case = _case_or_404(case_id)
    reason = (request.POST.get("reason") or "").strip()
    decide = services.review_approve if decision == "approve" else services.review_reject
    status, errors = 200, {}
    if not reason:
        status, errors = 422, {decision: _("Give a reason: it is kept in the audit log.")}
    elif len(reason) > 1000:
        status, errors = 422, {decision: _("Keep the reason under 1,000 characters.")}
    else:
        try:
            decide(case=case, operator=request.user, reason=reason)
        except ApiPermissionDenied as error:
            raise PermissionDenied(str(error)) from error
        except ValidationError:
            status, errors = 422, {decision: _("Give a reason: it is kept in the audit log.")}
        except ConflictProblem:
            status = 409
            errors = {"conflict": _("Someone decided this case first; nothing was changed.")}
    case = _case_or_404(case_id)
    if status == 200:
        done = (
            _("Approved: the tenant now sees the job as %(state)s.")
            if decision == "approve"
            else _("Rejected: the tenant now sees the job as %(state)s, with your reason.")
        )
        message = done % {"state": _label(STATE_LABELS, case.job.state)}
        if not _is_htmx(request):
            messages.success(request, message)
            return redirect("console:case", case_id=case.pk)
    else:
        message = ""
    values = {decision: reason} if status == 422 else {}
    if _is_htmx(request):
        return _page(
            request,
            "console/_decision.html",
            _decision_context(case, errors=errors, values=values, done=message),
            status=status,
        )
    return _page(
        request, "console/case.html", _case_context(case, errors=errors, values=values), status
    )


# --- audit log --------------------------------------------------------------------------------


def _audit_row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "entry": entry,
        "action": _label(AUDIT_LABELS, entry.action),
        "data": json.dumps(entry.data, ensure_ascii=False, sort_keys=True) if entry.data else "",
    }


@require_GET
@operator_required(REVIEW)
def audit(request: HttpRequest) -> HttpResponse:
    params = request.GET
    case = params.get("case", "")
    job = params.get("job", "")
    action = params.get("action", "")
    filters = selectors.AuditFilters(
        case_id=int(case) if case.isdigit() else None,
        job_id=job if _is_uuid(job) else None,
        tenant_slug=params.get("tenant") or None,
        action=action if action in AuditEntry.Action.values else None,
    )
    page = Paginator(selectors.audit_list(filters=filters), PAGE_SIZE).get_page(params.get("page"))
    return _page(
        request,
        "console/audit.html",
        {
            "section": "audit",
            "page": page,
            "rows": [_audit_row(entry) for entry in page],
            "actions": [(a, _label(AUDIT_LABELS, a)) for a in AuditEntry.Action.values],
            "filters": {
                "case": case,
                "job": job,
                "action": action,
                "tenant": params.get("tenant", ""),
            },
            "query": _query(request, "case", "job", "action", "tenant"),
        },
    )


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# --- trace ------------------------------------------------------------------------------------


def _traced(record, distance: int | None = None) -> dict[str, Any]:
    job = record.job
    case = (
        ReviewCase.objects.filter(job=job).order_by("-id").first()  # unscoped: operator console
    )
    return {
        "job": job,
        "tenant": record.tenant,
        "template": job.template,
        "requested_by": _requested_by(job),
        "distance": distance,
        "state": _label(STATE_LABELS, job.state),
        "case": case,
    }


@require_http_methods(["GET", "POST"])
@operator_required(REVIEW)
def trace(request: HttpRequest) -> HttpResponse:
    """Upload a copy found in the wild: the watermark names the job, the fingerprint index
    lists the nearest delivered videos. Every trace is on the audit log, as through the API."""
    context: dict[str, Any] = {
        "section": "trace",
        "max_mb": settings.REELCAST_MAX_BODY_BYTES // 2**20,
    }
    if request.method == "GET":
        return _page(request, "console/trace.html", context)
    from moderation.provenance_service import provenance_trace

    upload = request.FILES.get("file")
    if upload is None:
        context["error"] = _("Choose the video file to trace.")
        return _page(request, "console/trace.html", context, status=422)
    if upload.size > settings.REELCAST_MAX_BODY_BYTES:
        context["error"] = _("The file is larger than %(mb)s MB.") % {"mb": context["max_mb"]}
        return _page(request, "console/trace.html", context, status=422)
    try:
        answer = provenance_trace(data=upload.read())
    except ValueError:
        context["error"] = _("That file is not a video we can read.")
        return _page(request, "console/trace.html", context, status=422)
    found = answer.watermark_record
    services.audit_record(  # the same row the API writes: who traced what
        action=AuditEntry.Action.TRACE,
        actor=request.user,
        tenant=found.tenant if found else None,
        job=found.job if found else None,
        data={
            "watermark_found": found is not None,
            "fingerprint_matches": [str(r.job_id) for r, _ in answer.matches],
            "via": "console",
        },
    )
    detection = answer.result.detection
    context.update(
        {
            "traced": True,
            "file_name": upload.name,
            "confidence": round(detection.confidence, 4),
            "frames_used": detection.frames_used,
            "exact": _traced(found) if found else None,
            "matches": [_traced(record, distance) for record, distance in answer.matches],
            "manifest": answer.manifest,
            "implicit_label": answer.implicit_label,
            "manifest_json": json.dumps(answer.manifest.store, indent=2, sort_keys=True)
            if answer.manifest
            else "",
        }
    )
    return _page(request, "console/trace.html", context)


# --- tenants ----------------------------------------------------------------------------------


def _month_start():
    now = timezone.now().astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@require_GET
@operator_required()
def tenants(request: HttpRequest) -> HttpResponse:
    search = (request.GET.get("q") or "").strip()
    rows = Tenant.objects.order_by("name")
    if search:
        rows = rows.filter(Q(name__icontains=search) | Q(slug__icontains=search))
    if request.GET.get("status") in Tenant.Status.values:
        rows = rows.filter(status=request.GET["status"])
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    ids = [tenant.pk for tenant in page]
    since = _month_start()
    subscriptions = {
        s.tenant_id: s
        for s in Subscription.objects.filter(
            tenant_id__in=ids
        ).select_related(  # unscoped: operator console
            "plan"
        )
    }
    usage_ms = dict(
        UsageEvent.objects.filter(  # unscoped: operator console
            tenant_id__in=ids, created_at__gte=since
        )
        .values_list("tenant_id")
        .annotate(ms=Sum("milliseconds"))
    )
    jobs = dict(
        Job.objects.filter(tenant_id__in=ids, created_at__gte=since)  # unscoped: operator console
        .values_list("tenant_id")
        .annotate(n=Count("id"))
    )
    open_cases = dict(
        ReviewCase.objects.filter(  # unscoped: operator console
            tenant_id__in=ids, status=ReviewCase.Status.OPEN
        )
        .values_list("tenant_id")
        .annotate(n=Count("id"))
    )
    fallback = default_plan()
    table = []
    for tenant in page:
        subscription = subscriptions.get(tenant.pk)
        live = subscription is not None and subscription.plan is not None and subscription.is_live
        table.append(
            {
                "tenant": tenant,
                "kind": _label(KIND_LABELS, tenant.kind),
                "status": _label(TENANT_STATUS_LABELS, tenant.status),
                "subscription": subscription,
                "plan": subscription.plan if live else fallback,
                "plan_is_default": not live,
                "nonpayment": bool(subscription and subscription.suspended_for_nonpayment),
                "stripe_managed": bool(subscription and subscription.stripe_subscription_id),
                "gpu_seconds": (usage_ms.get(tenant.pk) or 0) / 1000,
                "jobs": jobs.get(tenant.pk, 0),
                "open_cases": open_cases.get(tenant.pk, 0),
            }
        )
    return _page(
        request,
        "console/tenants.html",
        {
            "section": "tenants",
            "page": page,
            "rows": table,
            "plans": list(Plan.objects.order_by("monthly_fee_cents", "slug")),
            "search": search,
            "status_filter": request.GET.get("status", ""),
            "statuses": [(s, _label(TENANT_STATUS_LABELS, s)) for s in Tenant.Status.values],
            "since": since,
            "query": _query(request, "q", "status"),
            "next": request.get_full_path(),
        },
    )


def _tenant_or_404(tenant_id) -> Tenant:
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        raise Http404("No such tenant.")
    return tenant


def _back_to_tenants(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next") or ""
    if not target.startswith(reverse("console:tenants")):  # only back into the console
        target = reverse("console:tenants")
    return redirect(target)


@require_POST
@operator_required(SUSPEND)
def tenant_suspend(request: HttpRequest, tenant_id) -> HttpResponse:
    tenant = _tenant_or_404(tenant_id)
    reason = (request.POST.get("reason") or "").strip()
    if not reason:
        messages.error(
            request,
            _("Say why %(tenant)s is suspended: the tenant reads it.") % {"tenant": tenant.name},
        )
        return _back_to_tenants(request)
    tenant_services.tenant_suspend(tenant=tenant, reason=reason, actor=request.user)
    messages.success(request, _("%(tenant)s is suspended.") % {"tenant": tenant.name})
    return _back_to_tenants(request)


@require_POST
@operator_required(SUSPEND)
def tenant_reinstate(request: HttpRequest, tenant_id) -> HttpResponse:
    tenant = _tenant_or_404(tenant_id)
    tenant_services.tenant_reinstate(tenant=tenant, actor=request.user)
    messages.success(request, _("%(tenant)s is active again.") % {"tenant": tenant.name})
    return _back_to_tenants(request)


@require_POST
@operator_required(CHANGE_PLAN)
def tenant_plan(request: HttpRequest, tenant_id) -> HttpResponse:
    tenant = _tenant_or_404(tenant_id)
    slug = request.POST.get("plan") or ""
    plan = Plan.objects.filter(slug=slug).first() if slug else None
    if slug and plan is None:
        messages.error(request, _("There is no plan %(plan)s.") % {"plan": slug})
        return _back_to_tenants(request)
    billing_services.subscription_assign(tenant=tenant, plan=plan)
    messages.success(
        request,
        _("%(tenant)s is now on %(plan)s.")
        % {"tenant": tenant.name, "plan": plan.name if plan else _("no plan")},
    )
    return _back_to_tenants(request)


# --- system -----------------------------------------------------------------------------------


def _system_context() -> dict[str, Any]:
    now = timezone.now()
    fresh = now - timedelta(seconds=3 * settings.REELCAST_HEARTBEAT_S)
    pool_rows = []
    for pool in pools():
        waiting = Job.objects.filter(  # unscoped: operator console
            state=JobState.QUEUED, dispatched_at__isnull=True, model__in=pool.models
        ).count()
        busy = Job.objects.filter(  # unscoped: operator console
            pool=pool.name,
            dispatched_at__isnull=False,
            state__in=[JobState.QUEUED, JobState.RUNNING],
        ).count()
        pool_rows.append({"pool": pool, "waiting": waiting, "busy": busy, "slots": slots(pool)})
    workers = [
        {"worker": worker, "alive": worker.last_seen >= fresh}
        for worker in WorkerHeartbeat.objects.order_by("pool", "host", "pid")
    ]
    failures = list(
        Job.objects.filter(  # unscoped: operator console
            state=JobState.FAILED, finished_at__gte=now - timedelta(hours=1)
        )
        .values_list("error_code")
        .annotate(n=Count("id"))
        .order_by("-n", "error_code")
    )
    in_review = Job.objects.filter(state=JobState.IN_REVIEW).count()  # unscoped: operator console
    oldest = (
        ReviewCase.objects.filter(status=ReviewCase.Status.OPEN)  # unscoped: operator console
        .order_by("opened_at")
        .values_list("opened_at", flat=True)
        .first()
    )
    return {
        "section": "system",
        "now": now,
        "pools": pool_rows,
        "workers": workers,
        "alive_workers": sum(1 for w in workers if w["alive"]),
        "failures": [(code or "unknown", n) for code, n in failures],
        "failures_total": sum(n for _, n in failures),
        "in_review": in_review,
        "oldest_open": oldest,
        "stale_after_s": int(3 * settings.REELCAST_HEARTBEAT_S),
    }


@require_GET
@operator_required()
def system(request: HttpRequest) -> HttpResponse:
    return _page(request, "console/system.html", _system_context())


@require_GET
@operator_required()
def system_panel(request: HttpRequest) -> HttpResponse:
    """The system page's figures alone: htmx refreshes them in place."""
    return _page(request, "console/_system_panel.html", _system_context())


@require_GET
@operator_required()
def home(request: HttpRequest) -> HttpResponse:
    """The review queue for those who review, else the system page."""
    return redirect("console:queue" if request.user.has_perm(REVIEW) else "console:system")
