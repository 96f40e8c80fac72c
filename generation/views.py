"""Dashboard pages (server-rendered) and the signed download endpoint."""

from __future__ import annotations

import contextlib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from rest_framework.exceptions import APIException, ValidationError

from config.problems import field_errors
from generation import delivery, selectors, services
from generation.models import Job, Template
from tenants.auth import SESSION_TENANT_KEY
from tenants.models import Role
from tenants.selectors import membership_for, memberships_of
from tenants.web import current_membership


@require_GET
def download(request: HttpRequest, token: str, filename: str) -> HttpResponse:
    key = delivery.resolve_token(token)
    if not key.endswith("/" + filename):
        raise Http404("invalid link")
    response = delivery.serve(request, key)
    response["Cache-Control"] = "private, max-age=300"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


def home(request: HttpRequest) -> HttpResponse:
    return redirect("dashboard")


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    tenant = membership.tenant
    templates = list(selectors.template_list(tenant=tenant))
    for template in templates:
        template.latest = selectors.template_latest_version(template=template)
    jobs = selectors.job_list(tenant=tenant).order_by("-created_at")[:30]
    return render(
        request,
        "dashboard/home.html",
        {
            "membership": membership,
            "memberships": memberships_of(user=request.user),
            "templates": templates,
            "jobs": jobs,
            "can_edit": membership.has_role(Role.EDITOR),
        },
    )


@login_required
@require_POST
def switch_tenant(request: HttpRequest, tenant_id: str) -> HttpResponse:
    membership = membership_for(user=request.user, tenant_id=tenant_id)
    if membership is None:
        raise Http404("No such tenant.")
    request.session[SESSION_TENANT_KEY] = str(membership.tenant_id)
    return redirect("dashboard")


@login_required
@require_POST
def run_template(request: HttpRequest, template_id: str) -> HttpResponse:
    membership = current_membership(request)
    if not membership.has_role(Role.EDITOR):
        messages.error(request, "Your role cannot run jobs.")
        return redirect("dashboard")
    template = Template.objects.for_tenant(membership.tenant).filter(pk=template_id).first()
    if template is None:
        raise Http404("No such template.")
    version = selectors.template_latest_version(template=template)
    values = {}
    for var in version.variables:
        raw = request.POST.get(f"var_{var['name']}", "")
        if var["type"] == "number" and raw != "":
            with contextlib.suppress(ValueError):  # left as text: validation reports it
                raw = float(raw) if "." in raw else int(raw)
        if raw != "":
            values[var["name"]] = raw
    try:
        created = services.job_create(
            tenant=membership.tenant,
            request=services.JobRequest(template=template, values=values),
            actor_user=request.user,
        )
    except ValidationError as exc:
        for error in field_errors(exc.detail):
            messages.error(request, f"{error['field']}: {error['message']}")
        return redirect("dashboard")
    except APIException as exc:
        messages.error(request, str(exc.detail))
        return redirect("dashboard")
    return redirect("job-detail", job_id=created.job.id)


@login_required
def job_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    membership = current_membership(request)
    job = Job.objects.for_tenant(membership.tenant).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    video = poster = None
    if job.state == "succeeded" and job.video_key:
        video = delivery.signed_link(tenant=membership.tenant, key=job.video_key)
        poster = delivery.signed_link(tenant=membership.tenant, key=job.poster_key)
    return render(
        request,
        "dashboard/job.html",
        {
            "membership": membership,
            "job": job,
            "transitions": job.transitions.all(),
            "video": video,
            "poster": poster,
            "queue_position": selectors.queue_position(job=job),
        },
    )
