"""`blindstore policy validate|explain`, through the real command-line app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from blindstore.cli.main import app
from tests.unit.policy.texts import DEMO, document, line_of

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_policy_commands_are_listed() -> None:
    code, out, _ = run("policy", "--help")
    assert code == 0
    assert "validate" in out
    assert "explain" in out


def test_validate_accepts_a_valid_policy() -> None:
    code, out, err = run("policy", "validate", str(DEMO))
    assert code == 0, err
    assert "valid placement policy: 5 backends, 3 rules, 2 constraints" in out
    assert err == ""


def test_validate_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    text = document(
        "  - name: a\n    targets: [cloud, nowhere]\n    write_quorum: 3\n"
        "  - name: late\n    targets: home\n"
    )
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run("policy", "validate", str(path))
    assert code == 2
    assert out == ""
    assert f"{path}: placement policy refused (4 problems):" in err
    targets = line_of(text, "targets: [cloud, nowhere]")
    for expected in (
        f"{path}:{targets}: rule 'a': unknown backend 'nowhere'",
        f"{path}:{targets}: rule 'a' can place identifying data on backend 'cloud'",
        f"{path}:{line_of(text, 'write_quorum')}: rule 'a': write_quorum 3 must be between 1",
        f"{path}:{line_of(text, 'name: late')}: rule 'late' can never match",
    ):
        assert expected in err
    # One problem per line, never wrapped, whatever the terminal width.
    assert len(err.strip().splitlines()) == 5


def test_validate_reports_a_missing_file(tmp_path: Path) -> None:
    code, _, err = run("policy", "validate", str(tmp_path / "absent.yaml"))
    assert code == 2
    assert "cannot read placement policy" in err


def test_explain_says_which_rule_why_and_where() -> None:
    code, out, err = run(
        "policy",
        "explain",
        str(DEMO),
        "--tenant",
        "Hôpital Nord",
        "--bucket",
        "research",
        "--key",
        "scans/1.dcm",
        "--classification",
        "pseudonymized",
        "--size",
        "12MiB",
        "--tag",
        "project=x",
        "--content-type",
        "application/dicom",
    )
    assert code == 0, err
    assert "size 12 MiB" in out
    assert "classification 'pseudonymized' comes from the x-amz-meta-classification header" in out
    assert "rule: pseudonymized-sovereign-and-aws (line" in out
    assert "classification 'pseudonymized' is not 'identifying'" in out
    assert "a write succeeds once 2 of 2 hold the object" in out
    for fact in ("sovereign-disk", "Amazon Web Services", "eu-west-3", "HDS", "backup"):
        assert fact in out


def test_explain_json_is_machine_readable() -> None:
    code, out, err = run(
        "policy",
        "explain",
        str(DEMO),
        "--tenant",
        "Hôpital Nord",
        "--bucket",
        "patient-records",
        "--key",
        "a/b",
        "--tag",
        "site=lille",
        "--tag",
        "note=a=b",
        "--json",
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["object"]["tags"] == {"site": "lille", "note": "a=b"}
    assert document["object"]["size"] is None
    assert document["classification"] == {
        "value": "identifying",
        "source": "bucket",
        "unknown_value": None,
    }
    assert document["rule"]["name"] == "identifying-sovereign"
    assert document["skipped"] == []
    assert [t["name"] for t in document["targets"]] == ["sovereign-disk", "onprem-s3"]
    assert document["targets"][0]["hds_activities"]["backup"] == "Hôpital Nord"
    assert document["write_quorum"] == 2


def test_explain_lists_the_first_failing_condition_of_each_skipped_rule() -> None:
    code, out, _ = run(
        "policy", "explain", str(DEMO), "--tenant", "t", "--bucket", "b", "--key", "k", "--json"
    )
    assert code == 0
    skipped = json.loads(out)["skipped"]
    assert [(s["rule"], s["reason"]) for s in skipped] == [
        ("identifying-sovereign", "classification 'unclassified' is not 'identifying'"),
        ("pseudonymized-sovereign-and-aws", "classification 'unclassified' is not 'pseudonymized'"),
    ]


def test_explain_refuses_a_malformed_tag_or_size() -> None:
    base = ("policy", "explain", str(DEMO), "--tenant", "t", "--bucket", "b", "--key", "k")
    code, _, err = run(*base, "--tag", "novalue")
    assert code == 2
    assert "expected key=value" in err
    code, _, err = run(*base, "--size", "huge")
    assert code == 2
    assert "is not a size" in err


def test_explain_refuses_an_invalid_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n", encoding="utf-8")
    code, _, err = run(
        "policy", "explain", str(path), "--tenant", "t", "--bucket", "b", "--key", "k"
    )
    assert code == 2
    assert f"{path}:1: the policy: missing 'backends'" in err
