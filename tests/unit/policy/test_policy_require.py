"""Rules that require provenance (``require:``): parsed, validated with their line, carried into
the placement, shown by explain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blindstore.cli.main import app
from blindstore.errors import PolicyError
from blindstore.policy import ObjectFacts, decide, explain, load_file, parse
from tests.unit.policy.texts import DEMO, document, line_of

REQUIRING = (
    "  - name: identifying\n"
    "    match:\n"
    "      classification: identifying\n"
    "    targets: home\n"
    "    require: [consent_ref, legal_basis]\n"
    "  - name: all\n"
    "    targets: home\n"
)


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyError) as caught:
        parse(text, "p.yaml")
    return list(caught.value.problems)


def test_a_rule_requirement_is_parsed_in_order() -> None:
    policy = parse(document(REQUIRING), "p.yaml")
    assert policy.rules[0].require == ("consent_ref", "legal_basis")
    assert policy.rules[1].require == ()


def test_a_single_required_field_may_be_written_as_text() -> None:
    text = document(REQUIRING.replace("[consent_ref, legal_basis]", "retention_until"))
    assert parse(text, "p.yaml").rules[0].require == ("retention_until",)


def test_every_provenance_field_can_be_required() -> None:
    every = "[origin_system, consent_ref, legal_basis, retention_until]"
    text = document(REQUIRING.replace("[consent_ref, legal_basis]", every))
    assert parse(text, "p.yaml").rules[0].require == (
        "origin_system",
        "consent_ref",
        "legal_basis",
        "retention_until",
    )


def test_an_unknown_required_field_is_refused_with_its_line() -> None:
    text = document(REQUIRING.replace("[consent_ref, legal_basis]", "[consent_ref,\n  consent]"))
    found = problems(text)
    assert len(found) == 1, found
    line, reason = found[0]
    assert line == line_of(text, "  consent]")
    assert reason.startswith("rule 'identifying': require: unknown provenance field 'consent'")
    assert "origin_system, consent_ref, legal_basis, retention_until" in reason


def test_a_field_required_twice_is_refused() -> None:
    text = document(REQUIRING.replace("[consent_ref, legal_basis]", "[consent_ref, consent_ref]"))
    [(line, reason)] = problems(text)
    assert line == line_of(text, "require: [consent_ref, consent_ref]")
    assert "'consent_ref' is listed twice" in reason


def test_a_requirement_that_is_not_text_is_refused() -> None:
    text = document(REQUIRING.replace("[consent_ref, legal_basis]", "{consent_ref: true}"))
    [(line, reason)] = problems(text)
    assert line == line_of(text, "require: {consent_ref")
    assert "require must be text" in reason


def test_the_placement_carries_the_rule_requirement() -> None:
    policy = parse(document(REQUIRING), "p.yaml")
    placed = decide(policy, ObjectFacts("t", "b", "k", classification="identifying"))
    assert (placed.rule, placed.require) == ("identifying", ("consent_ref", "legal_basis"))
    assert decide(policy, ObjectFacts("t", "b", "k")).require == ()


def test_explain_shows_the_requirement_as_fields_and_headers() -> None:
    policy = parse(document(REQUIRING), "p.yaml")
    shown = explain(policy, ObjectFacts("t", "b", "k", classification="identifying")).as_dict()
    assert shown["rule"]["require"] == ["consent_ref", "legal_basis"]
    assert shown["rule"]["require_headers"] == [
        "x-blindstore-consent-ref",
        "x-blindstore-legal-basis",
    ]


def test_the_demo_requires_consent_and_legal_basis_for_patient_records() -> None:
    placed = decide(load_file(DEMO), ObjectFacts("Hôpital Nord", "patient-records", "a.dcm"))
    assert placed.require == ("consent_ref", "legal_basis")
    research = decide(load_file(DEMO), ObjectFacts("Hôpital Nord", "research-exports", "a.csv"))
    assert research.require == ()


def test_the_explain_command_shows_the_requirement(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["policy", "explain", str(DEMO), "--tenant", "T", "--bucket", "patient-records"]
    text = runner.invoke(app, [*args, "--key", "a.dcm"])
    assert text.exit_code == 0, text.stderr
    assert "requires: consent_ref (x-blindstore-consent-ref), legal_basis" in text.stdout
    as_json = runner.invoke(app, [*args, "--key", "a.dcm", "--json"])
    assert json.loads(as_json.stdout)["rule"]["require"] == ["consent_ref", "legal_basis"]
