"""Loading a policy: shape and types are checked node by node, every problem with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from blindstore.errors import ConfigError, PolicyError
from blindstore.policy import HdsActivity, parse
from blindstore.policy.load import load_file
from tests.unit.policy.texts import BACKENDS, document, line_of

CATCH_ALL = "  - name: all\n    targets: home\n"


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyError) as caught:
        parse(text, "p.yaml")
    return list(caught.value.problems)


def only_problem(text: str) -> tuple[int, str]:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def test_a_minimal_policy_loads() -> None:
    policy = parse(document(CATCH_ALL), "p.yaml")
    assert [r.name for r in policy.rules] == ["all"]
    assert policy.rules[0].targets == ("home",)
    assert policy.rules[0].write_quorum == 1
    assert policy.backends["home"].hds_activities[HdsActivity.BACKUP] == "Op"
    assert policy.source == "p.yaml"


def test_the_error_names_the_file_and_each_line() -> None:
    text = document("  - name: all\n    targets: [nowhere]\n    write_quorum: 2\n")
    with pytest.raises(PolicyError) as caught:
        parse(text, "site/policy.yaml")
    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.source == "site/policy.yaml"
    assert len(error.problems) == 2
    assert f"site/policy.yaml:{line_of(text, 'nowhere')}: rule 'all': unknown backend" in str(error)
    assert "2 problems" in error.message


def test_yaml_syntax_errors_are_reported_with_their_line() -> None:
    text = "version: 1\nbackends:\n  home: [unclosed\nrules: []\n"
    line, reason = only_problem(text)
    assert reason.startswith("not valid YAML")
    assert line in (3, 4)


def test_several_documents_in_one_file_are_refused() -> None:
    line, reason = only_problem(document(CATCH_ALL) + "---\nversion: 1\n")
    assert "single document" in reason
    assert line > 1


def test_an_empty_file_is_refused() -> None:
    assert only_problem("") == (1, "the policy is empty")


def test_the_top_level_must_be_a_mapping() -> None:
    line, reason = only_problem("- version: 1\n")
    assert (line, reason) == (1, "the policy must be a mapping, not a list")


def test_missing_top_level_fields_are_each_reported() -> None:
    found = problems("classifications: [a]\n")
    reasons = [reason for _, reason in found]
    assert "the policy: missing 'version'" in reasons
    assert "the policy: missing 'backends'" in reasons
    assert "the policy: missing 'rules'" in reasons


def test_only_version_1_is_read() -> None:
    text = document(CATCH_ALL).replace("version: 1", "version: 2")
    assert only_problem(text) == (1, "version must be 1, not 2")


@pytest.mark.parametrize(
    ("text", "needle", "expected"),
    [
        (document(CATCH_ALL) + "colour: blue\n", "colour", "the policy: unknown field 'colour'"),
        (
            document(CATCH_ALL).replace("    region: us-east-1\n", "    regoin: us-east-1\n"),
            "regoin",
            "backend 'cloud': unknown field 'regoin'",
        ),
        (
            document("  - name: all\n    targets: home\n    quorum: 1\n"),
            "quorum",
            "rule 'all': unknown field 'quorum'",
        ),
        (
            document("  - name: all\n    match: {bukcet: x}\n    targets: home\n"),
            "bukcet",
            "rule 'all': match: unknown field 'bukcet'",
        ),
        (
            document(
                CATCH_ALL,
                constraints="constraints:\n  - classification: identifying\n"
                "    require: {jurisdiction: EEA, certified: [HDS]}\n",
            ),
            "certified",
            "constraint #1: require: unknown field 'certified'",
        ),
        (
            document(CATCH_ALL, head="buckets:\n  b:\n    classification: anonymous\n    x: 1\n"),
            "    x: 1",
            "bucket 'b': unknown field 'x'",
        ),
    ],
)
def test_unknown_fields_are_refused_at_their_line(text: str, needle: str, expected: str) -> None:
    line, reason = only_problem(text)
    assert line == line_of(text, needle)
    assert reason.startswith(expected)
    assert "(allowed: " in reason


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    text = document(CATCH_ALL).replace(
        "    region: us-east-1\n", "    region: us-east-1\n    region: eu-west-3\n"
    )
    line, reason = only_problem(text)
    assert line == line_of(text, "eu-west-3")
    assert reason == (
        f"backend 'cloud': duplicate key 'region' (first at line {line_of(text, 'us-east-1')})"
    )


def test_a_duplicate_backend_is_refused() -> None:
    text = document(CATCH_ALL).replace(
        "  cloud:\n", "  home:\n    kind: local\n    provider: X\n    jurisdiction: EEA\n  cloud:\n"
    )
    line, reason = only_problem(text)
    assert line == line_of(text, "  home:", occurrence=2)
    assert reason.startswith("backends: duplicate key 'home'")


def test_merge_keys_are_refused() -> None:
    text = document(
        "  - name: all\n    match: &m {bucket: a}\n    targets: home\n"
        "  - name: other\n    match:\n      <<: *m\n    targets: home\n"
    )
    found = problems(text)
    assert (line_of(text, "<<"), "rule 'other': match: merge keys (<<) are not supported") in found


@pytest.mark.parametrize(
    ("rules", "needle", "expected"),
    [
        (
            "  - name: all\n    targets: home\n    write_quorum: two\n",
            "write_quorum",
            "rule 'all': write_quorum must be a whole number, not 'two'",
        ),
        (
            "  - name: all\n    targets: home\n    write_quorum: true\n",
            "write_quorum",
            "rule 'all': write_quorum must be a whole number, not 'true'",
        ),
        (
            "  - name: all\n    targets: {home: 1}\n",
            "targets",
            "rule 'all': targets must be text, not a mapping",
        ),
        (
            "  - name: all\n    targets: []\n",
            "targets",
            "rule 'all': targets must not be an empty list",
        ),
        ("  - name: all\n    targets: ''\n", "targets", "rule 'all': targets must not be empty"),
        (
            "  - name: all\n    targets:\n",
            "targets",
            "rule 'all': targets must be text, not nothing",
        ),
        (
            "  - name: all\n    match: [bucket]\n    targets: home\n",
            "match",
            "rule 'all': match must be a mapping, not a list",
        ),
        (
            "  - name: all\n    match: {tags: {project: {a: b}}}\n    targets: home\n",
            "tags",
            "rule 'all': tags.project must be text, not a mapping",
        ),
        (
            "  - name: all\n    match: {size: {at_least: huge}}\n    targets: home\n",
            "size",
            "rule 'all': size.at_least: 'huge' is not a size",
        ),
        (
            "  - name: all\n    match: {size: 5}\n    targets: home\n",
            "size",
            "rule 'all': size must be a mapping, not '5'",
        ),
        ("  - home\n", "- home", "rule #1 must be a mapping, not 'home'"),
        ("  - targets: home\n", "targets", "rule #1: missing 'name'"),
        ("  - name: all\n", "name: all", "rule 'all': missing 'targets'"),
    ],
)
def test_wrong_types_are_refused_at_their_line(rules: str, needle: str, expected: str) -> None:
    text = document(rules)
    line, reason = only_problem(text)
    assert line == line_of(text, needle)
    assert reason.startswith(expected)


def test_rules_must_be_a_list() -> None:
    text = document("  all: home\n")
    assert only_problem(text) == (line_of(text, "all: home"), "rules must be a list, not a mapping")


def test_a_backend_needs_kind_provider_and_jurisdiction() -> None:
    text = document(CATCH_ALL).replace(
        "  cloud:\n    kind: s3\n    provider: Cloud Inc\n", "  cloud:\n"
    )
    found = problems(text)
    line = line_of(text, "region: us-east-1")
    assert (line, "backend 'cloud': missing 'kind'") in found
    assert (line, "backend 'cloud': missing 'provider'") in found
    assert len(found) == 2


def test_text_fields_keep_what_was_written() -> None:
    """YAML 1.1 reads `NO` as false; a country code must stay the text NO."""
    text = document(CATCH_ALL).replace(
        "    region: us-east-1\n", "    country: NO\n    region: 1.10\n"
    )
    cloud = parse(text).backends["cloud"]
    assert cloud.country == "NO"
    assert cloud.region == "1.10"


def test_anchors_and_aliases_may_repeat_values() -> None:
    text = f"""\
version: 1
backends:
  home:
    kind: local
    provider: Op
    jurisdiction: EEA
    certifications: [HDS]
    hds_activities: &op
      physical_sites: Op
      hardware: Op
      virtual_infrastructure: Op
      application_platform: Op
      administration_operation: Op
      backup: Op
  onprem:
    kind: s3
    provider: Op
    jurisdiction: EEA
    certifications: [HDS]
    hds_activities: *op
rules:
{CATCH_ALL}"""
    policy = parse(text)
    assert policy.backends["onprem"].hds_activities == policy.backends["home"].hds_activities


def test_settings_are_opaque_and_stay_out_of_repr() -> None:
    text = BACKENDS.replace(
        "    region: us-east-1\n",
        "    settings:\n      endpoint_url: http://127.0.0.1:9000\n      secret_key: s3cr3t\n"
        "      part_size: 8388608\n      nested: {list: [1, two], flag: true}\n",
    )
    policy = parse(f"version: 1\n{text}rules:\n{CATCH_ALL}")
    cloud = policy.backends["cloud"]
    assert dict(cloud.settings) == {
        "endpoint_url": "http://127.0.0.1:9000",
        "secret_key": "s3cr3t",
        "part_size": 8388608,
        "nested": {"list": [1, "two"], "flag": True},
    }
    assert "s3cr3t" not in repr(cloud)
    assert "s3cr3t" not in repr(policy)


def test_settings_must_be_a_mapping() -> None:
    text = document(CATCH_ALL).replace("    region: us-east-1\n", "    settings: [a]\n")
    assert only_problem(text) == (
        line_of(text, "settings"),
        "backend 'cloud': settings must be a mapping",
    )


def test_settings_that_expand_without_bound_are_refused() -> None:
    """Aliases of aliases would copy exponentially many nodes."""
    bomb = ["    settings:", "      a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"      a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    text = document(CATCH_ALL).replace("    region: us-east-1\n", "\n".join(bomb) + "\n")
    line, reason = only_problem(text)
    assert line == line_of(text, "a0: &a0")
    assert reason == "backend 'cloud': settings is too large or too deeply nested"


def test_settings_keys_must_be_unique() -> None:
    text = document(CATCH_ALL).replace(
        "    region: us-east-1\n", "    settings:\n      region: a\n      region: b\n"
    )
    line, reason = only_problem(text)
    assert line == line_of(text, "region: b")
    assert reason.startswith("backend 'cloud': settings: duplicate key 'region'")


def test_an_unknown_hds_activity_is_refused() -> None:
    text = document(CATCH_ALL).replace("      backup: Op\n", "      backups: Op\n", 1)
    found = problems(text)
    assert (
        line_of(text, "backups"),
        "backend 'home': unknown HDS activity 'backups' (one of physical_sites, hardware, "
        "virtual_infrastructure, application_platform, administration_operation, backup)",
    ) in found


def test_sizes_take_units() -> None:
    text = document(
        "  - name: mid\n    match: {size: {at_least: 1 MiB, below: '1.5 GB'}}\n    targets: home\n"
        + CATCH_ALL
    )
    size = parse(text).rules[0].match.size
    assert size is not None
    assert (size.at_least, size.below) == (1024 * 1024, 1_500_000_000)


def test_content_types_are_lower_cased() -> None:
    text = document(
        "  - name: img\n    match: {content_type: Image/PNG}\n    targets: home\n" + CATCH_ALL
    )
    assert parse(text).rules[0].match.content_types == ("image/png",)


def test_a_missing_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot read placement policy") as caught:
        load_file(Path("/nonexistent/policy.yaml"))
    assert not isinstance(caught.value, PolicyError)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"version: 1\nbackends: {\xff: 1}\n")
    with pytest.raises(ConfigError, match="cannot read placement policy"):
        load_file(path)


def test_load_file_names_problems_after_the_path(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n", encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_file(path)
    assert caught.value.source == str(path)
    assert f"{path}:1: the policy: missing 'backends'" in caught.value.message
