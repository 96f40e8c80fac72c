"""Reads for templates and jobs; every one takes the tenant."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from generation.models import DeletionReceipt, Job, JobTag, Template, TemplateVersion
from tenants.models import Tenant

TAG_CATEGORIES = ("subject", "action", "environment", "style", "character")


@dataclass(frozen=True)
class JobFilters:
    state: str | None = None
    template_id: str | None = None
    template_slug: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    batch_id: str | None = None
    tags: tuple[str, ...] = ()  # "value" or "category:value"; every one must match


def job_list(*, tenant: Tenant, filters: JobFilters | None = None) -> QuerySet[Job]:
    jobs = Job.objects.for_tenant(tenant).select_related("template", "template_version")
    filters = filters or JobFilters()
    if filters.state:
        jobs = jobs.filter(state=filters.state)
    if filters.template_id:
        jobs = jobs.filter(template_id=filters.template_id)
    if filters.template_slug:  # the job's template is the tenant's own: the slug is unique
        jobs = jobs.filter(template__slug=filters.template_slug)
    if filters.created_after:
        jobs = jobs.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        jobs = jobs.filter(created_at__lt=filters.created_before)
    if filters.batch_id:
        jobs = jobs.filter(batch_id=filters.batch_id)
    for tag in filters.tags:
        category, sep, value = tag.partition(":")
        rows = JobTag.objects.for_tenant(tenant)
        if sep and category in TAG_CATEGORIES:
            rows = rows.filter(category=category, value=value.strip().lower())
        else:
            rows = rows.filter(value=tag.strip().lower())
        jobs = jobs.filter(pk__in=rows.values("job_id"))
    return jobs


def template_list(*, tenant: Tenant, include_archived: bool = False) -> QuerySet[Template]:
    templates = Template.objects.for_tenant(tenant)
    if not include_archived:
        templates = templates.filter(archived_at__isnull=True)
    return templates.order_by("-created_at")


def template_latest_version(*, template: Template) -> TemplateVersion | None:
    return template.versions.order_by("-number").first()


def queue_position(*, job: Job) -> int | None:
    """Jobs ahead of this one for its pool (1 = next; 0 = handed to a worker)."""
    from generation.scheduler import queue_position as position

    return position(job)


_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_JOB_FILE = re.compile(rf"tenants/(?P<tenant>{_UUID})/jobs/(?P<job>{_UUID})/.+")


def deletion_receipt_for_key(*, key: str) -> DeletionReceipt | None:
    """The receipt that lists ``key`` among the files it removed (a job's files, deleted on
    request, by retention or by a consent's end), or None: a file never deleted that way.

    ``key`` comes from a signed download token: the tenant it names is the caller's."""
    match = _JOB_FILE.fullmatch(key)
    if match is None:
        return None
    tenant = Tenant.objects.filter(pk=match["tenant"]).first()
    if tenant is None:
        return None
    receipts = DeletionReceipt.objects.for_tenant(tenant).filter(job_id=match["job"])
    for receipt in receipts.order_by("created_at"):
        if any(isinstance(f, dict) and f.get("key") == key for f in receipt.files):
            return receipt
    return None
