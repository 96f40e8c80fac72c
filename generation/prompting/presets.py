"""Style presets and the standard prompt layout.

Every shot prompt has the same layout, parts left out when empty::

    {character}. {shot text}. Product: {product}. Camera: {camera}. Lighting: {lighting}. Style: {look}.

The character description comes first and is the same string in every shot, so the model is
asked for the same person each time. A part that already ends a sentence (``.``, ``。``, ``!``
...) keeps its own punctuation; one that does not gets ``.`` (``。`` after Chinese). A shot text
with nothing else around it is returned unchanged, so a plain template's prompt is its text.
Preset texts are English: umT5, Wan2.2's text encoder, is multilingual, so they combine with
Chinese shot text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from generation.prompting.normalise import is_cjk, normalise_text

PRESET_FIELDS = ("camera", "lighting", "look", "negative")
PRESET_FIELD_MAX_LENGTH = 300
_ENDS_SENTENCE = frozenset(".!?。！？…")
_CLOSERS = "\"'”’」』)）]】》"
_NEGATIVE_SPLIT = re.compile(r"[,，、;；\n]")


class PresetError(ValueError):
    """A tenant's style preset that cannot be used.

    ``errors`` maps the preset's own key (``camera``, ``look``, or an unknown key) to the reason;
    callers prefix it with where the preset came from (``style.camera``).
    """

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{key}: {reason}" for key, reason in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class StylePreset:
    """How shots are filmed and what the model should avoid; every field normalised, <= 300."""

    name: str
    camera: str = ""
    lighting: str = ""
    look: str = ""
    negative: str = ""


BUILTIN_PRESETS: dict[str, StylePreset] = {
    preset.name: preset
    for preset in (
        StylePreset(
            name="cinematic",
            camera="slow dolly-in, 35mm lens, shallow depth of field",
            lighting="soft key light with a warm rim light",
            look="cinematic film still, rich colour grading, fine film grain",
            negative="flat lighting, overexposed, jpeg artifacts",
        ),
        StylePreset(
            name="storybook",
            camera="static wide shot with a gentle pan",
            lighting="soft diffused daylight",
            look="storybook illustration, watercolor textures, warm pastel palette",
            negative="photorealistic, harsh shadows, text, watermark",
        ),
        StylePreset(
            name="documentary",
            camera="handheld medium shot, natural framing",
            lighting="available natural light",
            look="documentary realism, true-to-life colours",
            negative="cartoon, oversaturated, stylised",
        ),
        StylePreset(
            name="anime",
            camera="dynamic angle, smooth tracking shot",
            lighting="bright cel-shaded lighting",
            look="anime style, clean line art, vivid colours",
            negative="photorealistic, 3d render, blurry lines",
        ),
        StylePreset(
            name="product-showcase",
            camera="slow orbit around the product, macro close-ups of details",
            lighting="clean studio lighting with soft reflections",
            look="commercial product video, crisp focus, uncluttered background",
            negative="clutter, distorted product, text, watermark",
        ),
    )
}


def preset_from_dict(data: object, *, name: str = "custom") -> StylePreset:
    """A tenant's preset from ``{"camera", "lighting", "look", "negative"}`` (all optional).

    Each value must be text of at most 300 characters once normalised; any other key is an
    error. Raises ``PresetError`` listing every problem.
    """
    if not isinstance(data, Mapping):
        raise PresetError({"style": f"Must be an object with {', '.join(PRESET_FIELDS)}."})
    errors: dict[str, str] = {}
    for key in sorted(str(key) for key in data if key not in PRESET_FIELDS):
        errors[key] = f"Unknown key: a preset has {', '.join(PRESET_FIELDS)}."
    fields: dict[str, str] = {}
    for key in PRESET_FIELDS:
        value = data.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors[key] = "Must be text."
            continue
        text = normalise_text(value)
        if len(text) > PRESET_FIELD_MAX_LENGTH:
            errors[key] = f"At most {PRESET_FIELD_MAX_LENGTH} characters (got {len(text)})."
        fields[key] = text
    if errors:
        raise PresetError(errors)
    return StylePreset(name=name, **fields)


def compose_prompt(
    *, shot_text: str, character: str = "", product: str = "", preset: StylePreset | None = None
) -> str:
    """The shot's prompt in the standard layout (module doc); empty parts left out."""
    shot = normalise_text(shot_text)
    labelled = [
        ("", normalise_text(character)),
        ("", shot),
        ("Product: ", normalise_text(product)),
    ]
    if preset is not None:
        labelled += [
            ("Camera: ", normalise_text(preset.camera)),
            ("Lighting: ", normalise_text(preset.lighting)),
            ("Style: ", normalise_text(preset.look)),
        ]
    parts = [label + text for label, text in labelled if text]
    if parts == [shot]:
        return shot
    return " ".join(_end_sentence(part) for part in parts)


def compose_negative(*parts: str) -> str:
    """The parts' comma-separated items, normalised, first occurrence kept (case-insensitive)."""
    seen: set[str] = set()
    items: list[str] = []
    for part in parts:
        for raw in _NEGATIVE_SPLIT.split(part or ""):
            item = normalise_text(raw).strip(" .。")
            if item and item.casefold() not in seen:
                seen.add(item.casefold())
                items.append(item)
    return ", ".join(items)


def _end_sentence(text: str) -> str:
    core = text.rstrip(_CLOSERS)
    if core and core[-1] in _ENDS_SENTENCE:
        return text
    return text + ("。" if is_cjk(text[-1]) else ".")
