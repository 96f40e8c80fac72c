"""Text checks: Chinese and English lexicons matched with Aho-Corasick after normalisation.

The normaliser defeats simple evasion without inventing matches across words:

* every character is NFKC-folded (full-width forms, ligatures, circled and mathematical
  letters), case-folded, stripped of accents, mapped from Cyrillic/Greek look-alikes to Latin,
  and converted from traditional to simplified Chinese (OpenCC's offline tables);
* zero-width and other invisible characters are dropped;
* inside a Latin word, digits and symbols that stand for letters are read as letters
  (``p0rn``, ``$ex``, ``@ss``) and ``l``/``1``/``|``/``!`` all become ``i`` (in the lexicon
  too), while a number on its own stays a number (room ``455`` is not a word);
* symbols inserted inside a word are read both ways: removed (``p.o.r.n``, ``se*x``) and as
  word breaks (``self-harm``); a run of three or more single letters is joined
  (``s e x``, ``k i l l``);
* separators between two Chinese characters are removed unless they end a sentence
  (``色 情``, ``色*情``), since Chinese has no spaces between words; a further reading bridges
  one sentence mark or one or two Latin letters inside a Chinese word (``做。爱``, ``做a爱``),
  where a sentence mark counts only when the term is not glued to other Chinese text on both
  sides (``红色。情人节`` is two sentences, not 色情);
* a letter repeated three or more times is read once and twice (``poooorn``, ``sexxx``);
* ``*`` and ``#`` inside a word stand for any one letter (``p*rn``, ``f##k``), compared with
  every Latin term of the right length;
* a whole-word term also matches its plural (``porns``, ``nudes``, ``knives``' stem excepted);
* Chinese terms are also listed in toneless pinyin (``zuo ai``, ``se qing``), generated from
  the Chinese lists (``lexicons/pinyin/``), and the lists carry common homophones (``作爱``).

Latin terms match whole words only (``sex`` is not found in Essex, ``cunt`` not in Scunthorpe,
``porn*`` is a prefix term); Chinese terms match anywhere, so each language has an allow list of
ordinary phrases that contain a term (异性交往, 学习近平面, blue tits) and suppress it.

Every match names its category, the lexicon term, and the span of the *original* text it came
from, so a tenant (and an operator) can see exactly what was found.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import ahocorasick

LEXICON_DIR = Path(__file__).resolve().parent / "lexicons"
LANGUAGES = ("en", "zh", "pinyin")
TEXT_CATEGORIES = (
    "sexual",
    "minors",
    "violence_gore",
    "hate",
    "self_harm",
    "politically_sensitive",
    "personal_data",
)

# --- character folding ------------------------------------------------------------------------

# Look-alikes that NFKC leaves alone (TR39 confusables, the ones seen in evasion).
_HOMOGLYPHS = str.maketrans(
    {
        # Cyrillic
        "а": "a",
        "в": "b",
        "е": "e",
        "ё": "e",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "ѕ": "s",
        "і": "i",
        "ї": "i",
        "ј": "j",
        "ԁ": "d",
        "ԛ": "q",
        "ԝ": "w",
        "һ": "h",
        "ү": "y",
        "ɡ": "g",
        # Greek
        "α": "a",
        "β": "b",
        "γ": "y",
        "ε": "e",
        "η": "n",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ω": "w",
        "ς": "s",
        # Latin letters without a decomposition
        "ı": "i",
        "ł": "l",
        "ø": "o",
        "đ": "d",
        "ħ": "h",
        "ŧ": "t",
        "æ": "ae",
        "œ": "oe",
    }
)
# Read as letters only inside a word that has at least one real letter.
_LEET = {
    "0": "o",
    "1": "i",
    "3": "e",
    "4": "a",
    "5": "s",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
    "!": "i",
    "|": "i",
    "€": "e",
    "+": "t",
}
# Symbols that stand for a letter at the start of a word too (@ss, $ex); the others only
# between two letters, so that "kill!" keeps its boundary.
_LEADING_LEET = frozenset("@$")
# i, l, 1, |, ! are one letter to an evader: fold them together, in the lexicon as in the text.
_SKELETON = str.maketrans({"l": "i"})
_INVISIBLE = frozenset(
    "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u2060\u2061\u2062\u2063\u2064\u3164\ufeff\uffa0\u2800"
)
_ONE_LETTER_WORDS = frozenset("ai")
# Ends of sentences and clauses: separators that Chinese words are never split across.
_HARD_BREAKS = frozenset(",!?;:。、\n\r\t…")


@cache
def _t2s():
    from opencc import OpenCC  # offline: the tables ship inside the package

    return OpenCC("t2s")


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0x3400 <= code <= 0x4DBF
        or 0x4E00 <= code <= 0x9FFF
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x2FA1F
        or 0x3040 <= code <= 0x30FF  # kana: no spaces between words either
        or 0xAC00 <= code <= 0xD7A3  # hangul syllables
    )


@lru_cache(maxsize=8192)
def fold_char(ch: str) -> str:
    """One character as the matcher sees it (possibly empty, possibly several characters)."""
    if ch in _INVISIBLE or unicodedata.category(ch) in ("Cf", "Mn", "Me"):
        return ""
    out = []
    for part in unicodedata.normalize("NFKC", ch).casefold():
        if _is_cjk(part):
            if 0x4E00 <= ord(part) <= 0x9FFF or 0x3400 <= ord(part) <= 0x4DBF:
                simplified = _t2s().convert(part)
                part = simplified if len(simplified) == 1 else part
            out.append(part)
            continue
        for piece in unicodedata.normalize("NFKD", part):
            if unicodedata.category(piece) in ("Mn", "Me"):
                continue
            out.append(piece.translate(_HOMOGLYPHS))
    return "".join(out)


# --- streams ----------------------------------------------------------------------------------

# One normalised character and the span of original text it came from.
_Unit = tuple[str, int, int]


@dataclass(frozen=True)
class Stream:
    """Normalised text with, for each character, the [start, end) of the original it came from.

    Tokens are separated by one space (origin -1), so a Latin match can check its boundaries by
    looking at its neighbours.
    """

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def span(self, first: int, last: int) -> tuple[int, int]:
        return self.starts[first], self.ends[last]


def _units(text: str) -> list[_Unit]:
    units: list[_Unit] = []
    for index, ch in enumerate(text):
        for folded in fold_char(ch):
            units.append((folded, index, index + 1))
    return units


def _kind(ch: str) -> str:
    if _is_cjk(ch):
        return "cjk"
    if ch.isalpha():
        return "letter"
    if ch.isdigit():
        return "digit"
    if ch.isspace() or ch in _HARD_BREAKS:
        return "break" if ch in _HARD_BREAKS else "space"
    return "symbol"


def _kinds(units: list[_Unit]) -> list[str]:
    kinds = [_kind(u[0]) for u in units]
    for i, (ch, _, _) in enumerate(units):
        # "!" ends a sentence, except inside a word where it stands for a letter (sh!t).
        if (
            ch in _LEET
            and kinds[i] == "break"
            and 0 < i < len(units) - 1
            and kinds[i - 1] in ("letter", "digit")
            and kinds[i + 1] in ("letter", "digit")
        ):
            kinds[i] = "symbol"
    return kinds


def _segments(units: list[_Unit]) -> list[tuple[str, list[_Unit]]]:
    """Runs of Chinese characters and Latin words, with the separators between them.

    Soft separators (spaces, symbols, but not sentence punctuation) between two Chinese runs are
    dropped so that 色 情 and 色*情 read 色情.
    """
    raw: list[tuple[str, list[_Unit], bool]] = []  # (group, units, symbols only)
    for unit, kind in zip(units, _kinds(units), strict=True):
        group = (
            "cjk" if kind == "cjk" else "word" if kind in ("letter", "digit", "symbol") else kind
        )
        if raw and raw[-1][0] == group and group != "break":
            raw[-1][1].append(unit)
            if kind != "symbol":
                raw[-1] = (group, raw[-1][1], False)
        else:
            raw.append((group, [unit], kind == "symbol"))
    merged: list[tuple[str, list[_Unit]]] = []
    index = 0
    while index < len(raw):
        group, run, _ = raw[index]
        if group != "cjk":
            merged.append((group, run))
            index += 1
            continue
        run = list(run)
        while True:
            ahead = index + 1
            while ahead < len(raw) and (raw[ahead][0] == "space" or raw[ahead][2]):
                ahead += 1
            if ahead == index + 1 or ahead >= len(raw) or raw[ahead][0] != "cjk":
                break
            run.extend(raw[ahead][1])
            index = ahead
        merged.append(("cjk", run))
        index += 1
    return merged


def _word_variants(word: list[_Unit]) -> tuple[list[list[_Unit]], list[list[_Unit]]]:
    """One raw word as (joined, split) lists of tokens.

    Digits and letter-like symbols are read as letters when the word has a letter; other
    symbols are removed in the joined reading and split the word in the other.
    """
    has_letter = any(_kind(u[0]) == "letter" for u in word)
    mapped: list[_Unit | None] = []
    for position, (ch, start, end) in enumerate(word):
        kind = _kind(ch)
        if kind == "letter":
            mapped.append((ch, start, end))
        elif kind == "digit":
            mapped.append((_LEET.get(ch, ch), start, end) if has_letter else (ch, start, end))
        elif has_letter and ch in _LEET:
            before = any(_kind(u[0]) in ("letter", "digit") for u in word[:position])
            after = position + 1 < len(word) and _kind(word[position + 1][0]) in (
                "letter",
                "digit",
            )
            if after and (before or ch in _LEADING_LEET):
                mapped.append((_LEET[ch], start, end))
            else:
                mapped.append(None)
        else:
            mapped.append(None)
    joined = [[u for u in mapped if u is not None]]
    split: list[list[_Unit]] = [[]]
    for unit in mapped:
        if unit is None:
            if split[-1]:
                split.append([])
        else:
            split[-1].append(unit)
    return [t for t in joined if t], [t for t in split if t]


def _join_single_letters(tokens: list[list[_Unit]]) -> list[list[_Unit]]:
    """``s e x`` -> ``sex``: three or more one-letter tokens in a row become one token."""
    out: list[list[_Unit]] = []
    run: list[list[_Unit]] = []

    def flush() -> None:
        # "in a s e x y outfit": the English one-letter words before a spelled-out word stay
        # words of their own.
        while len(run) > 3 and run[0][0][0] in _ONE_LETTER_WORDS:
            out.append(run.pop(0))
        if len(run) >= 3 and sum(_kind(t[0][0]) == "letter" for t in run) >= 2:
            out.append([(_LEET.get(ch, ch), s, e) for t in run for ch, s, e in t])
        else:
            out.extend(run)
        run.clear()

    for token in tokens:
        if len(token) == 1 and token[0][0] != "\n" and _kind(token[0][0]) in ("letter", "digit"):
            run.append(token)
        else:
            flush()
            out.append(token)
    flush()
    return out


def _stream(tokens: Iterable[list[_Unit]]) -> Stream:
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for token in tokens:
        if chars:
            chars.append(" ")
            starts.append(-1)
            ends.append(-1)
        for ch, start, end in token:
            for piece in ch.translate(_SKELETON):
                chars.append(piece)
                starts.append(start)
                ends.append(end)
    return Stream("".join(chars), tuple(starts), tuple(ends))


def normalize(text: str) -> tuple[Stream, Stream]:
    """The two readings of ``text`` the lexicon is matched against: symbols inside words
    removed, and symbols inside words as word breaks."""
    joined_tokens: list[list[_Unit]] = []
    split_tokens: list[list[_Unit]] = []
    for group, run in _segments(_units(text)):
        if group == "cjk":
            joined_tokens.append(run)
            split_tokens.append(run)
        elif group == "word":
            joined, split = _word_variants(run)
            joined_tokens.extend(joined)
            split_tokens.extend(split)
        elif group == "break":
            # A sentence break stops single letters from being joined across it.
            marker = [("\n", run[0][1], run[0][2])]
            joined_tokens.append(marker)
            split_tokens.append(marker)
    streams = []
    for tokens in (joined_tokens, split_tokens):
        tokens = _join_single_letters(tokens)
        streams.append(_stream(t for t in tokens if t[0][0] != "\n"))
    return streams[0], streams[1]


_TRIPLE = re.compile(r"([^\W\d_])\1\1")


def _squeezed(stream: Stream, keep: int) -> Stream | None:
    """``stream`` with every run of three or more of the same Latin letter (more than ``keep``)
    cut to ``keep`` (``poooorn`` -> ``porn``), or None when it has no such run."""
    text = stream.text
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    changed = False
    index = 0
    while index < len(text):
        run_end = index
        while run_end + 1 < len(text) and text[run_end + 1] == text[index]:
            run_end += 1
        length = run_end - index + 1
        if length > max(keep, 2) and text[index].isalpha() and not _is_cjk(text[index]):
            changed = True
            for offset in range(keep):
                chars.append(text[index])
                starts.append(stream.starts[index] if offset == 0 else stream.starts[run_end])
                ends.append(stream.ends[run_end] if offset == keep - 1 else stream.ends[index])
        else:
            chars.extend(text[index : run_end + 1])
            starts.extend(stream.starts[index : run_end + 1])
            ends.extend(stream.ends[index : run_end + 1])
        index = run_end + 1
    return Stream("".join(chars), tuple(starts), tuple(ends)) if changed else None


def _bridged(text: str) -> tuple[Stream, frozenset[int]] | None:
    """The Chinese runs of ``text`` with one sentence mark, or one or two Latin letters, inside
    a word bridged (``做。爱``, ``做a爱``); with the stream positions that follow a bridged
    sentence mark. None when nothing was bridged."""
    if sum(1 for ch in text if _is_cjk(ch)) < 2:
        return None
    units = _units(text)
    kinds = [_kind(u[0]) for u in units]
    tokens: list[list[_Unit]] = [[]]
    hard: list[set[int]] = [set()]
    bridged = False
    index = 0
    while index < len(units):
        if kinds[index] == "cjk":
            tokens[-1].append(units[index])
            index += 1
            continue
        gap_end = index
        while gap_end < len(units) and kinds[gap_end] != "cjk":
            gap_end += 1
        gap = kinds[index:gap_end]
        joins = tokens[-1] and gap_end < len(units)
        if joins and set(gap) <= {"space", "symbol"}:
            pass  # the ordinary readings join these too
        elif joins and gap.count("break") == 1 and set(gap) <= {"break", "space"}:
            hard[-1].add(len(tokens[-1]))
            bridged = True
        elif joins and len(gap) <= 2 and set(gap) == {"letter"}:
            bridged = True
        elif tokens[-1]:
            tokens.append([])
            hard.append(set())
        index = gap_end
    if not bridged:
        return None
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    marks: set[int] = set()
    for token, positions in zip(tokens, hard, strict=True):
        if not token:
            continue
        if chars:
            chars.append(" ")
            starts.append(-1)
            ends.append(-1)
        marks |= {len(chars) + p for p in positions}
        for ch, start, end in token:
            chars.append(ch)
            starts.append(start)
            ends.append(end)
    return Stream("".join(chars), tuple(starts), tuple(ends)), frozenset(marks)


def _readings(text: str) -> list[tuple[Stream, frozenset[int]]]:
    """Every reading of ``text`` the lexicon is matched against, each with the positions where a
    sentence mark was bridged (empty for all but the bridged Chinese reading)."""
    none: frozenset[int] = frozenset()
    readings = [(stream, none) for stream in normalize(text)]
    for stream, _ in list(readings):
        if not _TRIPLE.search(stream.text):
            continue
        # Three too: "kill" is "kiii" once l and i are one letter, so "kiiiill" needs it.
        for keep in (1, 2, 3):
            if (squeezed := _squeezed(stream, keep)) is not None:
                readings.append((squeezed, none))
    if (bridged := _bridged(text)) is not None:
        readings.append(bridged)
    return readings


def normalize_term(term: str) -> str:
    """A lexicon term in the form the matcher compares (the joined reading)."""
    return normalize(term)[0].text


# --- lexicon ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    category: str
    term: str
    weight: float
    language: str
    prefix: bool

    @property
    def rule(self) -> str:
        return f"{self.language}/{self.category}: {self.term}{'*' if self.prefix else ''}"


@dataclass(frozen=True)
class Lexicon:
    terms: ahocorasick.Automaton
    allowed: ahocorasick.Automaton | None
    size: int
    # Latin keys without spaces, for words with masked letters (p*rn): few, compared directly.
    latin: tuple[tuple[str, tuple[Term, ...]], ...] = ()


def _parse_line(line: str) -> tuple[str, float] | None:
    line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
    if not line:
        return None
    term, _, weight = line.partition("|")
    return term.strip(), float(weight) if weight.strip() else 1.0


def _is_latin_edge(ch: str) -> bool:
    return ch.isalnum() and not _is_cjk(ch)


def load_lexicon(directory: Path = LEXICON_DIR) -> Lexicon:
    """Every ``<lang>/<category>.txt`` under ``directory`` in one automaton."""
    terms = ahocorasick.Automaton()
    allowed = ahocorasick.Automaton()
    count = 0
    allowed_count = 0
    for language in LANGUAGES:
        for category in TEXT_CATEGORIES:
            path = directory / language / f"{category}.txt"
            if not path.exists():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                parsed = _parse_line(line)
                if parsed is None:
                    continue
                raw, weight = parsed
                prefix = raw.endswith("*")
                raw = raw.rstrip("*").strip()
                entry = Term(category, raw, weight, language, prefix)
                key = normalize_term(raw)
                # "self harm" also as "selfharm", which is how "self-harm" reads joined.
                for variant in {key, key.replace(" ", "")} - {""}:
                    _, entries = terms.get(variant, (variant, ()))
                    terms.add_word(variant, (variant, (*entries, entry)))
                count += 1
        allow_path = directory / language / "allow.txt"
        if allow_path.exists():
            for line in allow_path.read_text(encoding="utf-8").splitlines():
                parsed = _parse_line(line)
                if parsed is not None and (key := normalize_term(parsed[0])):
                    allowed.add_word(key, key)
                    allowed_count += 1
    terms.make_automaton()
    if allowed_count:
        allowed.make_automaton()
    latin: dict[str, tuple[Term, ...]] = {}
    for key, (_, entries) in terms.items():
        if key and " " not in key and not any(_is_cjk(ch) for ch in key):
            latin[key] = entries
    return Lexicon(
        terms=terms,
        allowed=allowed if allowed_count else None,
        size=count,
        latin=tuple(sorted(latin.items())),
    )


@cache
def lexicon() -> Lexicon:
    """The shipped lexicon, built once per process (a few milliseconds)."""
    return load_lexicon()


# --- matching ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextMatch:
    """One rule that matched: where (field and span of the original text) and why."""

    field: str
    category: str
    rule: str  # "en/sexual: porn*", "zh/hate: 支那", "pattern/personal_data: cn_mobile"
    term: str
    weight: float
    start: int
    end: int
    excerpt: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of_term(cls, entry: Term, *, text: str, field: str, start: int, end: int) -> TextMatch:
        """The match of a lexicon ``entry`` over ``text[start:end]``."""
        return cls(
            field=field,
            category=entry.category,
            rule=entry.rule,
            term=entry.term,
            weight=entry.weight,
            start=start,
            end=end,
            excerpt=text[start:end],
        )


def _bounded(stream: str, first: int, last: int, prefix: bool) -> bool:
    if _is_latin_edge(stream[first]) and first > 0 and _is_latin_edge(stream[first - 1]):
        return False
    return not (
        not prefix
        and _is_latin_edge(stream[last])
        and last + 1 < len(stream)
        and _is_latin_edge(stream[last + 1])
    )


def _allowed_spans(lex: Lexicon, stream: str) -> list[tuple[int, int]]:
    if lex.allowed is None:
        return []
    spans = []
    for last, key in lex.allowed.iter(stream):
        first = last - len(key) + 1
        if _bounded(stream, first, last, prefix=False):
            spans.append((first, last))
        elif (plural := _plural_end(stream, last)) is not None and _bounded(
            stream, first, plural, prefix=False
        ):
            spans.append((first, plural))  # "Al Gore's" reads "al gores" joined
    return spans


def _plural_end(stream: str, last: int) -> int | None:
    """The end of ``-s``/``-es`` right after a Latin term ending at ``last``, if that ends the
    word."""
    for suffix in ("s", "es"):
        end = last + len(suffix)
        if stream[last + 1 : end + 1] == suffix and (
            end + 1 >= len(stream) or not _is_latin_edge(stream[end + 1])
        ):
            return end
    return None


def _glued(stream: str, first: int, last: int) -> bool:
    """Chinese text runs on into the match on both sides."""
    return (
        first > 0
        and _is_cjk(stream[first - 1])
        and last + 1 < len(stream)
        and _is_cjk(stream[last + 1])
    )


def _lexicon_matches(text: str, field: str, lex: Lexicon) -> list[TextMatch]:
    found: dict[tuple[str, str, int, int], TextMatch] = {}
    for stream, marks in _readings(text):
        allowed = _allowed_spans(lex, stream.text)
        for last, (key, entries) in lex.terms.iter(stream.text):
            first = last - len(key) + 1
            if any(first < m <= last for m in marks) and _glued(stream.text, first, last):
                continue  # a real sentence break between two words that touch the term
            for entry in entries:
                shown = last
                if not _bounded(stream.text, first, last, entry.prefix):
                    plural = None
                    if not entry.prefix and _is_latin_edge(stream.text[last]):
                        plural = _plural_end(stream.text, last)
                    if plural is None or not _bounded(stream.text, first, plural, False):
                        continue
                    shown = plural
                if any(a <= first and last <= b for a, b in allowed):
                    continue
                if entry.prefix:  # show the whole word: "pornography", not "porn"
                    while shown + 1 < len(stream.text) and _is_latin_edge(stream.text[shown + 1]):
                        shown += 1
                start, end = stream.span(first, shown)
                match = TextMatch.of_term(entry, text=text, field=field, start=start, end=end)
                found.setdefault((entry.rule, field, start, end), match)
    return list(found.values())


_MASKS = frozenset("*#")


def _masked_matches(text: str, field: str, lex: Lexicon) -> list[TextMatch]:
    """Latin words with ``*`` or ``#`` standing for letters (``p*rn``, ``f**k``), compared with
    every Latin term: a mask matches any one letter, and at least half the word must be real
    letters that agree."""
    matches: list[TextMatch] = []
    if not any(ch in text for ch in "*#＊＃﹡﹟"):
        return matches
    for group, run in _segments(_units(text)):
        if group != "word" or not any(u[0] in _MASKS for u in run):
            continue
        has_letter = any(_kind(u[0]) == "letter" for u in run)
        pattern: list[tuple[str, int, int]] = []
        for ch, start, end in run:
            if ch in _MASKS:
                pattern.append(("?", start, end))
            elif _kind(ch) == "letter":
                pattern.append((ch.translate(_SKELETON), start, end))
            elif _kind(ch) == "digit":
                pattern.append((_LEET.get(ch, ch) if has_letter else ch, start, end))
        while pattern and pattern[0][0] == "?":
            pattern.pop(0)
        while pattern and pattern[-1][0] == "?":
            pattern.pop()
        word = "".join(p[0] for p in pattern)
        masks = word.count("?")
        if not masks or len(word) - masks < 2 or masks * 2 > len(word):
            continue
        for key, entries in lex.latin:
            for entry in entries:
                size = len(key) if entry.prefix else len(word)
                if len(key) != size or len(word) < size:
                    continue
                if all(w in ("?", k) for w, k in zip(word, key, strict=False)):
                    start, end = pattern[0][1], pattern[-1][2]
                    matches.append(
                        TextMatch.of_term(entry, text=text, field=field, start=start, end=end)
                    )
    return matches


# --- personal data patterns -------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _cn_id_valid(number: str) -> bool:
    body, check = number[:17], number[17].upper()
    return _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11] == check


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# (name, pattern, weight, validator on the digits)
_PATTERNS: tuple[tuple[str, re.Pattern[str], float, Any], ...] = (
    (
        "cn_resident_id",
        re.compile(
            r"(?<![0-9])[1-9][0-9]{5}(?:19|20)[0-9]{2}[01][0-9][0-3][0-9]{4}[0-9Xx](?![0-9])"
        ),
        1.0,
        _cn_id_valid,
    ),
    (
        "payment_card",
        re.compile(r"(?<![0-9])[2-6][0-9]{3}(?:[ -]?[0-9]{4}){2}[ -]?[0-9]{1,7}(?![0-9])"),
        0.9,
        lambda digits: 13 <= len(digits) <= 19 and _luhn_valid(digits),
    ),
    ("cn_mobile", re.compile(r"(?<![0-9])(?:\+?86[ -]?)?1[3-9][0-9]{9}(?![0-9])"), 0.8, None),
    (
        "phone",
        re.compile(
            r"(?<![0-9])(?:\+[1-9][0-9]{0,2}[ -]?)?\(?[0-9]{3}\)?[ -][0-9]{3}[ -][0-9]{4}(?![0-9])"
        ),
        0.6,
        None,
    ),
    (
        "email",
        # Starts only where a local part can start, and takes it possessively: otherwise a
        # long run without "@" is rescanned from each of its characters (quadratic).
        re.compile(
            r"(?<![a-z0-9._%+-])[a-z0-9._%+-]++@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}",
            re.IGNORECASE,
        ),
        0.7,
        None,
    ),
)


def _pattern_matches(text: str, field: str) -> list[TextMatch]:
    # Full-width digits and @ are ordinary ones after NFKC; keep a map back to the original.
    chars: list[str] = []
    origin: list[int] = []
    for index, ch in enumerate(text):
        if ch in _INVISIBLE or unicodedata.category(ch) == "Cf":
            continue
        for piece in unicodedata.normalize("NFKC", ch):
            chars.append(piece)
            origin.append(index)
    folded = "".join(chars)
    matches = []
    taken: list[tuple[int, int]] = []
    for name, pattern, weight, valid in _PATTERNS:
        for found in pattern.finditer(folded):
            first, last = found.start(), found.end() - 1
            if any(a <= first and last <= b for a, b in taken):
                continue  # a resident id also looks like a card number; report it once
            if valid is not None and not valid(re.sub(r"[^0-9Xx]", "", found.group())):
                continue
            taken.append((first, last))
            start, end = origin[first], origin[last] + 1
            matches.append(
                TextMatch(
                    field=field,
                    category="personal_data",
                    rule=f"pattern/personal_data: {name}",
                    term=name,
                    weight=weight,
                    start=start,
                    end=end,
                    excerpt=text[start:end],
                )
            )
    return matches


# --- public -----------------------------------------------------------------------------------


def scan_text(text: str, *, field: str = "", lex: Lexicon | None = None) -> list[TextMatch]:
    """Every rule ``text`` matches, in the order the matches start."""
    if not text:
        return []
    lex = lex or lexicon()
    found = {
        (m.rule, m.start, m.end): m
        for m in _lexicon_matches(text, field, lex) + _masked_matches(text, field, lex)
    }
    matches = list(found.values()) + _pattern_matches(text, field)
    return sorted(matches, key=lambda m: (m.start, m.end, m.rule))


def scan_texts(texts: Mapping[str, str], *, lex: Lexicon | None = None) -> list[TextMatch]:
    return [
        match for field, text in texts.items() for match in scan_text(text, field=field, lex=lex)
    ]


def category_scores(matches: Sequence[TextMatch]) -> dict[str, float]:
    """A category's score is the weight of its strongest match."""
    scores: dict[str, float] = {}
    for match in matches:
        scores[match.category] = max(scores.get(match.category, 0.0), match.weight)
    return scores


def texts_for_job(
    *, values: Mapping[str, Any], shots: Sequence[Any] = (), title: str = ""
) -> dict[str, str]:
    """The texts of a job request that must be checked, keyed by the field they came from.

    Free-text values (``values.<name>``), the title and every compiled shot prompt
    (``shots.<i>.prompt``; scene text is only checked where it differs from the prompt).
    Negative prompts are *not* checked: they list what the model must avoid, so they name
    exactly the things the lexicon looks for.
    """
    texts: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, str) and value.strip():
            texts[f"values.{name}"] = value
    if title.strip():
        texts["title"] = title
    for position, shot in enumerate(shots):
        data = shot if isinstance(shot, Mapping) else asdict(shot)
        index = data.get("index", position)
        if data.get("prompt"):
            texts[f"shots.{index}.prompt"] = data["prompt"]
        scene = data.get("scene_text") or ""
        if scene.strip() and scene != data.get("prompt"):
            texts[f"shots.{index}.scene_text"] = scene
    return texts


def _non_empty(texts: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in texts.items() if isinstance(v, str) and v.strip()}


def texts_for_template(content: Mapping[str, Any]) -> dict[str, str]:
    """Every tenant-written text of a template that can reach a prompt, a title card, a
    subtitle or the widget's form: the script, title, character and product, an inline style,
    and each variable's label, default and choices. The negative prompt is not checked (see
    ``texts_for_job``)."""
    texts: dict[str, Any] = {name: content.get(name) for name in ("prompt", "title")}
    texts["character"] = content.get("character")
    texts["product"] = content.get("product")
    style = content.get("style")
    if isinstance(style, Mapping):
        for key in ("camera", "lighting", "look"):
            texts[f"style.{key}"] = style.get(key)
    for index, variable in enumerate(content.get("variables") or []):
        if not isinstance(variable, Mapping):
            continue
        texts[f"variables.{index}.label"] = variable.get("label")
        texts[f"variables.{index}.default"] = variable.get("default")
        for position, choice in enumerate(variable.get("choices") or []):
            texts[f"variables.{index}.choices.{position}"] = choice
    return _non_empty(texts)


def texts_for_preset(fields: Mapping[str, Any]) -> dict[str, str]:
    """A style preset's texts that are compiled into prompts (not its negative prompt)."""
    return _non_empty({key: fields.get(key) for key in ("camera", "lighting", "look")})


def texts_for_brand_kit(fields: Mapping[str, Any], *, prefix: str = "") -> dict[str, str]:
    """The brand kit's intro and outro cards, drawn on every video of the tenant."""
    return _non_empty({f"{prefix}{key}": fields.get(key) for key in ("intro_text", "outro_text")})
