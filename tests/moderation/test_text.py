"""Text checks: evasion is caught, ordinary prompts in both languages pass, matches explain."""

from __future__ import annotations

import pytest

from generation.compiler import compile_plan
from generation.registry import get_model
from moderation import text
from moderation.services import ContentBlocked, moderation_judge_text
from tests import factories


def _rules(value: str) -> list[tuple[str, str, str]]:
    return [(m.category, m.term, m.excerpt) for m in text.scan_text(value, field="f")]


# --- evasion ----------------------------------------------------------------------------------

EVASIONS = [
    # (text, category, lexicon term, the original span reported)
    ("a PoRn clip", "sexual", "porn", "PoRn"),  # mixed case
    ("ＰＯＲＮ", "sexual", "porn", "ＰＯＲＮ"),  # full-width
    ("ｐ０ｒｎ video", "sexual", "porn", "ｐ０ｒｎ"),  # full-width digits as letters
    ("p o r n", "sexual", "porn", "p o r n"),  # spaces between letters
    ("p.o.r.n", "sexual", "porn", "p.o.r.n"),  # symbols between letters
    ("p-o_r*n", "sexual", "porn", "p-o_r*n"),
    ("po\u200brn", "sexual", "porn", "po\u200brn"),  # zero-width space
    ("p\u200do\u2060rn", "sexual", "porn", "p\u200do\u2060rn"),  # joiner, word joiner
    ("р0rn", "sexual", "porn", "р0rn"),  # Cyrillic р plus a zero
    ("ρorn", "sexual", "porn", "ρorn"),  # Greek rho
    ("pórn", "sexual", "porn", "pórn"),  # accent
    ("s3x", "sexual", "sex", "s3x"),  # leet
    ("$ex", "sexual", "sex", "$ex"),
    ("ⓢⓔⓧ", "sexual", "sex", "ⓢⓔⓧ"),  # circled letters (NFKC)
    ("𝐧𝐮𝐝𝐞𝐬", "sexual", "nudes", "𝐧𝐮𝐝𝐞𝐬"),  # mathematical bold
    ("self-harm", "self_harm", "self harm", "self-harm"),
    ("KILL  YOURSELF", "self_harm", "kill yourself", "KILL  YOURSELF"),
    ("k1ll y0urself", "self_harm", "kill yourself", "k1ll y0urself"),  # 1 for l
    ("kiII yourself", "self_harm", "kill yourself", "kiII yourself"),  # capital I for l
    ("b e h e a d", "violence_gore", "behead", "b e h e a d"),
    ("pornographic", "sexual", "porn", "pornographic"),  # prefix term shows the whole word
    ("14/88", "hate", "1488", "14/88"),
    # Chinese
    ("色情", "sexual", "色情", "色情"),
    ("色 情", "sexual", "色情", "色 情"),  # space inserted
    ("色*情", "sexual", "色情", "色*情"),  # symbol inserted
    ("色\u200b情", "sexual", "色情", "色\u200b情"),  # zero-width
    ("色。情", "sexual", "色情", "色。情"),  # a sentence mark inside the word, nothing around it
    ("红色。情人节", None, None, None),  # a real sentence break between two other words
    ("做愛", "sexual", "做爱", "做愛"),  # traditional
    ("裸體照片", "sexual", "裸体", "裸體"),
    ("自殺", "self_harm", "自杀", "自殺"),
    ("習近平", "politically_sensitive", "习近平", "習近平"),
    ("斬首", "violence_gore", "斩首", "斬首"),
    ("⾃杀", "self_harm", "自杀", "⾃杀"),  # Kangxi radical look-alike (NFKC)
    ("看ＡＶ女優", "sexual", "av女优", "ＡＶ女優"),  # mixed script, full-width, traditional
]


@pytest.mark.parametrize(("value", "category", "term", "excerpt"), EVASIONS)
def test_evasion_variants_are_caught_with_the_original_span(value, category, term, excerpt):
    found = _rules(value)
    if category is None:
        assert found == []
    else:
        assert (category, term, excerpt) in found


def test_a_match_reports_field_rule_weight_and_span_of_the_original_text():
    value = "Ｌｉ Ｗｅｉ likes p.o.r.n"
    [match] = text.scan_text(value, field="values.name")
    assert match.field == "values.name"
    assert match.category == "sexual"
    assert match.rule == "en/sexual: porn*"
    assert match.weight == 1.0
    assert (match.start, match.end) == (13, 20)
    assert value[match.start : match.end] == match.excerpt == "p.o.r.n"


# --- false positives --------------------------------------------------------------------------

CLEAN_EN = [
    "Emma shows courage in the playground.",
    "Liam and his class of 2025 get ready for the school photo shoot.",
    "A shooting star crosses the night sky over the campus.",
    "Noah scores the winning shot at the basketball game.",
    "The class visits Scunthorpe, Essex and Sussex on a field trip.",
    "Our science club counts blue tits and great tits in the school garden.",
    "Ava graduates magna cum laude and thanks her teachers.",
    "The therapist visits the assembly to talk about stress before exams.",
    "Mia learns to assess her own work and passes the class with honours.",
    "The drama club rehearses Romeo and Juliet for the spring show.",
    "Sophie helps an old man cross the street, a lesson in kindness.",
    "Room 455, Building 3: the robotics team builds a 3D printer.",
    "Grandpa tells Oliver about the Battle of Hastings in 1066.",
    "A model wears nude lipstick and a red wool coat on a New York street.",
    "Try on our unisex hoodie in sizes S M L XL and XXL.",
    "Brass buttons on a navy blazer, styled with cumin-coloured trousers.",
    "The kids spot a killer whale during the boat trip.",
    "Sarah sees the comet with the naked eye from the hill.",
    "A cocktail dress in a nude shade with a satin belt, 30% off.",
    "Our classic trench coat is back: shop the autumn collection.",
    "Al Gore's documentary is discussed in geography class.",
    "Book the murder mystery dinner for the staff party.",
    "Call the front desk to book a fitting, open 9-5 Monday to Friday.",
    "Harry finds a chink in the armour of the rival chess team.",
]
CLEAN_ZH = [
    "小明在操场上表现出勇气，帮助摔倒的同学。",
    "同学们在教室里学习近平面几何。",
    "学会与异性交往的礼仪，是青春期的一课。",
    "舞台独白比赛在礼堂举行，小红获得第一名。",
    "香港独特的夜景和新疆独特的美食。",
    "收藏独有的邮票，是爷爷的爱好。",
    "海洋馆里的杀人鲸表演跳跃。",
    "打死也不放弃，是小刚的座右铭。",
    "印度支那半岛的历史课。",
    "毕业照拍摄：全班同学在校门口合影。",
    "足球比赛中，小李射门得分。",
    "试穿这件红色羊毛大衣，漫步在纽约街头。",
    "秋季新款风衣上市，限时八折。",
    "小明在操場上表現出勇氣。",  # traditional
    "老師帶領學生參觀博物館。",
]


@pytest.mark.parametrize("value", CLEAN_EN + CLEAN_ZH)
def test_ordinary_school_and_shop_prompts_match_nothing(value):
    assert text.scan_text(value) == []


def test_latin_terms_need_word_boundaries_but_prefix_terms_take_endings():
    assert _rules("Essex") == []  # "sex" inside a word
    assert _rules("Scunthorpe") == []  # "cunt" inside a word
    assert _rules("pedometer") == []  # listed as whole words, not pedo*
    assert ("sexual", "sex", "sex") in _rules("sex")
    assert ("sexual", "porn", "porno") in _rules("porno")


def test_an_allowed_phrase_only_covers_the_match_inside_it():
    assert _rules("nude lipstick") == []
    assert ("sexual", "nude", "nude") in _rules("a nude model")
    assert _rules("学习近平面几何") == []
    assert ("politically_sensitive", "习近平", "习近平") in _rules("习近平讲话")


def test_a_number_on_its_own_is_not_read_as_letters():
    # 455 would read "ass", 5318008 "boobies": digits fold only inside words with letters.
    assert _rules("Room 455 and 5318008") == []
    assert ("sexual", "boobs", "b00bs") in _rules("b00bs")


def test_single_letters_are_joined_only_in_runs_of_three_or_more():
    assert _rules("I am a fan") == []
    assert ("sexual", "sex", "s e x") in _rules("s e x")


def test_negative_prompts_are_not_checked_but_values_title_and_shots_are():
    spec = get_model("preview")
    plan = compile_plan(
        prompt="{name} walks to school.\n\n{name} waves goodbye.",
        negative_prompt="nudity, gore, blurry",
        title="{name}'s day",
        values={"name": "Ada"},
        spec=spec,
        fps=8,
        duration_s=2.0,
        seed=1,
    )
    texts = text.texts_for_job(
        values={"name": "Ada", "age": 9, "photo": {"image": "photo"}},
        shots=plan.shots,
        title=plan.title,
    )
    assert texts == {
        "values.name": "Ada",
        "title": "Ada's day",
        "shots.0.prompt": "Ada walks to school.",
        "shots.1.prompt": "Ada waves goodbye.",
    }


# --- personal data ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "term", "excerpt"),
    [
        ("电话 13812345678", "cn_mobile", "13812345678"),
        ("电话 １３８１２３４５６７８", "cn_mobile", "１３８１２３４５６７８"),  # full-width digits
        ("身份证 11010519491231002X", "cn_resident_id", "11010519491231002X"),
        ("card 4111 1111 1111 1111", "payment_card", "4111 1111 1111 1111"),
        ("write to li.wei@maple-school.cn", "email", "li.wei@maple-school.cn"),
        ("call (415) 555-0134", "phone", "(415) 555-0134"),
    ],
)
def test_personal_data_patterns_are_found(value, term, excerpt):
    assert ("personal_data", term, excerpt) in _rules(value)


def test_numbers_that_fail_their_checksums_are_not_personal_data():
    assert _rules("order 11010519491231002Y and 4111 1111 1111 1112") == []


def test_the_lexicon_covers_every_category_in_both_languages():
    from moderation.models import Category

    per_language = {
        language: {
            category
            for category in text.TEXT_CATEGORIES
            if (text.LEXICON_DIR / language / f"{category}.txt").exists()
        }
        for language in text.LANGUAGES
    }
    every = set(Category.values)
    assert per_language == {"en": every, "zh": every, "pinyin": every}


def test_matching_is_fast_enough_to_run_inline_on_every_request():
    import time

    prompt = " ".join(CLEAN_EN + CLEAN_ZH) * 4  # about 9,000 characters
    text.scan_text(prompt)
    started = time.perf_counter()
    text.scan_text(prompt)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, elapsed  # a generous bound; it takes ~20 ms here


# --- the verdict ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_school_prompt_with_a_sexual_term_is_blocked_and_explains_why():
    school = factories.make_tenant(kind="school")
    template = factories.make_template(school)
    verdict = moderation_judge_text(
        tenant=school,
        template=template,
        texts={"values.name": "Ada", "shots.0.prompt": "Ada in a s e x y outfit"},
    )
    assert verdict.verdict == "block"
    assert [(m.field, m.term, m.excerpt) for m in verdict.matches] == [
        ("shots.0.prompt", "sexy", "s e x y")
    ]
    assert {r["category"] for r in verdict.reasons} == {"sexual", "minors"}
    problem = ContentBlocked(verdict)
    assert (problem.status_code, problem.code) == (422, "content_blocked")
    assert problem.errors == [
        {
            "field": "shots.0.prompt",
            "message": "Matches the sexual rule 'en/sexual: sexy' at characters 9–16: 's e x y'.",
            "category": "sexual",
            "rule": "en/sexual: sexy",
            "span": [9, 16],
        }
    ]


@pytest.mark.django_db
def test_the_same_word_passes_a_shop_under_the_standard_preset():
    shop = factories.make_tenant(kind="shop")
    verdict = moderation_judge_text(
        tenant=shop, texts={"shots.0.prompt": "A sexy red dress on a New York street"}
    )
    assert verdict.verdict == "pass"
    assert [m.term for m in verdict.matches] == ["sexy"]  # recorded, below the threshold
    assert verdict.reasons == []


@pytest.mark.django_db
def test_politically_sensitive_text_goes_to_review_not_block():
    shop = factories.make_tenant(kind="shop")
    verdict = moderation_judge_text(tenant=shop, texts={"shots.0.prompt": "拜登在纽约街头试穿大衣"})
    assert verdict.verdict == "review"
    assert [(r["category"], r["action"]) for r in verdict.reasons] == [
        ("politically_sensitive", "review")
    ]


@pytest.mark.django_db
def test_clean_prompts_pass_for_a_school_in_both_languages():
    school = factories.make_tenant(kind="school")
    template = factories.make_template(school)
    texts = {f"shots.{i}.prompt": value for i, value in enumerate(CLEAN_EN + CLEAN_ZH)}
    verdict = moderation_judge_text(tenant=school, template=template, texts=texts)
    assert (verdict.verdict, verdict.matches) == ("pass", [])


def test_the_moderationcheck_command_explains_a_match():
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("moderationcheck", "a", "ｐ.ｏ.ｒ.ｎ", "clip", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "normalised: 'a porn ciip'"  # l and i are one letter to the matcher
    assert "en/sexual: porn*" in lines[-1] and "[2:9] 'ｐ.ｏ.ｒ.ｎ'" in lines[-1]
