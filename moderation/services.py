"""Moderation verdicts. Frame classifiers plug in as checks; each returns (verdict, reasons,
scores) and the strictest verdict wins. Every decision is stored with what ran."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from django.conf import settings
from django.utils.module_loading import import_string

from moderation.models import ModerationDecision

FrameCheck = Callable[[object, Sequence[np.ndarray]], tuple[str, list[str], dict[str, float]]]
_ORDER = {
    ModerationDecision.Verdict.PASS: 0,
    ModerationDecision.Verdict.REVIEW: 1,
    ModerationDecision.Verdict.BLOCK: 2,
}


def _frame_checks() -> list[tuple[str, FrameCheck]]:
    return [(path, import_string(path)) for path in getattr(settings, "REELCAST_FRAME_CHECKS", [])]


def sample_frames(frames: np.ndarray, fps: int) -> list[np.ndarray]:
    """At least one frame per second, plus the first and the last."""
    count = len(frames)
    if count == 0:
        return []
    indices = set(range(0, count, max(1, fps))) | {0, count - 1}
    return [frames[i] for i in sorted(indices)]


def moderation_judge_frames(*, job, frames: np.ndarray) -> ModerationDecision:
    """Run every configured frame check on the sampled frames and record the verdict."""
    samples = sample_frames(frames, job.fps)
    verdict = ModerationDecision.Verdict.PASS
    reasons: list[str] = []
    scores: dict[str, float] = {}
    ran: list[str] = []
    for name, check in _frame_checks():
        check_verdict, check_reasons, check_scores = check(job, samples)
        ran.append(name)
        reasons.extend(check_reasons)
        scores.update({f"{name}:{k}": v for k, v in check_scores.items()})
        if _ORDER[ModerationDecision.Verdict(check_verdict)] > _ORDER[verdict]:
            verdict = ModerationDecision.Verdict(check_verdict)
    return ModerationDecision.objects.create(
        tenant_id=job.tenant_id,
        job=job,
        stage="frames",
        verdict=verdict,
        checks=ran,
        reasons=reasons,
        scores=scores,
    )
