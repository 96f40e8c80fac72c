"""Moderation decisions: what was checked, what it scored, and the verdict."""

from __future__ import annotations

from django.db import models

from tenants.models import TenantOwnedModel


class ModerationDecision(TenantOwnedModel):
    """One verdict on one job at one stage, with its reasons and scores. Append-only."""

    class Verdict(models.TextChoices):
        PASS = "pass", "Pass"
        REVIEW = "review", "Review"
        BLOCK = "block", "Block"

    job = models.ForeignKey(
        "generation.Job", on_delete=models.CASCADE, related_name="moderation_decisions"
    )
    stage = models.CharField(max_length=16)  # "text" before generation, "frames" after
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    checks = models.JSONField(default=list)  # names of the checks that ran
    reasons = models.JSONField(default=list)
    scores = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
