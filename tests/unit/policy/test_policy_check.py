"""What a policy means is checked too: references, quorums, HDS facts, dead rules, totality and
constraints. Each problem is reported at the line that causes it, all of them at once."""

from __future__ import annotations

import pytest

from blindstore.errors import PolicyError
from blindstore.policy import parse
from tests.unit.policy.texts import document, line_of

CATCH_ALL = "  - name: all\n    targets: home\n"


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyError) as caught:
        parse(text, "p.yaml")
    return list(caught.value.problems)


def only_problem(text: str) -> tuple[int, str]:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------------------- references


def test_an_unknown_target_backend_is_refused() -> None:
    text = document("  - name: all\n    targets: [home, nowhere]\n")
    assert only_problem(text) == (
        line_of(text, "targets"),
        "rule 'all': unknown backend 'nowhere' (declared: cloud, home, onprem)",
    )


def test_a_target_listed_twice_is_refused() -> None:
    text = document("  - name: all\n    targets: [home, home]\n")
    line, reason = only_problem(text)
    assert line == line_of(text, "targets")
    assert reason.startswith("duplicate target in rule 'all': 'home'")


@pytest.mark.parametrize("quorum", [0, 3, -1])
def test_the_write_quorum_must_be_between_1_and_the_number_of_targets(quorum: int) -> None:
    text = document(f"  - name: all\n    targets: [home, onprem]\n    write_quorum: {quorum}\n")
    assert only_problem(text) == (
        line_of(text, "write_quorum"),
        f"rule 'all': write_quorum {quorum} must be between 1 and its 2 targets",
    )


def test_the_write_quorum_defaults_to_every_target() -> None:
    policy = parse(document("  - name: all\n    targets: [home, onprem]\n"))
    assert policy.rules[0].write_quorum == 2


def test_duplicate_rule_names_are_refused() -> None:
    text = document(
        "  - name: imaging\n    match: {bucket: a}\n    targets: home\n"
        "  - name: imaging\n    match: {bucket: b}\n    targets: home\n" + CATCH_ALL
    )
    assert only_problem(text) == (
        line_of(text, "name: imaging", occurrence=2),
        f"duplicate rule name 'imaging' (first at line {line_of(text, 'name: imaging')})",
    )


@pytest.mark.parametrize("name", ["has space", "-dash-first", "x" * 65])
def test_malformed_rule_names_are_refused(name: str) -> None:
    text = document(f"  - name: '{name}'\n    targets: home\n")
    line, reason = only_problem(text)
    assert line == line_of(text, "name: '")
    assert reason.startswith(f"rule name {name!r} must be")


def test_a_malformed_backend_name_is_refused() -> None:
    text = document(CATCH_ALL).replace("  cloud:", "  Cloud_1:")
    line, reason = only_problem(text)
    assert line == line_of(text, "Cloud_1")
    assert reason.startswith("backend name 'Cloud_1' must be 1 to 63 lower-case letters")


def test_an_unknown_backend_kind_is_refused() -> None:
    text = document(CATCH_ALL).replace(
        "    kind: s3\n    provider: Cloud", "    kind: s4\n    provider: Cloud"
    )
    assert only_problem(text) == (
        line_of(text, "kind: s4"),
        "backend 'cloud': unknown kind 's4' (one of 'azure', 'gcs', 'local', 'memory', 's3')",
    )


def test_an_hds_backend_must_say_who_carries_each_activity() -> None:
    text = (
        document(CATCH_ALL)
        .replace("      hardware: Op\n", "", 1)
        .replace("      backup: Op\n", "", 1)
    )
    line, reason = only_problem(text)
    assert line == line_of(text, "hds_activities")
    assert reason == (
        "backend 'home' is certified HDS but does not say who carries 'hardware', 'backup' "
        "(hds_activities)"
    )


def test_an_hds_backend_without_activities_is_reported_at_its_certifications() -> None:
    text = document(CATCH_ALL).replace(
        "    certifications: [ISO27001]\n", "    certifications: [ISO27001, HDS]\n"
    )
    line, reason = only_problem(text)
    assert line == line_of(text, "[ISO27001, HDS]")
    assert reason.startswith("backend 'cloud' is certified HDS but does not say who carries")


def test_a_backend_that_is_not_hds_may_leave_activities_undeclared() -> None:
    policy = parse(document(CATCH_ALL))
    assert dict(policy.backends["cloud"].hds_activities) == {}


# ---------------------------------------------------------------------------- classifications


def test_undeclared_classifications_are_refused_wherever_they_are_named() -> None:
    text = document(
        "  - name: secret\n    match: {classification: secret}\n    targets: home\n" + CATCH_ALL,
        head="buckets:\n  b:\n    classification: confidential\n",
        constraints="constraints:\n  - classification: [identifying, privileged]\n"
        "    require: {jurisdiction: EEA}\n",
    )
    declared = "(declared: 'anonymous', 'unclassified', 'pseudonymized', 'identifying')"
    assert problems(text) == [
        (
            line_of(text, "confidential"),
            f"bucket 'b': unknown classification 'confidential' {declared}",
        ),
        (
            line_of(text, "privileged"),
            f"the constraint on identifying or privileged: unknown classification 'privileged' "
            f"{declared}",
        ),
        (
            line_of(text, "classification: secret"),
            f"rule 'secret': unknown classification 'secret' {declared}",
        ),
    ]


def test_the_classification_list_is_the_policys_own() -> None:
    text = document(
        "  - name: red\n    match: {classification: red}\n    targets: home\n" + CATCH_ALL,
        head="classifications: [green, red]\ndefault_classification: green\n",
        constraints="",
    )
    policy = parse(text)
    assert policy.classifications == ("green", "red")
    assert policy.default_classification == "green"


def test_the_default_classification_must_be_declared() -> None:
    text = document(CATCH_ALL, head="classifications: [green, red]\n", constraints="")
    assert only_problem(text) == (
        line_of(text, "classifications:"),
        "default_classification 'unclassified' is not one of the classifications ('green', 'red')",
    )


def test_malformed_and_duplicate_classifications_are_refused() -> None:
    text = document(
        CATCH_ALL,
        head="classifications: [Red, green, green]\ndefault_classification: green\n",
        constraints="",
    )
    line = line_of(text, "classifications:")
    assert problems(text) == [
        (line, "classification 'Red' must be lower-case letters, digits, '-' or '_'"),
        (line, "duplicate classification 'green' (first at line 2)"),
    ]


# ---------------------------------------------------------------------------- conditions


def test_a_size_condition_needs_a_bound() -> None:
    text = document("  - name: any-size\n    match: {size: {}}\n    targets: home\n" + CATCH_ALL)
    assert (
        line_of(text, "size: {}"),
        "rule 'any-size': size needs at_least, below or both",
    ) in problems(text)


def test_a_size_condition_must_not_be_empty() -> None:
    text = document(
        "  - name: odd\n    match: {size: {at_least: 2 MiB, below: 1 MiB}}\n    targets: home\n"
        + CATCH_ALL
    )
    assert (
        line_of(text, "size"),
        "rule 'odd': size at_least (2097152) must be less than below (1048576)",
    ) in problems(text)


def test_a_malformed_content_type_is_refused() -> None:
    text = document(
        "  - name: img\n    match: {content_type: [image/png, png]}\n    targets: home\n"
        + CATCH_ALL
    )
    assert only_problem(text) == (
        line_of(text, "content_type"),
        "rule 'img': 'png' is not a media type (type/subtype, type/* or */*)",
    )


# ---------------------------------------------------------------------------- constraints


def test_a_constraint_must_require_something() -> None:
    text = document(
        CATCH_ALL,
        constraints=(
            "constraints:\n  - name: empty\n    classification: identifying\n    require: {}\n"
        ),
    )
    assert only_problem(text) == (
        line_of(text, "require"),
        "constraint 'empty' requires nothing: give require.jurisdiction or require.certifications",
    )


def test_duplicate_constraint_names_are_refused() -> None:
    constraint = "  - name: c\n    classification: identifying\n    require: {jurisdiction: EEA}\n"
    text = document(CATCH_ALL, constraints=f"constraints:\n{constraint}{constraint}")
    assert only_problem(text) == (
        line_of(text, "name: c", occurrence=2),
        f"duplicate constraint name 'c' (first at line {line_of(text, 'name: c')})",
    )


def test_a_rule_sending_constrained_data_to_a_forbidden_backend_is_refused() -> None:
    text = document(
        "  - name: id\n    match: {classification: identifying}\n    targets: [home, cloud]\n"
        "    write_quorum: 1\n" + CATCH_ALL
    )
    assert only_problem(text) == (
        line_of(text, "targets: [home, cloud]"),
        "rule 'id' can place identifying data on backend 'cloud', which breaks constraint "
        f"'identifying-on-hds' (line {line_of(text, '- name: identifying-on-hds')}): it requires "
        "jurisdiction EEA (it is US) and certification HDS (it holds: ISO27001)",
    )


def test_a_catch_all_that_identifying_data_can_reach_is_refused() -> None:
    """The rule has no classification condition: identifying data not placed earlier lands
    there, so the constraint applies to it."""
    text = document("  - name: everything\n    targets: cloud\n")
    line, reason = only_problem(text)
    assert line == line_of(text, "targets: cloud")
    assert reason.startswith("rule 'everything' can place identifying data on backend 'cloud'")
    assert reason.endswith(
        "the rule has no classification condition, so identifying objects that no earlier rule "
        "places reach it"
    )


def test_a_rule_conditioned_on_more_than_classification_does_not_take_it_whole() -> None:
    """Identifying data outside bucket `records` still reaches the catch-all."""
    text = document(
        "  - name: records\n    match: {classification: identifying, bucket: records}\n"
        "    targets: home\n  - name: rest\n    targets: cloud\n"
    )
    line, reason = only_problem(text)
    assert line == line_of(text, "targets: cloud")
    assert reason.startswith("rule 'rest' can place identifying data on backend 'cloud'")


def test_a_catch_all_after_identifying_data_is_placed_may_use_any_backend() -> None:
    text = document(
        "  - name: id\n    match: {classification: identifying}\n    targets: [home, onprem]\n"
        "  - name: rest\n    targets: cloud\n"
    )
    assert [r.name for r in parse(text).rules] == ["id", "rest"]


def test_every_replica_must_meet_the_constraint() -> None:
    text = document(
        "  - name: all\n    targets: [home, cloud, onprem]\n    write_quorum: 2\n",
    )
    line, reason = only_problem(text)
    assert "backend 'cloud'" in reason
    assert line == line_of(text, "targets: [home, cloud, onprem]")


def test_a_constraint_accepts_any_of_several_jurisdictions() -> None:
    constraints = (
        "constraints:\n  - classification: [pseudonymized, identifying]\n"
        "    require: {jurisdiction: [EEA, US]}\n"
    )
    assert parse(document("  - name: all\n    targets: cloud\n", constraints=constraints))


# ---------------------------------------------------------------------------- dead rules, totality


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("{bucket: [a, b]}", "{bucket: a, key_prefix: x/}"),
        ("{tenant: t}", "{tenant: t, classification: identifying}"),
        ("{key_prefix: scans/}", "{key_prefix: scans/ct/}"),
        ("{key_prefix: scans/}", "{key_glob: 'scans/*.dcm'}"),
        ("{key_glob: 'scans/*'}", "{key_prefix: scans/2024/}"),
        ("{key_glob: '*.dcm'}", "{key_glob: '*.dcm', bucket: b}"),
        ("{key_glob: '*', bucket: b}", "{bucket: b, tenant: t}"),
        ("{tags: {project: [a, b]}}", "{tags: {project: a, site: x}}"),
        ("{size: {at_least: 1 MiB}}", "{size: {at_least: 2 MiB, below: 3 MiB}}"),
        ("{size: {below: 1 GiB}}", "{size: {below: 1 MiB}}"),
        ("{content_type: 'image/*'}", "{content_type: [image/png, image/jpeg]}"),
        ("{content_type: '*/*'}", "{content_type: 'application/*'}"),
        (
            "{classification: [identifying, pseudonymized]}",
            "{classification: identifying, bucket: b}",
        ),
    ],
)
def test_a_rule_shadowed_by_an_earlier_one_is_refused(earlier: str, later: str) -> None:
    text = document(
        f"  - name: first\n    match: {earlier}\n    targets: home\n"
        f"  - name: second\n    match: {later}\n    targets: home\n" + CATCH_ALL
    )
    line, reason = only_problem(text)
    assert line == line_of(text, "name: second")
    assert reason.startswith("rule 'second' can never match: ")


def test_a_shadowed_rule_names_the_rule_that_shadows_it() -> None:
    text = document(
        "  - name: first\n    match: {bucket: [a, b]}\n    targets: home\n"
        "  - name: second\n    match: {bucket: a, key_prefix: x/}\n    targets: home\n" + CATCH_ALL
    )
    assert only_problem(text) == (
        line_of(text, "name: second"),
        f"rule 'second' can never match: earlier rule 'first' "
        f"(line {line_of(text, 'name: first')}) matches every object it matches",
    )


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("{bucket: a}", "{bucket: [a, b]}"),
        ("{key_prefix: scans/ct/}", "{key_prefix: scans/}"),
        ("{key_glob: '*.dcm'}", "{key_prefix: scans/}"),
        ("{tags: {project: a}}", "{tags: {project: [a, b]}}"),
        ("{size: {at_least: 1 MiB}}", "{size: {below: 3 MiB}}"),
        ("{content_type: image/png}", "{content_type: 'image/*'}"),
        ("{classification: identifying, bucket: b}", "{classification: identifying}"),
    ],
)
def test_a_broader_later_rule_is_not_dead(earlier: str, later: str) -> None:
    text = document(
        f"  - name: first\n    match: {earlier}\n    targets: home\n"
        f"  - name: second\n    match: {later}\n    targets: home\n" + CATCH_ALL
    )
    assert [r.name for r in parse(text).rules] == ["first", "second", "all"]


def test_a_rule_after_a_catch_all_is_dead() -> None:
    text = document(CATCH_ALL + "  - name: late\n    match: {bucket: b}\n    targets: home\n")
    assert only_problem(text) == (
        line_of(text, "name: late"),
        f"rule 'late' can never match: every object it could match is already placed by rule "
        f"'all' (line {line_of(text, 'name: all')})",
    )


def test_a_rule_whose_classifications_earlier_rules_took_is_dead() -> None:
    text = document(
        "  - name: taken-id\n    match: {classification: identifying}\n    targets: home\n"
        "  - name: ps\n    match: {classification: pseudonymized}\n    targets: home\n"
        "  - name: dead\n    match: {classification: [identifying, pseudonymized], tenant: t}\n"
        "    targets: home\n" + CATCH_ALL
    )
    assert only_problem(text) == (
        line_of(text, "name: dead"),
        f"rule 'dead' can never match: every object it could match is already placed by rule "
        f"'taken-id' (line {line_of(text, 'name: taken-id')}), "
        f"rule 'ps' (line {line_of(text, 'name: ps')})",
    )


def test_rules_that_leave_objects_unplaced_are_refused() -> None:
    text = document(
        "  - name: id\n    match: {classification: identifying}\n    targets: home\n"
        "  - name: records\n    match: {bucket: records}\n    targets: home\n"
    )
    assert only_problem(text) == (
        line_of(text, "rules:"),
        "some objects match no rule (classified anonymous, unclassified, pseudonymized): end the "
        "rules with a catch-all rule, one without `match`",
    )


def test_rules_on_classification_alone_can_cover_every_object() -> None:
    rules = "".join(
        f"  - name: {c}\n    match: {{classification: {c}}}\n    targets: home\n"
        for c in ("anonymous", "unclassified", "pseudonymized", "identifying")
    )
    assert len(parse(document(rules)).rules) == 4


def test_an_empty_rule_list_is_refused() -> None:
    text = document("").replace("rules:\n", "rules: []\n")
    assert only_problem(text) == (line_of(text, "rules:"), "the policy has no rules")


def test_an_empty_match_is_a_catch_all() -> None:
    text = document(
        "  - name: all\n    match:\n    targets: home\n"
        "  - name: also\n    match: {}\n    targets: home\n"
    )
    _, reason = only_problem(text)
    assert reason.startswith("rule 'also' can never match")


# ---------------------------------------------------------------------------- all at once


def test_every_problem_is_reported_at_once_in_line_order() -> None:
    text = document(
        "  - name: a\n    match: {bucket: x}\n    targets: [cloud, nowhere]\n    write_quorum: 3\n"
        "  - name: a\n    match: {bucket: x, key_prefix: y/}\n    targets: home\n"
        "  - name: everything\n    targets: cloud\n"
        "  - name: late\n    targets: home\n"
    ).replace("    kind: s3\n    provider: Cloud", "    kind: s4\n    provider: Cloud")
    found = problems(text)
    lines = [line for line, _ in found]
    assert lines == sorted(lines)
    reasons = "\n".join(reason for _, reason in found)
    for expected in (
        "unknown kind 's4'",
        "rule 'a': unknown backend 'nowhere'",
        "rule 'a' can place identifying data on backend 'cloud'",
        "rule 'a': write_quorum 3 must be between 1 and its 2 targets",
        "duplicate rule name 'a'",
        "rule 'a' can never match: earlier rule 'a'",
        "rule 'everything' can place identifying data on backend 'cloud'",
        "rule 'late' can never match",
    ):
        assert expected in reasons
    assert len(found) == 8


def test_a_backend_that_could_not_be_read_is_not_also_unknown() -> None:
    text = document(CATCH_ALL.replace("home", "cloud")).replace(
        "    region: us-east-1\n", "    regoin: x\n"
    )
    found = problems(text)
    assert len(found) == 1, found
    assert "unknown field 'regoin'" in found[0][1]


def test_an_unreadable_rule_does_not_cause_false_totality_or_dead_rule_reports() -> None:
    """The unreadable rule may have been the catch-all: the flow checks wait for it."""
    text = document(
        "  - name: id\n    match: {classification: identifying}\n    targets: home\n"
        "  - name: all\n    targets: cloud\n    quorum: 1\n"
    )
    assert only_problem(text)[1].startswith("rule 'all': unknown field 'quorum'")
