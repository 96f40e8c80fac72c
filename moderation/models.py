"""Moderation: per-tenant policies, the verdicts with their reasons and scores, review cases, and
the operators' append-only audit log."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import models

from tenants.models import TenantOwnedModel


class Category(models.TextChoices):
    SEXUAL = "sexual", "Sexual content"
    MINORS = "minors", "Minors"
    VIOLENCE_GORE = "violence_gore", "Violence and gore"
    HATE = "hate", "Hate"
    SELF_HARM = "self_harm", "Self-harm"
    POLITICALLY_SENSITIVE = "politically_sensitive", "Politically sensitive"
    PERSONAL_DATA = "personal_data", "Personal data"


class Action(models.TextChoices):
    PASS = "pass", "Pass"
    REVIEW = "review", "Review"
    BLOCK = "block", "Block"


ACTION_RANK = {Action.PASS: 0, Action.REVIEW: 1, Action.BLOCK: 2}


def strictest(*actions: str) -> str:
    """The most severe of ``actions`` (pass < review < block)."""
    return max((Action(a) for a in actions), key=ACTION_RANK.__getitem__, default=Action.PASS)


# --- policies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryRule:
    """A score at or above ``threshold`` takes ``action``; with a ``review_threshold`` below it,
    scores in between go to review (so "block" rules can still ask a human about the grey zone)."""

    threshold: float
    action: str
    review_threshold: float | None = None

    def action_for(self, score: float) -> str:
        if score <= 0:
            return Action.PASS
        if score >= self.threshold:
            return self.action
        if self.review_threshold is not None and score >= self.review_threshold:
            return Action.REVIEW
        return Action.PASS

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"threshold": self.threshold, "action": self.action}
        if self.review_threshold is not None:
            data["review_threshold"] = self.review_threshold
        return data


@dataclass(frozen=True)
class EffectivePolicy:
    """The rules that apply to one tenant now: a preset, with the tenant's overrides on top.

    ``minor_context`` treats every job as involving minors (the minors+nudity block applies even
    to product templates); ``review_unchecked`` lists categories that no enabled check can score
    on images (violence/gore without a cloud provider) and that should go to review instead.
    """

    name: str
    rules: dict[str, CategoryRule]
    minor_context: bool = False
    review_unchecked: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rules": {category: rule.as_dict() for category, rule in self.rules.items()},
            "minor_context": self.minor_context,
            "review_unchecked": list(self.review_unchecked),
        }


# Schools: anything flagged is blocked or sent to a human; low thresholds.
STRICT_RULES = {
    Category.SEXUAL: CategoryRule(0.3, Action.BLOCK),
    Category.MINORS: CategoryRule(0.3, Action.BLOCK),
    Category.VIOLENCE_GORE: CategoryRule(0.5, Action.BLOCK, review_threshold=0.3),
    Category.HATE: CategoryRule(0.3, Action.BLOCK),
    Category.SELF_HARM: CategoryRule(0.5, Action.REVIEW),
    Category.POLITICALLY_SENSITIVE: CategoryRule(0.5, Action.REVIEW),
    Category.PERSONAL_DATA: CategoryRule(0.5, Action.REVIEW),
}
# Shops: adult fashion is normal (a "sexy dress", swimwear); explicit content is not.
STANDARD_RULES = {
    Category.SEXUAL: CategoryRule(0.8, Action.BLOCK, review_threshold=0.5),
    Category.MINORS: CategoryRule(0.3, Action.BLOCK),
    Category.VIOLENCE_GORE: CategoryRule(0.5, Action.REVIEW),
    Category.HATE: CategoryRule(0.5, Action.BLOCK),
    Category.SELF_HARM: CategoryRule(0.5, Action.REVIEW),
    Category.POLITICALLY_SENSITIVE: CategoryRule(0.5, Action.REVIEW),
    Category.PERSONAL_DATA: CategoryRule(0.9, Action.REVIEW),
}
PRESETS: dict[str, dict[str, CategoryRule]] = {"strict": STRICT_RULES, "standard": STANDARD_RULES}
PRESET_BY_TENANT_KIND = {"school": "strict", "shop": "standard", "other": "standard"}


def rules_errors(overrides: Any) -> dict[str, str]:
    """What is wrong with a policy's ``overrides`` (``{category: {threshold, action, ...}}``)."""
    if not isinstance(overrides, dict):
        return {"overrides": "Must be an object keyed by category."}
    errors: dict[str, str] = {}
    for category, rule in overrides.items():
        if category not in Category.values:
            errors[category] = f"Unknown category. Known: {', '.join(Category.values)}."
            continue
        if not isinstance(rule, dict) or set(rule) - {"threshold", "action", "review_threshold"}:
            errors[category] = "Give threshold, action and optionally review_threshold."
            continue
        threshold = rule.get("threshold", PRESETS["standard"][category].threshold)
        if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            errors[category] = "threshold must be a number from 0 to 1."
        elif rule.get("action", Action.PASS) not in Action.values:
            errors[category] = "action must be pass, review or block."
        elif (review := rule.get("review_threshold")) is not None and (
            not isinstance(review, int | float) or not 0 <= review <= threshold
        ):
            errors[category] = "review_threshold must be a number from 0 to the threshold."
    return errors


class ModerationPolicy(TenantOwnedModel):
    """A tenant's own moderation policy: a preset plus per-category overrides.

    A tenant without one gets the preset of its kind (school -> strict). Written only through
    moderation.services.policy_set, which validates and audits every change.
    """

    class Preset(models.TextChoices):
        STRICT = "strict", "Strict (schools)"
        STANDARD = "standard", "Standard (shops)"

    preset = models.CharField(max_length=16, choices=Preset.choices)
    overrides = models.JSONField(default=dict, blank=True)
    minor_context = models.BooleanField(
        default=False, help_text="Treat every job of this tenant as involving minors."
    )
    review_unchecked = models.JSONField(
        default=list,
        blank=True,
        help_text="Categories with no image check available that send videos to review.",
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="moderationpolicy_one_per_tenant"),
        ]
        verbose_name_plural = "moderation policies"

    def __str__(self) -> str:
        return f"{self.tenant} ({self.preset})"

    def effective(self) -> EffectivePolicy:
        rules = dict(PRESETS[self.preset])
        for category, rule in (self.overrides or {}).items():
            base = rules[category]
            rules[category] = CategoryRule(
                threshold=rule.get("threshold", base.threshold),
                action=rule.get("action", base.action),
                review_threshold=rule.get("review_threshold", base.review_threshold),
            )
        return EffectivePolicy(
            name=self.preset if not self.overrides else f"{self.preset}+overrides",
            rules=rules,
            minor_context=self.minor_context,
            review_unchecked=tuple(self.review_unchecked or ()),
        )


# --- decisions --------------------------------------------------------------------------------


class ModerationDecision(TenantOwnedModel):
    """One verdict on one job at one stage, with its reasons and scores. Append-only.

    ``scores`` holds each category's score (0–1) and the raw model signals
    (``signal:open_nsfw``); ``reasons`` one entry per rule that fired
    (category, score, threshold, action, detail); ``findings`` what was found where: text
    matches (field, rule, span) or image detections (frame index, label, score, box).
    ``policy`` is the policy as it was applied, so a later policy change does not rewrite history.
    """

    class Verdict(models.TextChoices):
        PASS = "pass", "Pass"
        REVIEW = "review", "Review"
        BLOCK = "block", "Block"

    job = models.ForeignKey(
        "generation.Job", on_delete=models.CASCADE, related_name="moderation_decisions"
    )
    stage = models.CharField(max_length=16)  # "text" / "reference" before generation, "frames"
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    checks = models.JSONField(default=list)  # names of the checks that ran
    reasons = models.JSONField(default=list)
    scores = models.JSONField(default=dict)
    findings = models.JSONField(default=list)
    policy = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def summary(self) -> str:
        """A sentence a tenant can be shown: which categories, no lexicon internals."""
        categories = sorted({r["category"] for r in self.reasons if isinstance(r, dict)})
        named = ", ".join(
            Category(c).label.lower() if c in Category.values else c for c in categories
        )
        return f"Moderation: {named or 'flagged'}."


# --- review -----------------------------------------------------------------------------------


class ReviewCase(TenantOwnedModel):
    """A job held for an operator: opened by a ``review`` verdict, closed by one decision.

    At most one open case per job. ``stage`` says what approval releases: a ``request`` case
    (held before generation) sends the job on to the queue, a ``frames`` case delivers it.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    class Stage(models.TextChoices):
        REQUEST = "request", "Before generation"
        FRAMES = "frames", "Finished video"

    job = models.ForeignKey("generation.Job", on_delete=models.CASCADE, related_name="review_cases")
    decision = models.ForeignKey(
        ModerationDecision, on_delete=models.RESTRICT, related_name="review_cases"
    )
    stage = models.CharField(max_length=16, choices=Stage.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision_reason = models.CharField(max_length=1000, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job"],
                condition=models.Q(status="open"),
                name="reviewcase_one_open_per_job",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "opened_at"], name="reviewcase_status_opened"),
            models.Index(fields=["tenant", "status"], name="reviewcase_tenant_status"),
        ]
        ordering = ["opened_at", "id"]
        permissions = [("review_case", "Can approve or reject moderation review cases")]

    def __str__(self) -> str:
        return f"case {self.pk} ({self.status}) for job {self.job_id}"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove an audit entry."""


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit entries are never updated.")

    def delete(self):
        raise AppendOnlyError("Audit entries are never deleted.")

    def _raw_delete(self, using):
        raise AppendOnlyError("Audit entries are never deleted.")


class AuditEntry(models.Model):
    """One thing an operator (or the system) did in moderation. Rows are only ever added.

    References are kept without database constraints or cascades (``DO_NOTHING``), so the log
    outlives the tenant, job, case or user it names; ``actor_username`` and ``tenant_name`` keep
    the names as they were. The queryset and the model refuse updates and deletes, and the admin
    offers neither.
    """

    class Action(models.TextChoices):
        CASE_OPENED = "case_opened", "Case opened"
        CASE_APPROVED = "case_approved", "Case approved"
        CASE_REJECTED = "case_rejected", "Case rejected"
        POLICY_CHANGED = "policy_changed", "Policy changed"
        TRACE = "trace", "Leaked copy traced"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150, blank=True)  # "" = the system
    tenant = models.ForeignKey(
        "tenants.Tenant",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    tenant_name = models.CharField(max_length=200, blank=True)
    job = models.ForeignKey(
        "generation.Job",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    case = models.ForeignKey(
        ReviewCase,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="audit_entries",
    )
    reason = models.CharField(max_length=1000, blank=True)
    data = models.JSONField(default=dict, blank=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} by {self.actor_username or 'system'}"

    # Guards, not behaviour: the only legal write is the first insert.
    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Audit entries are never updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit entries are never deleted.")


class ProvenanceRecord(TenantOwnedModel):
    """How a delivered video can be recognised again: the payload its invisible watermark
    carries, its perceptual fingerprint (PDQ hashes) and its signed C2PA manifest (that of the
    primary output; variants carry their own, with the same soft binding). One per job; the trace tool resolves a leaked copy to this row."""

    job = models.OneToOneField(
        "generation.Job", on_delete=models.CASCADE, related_name="provenance"
    )
    watermark_payload = models.BigIntegerField(unique=True)
    fingerprint = models.BinaryField()  # n x 32 bytes of PDQ hashes
    c2pa_signed = models.BooleanField(default=False)
    # The delivered video's signed C2PA manifest store, kept apart from the video: the raw
    # JUMBF bytes c2pa wrote, and the store as c2pa's Reader gave it back on the delivered file.
    # A copy that lost its manifest gets it back through the watermark (the soft binding).
    c2pa_manifest = models.BinaryField(default=b"", blank=True)
    c2pa_manifest_json = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"provenance of {self.job_id}"
