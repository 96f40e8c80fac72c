"""Writes to the usage ledger."""

from __future__ import annotations

from dataclasses import dataclass

from billing.models import UsageEvent
from tenants.models import Tenant


@dataclass(frozen=True)
class Measurement:
    stage: str
    shot_index: int | None
    hardware_class: str
    model: str
    milliseconds: int


def usage_event_id(*, job_id: object, stage: str, shot_index: int | None) -> str:
    shot = "all" if shot_index is None else str(shot_index)
    return f"job:{job_id}:{stage}:{shot}"


def usage_record(*, tenant: Tenant, job_id: object, measurements: list[Measurement],
                 end_user: str = "") -> int:
    """Record each measurement once; returns how many rows were new.

    Inserts ignore rows whose deterministic id already exists, so retries and re-deliveries
    can never double-count.
    """
    rows = [
        UsageEvent(
            id=usage_event_id(job_id=job_id, stage=m.stage, shot_index=m.shot_index),
            tenant=tenant,
            job_id=job_id,
            stage=m.stage,
            shot_index=m.shot_index,
            hardware_class=m.hardware_class,
            model=m.model,
            milliseconds=max(0, int(m.milliseconds)),
            end_user=end_user,
        )
        for m in measurements
    ]
    if not rows:
        return 0
    existing = set(UsageEvent.objects.filter(pk__in=[r.id for r in rows]).values_list("pk", flat=True))
    UsageEvent.objects.bulk_create(rows, ignore_conflicts=True)
    return len([r for r in rows if r.id not in existing])
