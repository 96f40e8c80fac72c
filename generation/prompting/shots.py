"""A script (template text, placeholders still in it) -> shots with durations.

The split is done on the template, before any value is filled in, so a value can never add a
shot, a marker or a placeholder: by the time values arrive the shot boundaries are fixed.

Modes, the first that applies:

1. **Markers.** A line that is only ``---``; a line that starts with ``[shot]``, ``[shot 3s]``,
   ``[镜头]`` or ``[镜头 3秒]`` (square, full-width or 【】 brackets), ``Shot 1:``, ``镜头1：`` or
   ``第1镜：`` (``Shot 1 (3s):`` / ``镜头1（3秒）：`` carry a duration). Text after a marker on its
   line begins the shot. Text before the first marker is a shot of its own.
2. **Paragraphs**, separated by blank lines.
3. **Sentences** (``. ! ?`` followed by a space or the end, ``。！？`` anywhere, closing quotes
   kept with their sentence), only when the one paragraph cannot be a single shot, i.e. when
   ``duration_s > max_shot_s``. Otherwise the script is one shot.

Durations: a marker's duration is honoured; the time left is shared among the other shots in
proportion to their length (a CJK character or a Latin word counts 1), each getting at least
1 s where the time allows (equal shares where it does not). Durations are whole milliseconds
and add up exactly to ``duration_s`` (rounded to the millisecond): the last shot takes the
rounding remainder, and, when every shot has a duration and they fall short, the rest of the
video. A shot longer than ``max_shot_s`` is then cut into equal pieces with the same text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from generation.prompting.normalise import clean_characters, is_cjk, normalise_text

MIN_SHOT_MS = 1000


def _duration(group: str) -> str:
    return rf"(?P<{group}>\d{{1,4}}(?:\.\d{{1,3}})?)\s*(?:s|secs?|seconds?|秒钟?)"


_NUMBER = r"(?:\d{1,3}|[一二三四五六七八九十]{1,3})"
_RULE_MARKER = re.compile(r"^-{3,}$")
_BRACKET_MARKER = re.compile(
    rf"^[\[［【]\s*(?:shot|镜头)(?:\s*[:：]?\s*{_duration('seconds')})?\s*[\]］】]\s*[:：]?\s*",
    re.IGNORECASE,
)
_PREFIX_MARKER = re.compile(
    rf"^(?:shot\s*{_NUMBER}|镜头\s*{_NUMBER}|第\s*{_NUMBER}\s*(?:个镜头|镜头|镜))"
    rf"\s*(?:[(（\[［【]\s*{_duration('seconds')}\s*[)）\]］】]|{_duration('bare')})?\s*[:：]\s*",
    re.IGNORECASE,
)
_LATIN_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CLOSERS = "\"'”’」』)）]】》"
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "prof", "e.g", "i.e", "vs", "etc"})


class ScriptError(ValueError):
    """A script that cannot be laid out in the video's time; the message says why."""


@dataclass(frozen=True)
class ScriptShot:
    """One shot of a script. ``explicit``: its duration was written in the script."""

    text: str
    duration_s: float
    explicit: bool


@dataclass
class _Draft:
    lines: list[str]
    duration_ms: int | None


def split_script(script: str, *, duration_s: float, max_shot_s: float) -> list[ScriptShot]:
    """The script's shots (mode and duration rules in the module doc); empty shots dropped.

    Raises ``ScriptError`` when the written durations exceed ``duration_s``, leave no time for
    the shots without one, or when nothing in the script is shot text.
    """
    if not duration_s > 0:
        raise ScriptError("The video needs a duration above 0 s.")
    if not max_shot_s > 0:
        raise ScriptError("The model needs a shot length above 0 s.")
    lines = clean_characters(script).split("\n")
    drafts = _by_markers(lines)
    if drafts is None:
        drafts = _by_paragraphs(lines)
        if len(drafts) == 1 and duration_s > max_shot_s:
            drafts = _by_sentences(normalise_text(" ".join(drafts[0].lines)))
    texts = [normalise_text(" ".join(draft.lines)) for draft in drafts]
    kept = [(text, draft.duration_ms) for text, draft in zip(texts, drafts, strict=True) if text]
    if not kept:
        raise ScriptError("The script has no text for any shot.")
    total_ms = round(duration_s * 1000)
    durations = _allocate(total_ms, kept)
    max_ms = max(1, math.floor(max_shot_s * 1000))
    shots: list[ScriptShot] = []
    for (text, written), ms in zip(kept, durations, strict=True):
        shots.extend(
            ScriptShot(text=text, duration_s=piece / 1000, explicit=written is not None)
            for piece in _cut(ms, max_ms)
        )
    return shots


def text_weight(text: str) -> int:
    """A shot's length for sharing time: CJK characters count 1, Latin words count 1; at least 1."""
    cjk = sum(1 for ch in text if is_cjk(ch))
    words = len(_LATIN_WORD.findall("".join(" " if is_cjk(ch) else ch for ch in text)))
    return max(1, cjk + words)


def _by_markers(lines: list[str]) -> list[_Draft] | None:
    drafts: list[_Draft] = [_Draft([], None)]
    found = False
    for line in lines:
        stripped = line.strip()
        if _RULE_MARKER.match(stripped):
            found = True
            drafts.append(_Draft([], None))
            continue
        marker = _BRACKET_MARKER.match(stripped) or _PREFIX_MARKER.match(stripped)
        if marker:
            found = True
            seconds = marker.groupdict().get("seconds") or marker.groupdict().get("bare")
            drafts.append(_Draft([stripped[marker.end() :]], _milliseconds(seconds)))
            continue
        drafts[-1].lines.append(stripped)
    return drafts if found else None


def _by_paragraphs(lines: list[str]) -> list[_Draft]:
    drafts: list[_Draft] = [_Draft([], None)]
    for line in lines:
        if line.strip():
            drafts[-1].lines.append(line.strip())
        elif drafts[-1].lines:
            drafts.append(_Draft([], None))
    return [draft for draft in drafts if draft.lines] or [_Draft([], None)]


def _by_sentences(text: str) -> list[_Draft]:
    """Split normalised text after sentence-ending punctuation, keeping closing quotes."""
    sentences: list[str] = []
    start = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch not in "。！？.!?…":
            i += 1
            continue
        j = i
        while j < n and text[j] in "。！？.!?…":
            j += 1
        while j < n and text[j] in _CLOSERS:
            j += 1
        chinese_end = any(c in "。！？" for c in text[i:j])
        latin_end = j == n or text[j] == " " or is_cjk(text[j])
        if (chinese_end or latin_end) and not _is_abbreviation(text[start:i], text[i:j]):
            sentences.append(text[start:j].strip())
            start = j
        i = j
    sentences.append(text[start:].strip())
    return [_Draft([sentence], None) for sentence in sentences if sentence]


def _is_abbreviation(before: str, punctuation: str) -> bool:
    if punctuation != ".":
        return False
    words = before.rsplit(" ", 1)
    return words[-1].lower() in _ABBREVIATIONS


def _milliseconds(seconds: str | None) -> int | None:
    if seconds is None:
        return None
    ms = round(float(seconds) * 1000)
    if ms <= 0:
        raise ScriptError(f"A shot marker asks for {seconds} s; a shot needs more than 0 s.")
    return ms


def _allocate(total_ms: int, shots: list[tuple[str, int | None]]) -> list[int]:
    written_ms = sum(ms for _, ms in shots if ms is not None)
    if written_ms > total_ms:
        raise ScriptError(
            f"The shot durations in the script add up to {written_ms / 1000:g} s, "
            f"more than the video's {total_ms / 1000:g} s."
        )
    free = [i for i, (_, ms) in enumerate(shots) if ms is None]
    left_ms = total_ms - written_ms
    if free and left_ms <= 0:
        raise ScriptError(
            f"The shot durations in the script use all {total_ms / 1000:g} s of the video, "
            f"leaving nothing for the {len(free)} shot(s) without a duration."
        )
    exact: list[float] = [float(ms or 0) for _, ms in shots]
    shares = _share(left_ms, [text_weight(shots[i][0]) for i in free])
    for i, share in zip(free, shares, strict=True):
        exact[i] = share
    durations = [round(value) for value in exact[:-1]]
    durations.append(total_ms - sum(durations))
    return durations


def _share(budget_ms: int, weights: list[int]) -> list[float]:
    """Split ``budget_ms`` by weight, with a floor of ``MIN_SHOT_MS`` each where it fits."""
    if not weights:
        return []
    if budget_ms < MIN_SHOT_MS * len(weights):
        return [budget_ms / len(weights)] * len(weights)
    floored: set[int] = set()
    while True:
        free = [i for i in range(len(weights)) if i not in floored]
        left = budget_ms - MIN_SHOT_MS * len(floored)
        total_weight = sum(weights[i] for i in free)
        shares = {i: left * weights[i] / total_weight for i in free}
        short = {i for i, share in shares.items() if share < MIN_SHOT_MS}
        if not short:
            return [float(MIN_SHOT_MS) if i in floored else shares[i] for i in range(len(weights))]
        floored |= short


def _cut(ms: int, max_ms: int) -> list[int]:
    """``ms`` in the fewest equal pieces of at most ``max_ms`` (remainder spread by 1 ms)."""
    pieces = max(1, math.ceil(ms / max_ms))
    base, extra = divmod(ms, pieces)
    return [base + (1 if i >= pieces - extra else 0) for i in range(pieces)]
