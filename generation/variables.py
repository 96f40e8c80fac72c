"""Typed template variables: their definitions, and the values a job supplies for them.

Definitions are checked when a template version is saved; values are checked when a job is
created. Both report every problem at once, keyed by a dotted field path, so the API can answer
one 400 listing them all.

Every text value is data inserted into one line of a shot: it may not contain a line break or
an invisible control character, and it is stored normalised (``normalise_text``). A ``name``
variable holds a person's name and is checked by ``validate_person_name``: letters, spaces,
hyphens, apostrophes and the middle dot only, at most 32 characters.

A text variable's ``pattern`` is written by the tenant and run against every value of every
job, preview and roster row, so it is compiled and matched with RE2 (``compile_pattern``),
never with Python's backtracking ``re``: matching takes time linear in the value's length
whatever the pattern. A pattern RE2 cannot compile (backreferences, lookaround) is refused
when the template is saved.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import re2
from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

from generation.prompting.names import NAME_MAX_LENGTH, NameRejected, validate_person_name
from generation.prompting.normalise import normalise_text

TYPES = ("text", "name", "choice", "number", "image")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
PLACEHOLDER_RE = re.compile(r"\{([a-z][a-z0-9_]{0,31})\}")
TEXT_MAX_LENGTH = 2000
PATTERN_MAX_LENGTH = 256
_MAX_LENGTH = {"text": TEXT_MAX_LENGTH, "name": NAME_MAX_LENGTH}
_DEFAULT_MAX_LENGTH = {"text": 200, "name": NAME_MAX_LENGTH}
_LINE_BREAKS = frozenset("\n\r\u2028\u2029\x85\x0b\x0c")
_DEFINITION_KEYS = {
    "name",
    "type",
    "label",
    "required",
    "min_length",
    "max_length",
    "pattern",
    "choices",
    "min",
    "max",
    "integer",
    "default",
    "public",
}


def definition_errors(variables: Any) -> dict[str, str]:
    """Problems with a list of variable definitions, keyed ``variables.<i>.<key>``."""
    errors: dict[str, str] = {}
    if not isinstance(variables, list):
        return {"variables": "Must be a list of variable definitions."}
    if len(variables) > 50:
        errors["variables"] = "At most 50 variables."
    seen: set[str] = set()
    for i, var in enumerate(variables):
        path = f"variables.{i}"
        if not isinstance(var, dict):
            errors[path] = "Each variable is an object with at least 'name' and 'type'."
            continue
        unknown = set(var) - _DEFINITION_KEYS
        if unknown:
            errors[path] = f"Unknown keys: {', '.join(sorted(unknown))}."
        name = var.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            errors[f"{path}.name"] = (
                "Use 1-32 lower-case letters, digits or '_', starting with a letter."
            )
        elif name in seen:
            errors[f"{path}.name"] = f"'{name}' is defined twice."
        else:
            seen.add(name)
        kind = var.get("type")
        if kind not in TYPES:
            errors[f"{path}.type"] = f"Must be one of {', '.join(TYPES)}."
            continue
        if "required" in var and not isinstance(var["required"], bool):
            errors[f"{path}.required"] = "Must be true or false."
        if kind in ("text", "name"):
            limit = _MAX_LENGTH[kind]
            for key in ("min_length", "max_length"):
                value = var.get(key)
                if value is not None and (not _is_int(value) or not 0 <= value <= limit):
                    errors[f"{path}.{key}"] = f"Must be a whole number from 0 to {limit}."
            if var.get("pattern") is not None:
                try:
                    compile_pattern(var["pattern"])
                except PatternRejected as exc:
                    label = f"'{name}'" if isinstance(name, str) else f"{i + 1}"
                    errors[f"{path}.pattern"] = f"Variable {label}: {exc}"
        elif kind == "choice":
            choices = var.get("choices")
            if (
                not isinstance(choices, list)
                or not 1 <= len(choices) <= 100
                or not all(isinstance(c, str) and 0 < len(c) <= 200 for c in choices)
            ):
                errors[f"{path}.choices"] = "A choice needs 1-100 non-empty strings."
            elif len(set(choices)) != len(choices):
                errors[f"{path}.choices"] = "Choices must be unique."
        elif kind == "number":
            for key in ("min", "max"):
                if key in var and not _is_number(var[key]):
                    errors[f"{path}.{key}"] = "Must be a number."
        if "default" in var and isinstance(name, str) and not errors.get(f"{path}.type"):
            default_errors, _ = _clean_one(
                {**var, "required": True}, var["default"], f"{path}.default", images={}
            )
            errors.update(default_errors)
    return errors


class PatternRejected(ValueError):
    """A tenant's pattern that is not run: too long, or outside what RE2 can compile."""


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the tenant's mistake, not a log line
_RE2_REASONS = (
    *(
        (f"invalid escape sequence: \\{digit}", "backreferences such as \\1 are not supported")
        for digit in "123456789"
    ),
    ("invalid perl operator: (?=", "lookahead (?=…) is not supported"),
    ("invalid perl operator: (?!", "negative lookahead (?!…) is not supported"),
    ("invalid perl operator: (?<=", "lookbehind (?<=…) is not supported"),
    ("invalid perl operator: (?<!", "negative lookbehind (?<!…) is not supported"),
    ("pattern too large", "the pattern is too large; use max_length rather than a long {n,m}"),
)


def compile_pattern(pattern: Any) -> Any:
    """A tenant's text pattern compiled with RE2, whose matching is linear in the text.

    RE2 has no backreferences or lookaround, the features that let a pattern such as
    ``(a+)+$`` take exponential time in Python's ``re``; such a pattern is refused with the
    reason. ``\\d`` and ``\\w`` are ASCII in RE2; ``\\p{Han}`` and ``\\p{L}`` name scripts and
    letters. Compiled patterns are cached by the re2 module.
    """
    if not isinstance(pattern, str):
        raise PatternRejected("the pattern must be text")
    if len(pattern) > PATTERN_MAX_LENGTH:
        raise PatternRejected(
            f"the pattern is {len(pattern)} characters long; the limit is {PATTERN_MAX_LENGTH}"
        )
    if "(?P=" in pattern:
        raise PatternRejected(
            "named backreferences such as (?P=name) are not supported. Patterns use RE2 syntax, "
            "which always matches in linear time."
        )
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except UnicodeEncodeError:
        raise PatternRejected(
            "the pattern contains an invalid character (a lone surrogate)"
        ) from None
    except re2.error as exc:
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        reason = next(
            (known for prefix, known in _RE2_REASONS if str(detail).startswith(prefix)),
            f"not a valid pattern ({detail})",
        )
        raise PatternRejected(
            f"{reason}. Patterns use RE2 syntax, which always matches in linear time."
        ) from None


def placeholder_errors(text: str, variables: list[dict], field_name: str) -> dict[str, str]:
    """Every ``{name}`` in ``text`` must be a defined non-image variable."""
    names = {v.get("name"): v.get("type") for v in variables if isinstance(v, dict)}
    for name in PLACEHOLDER_RE.findall(text or ""):
        if name not in names:
            return {field_name: f"Placeholder {{{name}}} is not a defined variable."}
        if names[name] == "image":
            return {field_name: f"Placeholder {{{name}}} is an image and cannot go into text."}
    return {}


def fill(text: str, values: dict[str, Any]) -> str:
    """Insert values in one pass; a value is data and is never expanded again."""
    return PLACEHOLDER_RE.sub(lambda m: _as_text(values.get(m.group(1), "")), text or "")


@dataclass
class CleanedValues:
    values: dict[str, Any]
    images: dict[str, bytes] = field(default_factory=dict)  # name -> normalised PNG


def clean_values(variables: list[dict], raw: Any) -> tuple[CleanedValues, dict[str, str]]:
    """Validate a job's values against the definitions: (cleaned values, errors)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return CleanedValues({}), {"values": "Must be an object of variable name to value."}
    errors: dict[str, str] = {}
    known = {v["name"] for v in variables}
    for name in raw:
        if name not in known:
            errors[f"values.{name}"] = "Unknown variable for this template."
    cleaned: dict[str, Any] = {}
    images: dict[str, bytes] = {}
    for var in variables:
        name = var["name"]
        path = f"values.{name}"
        if name not in raw or raw[name] is None or raw[name] == "":
            if "default" in var:
                cleaned[name] = _stored_default(var)
            elif var.get("required", True):
                errors[path] = "This variable is required."
            continue
        var_errors, value = _clean_one(var, raw[name], path, images=images)
        errors.update(var_errors)
        if not var_errors:
            cleaned[name] = value
    return CleanedValues(cleaned, images), errors


def name_values(variables: list[dict], values: dict[str, Any]) -> list[str]:
    """The cleaned values of the ``name`` variables, in definition order (for a plan's tags)."""
    return [
        values[var["name"]]
        for var in variables
        if var.get("type") == "name" and isinstance(values.get(var["name"]), str)
    ]


def _clean_one(
    var: dict, value: Any, path: str, *, images: dict[str, bytes]
) -> tuple[dict[str, str], Any]:
    kind = var["type"]
    if kind in ("text", "name"):
        if not isinstance(value, str):
            return {path: "Must be text."}, None
        text = unicodedata.normalize("NFC", value).strip()
        if any(ch in _LINE_BREAKS for ch in text):
            return {
                path: "Line breaks are not allowed: the value goes into one line of a shot."
            }, None
        if kind == "name":
            try:
                text = validate_person_name(text)
            except NameRejected as exc:
                return {path: exc.reason}, None
        else:
            if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in text):
                return {path: "Control or invisible formatting characters are not allowed."}, None
            text = normalise_text(text)
        max_length = min(var.get("max_length") or _DEFAULT_MAX_LENGTH[kind], _MAX_LENGTH[kind])
        min_length = var.get("min_length") or 0
        if len(text) > max_length:
            return {path: f"At most {max_length} characters (got {len(text)})."}, None
        if len(text) < min_length:
            return {path: f"At least {min_length} characters."}, None
        if var.get("pattern"):
            try:
                matcher = compile_pattern(var["pattern"])
            except PatternRejected as exc:
                # Saved before patterns were compiled with RE2: refuse rather than backtrack.
                return {
                    path: f"This variable's pattern can no longer be used ({exc}); "
                    "an editor must change it in the template."
                }, None
            if matcher.fullmatch(text) is None:
                return {path: "Does not match the allowed pattern for this variable."}, None
        return {}, text
    if kind == "choice":
        if value not in var.get("choices", []):
            return {path: f"Must be one of: {', '.join(var.get('choices', []))}."}, None
        return {}, value
    if kind == "number":
        if not _is_number(value):
            return {path: "Must be a number."}, None
        if var.get("integer") and not _is_int(value):
            return {path: "Must be a whole number."}, None
        if "min" in var and value < var["min"]:
            return {path: f"Must be at least {var['min']}."}, None
        if "max" in var and value > var["max"]:
            return {path: f"Must be at most {var['max']}."}, None
        return {}, value
    if kind == "image":
        if not isinstance(value, str):
            return {path: "Send the image as a data URL (data:image/png;base64,…)."}, None
        try:
            images[var["name"]] = normalise_image(decode_data_url(value))
        except ImageRejected as exc:
            return {path: str(exc)}, None
        return {}, {"image": var["name"]}
    return {path: "Unsupported variable type."}, None


class ImageRejected(ValueError):
    pass


def decode_data_url(value: str) -> bytes:
    header, sep, payload = value.partition(",")
    if not sep or not header.startswith("data:image/") or ";base64" not in header:
        raise ImageRejected("Send the image as a base64 data URL (data:image/png;base64,…).")
    limit = settings.REELCAST_MAX_IMAGE_BYTES
    if len(payload) * 3 // 4 > limit:
        raise ImageRejected(f"The image is larger than {limit} bytes.")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("The image data is not valid base64.") from None


def normalise_image(data: bytes, *, keep_alpha: bool = False) -> bytes:
    """A real image, within the pixel cap, upright, stripped of metadata, as PNG."""
    max_pixels = settings.REELCAST_MAX_IMAGE_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.format not in ("PNG", "JPEG", "WEBP"):
                raise ImageRejected("Only PNG, JPEG or WebP images are accepted.")
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"The image has {width * height} pixels; the limit is {max_pixels}."
                )
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            upright = ImageOps.exif_transpose(image).convert("RGBA" if keep_alpha else "RGB")
    except ImageRejected:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError, ValueError):
        raise ImageRejected("The file is not a readable image.") from None
    out = io.BytesIO()
    upright.save(out, format="PNG")  # a fresh file: no EXIF, no text chunks
    return out.getvalue()


def _stored_default(var: dict) -> Any:
    """A text or name default as a value would be stored (normalised); others as written."""
    default = var["default"]
    if var["type"] in ("text", "name") and isinstance(default, str):
        errors, cleaned = _clean_one(var, default, "default", images={})
        if not errors:
            return cleaned
    return default


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_text(value: Any) -> str:
    if isinstance(value, dict):
        return ""
    return str(value)
