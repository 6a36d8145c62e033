"""The HDS responsibility notice: built from the policy's declared facts, gaps flagged, and
rendered as Markdown, a standalone HTML page and JSON, with hostile declared values kept inert."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from typer.testing import CliRunner

from blindstore.cli.main import app
from blindstore.policy import HdsActivity, load_file, parse
from blindstore.reports.responsibilities import (
    NOBODY,
    SCHEMA,
    ResponsibilityNotice,
    render_html,
    render_json,
    render_markdown,
    responsibility_notice,
)
from tests.unit.policy.texts import DEMO

ALL = list(HdsActivity)
HOSPITAL = "Hôpital Nord"


def demo_notice() -> ResponsibilityNotice:
    return responsibility_notice(load_file(DEMO), now=1_700_000_000.0)


def policy_text(
    *, provider: str = "Cloud Inc", cloud_activities: str = "", spare: bool = True
) -> str:
    """Two backends in use (home carries everything, cloud what ``cloud_activities`` says) and,
    if ``spare``, a declared backend that no rule targets."""
    spare_text = (
        "  spare:\n    kind: s3\n    provider: Spare Co\n    jurisdiction: EEA\n" if spare else ""
    )
    every = "".join(f"      {a.value}: {HOSPITAL}\n" for a in HdsActivity)
    return (
        "version: 1\n"
        "backends:\n"
        "  home:\n    kind: local\n    provider: Op\n    jurisdiction: EEA\n"
        "    certifications: [HDS]\n"
        f"    hds_activities:\n{every}"
        f"  cloud:\n    kind: s3\n    provider: {json.dumps(provider)}\n    region: eu-west-3\n"
        "    country: FR\n    jurisdiction: EEA\n    certifications: [ISO27001]\n"
        f"{cloud_activities}"
        f"{spare_text}"
        "rules:\n"
        "  - name: everything\n    targets: [home, cloud]\n    write_quorum: 2\n"
    )


# ---------------------------------------------------------------------------- the demo policy


def test_the_demo_notice_lists_every_backend_in_use_with_its_facts_and_rules() -> None:
    notice = demo_notice()

    assert [b.name for b in notice.backends] == [
        "sovereign-disk",
        "onprem-s3",
        "aws",
        "azure",
        "gcs",
    ]
    assert notice.unused_backends == []
    aws = notice.backends[2]
    assert (aws.provider, aws.region, aws.country, aws.jurisdiction) == (
        "Amazon Web Services",
        "eu-west-3",
        "FR",
        "EEA",
    )
    assert aws.certifications == ["HDS", "ISO27001"]
    assert aws.hds_certified
    assert aws.rules == ["pseudonymized-sovereign-and-aws", "public-clouds"]
    assert aws.carriers[HdsActivity.PHYSICAL_SITES] == "Amazon Web Services"
    assert aws.carriers[HdsActivity.BACKUP] == HOSPITAL
    assert notice.backends[0].rules == ["identifying-sovereign", "pseudonymized-sovereign-and-aws"]


def test_the_demo_notice_flags_the_clouds_that_declare_no_carrier() -> None:
    notice = demo_notice()

    assert not notice.complete
    assert [(g.backend, g.activity) for g in notice.gaps] == [
        *(("azure", a) for a in ALL),
        *(("gcs", a) for a in ALL),
    ]
    assert notice.uncarried_activities == ALL
    assert [b.name for b in notice.backends if not b.hds_certified] == ["azure", "gcs"]
    carriers = {c.name: c for c in notice.carriers}
    assert set(carriers) == {HOSPITAL, "Amazon Web Services"}
    assert carriers[HOSPITAL].backends == ["sovereign-disk", "onprem-s3", "aws"]
    assert len(carriers[HOSPITAL].activities) == 6 + 6 + 3


def test_the_demo_notice_as_markdown_is_a_table_per_backend_and_activity() -> None:
    text = render_markdown(demo_notice())

    assert text.startswith("# HDS hosting responsibilities\n")
    assert "Generated 2023-11-14T22:13:20+00:00." in text
    assert "| Backend | Provider | Region / country | Jurisdiction | Certifications |" in text
    assert "| aws | Amazon Web Services | eu-west-3 / FR | EEA | HDS, ISO27001 |" in text
    assert "| Activity | sovereign-disk | onprem-s3 | aws | azure | gcs |" in text
    gap = f"**⚠ {NOBODY}**"
    assert (
        f"| physical sites | {HOSPITAL} | {HOSPITAL} | Amazon Web Services | {gap} | {gap} |"
        in text
    )
    assert f"| backup | {HOSPITAL} | {HOSPITAL} | {HOSPITAL} | {gap} | {gap} |" in text
    assert "- backup for backend gcs" in text
    assert "without a declared HDS certification: azure, gcs." in text
    # Every table row has as many cells as its header.
    for line in text.splitlines():
        if line.startswith(("| physical sites", "| Activity")):
            assert line.count(" | ") == 5


def test_the_demo_notice_as_json_follows_the_documented_schema() -> None:
    document = json.loads(render_json(demo_notice()))

    assert next(iter(document)) == "schema"
    assert document["schema"] == SCHEMA
    assert set(document) == {
        "schema",
        "policy",
        "generated_at",
        "activities",
        "backends",
        "unused_backends",
        "carriers",
        "gaps",
        "uncarried_activities",
        "complete",
    }
    assert [a["id"] for a in document["activities"]] == [a.value for a in HdsActivity]
    assert document["activities"][4] == {
        "id": "administration_operation",
        "label": "administration and operation",
    }
    azure = document["backends"][3]
    assert azure["carriers"] == dict.fromkeys((a.value for a in HdsActivity), None)
    assert azure["uncarried"] == [a.value for a in HdsActivity]
    assert {"backend": "gcs", "activity": "hardware"} in document["gaps"]
    assert document["complete"] is False
    assert document["generated_at"] == "2023-11-14T22:13:20+00:00"


class _Page(HTMLParser):
    """Collects text per element and every tag and attribute seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(attrs)
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def page(text: str) -> _Page:
    parsed = _Page()
    parsed.feed(text)
    parsed.close()
    return parsed


def test_the_demo_notice_as_html_is_a_standalone_page() -> None:
    text = render_html(demo_notice())
    parsed = page(text)

    assert text.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert '<meta charset="utf-8">' in text
    # Self-contained: no script, no external stylesheet, image or link.
    assert not {"script", "link", "img", "iframe"} & set(parsed.tags)
    assert not [value for name, value in parsed.attributes if name in ("src", "href")]
    assert "Amazon Web Services" in parsed.cells
    assert f"⚠ {NOBODY}" in parsed.cells
    assert parsed.cells.count(f"⚠ {NOBODY}") == 12
    assert '<td class="gap">' in text


# ---------------------------------------------------------------------------- gaps, unused


def test_a_missing_activity_is_flagged_for_its_backend_and_overall() -> None:
    partial = "    hds_activities:\n" + "".join(
        f"      {a.value}: Cloud Inc\n" for a in HdsActivity if a is not HdsActivity.BACKUP
    )
    notice = responsibility_notice(parse(policy_text(cloud_activities=partial)))

    cloud = notice.backends[1]
    assert cloud.uncarried == [HdsActivity.BACKUP]
    assert cloud.carriers[HdsActivity.BACKUP] is None
    assert notice.backends[0].uncarried == []
    assert [(g.backend, g.activity) for g in notice.gaps] == [("cloud", HdsActivity.BACKUP)]
    assert notice.uncarried_activities == [HdsActivity.BACKUP]
    assert not notice.complete
    assert "- backup for backend cloud" in render_markdown(notice)
    assert '<li class="gap">backup for backend cloud</li>' in render_html(notice)


def test_a_declared_backend_no_rule_targets_is_reported_as_unused_and_left_out() -> None:
    notice = responsibility_notice(parse(policy_text()))

    assert [b.name for b in notice.backends] == ["home", "cloud"]
    assert notice.unused_backends == ["spare"]
    assert all(g.backend != "spare" for g in notice.gaps)
    assert "used by no rule (no data goes there): spare." in render_markdown(notice)
    assert "used by no rule (no data goes there): spare.</p>" in render_html(notice)


def test_a_notice_where_every_activity_is_carried_is_complete() -> None:
    every = "    hds_activities:\n" + "".join(f"      {a.value}: Cloud Inc\n" for a in HdsActivity)
    notice = responsibility_notice(parse(policy_text(cloud_activities=every, spare=False)))

    assert notice.complete
    assert notice.gaps == []
    assert notice.uncarried_activities == []
    assert notice.unused_backends == []
    assert notice.generated_at is None
    assert "Every activity of every backend in use has a declared carrier." in render_markdown(
        notice
    )
    assert NOBODY not in render_html(notice)


# ---------------------------------------------------------------------------- hostile values

HOSTILE = '<script>alert("x")</script> | **Evil** & [Co](http://evil.example) `x`'


def hostile_notice() -> ResponsibilityNotice:
    carried = "    hds_activities:\n" + "".join(
        f"      {a.value}: {json.dumps(HOSTILE)}\n" for a in HdsActivity
    )
    return responsibility_notice(
        parse(policy_text(provider=HOSTILE, cloud_activities=carried, spare=False))
    )


def test_hostile_provider_names_are_escaped_in_html() -> None:
    text = render_html(hostile_notice())
    parsed = page(text)

    assert "<script>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "script" not in parsed.tags
    assert "a" not in parsed.tags
    # The value comes back verbatim as text in its cells.
    assert parsed.cells.count(HOSTILE) == 1 + 6


def test_hostile_provider_names_stay_literal_in_markdown_cells() -> None:
    text = render_markdown(hostile_notice())
    row = next(line for line in text.splitlines() if line.startswith("| cloud |"))

    assert "<script>" not in text
    assert "\\<script\\>" in row
    assert "\\| \\*\\*Evil\\*\\* \\& \\[Co\\](http://evil.example) \\`x\\`" in row
    # The pipe inside the name does not split the row: five cells, as the header.
    assert row.replace("\\|", "").count("|") == 6


def test_hostile_provider_names_round_trip_in_json() -> None:
    document = json.loads(render_json(hostile_notice()))

    assert document["backends"][1]["provider"] == HOSTILE
    assert document["carriers"][0]["name"] in (HOSTILE, HOSPITAL)


# ---------------------------------------------------------------------------- the command

runner = CliRunner()


def test_the_command_writes_each_format_from_a_policy_file(tmp_path: Path) -> None:
    for fmt, marker in (("md", "# HDS hosting"), ("html", "<!DOCTYPE html>"), ("json", SCHEMA)):
        out = tmp_path / f"notice.{fmt}"
        result = runner.invoke(
            app,
            [
                "report",
                "responsibilities",
                "--policy",
                str(DEMO),
                "--format",
                fmt,
                "--output",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.stderr
        assert marker in out.read_text(encoding="utf-8")
        assert result.stdout == ""
        assert "12 activities of backends in use have no declared carrier" in result.stderr


def test_the_command_prints_to_stdout_and_can_fail_on_a_gap() -> None:
    printed = runner.invoke(app, ["report", "responsibilities", "--policy", str(DEMO)])
    assert printed.exit_code == 0
    assert printed.stdout.startswith("# HDS hosting responsibilities")

    strict = runner.invoke(
        app, ["report", "responsibilities", "--policy", str(DEMO), "--fail-on-gap"]
    )
    assert strict.exit_code == 1


def test_the_command_refuses_an_instance_without_a_policy(tmp_path: Path) -> None:
    config = tmp_path / "blindstore.yaml"
    config.write_text("catalog:\n  url: sqlite://\n", encoding="utf-8")

    result = runner.invoke(app, ["report", "responsibilities", "--config", str(config)])

    assert result.exit_code == 2
    assert "no placement policy" in result.stderr


def test_the_command_reads_the_policy_an_instance_routes_by(tmp_path: Path) -> None:
    config = tmp_path / "blindstore.yaml"
    config.write_text(f"placement:\n  policy: {DEMO}\n", encoding="utf-8")

    result = runner.invoke(
        app, ["report", "responsibilities", "--config", str(config), "--format", "json"]
    )

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["policy"] == str(DEMO)
