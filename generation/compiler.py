"""Template version + cleaned values -> a prompt plan (title, shots and search tags).

The order is what keeps values as data: the *template's* script is split into shots first
(``split_script``: markers, else paragraphs, else sentences), and only then is each shot's
``{placeholder}`` filled, in a single pass. A value therefore cannot add a shot, a marker or a
placeholder, whatever it contains.

Each shot's prompt is the standard layout (``compose_prompt``): the character description,
identical in every shot, then the shot text, the product and the style preset's camera,
lighting and look. ``scene_text`` is the filled shot text alone, for subtitles. Frame counts are
computed here, explicitly, so the plan shows exactly what the model will be asked for.

Consistency across shots: every shot's seed is derived from the one job seed (``shot_seed``),
so the same job always renders the same shots and a retried shot reproduces its frames; the
shared character text is what keeps the person the same from shot to shot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from generation.prompting import (
    BUILTIN_PRESETS,
    PresetError,
    ScriptError,
    StylePreset,
    compose_negative,
    compose_prompt,
    extract_tags,
    normalise_text,
    preset_from_dict,
    split_script,
)
from generation.registry import ModelSpec
from generation.variables import fill

__all__ = ["CompiledShot", "Plan", "PlanError", "compile_plan", "shot_seed"]


class PlanError(ScriptError):
    """The template cannot be compiled as asked; ``errors`` maps field -> reason (a 400).

    Raised for a script whose written shot durations do not fit the video (field ``prompt``)
    and for an unknown or invalid style preset (``style`` / ``style.<key>``). It is a
    ``ScriptError`` and so a ``ValueError``: ``except ScriptError`` catches it too, and its
    message is the reasons alone, without field names.
    """

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()))
        self.errors = errors


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
    """A job's compiled script. ``tags``: subject/action/environment/style, plus character."""

    title: str
    shots: tuple[CompiledShot, ...]
    tags: dict[str, list[str]] = field(default_factory=dict)

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
    character: str = "",
    product: str = "",
    style: StylePreset | Mapping[str, Any] | str | None = None,
    names: Iterable[str] = (),
) -> Plan:
    """The plan for one job; raises ``PlanError`` (a ValueError) for a script that cannot fit.

    ``character`` and ``product`` may hold placeholders; they are filled like the script.
    ``style`` is a preset, a tenant preset dict (see ``preset_from_dict``), the name of a
    built-in preset, or None for no camera/lighting/look. ``names`` are the job's cleaned
    ``name`` values (``variables.name_values``), listed in the tags under ``character``.
    Shot durations add up exactly to ``duration_s`` (to the millisecond).
    """
    preset = _preset(style)
    try:
        script_shots = split_script(
            prompt, duration_s=duration_s, max_shot_s=spec.max_frames_per_shot / fps
        )
    except ScriptError as exc:
        raise PlanError({"prompt": str(exc)}) from exc
    character_text = normalise_text(fill(character, values))
    product_text = normalise_text(fill(product, values))
    negative = compose_negative(fill(negative_prompt, values), preset.negative if preset else "")
    shots: list[CompiledShot] = []
    for index, script_shot in enumerate(script_shots):
        scene_text = normalise_text(fill(script_shot.text, values))
        shots.append(
            CompiledShot(
                index=index,
                prompt=compose_prompt(
                    shot_text=scene_text,
                    character=character_text,
                    product=product_text,
                    preset=preset,
                ),
                negative_prompt=negative,
                duration_s=script_shot.duration_s,
                num_frames=spec.frames_for(script_shot.duration_s, fps),
                seed=shot_seed(seed, index),
                scene_text=scene_text,
            )
        )
    title_text = normalise_text(fill(title, values))
    tagged = [title_text, character_text, product_text, *dict.fromkeys(s.scene_text for s in shots)]
    if preset is not None:
        tagged.append(preset.look)
    tags = extract_tags(tagged)
    tags["character"] = sorted({name for name in names if name})
    return Plan(title=title_text, shots=tuple(shots), tags=tags)


def _preset(style: StylePreset | Mapping[str, Any] | str | None) -> StylePreset | None:
    if style is None or isinstance(style, StylePreset):
        return style
    if isinstance(style, str):
        if style not in BUILTIN_PRESETS:
            raise PlanError(
                {"style": f"Unknown style. Available: {', '.join(sorted(BUILTIN_PRESETS))}."}
            )
        return BUILTIN_PRESETS[style]
    try:
        return preset_from_dict(style)
    except PresetError as exc:
        raise PlanError({f"style.{key}": reason for key, reason in exc.errors.items()}) from exc
