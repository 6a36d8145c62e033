"""``blindstore report responsibilities``: the HDS responsibility notice of a placement policy.

The policy is a file (``--policy``) or the one an instance routes by (``--data-dir`` or
``--config``). Only the file is read: no catalog, Vault or backend is contacted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from blindstore.cli.common import resolve_settings
from blindstore.cli.options import ConfigOption, DataDirOption
from blindstore.errors import ConfigError
from blindstore.policy import Policy, load_file
from blindstore.reports.responsibilities import Format, render, responsibility_notice

report_app = typer.Typer(help="Reports for auditors and legal notices.", no_args_is_help=True)

err_console = Console(stderr=True)


def policy_of(policy: Path | None, data_dir: Path | None, config: Path | None) -> Policy:
    """The policy of ``--policy``, else of the instance's settings; ConfigError if none."""
    if policy is not None:
        if data_dir is not None or config is not None:
            raise ConfigError("give --policy, or --data-dir/--config, not both")
        return load_file(policy)
    settings = resolve_settings(data_dir, config)
    if settings.placement.policy is None:
        raise ConfigError(
            "this instance has no placement policy (placement.policy): the backends' providers, "
            "jurisdictions and HDS activities are declared there (docs/policy.md)"
        )
    return load_file(settings.placement.policy)


@report_app.command("responsibilities")
def responsibilities(
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Placement policy file (YAML).")
    ] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    fmt: Annotated[
        str, typer.Option("--format", help="md (Markdown), html (a standalone page) or json.")
    ] = "md",
    output: Annotated[
        Path | None, typer.Option("--output", help="Write to this file instead of stdout.")
    ] = None,
    fail_on_gap: Annotated[
        bool,
        typer.Option(
            help="Exit with status 1 when an activity of a backend in use has no carrier."
        ),
    ] = False,
) -> None:
    """Who carries each of the six HDS activities for every backend in use, from the policy's
    declared facts; activities no one carries are flagged."""
    if fmt not in ("md", "html", "json"):
        raise typer.BadParameter("one of md, html, json", param_hint="--format")
    try:
        notice = responsibility_notice(policy_of(policy, data_dir, config), now=time.time())
    except ConfigError as exc:
        err_console.print(exc.message, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc
    text = render(notice, _format(fmt))
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            err_console.print(f"cannot write {output}: {exc}", markup=False, highlight=False)
            raise typer.Exit(code=2) from exc
    if not notice.complete:
        missing = len(notice.gaps)
        err_console.print(
            f"warning: {missing} activit{'y' if missing == 1 else 'ies'} of backends in use "
            "have no declared carrier",
            markup=False,
            highlight=False,
        )
        if fail_on_gap:
            raise typer.Exit(code=1)


def _format(fmt: str) -> Format:
    if fmt == "html":
        return "html"
    if fmt == "json":
        return "json"
    return "md"
