"""Batches: many jobs from one request.

A roster (CSV or XLSX class list) becomes one job per valid row. The request only checks the
file (format, encoding, header, size) and counts its rows, so even 10,000 rows are accepted
within the request; the rows become jobs in chunks on the CPU cluster, each chunk one task.
A row is one job at most, whatever happens to its chunk (a unique batch row per job), and an
invalid row is reported with its number and reason without stopping the rest.

A/B variants: one request with N styles or scripts becomes N jobs with the same values and
seed, grouped for comparison.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Avg, Count
from django.utils import timezone
from rest_framework.exceptions import APIException, ValidationError

from config.problems import Problem
from generation import rosters
from generation.models import (
    TERMINAL_STATES,
    Batch,
    Job,
    JobState,
    Priority,
    Template,
    TemplateVersion,
)
from generation.storage import get_bytes, put_bytes, tenant_key
from tenants.models import ApiKey, Tenant

logger = logging.getLogger(__name__)

ROSTER_EXTRA_COLUMNS = ("end_user", "consent")


def _latest_version(template: Template) -> TemplateVersion:
    if template.archived_at is not None:
        raise Problem(
            "This template is archived and takes no new jobs.",
            code="template_archived",
            status_code=409,
        )
    return template.versions.order_by("-number").first()


def _open(data: bytes, filename: str) -> rosters.Roster:
    try:
        return rosters.open_roster(
            data,
            filename,
            max_bytes=settings.REELCAST_ROSTER_MAX_BYTES,
            max_rows=settings.REELCAST_ROSTER_MAX_ROWS,
        )
    except rosters.RosterRejected as exc:
        raise Problem(str(exc), code=exc.code, status_code=400) from None


def batch_create_roster(
    *,
    tenant: Tenant,
    template: Template,
    data: bytes,
    filename: str,
    name: str = "",
    actor_user: AbstractBaseUser | None = None,
    actor_key: ApiKey | None = None,
) -> Batch:
    """Check the roster file and record the batch; its rows become jobs in chunks on commit.

    A file-level problem (not a spreadsheet, unreadable encoding, wrong header, too many rows)
    is a 400 naming it, and nothing is created.
    """
    version = _latest_version(template)
    roster = _open(data, filename)
    try:
        columns = rosters.match_columns(
            roster.columns, version.variables, extra=ROSTER_EXTRA_COLUMNS
        )
    except rosters.RosterRejected as exc:
        raise Problem(str(exc), code=exc.code, status_code=400) from None
    total = roster.row_count
    if total == 0:
        raise Problem("The roster has a header but no rows.", code="roster_empty", status_code=400)
    with transaction.atomic():
        batch = Batch(
            tenant=tenant,
            kind=Batch.Kind.ROSTER,
            name=name or filename[:200],
            template=template,
            template_version=version,
            source_name=filename[:255],
            source_format=roster.format,
            source_encoding=roster.encoding or "",
            columns=columns,
            total_rows=total,
            created_by=actor_user,
            created_by_key=actor_key,
        )
        batch.source_key = put_bytes(
            tenant_key(tenant.id, "batches", str(batch.id), f"roster.{roster.format}"), data
        )
        batch.save()
        from generation.tasks import enqueue_batch_chunk

        batch_id = batch.id
        transaction.on_commit(lambda: enqueue_batch_chunk(batch_id))
    return batch


def _reasons(exc: Exception) -> dict[str, str]:
    """A row's rejection as {field: message}, from whatever the job service raised."""
    if isinstance(exc, ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            return {
                str(k): " ".join(map(str, v)) if isinstance(v, list) else str(v)
                for k, v in detail.items()
            }
        return {"row": " ".join(map(str, detail)) if isinstance(detail, list) else str(detail)}
    if isinstance(exc, APIException):
        code = getattr(exc, "code", None) or exc.default_code
        return {str(code): str(exc.detail)}
    return {"row": str(exc)}


def batch_process_chunk(*, batch_id: object) -> bool:
    """Turn the next chunk of roster rows into jobs; True when more rows remain.

    The batch row is locked while the chunk runs, so two runs of the same chunk never
    interleave; rows that already have a job are skipped, so a rerun creates nothing twice.
    """
    from generation.services import JobRequest, job_create

    chunk = settings.REELCAST_BATCH_CHUNK_ROWS
    with transaction.atomic():
        batch = (
            # of=("self",): PostgreSQL cannot lock the nullable side of the outer joins
            Batch.objects.select_for_update(of=("self",))
            .select_related(
                "tenant", "template", "template_version", "created_by", "created_by_key"
            )
            .filter(pk=batch_id, state=Batch.State.CREATING)
            .first()
        )
        if batch is None:
            return False
        roster = rosters.open_roster(get_bytes(batch.source_key), batch.source_name)
        mapping = batch.columns
        variables = batch.template_version.variables
        duplicates = rosters.DuplicateTracker()
        done = set(Job.objects.filter(batch=batch).values_list("batch_row", flat=True))
        start, errors = batch.processed_rows, []
        for index, row in enumerate(roster.rows()):
            if index >= start + chunk:
                break
            problems: dict[str, str] = {}
            for number, message in enumerate(rosters.row_problems(row)):
                problems[f"cells.{number}" if number else "cells"] = message
            fields = rosters.map_row(row.cells, mapping)
            end_user = str(fields.pop("end_user", "") or "")[:128]
            consent = fields.pop("consent", "") or None
            values, coerce_errors = rosters.coerce_row(fields, variables)
            problems.update(coerce_errors)
            if not problems:  # the tracker sees only rows that would run (its contract)
                duplicate_of = duplicates.check(row)
                if duplicate_of is not None:
                    problems["row"] = f"Duplicate of row {duplicate_of}; it is not run twice."
            if index < start:
                continue
            if problems:
                errors.append({"row": row.number, "reasons": problems})
                continue
            if row.number in done:
                continue
            try:
                # job_create takes the tenant's admission lock, held until this chunk commits:
                # rows admitted here count against the caps before they are visible, so single
                # creates of the same tenant wait for the chunk instead of passing a cap beside it.
                with transaction.atomic():
                    job_create(
                        tenant=batch.tenant,
                        request=JobRequest(
                            template=batch.template,
                            values=values,
                            version_number=batch.template_version.number,
                            end_user=end_user,
                            consent=consent,
                            priority=Priority.BULK,
                            batch=batch,
                            batch_row=row.number,
                            **batch.options,
                        ),
                        actor_user=batch.created_by,
                        actor_key=batch.created_by_key,
                    )
            except IntegrityError:
                continue  # this row's job exists already (a rerun raced an earlier run)
            except (ValidationError, APIException) as exc:
                errors.append({"row": row.number, "reasons": _reasons(exc)})
        batch.processed_rows = min(batch.total_rows, start + chunk)
        batch.errors = [*batch.errors, *errors]
        batch.accepted_rows = Job.objects.filter(batch=batch).count()
        more = batch.processed_rows < batch.total_rows
        if not more:
            batch.state = Batch.State.RUNNING
        batch.save()
    if not more:
        batch_check_complete(batch_id=batch.id)
    return more


def batch_check_complete(*, batch_id: object) -> Batch | None:
    """Complete a running batch once every one of its jobs is final; tell the tenant once."""
    from tenants.webhooks import webhook_emit

    with transaction.atomic():
        batch = (
            Batch.objects.select_for_update(of=("self",))
            .filter(pk=batch_id, state=Batch.State.RUNNING)
            .select_related("tenant")
            .first()
        )
        if batch is None:
            return None
        if Job.objects.filter(batch=batch).exclude(state__in=TERMINAL_STATES).exists():
            return batch
        batch.state = Batch.State.COMPLETED
        batch.completed_at = timezone.now()
        batch.save(update_fields=["state", "completed_at", "updated_at"])
        webhook_emit(tenant=batch.tenant, event_type="batch.completed", data=batch_summary(batch))
    return batch


def batch_summary(batch: Batch) -> dict[str, Any]:
    """Counts by state and mean progress: what a dashboard or a webhook receiver needs."""
    jobs = Job.objects.filter(batch=batch)
    by_state = dict(jobs.values_list("state").annotate(n=Count("id")).order_by())
    progress = jobs.aggregate(mean=Avg("progress"))["mean"] or 0
    total_jobs = sum(by_state.values())
    done = sum(n for state, n in by_state.items() if state in TERMINAL_STATES)
    if batch.state == Batch.State.CREATING:
        percent = 0.0  # jobs are still being made; their progress would mislead
    else:
        percent = float(progress) if total_jobs else 100.0
    return {
        "id": str(batch.id),
        "kind": batch.kind,
        "state": batch.state,
        "template": str(batch.template_id),
        "total_rows": batch.total_rows,
        "processed_rows": batch.processed_rows,
        "accepted_rows": batch.accepted_rows,
        "rejected_rows": len(batch.errors),
        "jobs": {"total": total_jobs, "finished": done, "by_state": by_state},
        "progress": round(percent, 1),
        "completed_at": batch.completed_at.isoformat() if batch.completed_at else None,
    }


ROW_ERRORS_PAGE_SIZE = 100
ROW_ERRORS_MAX_PAGE_SIZE = 500


def batch_row_errors(
    *, batch: Batch, after: int = 0, limit: int = ROW_ERRORS_PAGE_SIZE
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the batch's refused rows, by row number: the rows after ``after``, at most
    ``limit`` of them, and the row to continue after (None on the last page). A 10,000-row
    roster can refuse every row; no response carries them all."""
    rows = sorted((e for e in batch.errors if e["row"] > after), key=lambda e: e["row"])
    page = rows[:limit]
    return page, (page[-1]["row"] if len(rows) > limit else None)


def batch_results_csv(*, batch: Batch) -> bytes:
    """One line per roster row: its values (a refused row's as submitted), the job, its state,
    and a fresh signed link to the video (or the reason the row was refused or the job did not
    succeed). Spreadsheet formulas in any cell are neutralised (rosters.csv_safe)."""
    from generation.delivery import signed_link

    value_columns = [v["name"] for v in batch.template_version.variables if v["type"] != "image"]
    header = [
        "row",
        "variant",
        "end_user",
        *value_columns,
        "job_id",
        "state",
        "video_url",
        "expires_at",
        "error",
    ]
    lines: list[tuple[int, list[Any]]] = []
    jobs = Job.objects.filter(batch=batch).order_by("batch_row")
    for job in jobs.iterator(chunk_size=1000):
        url, expires, error = "", "", ""
        if job.state == JobState.SUCCEEDED and job.video_key and job.files_deleted_at is None:
            link = signed_link(tenant=batch.tenant, key=job.video_key)
            url, expires = link.url, link.expires_at.isoformat()
        elif job.error_code:
            error = f"{job.error_code}: {job.error_message}"
        values = [_cell(job.values.get(name)) for name in value_columns]
        lines.append(
            (
                job.batch_row or 0,
                [
                    job.batch_row,
                    job.variant_label,
                    job.end_user,
                    *values,
                    str(job.id),
                    job.state,
                    url,
                    expires,
                    error,
                ],
            )
        )
    submitted = _submitted_cells(batch, {problem["row"] for problem in batch.errors})
    for problem in batch.errors:
        reasons = "; ".join(f"{k}: {v}" for k, v in problem["reasons"].items())
        cells = submitted.get(problem["row"], {})
        values = [_cell(cells.get(name)) for name in value_columns]
        lines.append(
            (
                problem["row"],
                [
                    problem["row"],
                    "",
                    _cell(cells.get("end_user")),
                    *values,
                    "",
                    "rejected",
                    "",
                    "",
                    reasons,
                ],
            )
        )
    lines.sort(key=lambda item: item[0])
    return rosters.write_csv(header, (line for _, line in lines))


def _submitted_cells(batch: Batch, numbers: set[int]) -> dict[int, dict[str, str]]:
    """The cells of the roster rows ``numbers`` exactly as submitted, keyed by variable name
    (and end_user), read again from the stored roster: a refused row made no job to hold them.
    NUL characters, one of the reasons a row is refused, are shown as U+FFFD."""
    if not numbers or not batch.source_key:
        return {}
    roster = rosters.open_roster(get_bytes(batch.source_key), batch.source_name)
    return {
        row.number: {
            name: value.replace("\x00", "\ufffd")
            for name, value in rosters.map_row(row.cells, batch.columns).items()
        }
        for row in roster.rows()
        if row.number in numbers
    }


def _cell(value: Any) -> str:
    if value is None or isinstance(value, dict):
        return ""
    return str(value)


def batch_create_variants(
    *,
    tenant: Tenant,
    template: Template,
    values: dict[str, Any],
    variants: list[dict[str, Any]],
    seed: int | None = None,
    end_user: str = "",
    consent: str | dict | None = None,
    name: str = "",
    actor_user: AbstractBaseUser | None = None,
    actor_key: ApiKey | None = None,
) -> Batch:
    """N jobs, one per variant (a style and/or a script), with the same values and seed so
    only the variant differs. All or nothing: one invalid variant creates no job."""
    from generation.services import JobRequest, job_create

    version = _latest_version(template)
    limit = settings.REELCAST_MAX_VARIANTS
    if not isinstance(variants, list) or not 2 <= len(variants) <= limit:
        raise ValidationError({"variants": f"Give 2 to {limit} variants to compare."})
    labels = [str(v.get("label") or f"variant-{i + 1}") for i, v in enumerate(variants)]
    if len(set(labels)) != len(labels):
        raise ValidationError({"variants": "Variant labels must be unique."})
    seed = seed if seed is not None else secrets.randbelow(2**31)
    errors: dict[str, Any] = {}
    with transaction.atomic():
        batch = Batch.objects.create(
            tenant=tenant,
            kind=Batch.Kind.VARIANTS,
            name=name,
            template=template,
            template_version=version,
            total_rows=len(variants),
            processed_rows=len(variants),
            state=Batch.State.RUNNING,
            created_by=actor_user,
            created_by_key=actor_key,
        )
        for i, (variant, label) in enumerate(zip(variants, labels, strict=True)):
            try:
                with transaction.atomic():
                    job_create(
                        tenant=tenant,
                        request=JobRequest(
                            template=template,
                            values=values,
                            version_number=version.number,
                            seed=seed,
                            end_user=end_user,
                            consent=consent,
                            style=variant.get("style"),
                            prompt=variant.get("prompt"),
                            batch=batch,
                            batch_row=i + 1,
                            variant_label=label[:64],
                        ),
                        actor_user=actor_user,
                        actor_key=actor_key,
                    )
            except ValidationError as exc:
                errors[f"variants.{i}"] = exc.detail
        if errors:
            transaction.set_rollback(True)
    if errors:
        raise ValidationError(errors)
    batch.accepted_rows = len(variants)
    Batch.objects.filter(pk=batch.pk).update(accepted_rows=len(variants))
    return batch


def resume_stalled_batches(*, older_than_s: int = 300) -> int:
    """Re-enqueue batches whose chunk task was lost (a worker died): rows already made into
    jobs are skipped, so this is always safe. Runs every few minutes."""
    from generation.tasks import enqueue_batch_chunk

    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    stalled = list(
        Batch.objects.filter(state=Batch.State.CREATING, updated_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for batch_id in stalled:
        enqueue_batch_chunk(batch_id)
    return len(stalled)
