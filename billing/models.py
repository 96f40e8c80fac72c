"""The usage ledger: what each tenant's jobs cost in device time, recorded exactly once."""

from __future__ import annotations

from django.db import models

from tenants.models import TenantOwnedModel


class UsageEvent(TenantOwnedModel):
    """One measurement of device time, append-only.

    The primary key is deterministic (``<job>:<stage>:<shot>``), so a task that runs again after
    a crash or a retry records nothing new; it is also the identifier a billing provider
    deduplicates on. Corrections are new rows with their own kind, never edits.
    """

    class Kind(models.TextChoices):
        USAGE = "usage", "Usage"
        CORRECTION = "correction", "Correction"
        REFUND = "refund", "Refund"

    id = models.CharField(primary_key=True, max_length=120)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.USAGE)
    job = models.ForeignKey("generation.Job", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="usage_events")
    stage = models.CharField(max_length=32)
    shot_index = models.IntegerField(null=True, blank=True)
    hardware_class = models.CharField(max_length=32)
    model = models.CharField(max_length=64)
    milliseconds = models.BigIntegerField()
    end_user = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="usage_tenant_created"),
            models.Index(fields=["tenant", "hardware_class", "created_at"],
                         name="usage_tenant_hw_created"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.milliseconds} ms"
