"""Moderation writes and verdicts: text before generation, reference photos, finished frames, and
the operators' review decisions.

Every check produces category scores (0–1); the tenant's policy turns them into pass / review /
block with one reason per rule that fired; the strictest wins. Two rules are not the policy's to
relax: a job that may show minors (a school's character template, or a policy flag) with any
nudity signal is blocked, and a match in the ``minors`` category is blocked for every tenant.

Pre-generation checks (``moderation_judge_text``, ``moderation_judge_images``) are pure when
called without a job, so ``generation.services.job_create`` can call them before it creates
anything; ``moderation_record`` stores their verdicts on the job once it exists and opens the
review case when one of them says review. ``moderation_judge_frames`` runs in the pipeline after
encoding, stores its verdict and opens a case itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from rest_framework.exceptions import PermissionDenied, ValidationError

from config.problems import ConflictProblem, Problem
from moderation import images as image_checks
from moderation import providers
from moderation import text as text_checks
from moderation.models import (
    Action,
    AuditEntry,
    Category,
    EffectivePolicy,
    ModerationDecision,
    ModerationPolicy,
    ReviewCase,
    rules_errors,
    strictest,
)
from moderation.selectors import is_minor_context, policy_for
from tenants.models import Tenant

logger = logging.getLogger(__name__)

REVIEW_PERMISSION = "moderation.review_case"
# What no local model scores on images; a provider may cover some of them.
IMAGE_CATEGORIES = frozenset({Category.SEXUAL, Category.MINORS})


# --- verdicts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """One stage's verdict before it is stored: what ran, what it scored, which rules fired."""

    stage: str
    verdict: str
    scores: dict[str, float]
    reasons: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    checks: list[str]
    policy: dict[str, Any]

    @property
    def blocked(self) -> bool:
        return self.verdict == Action.BLOCK

    @property
    def needs_review(self) -> bool:
        return self.verdict == Action.REVIEW

    def errors(self) -> list[dict[str, Any]]:
        """Problem-details ``errors`` for a blocked request: one per rule that fired."""
        return [
            {"field": reason.get("field", ""), "message": reason["detail"], **_public(reason)}
            for reason in self.reasons
            if reason["action"] != Action.PASS
        ]


@dataclass(frozen=True)
class TextVerdict(Judgement):
    matches: list[text_checks.TextMatch] = field(default_factory=list)

    def errors(self) -> list[dict[str, Any]]:
        """One error per matched rule of a category that fired, at the field it came from."""
        fired = {r["category"] for r in self.reasons if r["action"] != Action.PASS}
        return [
            {
                "field": match.field,
                "message": f"Matches the {match.category} rule {match.rule!r} "
                f"at characters {match.start}–{match.end}: {match.excerpt!r}.",
                "category": match.category,
                "rule": match.rule,
                "span": [match.start, match.end],
            }
            for match in self.matches
            if match.category in fired
        ]


@dataclass(frozen=True)
class ImageVerdict(Judgement):
    scans: list[image_checks.ImageScan] = field(default_factory=list)


def _public(reason: dict[str, Any]) -> dict[str, Any]:
    return {k: reason[k] for k in ("category", "score", "threshold") if k in reason}


class ContentBlocked(Problem):
    """422 ``content_blocked``: moderation refused the request; ``errors`` say what matched."""

    status_code = 422
    default_code = "content_blocked"
    default_detail = "The request was blocked by content moderation."

    def __init__(self, judgement: Judgement):
        super().__init__(errors=judgement.errors())
        self.judgement = judgement


def _reason(
    category: str, score: float, category_rule, action: str, detail: str, **extra
) -> dict[str, Any]:
    return {
        "category": str(category),
        "score": round(score, 4),
        "threshold": category_rule.threshold if category_rule is not None else None,
        "action": str(action),
        "detail": detail,
        **extra,
    }


def apply_policy(
    *,
    policy: EffectivePolicy,
    scores: Mapping[str, float],
    minor_signal: str = "",
    unchecked: Iterable[str] = (),
) -> tuple[str, list[dict[str, Any]]]:
    """Scores -> (verdict, reasons).

    ``minor_signal`` describes a nudity or sexual signal in content that may show minors (empty
    when there is none): that is a block whatever the policy says. ``unchecked`` names the
    categories nothing could score; those the policy lists in ``review_unchecked`` go to review.
    """
    verdict = Action.PASS
    reasons: list[dict[str, Any]] = []
    for category, score in sorted(scores.items()):
        rule = policy.rules.get(category)
        if rule is None or score <= 0:
            continue
        action = rule.action_for(score)
        if category == Category.MINORS:
            action = Action.BLOCK  # never relaxed by a policy
        if action == Action.PASS:
            continue
        band = "review band" if action == Action.REVIEW and score < rule.threshold else "threshold"
        reasons.append(
            _reason(
                category,
                score,
                rule,
                action,
                f"{Category(category).label}: score {score:.2f} reached the {band} "
                f"of the {policy.name} policy; action {action}.",
                rule=f"policy_{band.replace(' ', '_')}",
            )
        )
        verdict = strictest(verdict, action)
    if minor_signal:
        reasons.append(
            _reason(
                Category.MINORS,
                1.0,
                None,
                Action.BLOCK,
                f"Content that may show minors with a nudity or sexual signal ({minor_signal}).",
                rule="minor_context_nudity",
            )
        )
        verdict = Action.BLOCK
    for category in sorted(set(unchecked) & set(policy.review_unchecked)):
        reasons.append(
            _reason(
                category,
                0.0,
                None,
                Action.REVIEW,
                f"{Category(category).label}: no check can score this on images here; the "
                "policy sends it to review.",
                rule="review_unchecked",
            )
        )
        verdict = strictest(verdict, Action.REVIEW)
    return verdict, reasons


# --- text -------------------------------------------------------------------------------------


def moderation_judge_text(
    *, tenant: Tenant, texts: Mapping[str, str], job=None, template=None
) -> TextVerdict:
    """Judge every text of a request (``{field: text}``, see ``text.texts_for_job``).

    Pure without ``job``: call it before creating anything. With a job, the verdict is also
    recorded (and a review case opened) as ``moderation_record`` does.
    """
    template = template if template is not None else getattr(job, "template", None)
    policy = policy_for(tenant=tenant)
    matches = text_checks.scan_texts(texts)
    scores = text_checks.category_scores(matches)
    minor = is_minor_context(tenant=tenant, template=template, policy=policy)
    sexual_terms = sorted({m.excerpt for m in matches if m.category == Category.SEXUAL})
    verdict, reasons = apply_policy(
        policy=policy,
        scores=scores,
        # Where minors may appear, any sexual term at all is a block, even one a shop's own
        # threshold would let through (allow-listed phrases such as "nude lipstick" never match).
        minor_signal=f"sexual terms {sexual_terms}" if minor and sexual_terms else "",
    )
    judgement = TextVerdict(
        stage="text",
        verdict=verdict,
        scores=scores,
        reasons=reasons,
        findings=[m.as_dict() for m in matches],
        checks=["lexicon", "patterns"],
        policy=policy.as_dict(),
        matches=matches,
    )
    if verdict != Action.PASS:
        logger.info(
            "moderation text %s for tenant %s: %s",
            verdict,
            tenant.pk,
            sorted({r["category"] for r in reasons}),
        )
    if job is not None:
        moderation_record(job=job, judgements=[judgement])
    return judgement


def moderation_refuse_blocked_texts(
    *, tenant: Tenant, texts: Mapping[str, str], template=None
) -> TextVerdict:
    """Judge texts a tenant saves (a template, a preset, the brand kit, a consent record) with
    the same policy as job values, and raise ``ContentBlocked`` (422) on a block. A review
    verdict is saved: there is nobody to hold at save time, and every job that renders the text
    is judged again and held for an operator."""
    verdict = moderation_judge_text(tenant=tenant, texts=texts, template=template)
    if verdict.blocked:
        raise ContentBlocked(verdict)
    return verdict


# --- images -----------------------------------------------------------------------------------


def moderation_judge_images(
    *, tenant: Tenant, images: Mapping[str, bytes | np.ndarray], job=None, template=None
) -> ImageVerdict:
    """Judge reference photos (``{field: encoded bytes or RGB array}``) before generation."""
    template = template if template is not None else getattr(job, "template", None)
    policy = policy_for(tenant=tenant)
    names = list(images)
    arrays = [
        image_checks.decode_image(data) if isinstance(data, bytes | bytearray) else data
        for data in images.values()
    ]
    scans = image_checks.scan_images(arrays)
    judgement = _judge_scans(
        stage="reference",
        scans=scans,
        policy=policy,
        minor=is_minor_context(tenant=tenant, template=template, policy=policy),
        source="image",
        fields=[f"values.{name}" for name in names],
    )
    verdict = ImageVerdict(**judgement, scans=scans)
    if job is not None:
        moderation_record(job=job, judgements=[verdict])
    return verdict


def _judge_scans(
    *,
    stage: str,
    scans: Sequence[image_checks.ImageScan],
    policy: EffectivePolicy,
    minor: bool,
    source: str,
    fields: Sequence[str] | None = None,
    extra_scores: Mapping[str, float] | None = None,
    extra_findings: Sequence[dict] = (),
    unchecked: Iterable[str] = (),
    checks: Sequence[str] = ("nudenet", "open_nsfw"),
) -> dict[str, Any]:
    scores: dict[str, float] = image_checks.category_scores(scans)
    for category, score in (extra_scores or {}).items():
        scores[category] = max(scores.get(category, 0.0), score)
    nude = [s for s in scans if s.nudity_signal]
    signal = ""
    if minor and nude:
        first = nude[0]
        signal = f"{source} {first.index}: nudenet {first.nudity:.2f}, open-NSFW {first.nsfw:.2f}"
    verdict, reasons = apply_policy(
        policy=policy, scores=scores, minor_signal=signal, unchecked=unchecked
    )
    if fields is not None and scans:
        # Reference photos: point the reasons at the photo that scored highest.
        worst = max(scans, key=lambda scan: scan.sexual)
        for reason in reasons:
            reason["field"] = fields[worst.index]
    findings = [f for s in scans for f in s.findings(source=source)] + list(extra_findings)
    return {
        "stage": stage,
        "verdict": verdict,
        "scores": {**scores, **image_checks.signals(scans)},
        "reasons": reasons,
        "findings": findings,
        "checks": list(checks),
        "policy": policy.as_dict(),
    }


# --- frames -----------------------------------------------------------------------------------

FrameCheck = Any  # legacy hook: (job, frames) -> (verdict, reasons, scores)


def _frame_checks() -> list[tuple[str, FrameCheck]]:
    return [(path, import_string(path)) for path in getattr(settings, "REELCAST_FRAME_CHECKS", [])]


def sample_frame_indices(count: int, fps: int) -> list[int]:
    """At least one frame per second, plus the first and the last."""
    if count <= 0:
        return []
    return sorted(set(range(0, count, max(1, fps))) | {0, count - 1})


def sample_frames(frames: np.ndarray, fps: int) -> list[np.ndarray]:
    """At least one frame per second, plus the first and the last."""
    return [frames[i] for i in sample_frame_indices(len(frames), fps)]


def moderation_judge_frames(*, job, frames: np.ndarray) -> ModerationDecision:
    """Judge the finished video's sampled frames, record the verdict, open a case on review.

    Runs nudenet and open-NSFW on every sampled frame (at least one a second, plus the first
    and last), the cloud provider when an operator enabled one, and any extra checks named in
    ``REELCAST_FRAME_CHECKS``. Categories nothing here can score on images are sent to review
    when the policy asks for that (``review_unchecked``). A provider that fails sends the video
    to review rather than passing it unseen.
    """
    indices = sample_frame_indices(len(frames), job.fps)
    samples = [frames[i] for i in indices]
    tenant = job.tenant
    policy = policy_for(tenant=tenant)
    minor = is_minor_context(tenant=tenant, template=job.template, policy=policy)
    checks: list[str] = []
    scans: list[image_checks.ImageScan] = []
    if getattr(settings, "REELCAST_MODERATION_IMAGE_CHECKS", True):
        scans = image_checks.scan_images(samples, indices)
        checks += ["nudenet", "open_nsfw"]
    covered: set[str] = set(IMAGE_CATEGORIES) if scans else set()

    extra_scores: dict[str, float] = {}
    extra_findings: list[dict] = []
    extra_reasons: list[dict] = []
    extra_verdict = Action.PASS
    provider = providers.get_provider()
    if provider is not None:
        checks.append(provider.name)
        try:
            result = provider.moderate_images(samples, indices)
        except providers.ProviderError as error:
            logger.warning("job %s: moderation provider failed: %s", job.pk, error)
            extra_reasons.append(
                _reason(
                    "provider",
                    0.0,
                    None,
                    Action.REVIEW,
                    f"The moderation provider gave no answer ({error}); a human must look.",
                    rule="provider_error",
                )
            )
            extra_verdict = Action.REVIEW
        else:
            covered |= set(provider.categories)
            extra_scores.update(result.scores)
            extra_findings.extend(result.findings)
    for name, check in _frame_checks():
        check_verdict, check_reasons, check_scores = check(job, samples)
        checks.append(name)
        extra_reasons.extend(
            r
            if isinstance(r, dict)
            else {"category": "custom", "action": check_verdict, "detail": str(r), "check": name}
            for r in check_reasons
        )
        extra_scores.update({f"{name}:{k}": v for k, v in check_scores.items()})
        extra_verdict = strictest(extra_verdict, check_verdict)

    judged = _judge_scans(
        stage="frames",
        scans=scans,
        policy=policy,
        minor=minor,
        source="frame",
        extra_scores={k: v for k, v in extra_scores.items() if k in Category.values},
        extra_findings=extra_findings,
        unchecked=set(Category.values) - covered,
        checks=checks,
    )
    judged["scores"].update({k: v for k, v in extra_scores.items() if k not in Category.values})
    judged["scores"]["sampled_frames"] = len(indices)
    judged["reasons"] += extra_reasons
    judged["verdict"] = strictest(judged["verdict"], extra_verdict)
    if judged["verdict"] == Action.REVIEW:
        evidence_frames_keep(
            job=job, frames=dict(zip(indices, samples, strict=True)), findings=judged["findings"]
        )
    return _record(job=job, judgement=Judgement(**judged))


# --- evidence for the operator ----------------------------------------------------------------

EVIDENCE_FRAMES_MAX = 12


def evidence_frame_key(*, job, frame_index: int) -> str:
    """Where the sampled frame behind a finding is kept for the operator console: inside the
    job's folder, so deleting the job's files (on request or at retention) removes it too."""
    from generation.storage import job_key

    return job_key(job, f"moderation/frame-{frame_index:06d}.jpg")


def evidence_frames_keep(
    *, job, frames: Mapping[int, np.ndarray], findings: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Keep the frames a held video's findings point at, as the models saw them.

    The findings' frame indices and boxes refer to the generated frames, which are deleted
    once moderation is done and differ from the finished video (title card, cross-fades,
    fitting), so the operator console cannot cut them out of the MP4 afterwards. Only frames
    of a video held for review are kept (at most ``EVIDENCE_FRAMES_MAX``), unaltered: the
    console draws the boxes over them.
    """
    import io

    from PIL import Image

    from generation.storage import put_bytes

    flagged = sorted({f["frame"] for f in findings if isinstance(f.get("frame"), int)})
    keys = []
    for index in flagged[:EVIDENCE_FRAMES_MAX]:
        frame = frames.get(index)
        if frame is None:
            continue
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(frame[..., :3])).save(buffer, "JPEG", quality=85)
        keys.append(put_bytes(evidence_frame_key(job=job, frame_index=index), buffer.getvalue()))
    return keys


# --- recording --------------------------------------------------------------------------------


def _record(*, job, judgement: Judgement) -> ModerationDecision:
    with transaction.atomic():
        decision = ModerationDecision.objects.create(
            tenant_id=job.tenant_id,
            job=job,
            stage=judgement.stage,
            verdict=judgement.verdict,
            checks=judgement.checks,
            reasons=judgement.reasons,
            scores=judgement.scores,
            findings=judgement.findings,
            policy=judgement.policy,
        )
        if judgement.needs_review:
            stage = (
                ReviewCase.Stage.FRAMES if judgement.stage == "frames" else ReviewCase.Stage.REQUEST
            )
            review_case_open(job=job, decision=decision, stage=stage)
    return decision


def moderation_record(*, job, judgements: Sequence[Judgement]) -> list[ModerationDecision]:
    """Store the pre-generation verdicts on the job just created; open one review case if any
    says review (the job should then have been created ``in_review``, not queued)."""
    decisions: list[ModerationDecision] = []
    with transaction.atomic():
        for judgement in judgements:
            decisions.append(_record(job=job, judgement=judgement))
    return decisions


# --- policies ---------------------------------------------------------------------------------


def policy_set(
    *,
    tenant: Tenant,
    preset: str,
    overrides: Mapping[str, Any] | None = None,
    minor_context: bool = False,
    review_unchecked: Sequence[str] = (),
    actor: AbstractBaseUser | None = None,
) -> ModerationPolicy:
    """Give ``tenant`` its own policy (or replace it), validated and audited."""
    errors = rules_errors(dict(overrides or {}))
    if preset not in ModerationPolicy.Preset.values:
        errors["preset"] = "preset must be strict or standard."
    unknown = set(review_unchecked) - set(Category.values)
    if unknown:
        errors["review_unchecked"] = f"Unknown categories: {', '.join(sorted(unknown))}."
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        policy, _ = ModerationPolicy.objects.update_or_create(
            tenant=tenant,
            defaults={
                "preset": preset,
                "overrides": dict(overrides or {}),
                "minor_context": minor_context,
                "review_unchecked": list(review_unchecked),
                "updated_by": actor,
            },
        )
        audit_record(
            action=AuditEntry.Action.POLICY_CHANGED,
            actor=actor,
            tenant=tenant,
            reason="",
            data={"policy": policy.effective().as_dict()},
        )
    return policy


# --- review -----------------------------------------------------------------------------------


def audit_record(
    *,
    action: str,
    actor: AbstractBaseUser | None,
    tenant: Tenant | None = None,
    job=None,
    case: ReviewCase | None = None,
    reason: str = "",
    data: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add one row to the append-only audit log (the only way rows get there)."""
    return AuditEntry.objects.create(
        action=action,
        actor=actor,
        actor_username=actor.get_username() if actor is not None else "",
        tenant=tenant,
        tenant_name=tenant.name if tenant is not None else "",
        job=job,
        case=case,
        reason=reason[:1000],
        data=dict(data or {}),
    )


def review_case_open(*, job, decision: ModerationDecision, stage: str) -> ReviewCase:
    """Hold ``job`` for an operator. A job has at most one open case: a second review verdict
    joins the open one (its decision stays on the job's record)."""
    open_cases = ReviewCase.objects.for_tenant(job.tenant).filter(job=job, status="open")
    with transaction.atomic():
        existing = open_cases.first()
        if existing is not None:
            return existing
        try:
            with transaction.atomic():
                case = ReviewCase.objects.create(
                    tenant_id=job.tenant_id, job=job, decision=decision, stage=stage
                )
        except IntegrityError:  # another process opened it between our read and our write
            return open_cases.get()
        audit_record(
            action=AuditEntry.Action.CASE_OPENED,
            actor=None,
            tenant=job.tenant,
            job=job,
            case=case,
            reason=f"{decision.stage}: {decision.verdict}",
            data={
                "decision": decision.pk,
                "categories": sorted({r["category"] for r in decision.reasons}),
            },
        )
    return case


def _require_operator(operator: AbstractBaseUser) -> None:
    if not (
        getattr(operator, "is_active", False)
        and getattr(operator, "is_staff", False)
        and operator.has_perm(REVIEW_PERMISSION)
    ):
        raise PermissionDenied("Only moderation operators may decide review cases.")


def _locked_open_case(case: ReviewCase) -> ReviewCase:
    locked = (
        ReviewCase.objects.select_for_update()
        .select_related("job", "tenant")
        .get(  # unscoped: operators decide any tenant's case
            pk=case.pk
        )
    )
    if not locked.is_open:
        raise ConflictProblem(
            f"This case was already {locked.status}.", code="case_already_decided"
        )
    return locked


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why: the reason is kept in the audit log."})
    return reason


def review_approve(*, case: ReviewCase, operator: AbstractBaseUser, reason: str) -> ReviewCase:
    """Release the held job: a finished video is delivered (``succeeded``); a request held
    before generation goes to the queue. One transaction: the case, the job and the audit row
    change together or not at all."""
    from generation.models import JobState
    from generation.services import IllegalTransition, job_transition

    _require_operator(operator)
    reason = _require_reason(reason)
    with transaction.atomic():
        case = _locked_open_case(case)
        job = case.job
        target = JobState.SUCCEEDED if case.stage == ReviewCase.Stage.FRAMES else JobState.QUEUED
        try:
            job_transition(job=job, to_state=target, reason=f"review approved: case {case.pk}")
        except IllegalTransition as error:
            raise ConflictProblem(
                f"The job is {error.from_state}, not waiting for review.", code="job_not_in_review"
            ) from error
        _close(case, ReviewCase.Status.APPROVED, operator, reason)
        audit_record(
            action=AuditEntry.Action.CASE_APPROVED,
            actor=operator,
            tenant=case.tenant,
            job=job,
            case=case,
            reason=reason,
            data={"stage": case.stage, "job_state": str(target)},
        )
        if target == JobState.QUEUED:
            from generation.tasks import enqueue_job

            job_id = job.pk
            transaction.on_commit(lambda: enqueue_job(job_id))
    return case


def review_reject(*, case: ReviewCase, operator: AbstractBaseUser, reason: str) -> ReviewCase:
    """Block the held job for good. The tenant sees why on the job: ``error.code`` is
    ``moderation_rejected`` and ``error.message`` names the categories and the operator's reason
    (so the reason must be fit for the tenant to read)."""
    from generation.models import JobState
    from generation.services import IllegalTransition, job_transition

    _require_operator(operator)
    reason = _require_reason(reason)
    with transaction.atomic():
        case = _locked_open_case(case)
        job = case.job
        message = f"Blocked after moderation review. {case.decision.summary()} {reason}"
        try:
            job_transition(
                job=job,
                to_state=JobState.BLOCKED,
                reason=f"review rejected: case {case.pk}",
                error_code="moderation_rejected",
                error_message=message[:1000],
            )
        except IllegalTransition as error:
            raise ConflictProblem(
                f"The job is {error.from_state}, not waiting for review.", code="job_not_in_review"
            ) from error
        _close(case, ReviewCase.Status.REJECTED, operator, reason)
        audit_record(
            action=AuditEntry.Action.CASE_REJECTED,
            actor=operator,
            tenant=case.tenant,
            job=job,
            case=case,
            reason=reason,
            data={"stage": case.stage, "job_state": str(JobState.BLOCKED)},
        )
    return case


def _close(case: ReviewCase, status: str, operator: AbstractBaseUser, reason: str) -> None:
    case.status = status
    case.decided_at = timezone.now()
    case.decided_by = operator
    case.decision_reason = reason[:1000]
    case.save(update_fields=["status", "decided_at", "decided_by", "decision_reason"])


# --- operators ------------------------------------------------------------------------------

OPERATOR_GROUP = "operators"
# Every permission a section of the operator console asks for (moderation/console_views.py).
OPERATOR_PERMISSIONS = (REVIEW_PERMISSION, "tenants.change_tenant", "billing.change_subscription")


def operator_create(
    *, username: str, email: str = "", password: str | None, existing: bool = False
) -> AbstractBaseUser:
    """Make ``username`` an operator: an active staff user in the ``operators`` group, which
    holds exactly the console's permissions (not a superuser, so Django admin shows it only what
    those permissions allow).

    A new user needs a password that passes AUTH_PASSWORD_VALIDATORS. An existing user is
    promoted only when ``existing`` says so (never by a typo of a new name); its password is
    changed only when one is given. Raises django.core.exceptions.ValidationError.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError as InvalidInput

    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.select_for_update().filter(username=username).first()
        if user is not None and not existing:
            raise InvalidInput(
                f"A user named {username!r} exists already; pass --existing to make them an "
                "operator."
            )
        created = user is None
        if user is None:
            if not password:
                raise InvalidInput("A new operator needs a password.")
            user = user_model(username=username, email=email)
        elif email:
            user.email = email
        if password:
            validate_password(password, user)
            user.set_password(password)
        user.is_staff = True
        user.is_active = True
        user.save()
        group, _ = Group.objects.get_or_create(name=OPERATOR_GROUP)
        for name in OPERATOR_PERMISSIONS:
            app_label, codename = name.split(".", 1)
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        user.groups.add(group)
    logger.info("operator %s %s", username, "created" if created else "promoted")
    return user
