"""Text normalisation for Chinese, English and mixed scripts.

``normalise_text`` is idempotent: ``normalise_text(normalise_text(x)) == normalise_text(x)``.
Its rules, in order:

1. NFC, then full-width ASCII letters and digits (U+FF10-FF5A) and the ideographic space become
   their half-width forms. This is the NFKC mapping for those characters only: full NFKC would
   also rewrite ``²``, ``™`` or ``①`` and change what the text says.
2. Control, format (zero-width, bidi overrides), private-use and surrogate characters are
   removed; every kind of whitespace, line breaks included, becomes one space; ends trimmed.
3. Sentence punctuation (``, . ! ? : ;`` in ASCII or full-width, ``。`` and ``…``) takes the form
   of its context: Chinese (``，。！？：；`` and ``……``, no spaces around it) when the nearest
   non-space character before *or* after it is CJK, ASCII otherwise (no space before, one space
   after when text follows; ``...`` for an ellipsis). A ``.``, ``,`` or ``:`` between two digits
   (``3.5``, ``1,000``, ``10:30``) and an ASCII ``.`` or ``:`` inside a Latin token
   (``e.g``, ``example.com``) are left as they are.
4. Spacing between scripts: no space between two CJK characters (or CJK punctuation), exactly
   one space between a CJK character and a Latin letter or digit (``我住在 New York``,
   ``今年 8 岁``), the usual rule of Chinese typesetting guides.

"CJK" here means Han ideographs and Japanese kana; Hangul is written with spaces and ASCII
punctuation, so it is treated like Latin text.
"""

from __future__ import annotations

import re
import unicodedata

_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs"})
_WHITESPACE = re.compile(r"\s+")

# Sentence punctuation: character -> kind. ``…`` and the dots are grouped into ellipses later.
_PUNCT_KIND = {
    ",": "comma",
    "，": "comma",
    ".": "stop",
    "．": "stop",
    "。": "stop",
    "｡": "stop",
    "…": "stop",
    "!": "exclamation",
    "！": "exclamation",
    "?": "question",
    "？": "question",
    ":": "colon",
    "：": "colon",
    ";": "semicolon",
    "；": "semicolon",
}
_DOTS = frozenset(".．。｡…")
_CHINESE_FORM = {
    "comma": "，",
    "stop": "。",
    "exclamation": "！",
    "question": "？",
    "colon": "：",
    "semicolon": "；",
    "ellipsis": "……",
}
_LATIN_FORM = {
    "comma": ",",
    "stop": ".",
    "exclamation": "!",
    "question": "?",
    "colon": ":",
    "semicolon": ";",
    "ellipsis": "...",
}
# A space between two punctuation marks goes (". . ." is "...", "! ?" is "!?"): a run is
# rendered as a whole, and spaces dropped later would otherwise join runs on a second pass.
_PUNCTUATION_GAP = re.compile(
    f"(?<=[{re.escape(''.join(_PUNCT_KIND))}]) +(?=[{re.escape(''.join(_PUNCT_KIND))}])"
)
# After these, a Latin letter that follows with no space gets one ("Hi,Tom" -> "Hi, Tom"); a
# full stop or colon does not, since "a.m." and "example.com" are single tokens.
_SPACED_AFTER = frozenset({"comma", "exclamation", "question", "semicolon"})


def normalise_text(text: str) -> str:
    """One line of text with consistent width, spacing and punctuation (rules in the module doc)."""
    cleaned = _WHITESPACE.sub(" ", clean_characters(text)).strip()
    return _space_scripts(_punctuate(_PUNCTUATION_GAP.sub("", cleaned)))


def clean_characters(text: str) -> str:
    """NFC, full-width letters and digits folded, invisible characters removed.

    Line breaks are kept (as ``\\n``) so a script can still be split into lines afterwards; other
    whitespace is left for the caller to collapse.
    """
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text or ""):
        if ch in "\r\n\u2028\u2029\x85\x0b\x0c":
            out.append("\n")
        elif ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch) in _REMOVED_CATEGORIES:
            continue
        else:
            out.append(fold_width(ch))
    return "".join(out)


def fold_width(ch: str) -> str:
    """A full-width ASCII letter or digit as its half-width form; anything else unchanged."""
    code = ord(ch)
    if ch == "\u3000":
        return " "
    if 0xFF10 <= code <= 0xFF5A:
        half = chr(code - 0xFEE0)
        if half.isalnum():
            return half
    return ch


def is_cjk(ch: str) -> bool:
    """A Han ideograph or a kana letter (not CJK punctuation)."""
    if not ch:
        return False
    code = ord(ch)
    in_block = (
        0x3040 <= code <= 0x30FF
        or 0x31F0 <= code <= 0x31FF
        or 0x3400 <= code <= 0x4DBF
        or 0x4E00 <= code <= 0x9FFF
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x323AF
        or code in (0x3005, 0x3006, 0x3007)
    )
    return in_block and (unicodedata.category(ch)[0] == "L" or ch == "〇")


def is_cjk_punctuation(ch: str) -> bool:
    """CJK symbols and punctuation, and full-width punctuation (``，、「」（）`` ...)."""
    if not ch:
        return False
    code = ord(ch)
    return (
        0x3000 <= code <= 0x303F
        or 0xFE30 <= code <= 0xFE4F
        or code == 0x30FB
        or (0xFF00 <= code <= 0xFFEF and not ch.isalnum())
        or ch in "……"
    )


def _is_word_character(ch: str) -> bool:
    return bool(ch) and ch.isalnum() and not is_cjk(ch)


def _is_ascii_digit(ch: str) -> bool:
    return bool(ch) and "0" <= ch <= "9"


def _punctuate(text: str) -> str:
    """Rule 3 of the module doc, over text whose whitespace is already single spaces."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] not in _PUNCT_KIND:
            out.append(text[i])
            i += 1
            continue
        j = i
        while j < n and text[j] in _PUNCT_KIND:
            j += 1
        run = text[i:j]
        before = text[i - 1] if i else ""
        after = text[j] if j < n else ""
        if len(run) == 1 and _is_ascii_digit(before) and _is_ascii_digit(after):
            kind = _PUNCT_KIND[run]
            if kind in ("comma", "stop", "colon") and run != "…":
                out.append(_LATIN_FORM[kind])
                i = j
                continue
        if run in (".", ":") and _is_word_character(before) and _is_word_character(after):
            out.append(run)
            i = j
            continue
        kinds = _kinds(run)
        chinese = is_cjk(_context_before(out)) or is_cjk(_context_after(text, j))
        while out and out[-1] == " ":
            out.pop()
        forms = _CHINESE_FORM if chinese else _LATIN_FORM
        out.extend(forms[kind] for kind in kinds)
        k = j
        while k < n and text[k] == " ":
            k += 1
        if not chinese and k < n and (k > j or (text[k].isalpha() and kinds[-1] in _SPACED_AFTER)):
            out.append(" ")
        i = k
    return "".join(out)


def _kinds(run: str) -> list[str]:
    """The punctuation kinds of a run; three or more dots, or any ``…``, make one ellipsis."""
    kinds: list[str] = []
    i = 0
    while i < len(run):
        if run[i] in _DOTS:
            j = i
            while j < len(run) and run[j] in _DOTS:
                j += 1
            dots = run[i:j]
            if "…" in dots or len(dots) >= 3:
                kinds.append("ellipsis")
            else:
                kinds.extend("stop" for _ in dots)
            i = j
        else:
            kinds.append(_PUNCT_KIND[run[i]])
            i += 1
    return kinds


def _context_before(out: list[str]) -> str:
    for piece in reversed(out):
        for ch in reversed(piece):
            if ch != " " and ch not in _PUNCT_KIND:
                return ch
    return ""


def _context_after(text: str, start: int) -> str:
    for ch in text[start:]:
        if ch != " " and ch not in _PUNCT_KIND:
            return ch
    return ""


def _space_scripts(text: str) -> str:
    """Rule 4 of the module doc."""
    out: list[str] = []
    for index, ch in enumerate(text):
        if ch == " ":
            left = out[-1] if out else ""
            right = text[index + 1] if index + 1 < len(text) else ""
            if (is_cjk(left) or is_cjk_punctuation(left)) and (
                is_cjk(right) or is_cjk_punctuation(right)
            ):
                continue
            out.append(ch)
            continue
        if out and (
            (is_cjk(out[-1]) and _is_word_character(ch))
            or (_is_word_character(out[-1]) and is_cjk(ch))
        ):
            out.append(" ")
        out.append(ch)
    return "".join(out)
