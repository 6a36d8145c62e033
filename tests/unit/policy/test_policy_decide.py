"""decide: the first matching rule places the object; classification comes from the header, the
tag, the bucket or the default; the result is total and deterministic for any object."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blindstore.errors import PolicyError
from blindstore.policy import (
    Match,
    ObjectFacts,
    Policy,
    Rule,
    decide,
    explain,
    load_file,
    parse,
    resolve_classification,
)
from blindstore.policy.engine import evaluate
from tests.unit.policy.texts import DEMO, docs_example, document

RULES = """\
  - name: id
    match: {classification: identifying}
    targets: [home, onprem]
  - name: tenant-a-dicom
    match: {tenant: [A], content_type: application/dicom}
    targets: onprem
  - name: big-imaging
    match: {bucket: imaging, size: {at_least: 100 MiB}}
    targets: onprem
  - name: tagged
    match: {tags: {project: [x, y]}}
    targets: [home, onprem]
    write_quorum: 1
  - name: scans-glob
    match: {key_glob: 'scans/*.dcm'}
    targets: cloud
  - name: small-exports
    match: {key_prefix: [exports/, public/], size: {below: 1 MiB}}
    targets: cloud
  - name: images
    match: {content_type: 'image/*'}
    targets: cloud
  - name: rest
    targets: cloud
"""
HEAD = "buckets:\n  records: {classification: identifying}\n"
POLICY = parse(document(RULES, head=HEAD), "decide.yaml")
MiB = 1024 * 1024


def facts(
    *,
    tenant: str = "T",
    bucket: str = "b",
    key: str = "k",
    tags: dict[str, str] | None = None,
    classification: str | None = None,
    size: int | None = None,
    content_type: str | None = None,
) -> ObjectFacts:
    return ObjectFacts(tenant, bucket, key, tags or {}, classification, size, content_type)


@pytest.mark.parametrize(
    ("object_facts", "rule", "why"),
    [
        (facts(classification="identifying"), "id", "classification is 'identifying'"),
        (facts(bucket="records", tenant="A"), "id", "classification is 'identifying'"),
        (
            facts(tenant="A", content_type="application/DICOM; charset=binary"),
            "tenant-a-dicom",
            "content type 'application/dicom' matches 'application/dicom'",
        ),
        (
            facts(tenant="B", content_type="application/dicom"),
            "rest",
            "the rule matches every object",
        ),
        (
            facts(bucket="imaging", size=100 * MiB),
            "big-imaging",
            "size 100 MiB is at least 100 MiB",
        ),
        (facts(bucket="imaging", size=100 * MiB - 1), "rest", "the rule matches every object"),
        (facts(bucket="imaging"), "rest", "the rule matches every object"),
        (facts(tags={"project": "y"}), "tagged", "tag project='y'"),
        (facts(tags={"project": "z"}), "rest", "the rule matches every object"),
        (
            facts(key="scans/2024/ct.dcm"),
            "scans-glob",
            "key 'scans/2024/ct.dcm' matches 'scans/*.dcm'",
        ),
        (facts(key="Scans/ct.dcm"), "rest", "the rule matches every object"),
        (
            facts(key="public/a.csv", size=10),
            "small-exports",
            "key 'public/a.csv' starts with 'public/'",
        ),
        (facts(key="public/a.csv", size=MiB), "rest", "the rule matches every object"),
        (facts(key="public/a.csv"), "rest", "the rule matches every object"),
        (facts(content_type="image/png"), "images", "content type 'image/png' matches 'image/*'"),
        (facts(content_type="imagery/png"), "rest", "the rule matches every object"),
        (facts(), "rest", "the rule matches every object"),
    ],
)
def test_the_first_matching_rule_places_the_object(
    object_facts: ObjectFacts, rule: str, why: str
) -> None:
    placement = decide(POLICY, object_facts)
    assert placement.rule == rule
    assert why in placement.reasons
    chosen = next(r for r in POLICY.rules if r.name == rule)
    assert (placement.targets, placement.quorum) == (chosen.targets, chosen.write_quorum)


def test_an_earlier_matching_rule_wins_over_a_later_one() -> None:
    """Both `tagged` and `images` match; `tagged` comes first."""
    placement = decide(POLICY, facts(tags={"project": "x"}, content_type="image/png"))
    assert placement.rule == "tagged"
    assert (placement.targets, placement.quorum) == (("home", "onprem"), 1)


@pytest.mark.parametrize(
    ("object_facts", "value", "source"),
    [
        (
            facts(
                classification="pseudonymized",
                tags={"classification": "anonymous"},
                bucket="records",
            ),
            "pseudonymized",
            "header",
        ),
        (facts(tags={"classification": "anonymous"}, bucket="records"), "anonymous", "tag"),
        (facts(classification="  ", tags={"classification": "anonymous"}), "anonymous", "tag"),
        (facts(bucket="records"), "identifying", "bucket"),
        (facts(tags={"classification": ""}, bucket="records"), "identifying", "bucket"),
        (facts(), "unclassified", "default"),
        (facts(classification=" Pseudonymized "), "pseudonymized", "header"),
    ],
)
def test_classification_comes_from_header_then_tag_then_bucket_then_default(
    object_facts: ObjectFacts, value: str, source: str
) -> None:
    classified = resolve_classification(POLICY, object_facts)
    assert (classified.value, classified.source, classified.unknown) == (value, source, None)


@pytest.mark.parametrize(
    "object_facts",
    [facts(classification="secret"), facts(tags={"classification": "Anonymised"})],
)
def test_an_undeclared_classification_is_treated_as_the_most_sensitive(
    object_facts: ObjectFacts,
) -> None:
    """A typo must never send data somewhere laxer."""
    classified = resolve_classification(POLICY, object_facts)
    assert classified.value == "identifying"
    assert classified.unknown in ("secret", "Anonymised")
    placement = decide(POLICY, object_facts)
    assert placement.rule == "id"
    assert "which the policy does not declare" in placement.reasons[0]


def test_the_first_reason_says_where_the_classification_came_from() -> None:
    placement = decide(POLICY, facts(bucket="records"))
    assert placement.reasons[0] == (
        "classification 'identifying' comes from the bucket's default in the policy"
    )
    assert placement.classification == "identifying"


def test_a_policy_assembled_without_a_catch_all_fails_loudly() -> None:
    """Only a hand-made Policy can lack a rule for an object; parse refuses such a policy."""
    policy = Policy(
        backends=POLICY.backends,
        rules=(Rule("only-b", Match(buckets=("b",)), ("home",), 1),),
    )
    with pytest.raises(PolicyError, match="no rule matches this object"):
        decide(policy, facts(bucket="c"))


def test_explain_agrees_with_decide() -> None:
    object_facts = facts(bucket="imaging", size=200 * MiB)
    explanation = explain(POLICY, object_facts)
    assert explanation.placement == decide(POLICY, object_facts)
    assert [v.rule.name for v in explanation.skipped] == ["id", "tenant-a-dicom"]
    assert explanation.skipped[1].reasons == ("tenant 'T' is not 'A'",)
    assert [b.name for b in explanation.targets] == ["onprem"]


# ---------------------------------------------------------------------------- properties

POLICIES = {
    "decide": POLICY,
    "demo": load_file(DEMO),
    "docs": parse(docs_example(), "docs/policy.md"),
}

texts = st.text(max_size=12)
object_facts = st.builds(
    ObjectFacts,
    tenant=st.sampled_from(["A", "CHU Recherche", "Hôpital Nord"]) | texts,
    bucket=st.sampled_from(["imaging", "records", "patient-records", "cohort-imaging"]) | texts,
    key=st.sampled_from(["scans/a.dcm", "exports/public/x.json", "open-data/y"]) | texts,
    tags=st.dictionaries(
        st.sampled_from(["classification", "project", "site"]) | texts,
        st.sampled_from(["identifying", "anonymous", "x", "oncology-2025"]) | texts,
        max_size=3,
    ),
    classification=st.none()
    | st.sampled_from(["identifying", "pseudonymized", "anonymous", "unclassified"])
    | texts,
    size=st.none() | st.integers(min_value=0, max_value=2**50),
    content_type=st.none()
    | st.sampled_from(["application/dicom", "image/png", "text/csv; charset=utf-8"])
    | texts,
)


@settings(max_examples=300)
@given(name=st.sampled_from(sorted(POLICIES)), subject=object_facts)
def test_decide_is_total_and_deterministic(name: str, subject: ObjectFacts) -> None:
    policy = POLICIES[name]
    placement = decide(policy, subject)
    assert placement == decide(policy, subject)
    assert placement.classification in policy.classifications
    rule = next(r for r in policy.rules if r.name == placement.rule)
    assert placement.targets == rule.targets
    assert 1 <= placement.quorum <= len(placement.targets)
    # It is the first rule that matches.
    classified = resolve_classification(policy, subject)
    first = next(r for r in policy.rules if evaluate(r, subject, classified).matched)
    assert first is rule


@settings(max_examples=300)
@given(name=st.sampled_from(sorted(POLICIES)), subject=object_facts)
def test_every_placement_meets_the_constraints(name: str, subject: ObjectFacts) -> None:
    """What the loader proves statically holds for each decision."""
    policy = POLICIES[name]
    placement = decide(policy, subject)
    for constraint in policy.constraints:
        if placement.classification in constraint.classifications:
            for target in placement.targets:
                assert constraint.require.failures(policy.backends[target]) == ()
