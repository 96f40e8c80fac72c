"""Template version + cleaned values -> a prompt plan (title and shots).

A plain placeholder compiler: paragraphs of the prompt (separated by blank lines) are shots,
the duration is shared between them, and a shot longer than the model takes in one pass is cut
into several. Frame counts are computed here, explicitly, so the plan shows exactly what the
model will be asked for.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from generation.registry import ModelSpec
from generation.variables import fill

_PARAGRAPH_SPLIT = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class CompiledShot:
    index: int
    prompt: str
    negative_prompt: str
    duration_s: float
    num_frames: int
    seed: int
    scene_text: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    title: str
    shots: tuple[CompiledShot, ...]

    @property
    def frames_per_shot(self) -> list[int]:
        return [shot.num_frames for shot in self.shots]


def shot_seed(job_seed: int, index: int) -> int:
    """A stable per-shot seed, so a retried shot reproduces the same frames."""
    digest = hashlib.sha256(f"{job_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def compile_plan(
    *,
    prompt: str,
    negative_prompt: str,
    title: str,
    values: dict[str, Any],
    spec: ModelSpec,
    fps: int,
    duration_s: float,
    seed: int,
) -> Plan:
    paragraphs = [p.strip() for p in _PARAGRAPH_SPLIT.split(fill(prompt, values)) if p.strip()]
    if not paragraphs:
        paragraphs = [fill(prompt, values).strip()]
    negative = fill(negative_prompt, values).strip()
    per_paragraph = duration_s / len(paragraphs)
    max_shot_s = spec.max_frames_per_shot / fps
    pieces: list[tuple[str, float]] = []
    for text in paragraphs:
        cuts = max(1, math.ceil(per_paragraph / max_shot_s - 1e-9))
        pieces.extend((text, per_paragraph / cuts) for _ in range(cuts))
    shots = tuple(
        CompiledShot(
            index=i,
            prompt=text,
            negative_prompt=negative,
            duration_s=round(seconds, 3),
            num_frames=spec.frames_for(seconds, fps),
            seed=shot_seed(seed, i),
            scene_text=text,
        )
        for i, (text, seconds) in enumerate(pieces)
    )
    return Plan(title=fill(title, values).strip(), shots=shots)
