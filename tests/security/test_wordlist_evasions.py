"""Word-list evasions (issue #15): what passed the strict school policy is caught now, and
ordinary school sentences still pass."""

from __future__ import annotations

import pytest

from moderation import text
from moderation.services import moderation_judge_text
from tests import factories
from tests.security.evasion_corpus import EVASIONS, ORDINARY


@pytest.mark.parametrize(("value", "category"), EVASIONS)
def test_the_evasion_is_found_in_its_category(value, category):
    assert category in {m.category for m in text.scan_text(value)}, value


@pytest.mark.django_db
def test_every_evasion_is_stopped_by_the_strict_school_policy():
    school = factories.make_tenant(kind="school")
    template = factories.make_template(school)
    passed = [
        value
        for value, _ in EVASIONS
        if moderation_judge_text(
            tenant=school, template=template, texts={"values.name": value}
        ).verdict
        == "pass"
    ]
    assert passed == []


@pytest.mark.parametrize("value", ORDINARY)
def test_an_ordinary_school_sentence_matches_nothing(value):
    assert text.scan_text(value) == []


def test_the_pinyin_lexicons_are_generated_from_the_chinese_ones():
    from moderation import lexicon_pinyin

    assert lexicon_pinyin.stale() == []


def test_masked_letters_need_real_letters_around_them():
    # Masks alone, or more masks than letters, are not a word: nothing is guessed.
    assert text.scan_text("**** ***") == []
    assert text.scan_text("f***") == []
    assert text.scan_text("5*3 = 15") == []
