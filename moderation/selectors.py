"""Reads for moderation: the policy in force for a tenant, and the operators' queue and log.

The queue and the log are the operator console's: they span every tenant on purpose, and each
such query says so with ``# unscoped:``. Tenant-facing code never calls them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from moderation.models import (
    PRESET_BY_TENANT_KIND,
    PRESETS,
    AuditEntry,
    EffectivePolicy,
    ModerationPolicy,
    ReviewCase,
)
from tenants.models import Tenant


def policy_for(*, tenant: Tenant) -> EffectivePolicy:
    """The tenant's own policy, or the preset for its kind (school -> strict, else standard)."""
    own = ModerationPolicy.objects.for_tenant(tenant).first()
    if own is not None:
        return own.effective()
    preset = PRESET_BY_TENANT_KIND.get(tenant.kind, "standard")
    return EffectivePolicy(name=preset, rules=dict(PRESETS[preset]))


def is_minor_context(
    *, tenant: Tenant, template=None, policy: EffectivePolicy | None = None
) -> bool:
    """Whether a job may show minors: a school's character template, or the policy says so."""
    policy = policy or policy_for(tenant=tenant)
    if policy.minor_context:
        return True
    return tenant.kind == Tenant.Kind.SCHOOL and getattr(template, "kind", None) == "character"


@dataclass(frozen=True)
class CaseFilters:
    status: str | None = ReviewCase.Status.OPEN  # None = every status
    tenant_slug: str | None = None
    stage: str | None = None


def review_case_list(*, filters: CaseFilters | None = None) -> QuerySet[ReviewCase]:
    """Cases across all tenants, oldest first (the queue is worked in order)."""
    filters = filters or CaseFilters()
    cases = ReviewCase.objects.select_related(  # unscoped: operators work every tenant's queue
        "tenant", "job", "job__template", "decision", "decided_by"
    )
    if filters.status:
        cases = cases.filter(status=filters.status)
    if filters.tenant_slug:
        cases = cases.filter(tenant__slug=filters.tenant_slug)
    if filters.stage:
        cases = cases.filter(stage=filters.stage)
    return cases.order_by("opened_at", "id")


def review_case_get(*, case_id: int) -> ReviewCase | None:
    return review_case_list(filters=CaseFilters(status=None)).filter(pk=case_id).first()


def job_decisions(*, case: ReviewCase):
    """Every verdict on the case's job, in order (the text stage, then the frames)."""
    return case.job.moderation_decisions.order_by("id")


@dataclass(frozen=True)
class AuditFilters:
    case_id: int | None = None
    job_id: str | None = None
    tenant_slug: str | None = None
    action: str | None = None


def audit_list(*, filters: AuditFilters | None = None) -> QuerySet[AuditEntry]:
    """The audit log, newest first."""
    filters = filters or AuditFilters()
    entries = AuditEntry.objects.all()
    if filters.case_id is not None:
        entries = entries.filter(case_id=filters.case_id)
    if filters.job_id:
        entries = entries.filter(job_id=filters.job_id)
    if filters.tenant_slug:
        tenant_ids = Tenant.objects.filter(slug=filters.tenant_slug).values("id")
        entries = entries.filter(tenant_id__in=tenant_ids)
    if filters.action:
        entries = entries.filter(action=filters.action)
    return entries.order_by("-id")
