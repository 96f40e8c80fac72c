"""Person names: letters and the few marks names are written with, nothing that reads as syntax.

A name is put into a prompt, a subtitle and a title, so it must not be able to carry an
instruction, markup, a placeholder or a line break. Only these are allowed:

* letters of any script (Unicode category L*), CJK included;
* combining marks (M*) directly after a letter, at most four in a row, for accented and
  Indic names (runs of marks longer than any script needs are how "Zalgo" text is made);
* spaces (trimmed and collapsed to one), hyphens and apostrophes (``’`` is read as ``'``);
* the middle dot ``·`` (U+00B7; the katakana ``・`` U+30FB is read as it). This goes beyond the
  usual "letters, spaces, hyphens, apostrophes" rule on purpose: Chinese transliterations of
  foreign names separate the parts with it (玛丽·居里, 列夫·托尔斯泰).

Full-width letters are folded by NFKC (``ＡＢＣ`` becomes ``ABC``; NFKC includes NFC), then the
name may have at most ``NAME_MAX_LENGTH`` characters and must contain a letter.
"""

from __future__ import annotations

import unicodedata

NAME_MAX_LENGTH = 32
_MAX_MARKS_IN_A_ROW = 4
_SEPARATORS = frozenset(" -'·")
_READ_AS = str.maketrans(
    {
        "’": "'",
        "‘": "'",
        "ʼ": "'",
        "・": "·",
        "･": "·",
        "‐": "-",
        "‑": "-",
    }
)
_ALLOWED = "use letters, spaces, hyphens or apostrophes"


class NameRejected(ValueError):
    """A value that is not a person's name; the message says which character and why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def validate_person_name(value: object) -> str:
    """The name, normalised (NFKC, trimmed, single spaces), or ``NameRejected``."""
    if not isinstance(value, str):
        raise NameRejected("A name must be text.")
    name = " ".join(
        part for part in unicodedata.normalize("NFKC", value).translate(_READ_AS).split(" ") if part
    )
    marks_in_a_row = 0
    previous = ""
    for ch in name:
        category = unicodedata.category(ch)
        if category[0] == "M":
            marks_in_a_row += 1
            if marks_in_a_row > _MAX_MARKS_IN_A_ROW or not (previous and _is_letter(previous)):
                raise NameRejected(
                    f"{describe_character(ch)} is not allowed here: "
                    "an accent must follow a letter, at most four in a row."
                )
            continue
        marks_in_a_row = 0
        if category[0] != "L" and ch not in _SEPARATORS:
            raise NameRejected(f"{describe_character(ch)} is not allowed in a name: {_ALLOWED}.")
        previous = ch
    if not name:
        raise NameRejected("A name cannot be empty.")
    if not any(_is_letter(ch) for ch in name):
        raise NameRejected("A name needs at least one letter.")
    if len(name) > NAME_MAX_LENGTH:
        raise NameRejected(f"A name has at most {NAME_MAX_LENGTH} characters (got {len(name)}).")
    return name


def describe_character(ch: str) -> str:
    """``'<'`` for a visible character, ``U+202E (RIGHT-TO-LEFT OVERRIDE)`` for an invisible one."""
    if ch.isprintable() and not ch.isspace():
        return repr(ch) if ch != "'" else '"\'"'
    label = unicodedata.name(ch, "control character")
    return f"U+{ord(ch):04X} ({label})"


def _is_letter(ch: str) -> bool:
    return unicodedata.category(ch)[0] == "L"
