"""Search tags for a script: subject, action, environment, style.

Chinese is segmented with jieba's part-of-speech tagger (nouns and names -> subject, verbs ->
action, place, locality and time words -> environment), with the Chinese lexicon consulted
first. English words count only if they are in the lexicon (``lexicon.py``), after stripping
simple inflection; English tags are lower-case. Placeholders (``{name}``) are removed before
anything is read, so they never become tags.

jieba is loaded on first use, once, under a lock, into a private tokenizer (our lexicon words
are added to it, not to jieba's global one). It reads only the dictionary shipped in its wheel
(plus its cache file in the temp directory) and never the network.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from config.logging import adopt_logger
from generation.prompting import lexicon
from generation.prompting.normalise import is_cjk, normalise_text

CATEGORIES = ("subject", "action", "environment", "style")
MAX_TAGS_PER_CATEGORY = 10
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
_ENGLISH_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_ENGLISH_INDEX: dict[str, str] = {
    **{word: "subject" for word in lexicon.EN_SUBJECT},
    **{word: "action" for word in lexicon.EN_ACTION},
    **{word: "environment" for word in lexicon.EN_ENVIRONMENT},
    **{word: "style" for word in lexicon.EN_STYLE},
    **lexicon.EN_PHRASES,
}
_LONGEST_PHRASE = max(len(phrase.split()) for phrase in _ENGLISH_INDEX)
_CHINESE_INDEX: dict[str, str] = {
    **{word: "subject" for word in lexicon.ZH_SUBJECT},
    **{word: "action" for word in lexicon.ZH_ACTION},
    **{word: "environment" for word in lexicon.ZH_ENVIRONMENT},
    **{word: "style" for word in lexicon.ZH_STYLE},
}
_SUBJECT_FLAGS = frozenset({"n", "nr", "nrfg", "nrt", "nz"})
_ACTION_FLAGS = frozenset({"v", "vn"})
_ENVIRONMENT_FLAGS = frozenset({"ns", "s", "t", "f"})
_LOCALITY_SUFFIXES = ("时分", "上", "里", "中", "内", "外", "边", "旁", "前", "后")
_JIEBA_TAG = {"subject": "n", "action": "v", "environment": "s", "style": "nz"}

_tokenizer: Any = None
_tokenizer_lock = threading.Lock()


def extract_tags(texts: Iterable[str]) -> dict[str, list[str]]:
    """Tags by category: each list sorted, without duplicates, at most 10 (the most frequent)."""
    found: dict[str, Counter[str]] = {category: Counter() for category in CATEGORIES}
    for text in texts:
        plain = normalise_text(_PLACEHOLDER.sub(" ", text or ""))
        if not plain:
            continue
        for category, tag in _english_tags(plain):
            found[category][tag] += 1
        if any(is_cjk(ch) for ch in plain):
            for category, tag in _chinese_tags(plain):
                found[category][tag] += 1
    # Counter.most_common keeps first-seen order among equal counts, so the cut is stable.
    return {
        category: sorted(tag for tag, _ in counts.most_common(MAX_TAGS_PER_CATEGORY))
        for category, counts in found.items()
    }


def _english_tags(text: str) -> Iterator[tuple[str, str]]:
    folded = "".join(
        ch for ch in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(ch)
    )
    words = [word.removesuffix("'s") for word in _ENGLISH_WORD.findall(folded)]
    i = 0
    while i < len(words):
        for size in range(min(_LONGEST_PHRASE, len(words) - i), 1, -1):
            phrase = lexicon.EN_BASE_FORMS.get(" ".join(words[i : i + size]))
            phrase = phrase or " ".join(words[i : i + size])
            if phrase in lexicon.EN_PHRASES:
                yield lexicon.EN_PHRASES[phrase], phrase
                i += size
                break
        else:
            for base in _base_forms(words[i]):
                if base in _ENGLISH_INDEX:
                    yield _ENGLISH_INDEX[base], base
                    break
            i += 1


def _base_forms(word: str) -> Iterator[str]:
    """The word, its listed base form, then guesses that undo -s, -es, -ies, -ing and -ed."""
    candidates = [word]
    if word.endswith("ies") and len(word) > 4:
        candidates.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        candidates.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        candidates.append(word[:-1])
    if word.endswith("ing") and len(word) > 5:
        candidates.extend(_stems(word[:-3]))
    if word.endswith("ied") and len(word) > 4:
        candidates.append(word[:-3] + "y")
    if word.endswith("ed") and len(word) > 4:
        candidates.extend(_stems(word[:-2]))
    for candidate in candidates:
        yield lexicon.EN_BASE_FORMS.get(candidate, candidate)


def _stems(stem: str) -> list[str]:
    """``walk`` for walk-ing, ``danc`` + e, ``run`` for runn-ing."""
    stems = [stem, stem + "e"]
    if len(stem) > 2 and stem[-1] == stem[-2]:
        stems.append(stem[:-1])
    return stems


def _chinese_tags(text: str) -> Iterator[tuple[str, str]]:
    for pair in _pos_tokenizer().cut(text):
        word, flag = pair.word, pair.flag
        if not any(is_cjk(ch) for ch in word) or word in lexicon.ZH_STOP:
            continue
        word = _without_locality(word)
        if word in _CHINESE_INDEX:
            yield _CHINESE_INDEX[word], word
        elif flag in _SUBJECT_FLAGS and len(word) > 1:
            yield "subject", word
        elif flag in _ACTION_FLAGS and len(word) > 1:
            yield "action", word
        elif flag in _ENVIRONMENT_FLAGS and len(word) > 1:
            yield "environment", word


def _without_locality(word: str) -> str:
    """``操场`` for ``操场上``, ``黄昏`` for ``黄昏时分``: jieba's HMM glues these onto new words."""
    for suffix in _LOCALITY_SUFFIXES:
        stem = word.removesuffix(suffix)
        if stem != word and stem in _CHINESE_INDEX:
            return stem
    return word


def _pos_tokenizer() -> Any:
    """jieba's POS tagger with our lexicon added; built once, the first time it is needed."""
    global _tokenizer
    if _tokenizer is not None:
        return _tokenizer
    with _tokenizer_lock:
        if _tokenizer is None:
            import jieba
            import jieba.posseg

            adopt_logger("jieba")  # jieba installs its own stderr handler on import
            tokenizer = jieba.posseg.POSTokenizer(jieba.Tokenizer())
            tokenizer.initialize()
            for word, category in _CHINESE_INDEX.items():
                if len(word) > 1:
                    tokenizer.add_word(word, tag=_JIEBA_TAG[category])
            # The first cut merges the added words' tags into the tagger; do it here, under the
            # lock, so later cuts only read.
            tokenizer.lcut("初始化")
            _tokenizer = tokenizer
    return _tokenizer
