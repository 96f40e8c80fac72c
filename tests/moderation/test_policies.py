"""Policies: presets by tenant kind, validated and audited overrides, the rules no policy relaxes,
and every decision stored with its reasons, scores and the policy it applied."""

from __future__ import annotations

import pytest
from rest_framework.exceptions import ValidationError

from generation.models import Template
from generation.services import JobRequest, job_create
from moderation.models import (
    STANDARD_RULES,
    STRICT_RULES,
    AuditEntry,
    CategoryRule,
    EffectivePolicy,
    ModerationDecision,
    ModerationPolicy,
    ReviewCase,
)
from moderation.selectors import is_minor_context, policy_for
from moderation.services import apply_policy, moderation_judge_text, policy_set
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("kind", "preset", "rules"),
    [("school", "strict", STRICT_RULES), ("shop", "standard", STANDARD_RULES)],
)
def test_a_tenant_without_a_policy_gets_the_preset_of_its_kind(kind, preset, rules):
    tenant = factories.make_tenant(kind=kind)
    policy = policy_for(tenant=tenant)
    assert (policy.name, policy.rules, policy.minor_context) == (preset, rules, False)
    assert ModerationPolicy.objects.count() == 0


def test_the_strict_preset_blocks_or_reviews_everything_it_flags():
    assert {rule.action for rule in STRICT_RULES.values()} == {"block", "review"}
    assert (
        set(STRICT_RULES)
        == set(STANDARD_RULES)
        == {
            "sexual",
            "minors",
            "violence_gore",
            "hate",
            "self_harm",
            "politically_sensitive",
            "personal_data",
        }
    )


def test_policy_set_stores_overrides_and_audits_the_change():
    shop = factories.make_tenant(kind="shop")
    operator = factories.make_user("op")
    policy_set(
        tenant=shop,
        preset="standard",
        overrides={"politically_sensitive": {"threshold": 0.9, "action": "pass"}},
        actor=operator,
    )
    effective = policy_for(tenant=shop)
    assert effective.name == "standard+overrides"
    assert effective.rules["politically_sensitive"] == CategoryRule(0.9, "pass")
    assert effective.rules["sexual"] == STANDARD_RULES["sexual"]
    [entry] = AuditEntry.objects.all()
    assert (entry.action, entry.actor_username, entry.tenant_id) == (
        "policy_changed",
        "op",
        shop.id,
    )
    assert entry.data["policy"]["rules"]["politically_sensitive"] == {
        "threshold": 0.9,
        "action": "pass",
    }
    verdict = moderation_judge_text(tenant=shop, texts={"shots.0.prompt": "拜登试穿大衣"})
    assert verdict.verdict == "pass"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"nudity": {"threshold": 0.5, "action": "block"}}, "nudity"),
        ({"sexual": {"threshold": 2, "action": "block"}}, "sexual"),
        ({"sexual": {"threshold": 0.5, "action": "delete"}}, "sexual"),
        ({"sexual": {"threshold": 0.5, "action": "block", "review_threshold": 0.7}}, "sexual"),
        ({"sexual": {"threshold": 0.5, "colour": "red"}}, "sexual"),
    ],
)
def test_an_invalid_policy_is_refused_and_nothing_is_stored(overrides, field):
    tenant = factories.make_tenant()
    with pytest.raises(ValidationError) as raised:
        policy_set(tenant=tenant, preset="strict", overrides=overrides)
    assert field in raised.value.detail
    assert ModerationPolicy.objects.count() == AuditEntry.objects.count() == 0


def test_a_review_band_below_a_block_threshold_asks_a_human():
    policy = EffectivePolicy(name="t", rules={"sexual": CategoryRule(0.8, "block", 0.5)})
    assert apply_policy(policy=policy, scores={"sexual": 0.49})[0] == "pass"
    assert apply_policy(policy=policy, scores={"sexual": 0.5})[0] == "review"
    verdict, [reason] = apply_policy(policy=policy, scores={"sexual": 0.8})
    assert verdict == "block"
    assert (reason["category"], reason["score"], reason["threshold"], reason["action"]) == (
        "sexual",
        0.8,
        0.8,
        "block",
    )


def test_no_policy_can_let_the_minors_category_pass():
    shop = factories.make_tenant(kind="shop")
    policy_set(
        tenant=shop,
        preset="standard",
        overrides={"minors": {"threshold": 1.0, "action": "pass"}},
    )
    verdict = moderation_judge_text(tenant=shop, texts={"values.note": "jailbait"})
    assert verdict.verdict == "block"
    assert [(r["category"], r["action"]) for r in verdict.reasons] == [("minors", "block")]


def test_minor_context_comes_from_a_school_character_template_or_the_policy_flag():
    school = factories.make_tenant(kind="school")
    shop = factories.make_tenant(kind="shop")
    character = factories.make_template(school)
    product = factories.make_template(school, kind=Template.Kind.PRODUCT)
    shop_template = factories.make_template(shop)
    assert is_minor_context(tenant=school, template=character) is True
    assert is_minor_context(tenant=school, template=product) is False
    assert is_minor_context(tenant=shop, template=shop_template) is False
    policy_set(tenant=shop, preset="standard", minor_context=True)  # a children's clothes shop
    assert is_minor_context(tenant=shop, template=shop_template) is True


def test_with_the_minor_flag_any_sexual_term_blocks_even_below_the_shops_threshold():
    shop = factories.make_tenant(kind="shop")
    texts = {"shots.0.prompt": "a sexy party outfit"}
    assert moderation_judge_text(tenant=shop, texts=texts).verdict == "pass"
    policy_set(tenant=shop, preset="standard", minor_context=True)
    verdict = moderation_judge_text(tenant=shop, texts=texts)
    assert verdict.verdict == "block"
    assert [r.get("rule") for r in verdict.reasons] == ["minor_context_nudity"]


def test_a_decision_stores_its_reasons_scores_findings_and_the_policy_applied():
    school = factories.make_tenant(kind="school")
    job = job_create(
        tenant=school,
        request=JobRequest(template=factories.make_template(school), values={"name": "Ada"}),
    ).job
    moderation_judge_text(
        tenant=school, job=job, texts={"values.name": "Ada 13812345678"}
    )  # personal data: review under strict
    at_creation, decision = ModerationDecision.objects.filter(job=job).order_by("id")
    assert (at_creation.stage, at_creation.verdict) == ("text", "pass")  # job_create's own check
    assert (decision.stage, decision.verdict, decision.checks) == (
        "text",
        "review",
        ["lexicon", "patterns"],
    )
    assert decision.scores == {"personal_data": 0.8}
    assert [(r["category"], r["score"], r["threshold"], r["action"]) for r in decision.reasons] == [
        ("personal_data", 0.8, 0.5, "review")
    ]
    assert [(f["field"], f["rule"], f["excerpt"]) for f in decision.findings] == [
        ("values.name", "pattern/personal_data: cn_mobile", "13812345678")
    ]
    assert decision.policy["name"] == "strict"
    assert decision.policy["rules"]["personal_data"] == {"threshold": 0.5, "action": "review"}
    [case] = ReviewCase.objects.filter(job=job)
    assert (case.stage, case.status, case.decision_id) == ("request", "open", decision.pk)
