"""Consent for real people: recording it, checking it before a job, and revoking it.

A template that names or shows a real person (``TemplateVersion.requires_consent``) makes jobs
only under a consent record that is granted, unexpired, unrevoked and in scope, and that names
the person the job names. A minor's consent comes from a parent or guardian. Revoking a consent
(or its expiry) refuses new jobs at once and expires the person's videos: running jobs are
canceled, finished ones lose their files (with a deletion receipt), their links stop working.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import unicodedata
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image, UnidentifiedImageError
from rest_framework.exceptions import ValidationError

from config.problems import Problem
from generation.models import (
    CANCELABLE_STATES,
    ConsentRecord,
    DeletionReceipt,
    Job,
    JobState,
    Template,
    TemplateVersion,
)
from generation.prompting import NameRejected, validate_person_name
from generation.storage import put_bytes, tenant_key
from moderation.services import moderation_refuse_blocked_texts
from tenants.models import Tenant

EVIDENCE_TYPES = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
}


class ConsentRequired(Problem):
    """A 422: the job names or shows a real person and no valid consent covers it."""

    def __init__(self, detail: str, *, code: str = "consent_required"):
        super().__init__(detail, code=code, status_code=422)


def _same_name(a: str, b: str) -> bool:
    def norm(value: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", value).casefold().split())

    return norm(a) == norm(b)


def _decode_evidence(value: str) -> tuple[bytes, str]:
    header, sep, payload = value.partition(",")
    media_type = header.removeprefix("data:").split(";")[0]
    if not sep or not header.startswith("data:") or ";base64" not in header:
        raise ValidationError(
            {"evidence": "Send the evidence as a base64 data URL (a PDF or an image)."}
        )
    if media_type not in EVIDENCE_TYPES:
        raise ValidationError({"evidence": "The evidence must be a PDF, PNG, JPEG or WebP file."})
    limit = settings.REELCAST_MAX_EVIDENCE_BYTES
    if len(payload) * 3 // 4 > limit:
        raise ValidationError({"evidence": f"The evidence file is larger than {limit} bytes."})
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError({"evidence": "The evidence is not valid base64."}) from None
    if media_type == "application/pdf":
        if not data.startswith(b"%PDF-") or b"%%EOF" not in data[-1024:]:
            raise ValidationError({"evidence": "The evidence is not a complete PDF file."})
        return data, media_type
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > settings.REELCAST_MAX_IMAGE_PIXELS:
                raise ValidationError({"evidence": "The evidence image has too many pixels."})
            probe.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        raise ValidationError({"evidence": "The evidence is not a readable image."}) from None
    # Evidence is kept byte for byte as the tenant gave it: it is a record, not a picture.
    return data, media_type


def consent_create(
    *,
    tenant: Tenant,
    subject_name: str,
    consented_by: str,
    relationship: str,
    subject_ref: str = "",
    subject_is_minor: bool = False,
    scope_templates: list[str] | None = None,
    scope_note: str = "",
    granted_at: datetime | None = None,
    expires_at: datetime | None = None,
    evidence: str | None = None,
    actor: AbstractBaseUser | None = None,
    save: bool = True,
) -> ConsentRecord:
    """Record a consent; every problem is reported at once and nothing is stored on error.

    ``save=False`` returns the checked, unsaved record (a job creating a shopper's own consent
    saves it inside the job's transaction).
    """
    errors: dict[str, str] = {}
    now = timezone.now()
    try:
        subject_name = validate_person_name(subject_name)
    except NameRejected as exc:
        errors["subject_name"] = str(exc)
    consented_by = " ".join((consented_by or "").split())
    if not consented_by or len(consented_by) > 200:
        errors["consented_by"] = "Who gave the consent: 1-200 characters."
    if relationship not in ConsentRecord.Relationship.values:
        errors["relationship"] = f"Must be one of {', '.join(ConsentRecord.Relationship.values)}."
    elif subject_is_minor and relationship == ConsentRecord.Relationship.SELF:
        errors["relationship"] = "A minor's consent must come from a parent or guardian."
    granted_at = granted_at or now
    if granted_at > now:
        errors["granted_at"] = "Consent cannot be granted in the future."
    if expires_at is not None and expires_at <= max(granted_at, now):
        errors["expires_at"] = "The expiry must be in the future."
    scope = [str(t) for t in (scope_templates or [])]
    if scope:
        known = {
            str(pk)
            for pk in Template.objects.for_tenant(tenant)
            .filter(pk__in=scope)
            .values_list("pk", flat=True)
        }
        missing = [t for t in scope if t not in known]
        if missing:
            errors["scope_templates"] = f"No such templates: {', '.join(missing)}."
    evidence_data, evidence_type = (b"", "")
    if evidence:
        try:
            evidence_data, evidence_type = _decode_evidence(evidence)
        except ValidationError as exc:
            errors.update(exc.detail)
    if errors:
        raise ValidationError(errors)
    # The subject's name is a value jobs draw on frames: it passes the same policy.
    moderation_refuse_blocked_texts(
        tenant=tenant, texts={"subject_name": subject_name, "consented_by": consented_by}
    )
    record = ConsentRecord(
        tenant=tenant,
        subject_name=subject_name,
        subject_ref=subject_ref,
        subject_is_minor=subject_is_minor,
        consented_by=consented_by,
        relationship=relationship,
        scope_templates=scope,
        scope_note=scope_note,
        granted_at=granted_at,
        expires_at=expires_at,
        created_by=actor,
    )
    if evidence_data:
        record.evidence_sha256 = hashlib.sha256(evidence_data).hexdigest()
        record.evidence_type = evidence_type
        suffix = EVIDENCE_TYPES[evidence_type]
        record.evidence_key = put_bytes(
            tenant_key(tenant.id, "consent", f"{record.id}.{suffix}"), evidence_data
        )
    if save:
        record.save()
    return record


def consent_is_valid(record: ConsentRecord, *, at: datetime | None = None) -> bool:
    at = at or timezone.now()
    return record.revoked_at is None and (record.expires_at is None or record.expires_at > at)


def valid_consents(*, tenant: Tenant, at: datetime | None = None):
    at = at or timezone.now()
    return ConsentRecord.objects.for_tenant(tenant).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=at), revoked_at__isnull=True
    )


def consent_for_job(
    *,
    tenant: Tenant,
    template: Template,
    version: TemplateVersion,
    person_names: list[str],
    consent: str | dict[str, Any] | None,
    end_user: str,
) -> ConsentRecord | None:
    """The consent a new job runs under, or None where the template shows nobody real.

    ``consent`` is a consent id, or an object for the person's own consent given on the spot
    (a shopper trying a coat on in a storefront); without it the newest valid consent whose
    ``subject_ref`` is the job's ``end_user`` is used. An inline consent comes back unsaved.
    """
    if not version.requires_consent:
        return None
    if isinstance(consent, dict):
        if consent.get("relationship", "self") != ConsentRecord.Relationship.SELF:
            raise ConsentRequired(
                "Only a person's own consent can be given with the job; record a parent's or "
                "guardian's consent first (POST /api/v1/consents/) and pass its id.",
                code="consent_invalid",
            )
        record = consent_create(
            tenant=tenant,
            subject_name=consent.get("subject_name")
            or (person_names[0] if person_names else consent.get("consented_by", "")),
            consented_by=consent.get("consented_by", ""),
            relationship=ConsentRecord.Relationship.SELF,
            subject_ref=end_user,
            scope_templates=[str(template.id)],
            scope_note=consent.get("scope_note", "given with the job"),
            save=False,
        )
    elif consent:
        record = ConsentRecord.objects.for_tenant(tenant).filter(pk=consent).first()
        if record is None:
            raise ConsentRequired("No such consent record.", code="consent_invalid")
    else:
        record = (
            valid_consents(tenant=tenant)
            .filter(subject_ref=end_user)
            .order_by("-created_at")
            .first()
            if end_user
            else None
        )
        if record is None:
            raise ConsentRequired(
                "This template names or shows a real person: pass a consent id ('consent'), "
                "or an 'end_user' with a recorded consent."
            )
    if record.revoked_at is not None:
        raise ConsentRequired("This consent was revoked.", code="consent_revoked")
    if not consent_is_valid(record):
        raise ConsentRequired("This consent has expired.", code="consent_expired")
    if record.scope_templates and str(template.id) not in record.scope_templates:
        raise ConsentRequired(
            "This consent does not cover this template.", code="consent_out_of_scope"
        )
    for name in person_names:
        if not _same_name(name, record.subject_name):
            raise ConsentRequired(
                f"The consent is for {record.subject_name!r}, not {name!r}.",
                code="consent_wrong_person",
            )
    return record


def _expire_videos(record: ConsentRecord, *, reason: str) -> bool:
    """Cancel the person's jobs in flight and delete the files of finished ones. True once
    nothing of theirs is left running (a running job stops within a step; the next sweep
    deletes what it left)."""
    from generation.services import job_cancel, job_delete_files

    settled = True
    for job in Job.objects.filter(consent=record).exclude(files_deleted_at__isnull=False):
        if job.state in CANCELABLE_STATES:
            job = job_cancel(job=job)
        if job.is_terminal or job.state == JobState.IN_REVIEW:
            job_delete_files(job=job, reason=reason)
        else:
            settled = False
    if settled:
        ConsentRecord.objects.filter(pk=record.pk).update(videos_expired_at=timezone.now())
    return settled


def consent_revoke(*, consent: ConsentRecord, reason: str = "") -> ConsentRecord:
    """Revoke: no new jobs from now on, and the person's videos expire."""
    with transaction.atomic():
        record = ConsentRecord.objects.select_for_update().get(pk=consent.pk)
        if record.revoked_at is None:
            record.revoked_at = timezone.now()
            record.revoked_reason = reason[:300]
            record.save(update_fields=["revoked_at", "revoked_reason"])
    _expire_videos(record, reason=DeletionReceipt.Reason.CONSENT_REVOKED)
    record.refresh_from_db()
    return record


def consent_sweep(*, now: datetime | None = None) -> int:
    """Expire the videos of consents that expired or were revoked and still have files or
    jobs in flight. Returns how many consents were settled. Runs hourly."""
    now = now or timezone.now()
    due = ConsentRecord.objects.filter(videos_expired_at__isnull=True).filter(
        Q(revoked_at__isnull=False) | Q(expires_at__lte=now)
    )
    settled = 0
    for record in due:
        reason = (
            DeletionReceipt.Reason.CONSENT_REVOKED
            if record.revoked_at
            else DeletionReceipt.Reason.CONSENT_EXPIRED
        )
        settled += _expire_videos(record, reason=reason)
    return settled
