"""``blindstore policy validate|explain``: check a placement policy file, and show where an object
would be placed and why. Both read the file only; neither needs a running instance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from blindstore.errors import ConfigError
from blindstore.policy import (
    Explanation,
    HdsActivity,
    ObjectFacts,
    Policy,
    explain,
    format_size,
    load_file,
    parse_size,
)
from blindstore.provenance import HEADERS

policy_app = typer.Typer(
    help="Placement policy: validate a file, explain where an object would go.",
    no_args_is_help=True,
)

console = Console()
err_console = Console(stderr=True)

FileArgument = Annotated[Path, typer.Argument(help="Placement policy file (YAML).")]


def _load(file: Path) -> Policy:
    try:
        return load_file(file)
    except ConfigError as exc:
        # Plain text, unwrapped: one problem per line, for people and for grep.
        err_console.print(exc.message, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc


@policy_app.command("validate")
def validate(file: FileArgument) -> None:
    """Check a policy; print every problem with its line (exit status 2), or a summary."""
    policy = _load(file)
    console.print(
        f"{file}: valid placement policy: {len(policy.backends)} backends, "
        f"{len(policy.rules)} rules, {len(policy.constraints)} constraints",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _tags(pairs: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--tag")
        tags[key] = value
    return tags


def _size(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--size") from exc


@policy_app.command("explain")
def explain_command(
    file: FileArgument,
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    bucket: Annotated[str, typer.Option(help="Bucket name.")],
    key: Annotated[str, typer.Option(help="Object key.")],
    tag: Annotated[
        list[str] | None, typer.Option(help="Object tag key=value (repeatable).")
    ] = None,
    size: Annotated[
        str | None, typer.Option(help="Object size (bytes, or e.g. 64MiB); unknown if absent.")
    ] = None,
    classification: Annotated[
        str | None, typer.Option(help="Value of the x-amz-meta-classification header.")
    ] = None,
    content_type: Annotated[str | None, typer.Option(help="Content-Type of the object.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Which rule places an object, why the earlier rules did not, and the targets' facts."""
    facts = ObjectFacts(
        tenant=tenant,
        bucket=bucket,
        key=key,
        tags=_tags(tag or []),
        classification=classification,
        size=_size(size),
        content_type=content_type,
    )
    explanation = explain(_load(file), facts)
    if json_output:
        typer.echo(json.dumps(explanation.as_dict(), indent=2, ensure_ascii=False))
    else:
        _render(explanation)


def _render(explanation: Explanation) -> None:
    facts, verdict = explanation.facts, explanation.matched
    rule, placement = verdict.rule, explanation.placement

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    size = "unknown" if facts.size is None else format_size(facts.size)
    say(f"object: tenant {facts.tenant!r}, bucket {facts.bucket!r}, key {facts.key!r}, size {size}")
    say(explanation.classification.describe())
    say(
        f"rule: {rule.name} (line {rule.line})"
        + (f": {rule.description}" if rule.description else "")
    )
    for reason in verdict.reasons:
        say(f"  - {reason}")
    if rule.require:
        required = ", ".join(f"{name} ({HEADERS[name]})" for name in rule.require)
        say(f"requires: {required}; a write without them is refused (400 InvalidRequest)")
    if explanation.skipped:
        say("earlier rules that did not match:")
        for earlier in explanation.skipped:
            say(f"  - {earlier.rule.name} (line {earlier.rule.line}): {earlier.reasons[0]}")
    count = len(placement.targets)
    targets = Table(
        title=f"Targets (a write succeeds once {placement.quorum} of {count} hold the object)",
        title_justify="left",
    )
    # Names and short codes never wrap; the rest folds rather than hiding anything behind "…".
    for column in ("backend", "kind"):
        targets.add_column(column, no_wrap=True)
    for column in ("provider", "region", "jurisdiction", "certified"):
        targets.add_column(column, overflow="fold")
    for backend in explanation.targets:
        where = backend.region or ""
        if backend.country:
            where = f"{where} ({backend.country})" if where else backend.country
        targets.add_row(
            backend.name,
            backend.kind,
            backend.provider,
            where or "-",
            backend.jurisdiction,
            ", ".join(backend.certifications) or "-",
        )
    console.print(targets)
    activities = Table(title="Who carries each HDS hosting activity", title_justify="left")
    activities.add_column("activity")
    for backend in explanation.targets:
        activities.add_column(backend.name, overflow="fold")
    for activity in HdsActivity:
        activities.add_row(
            activity.label,
            *(b.hds_activities.get(activity, "not declared") for b in explanation.targets),
        )
    console.print(activities)
