"""The prompt compiler's parts: normalisation, names, shot splitting, tags and style presets.

``generation.compiler.compile_plan`` puts them together; each part is usable on its own.
"""

from generation.prompting.names import NameRejected, validate_person_name
from generation.prompting.normalise import normalise_text
from generation.prompting.presets import (
    BUILTIN_PRESETS,
    PresetError,
    StylePreset,
    compose_negative,
    compose_prompt,
    preset_from_dict,
)
from generation.prompting.shots import ScriptError, ScriptShot, split_script
from generation.prompting.tags import extract_tags

__all__ = [
    "BUILTIN_PRESETS",
    "NameRejected",
    "PresetError",
    "ScriptError",
    "ScriptShot",
    "StylePreset",
    "compose_negative",
    "compose_prompt",
    "extract_tags",
    "normalise_text",
    "preset_from_dict",
    "split_script",
    "validate_person_name",
]
