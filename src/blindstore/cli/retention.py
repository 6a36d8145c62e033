"""``blindstore retention enforce``: delete (or list) the objects past their retention date.

Prints one JSON document on stdout, streamed as objects are handled (a long run holds nothing in
memory): ``{"now", "dry_run", "objects": [...], "totals": {...}}``. Progress goes to stderr.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from typing import Annotated

import typer
from rich.console import Console

from blindstore.cli.common import resolve_settings, run_job
from blindstore.cli.options import ConfigOption, DataDirOption
from blindstore.errors import InvalidArgument
from blindstore.provenance import format_retention, parse_retention

retention_app = typer.Typer(
    help="Retention: delete objects whose x-blindstore-retention-until date has passed.",
    no_args_is_help=True,
)

err_console = Console(stderr=True)


def operator() -> str:
    """The audit principal of a CLI job: ``os:<user>``."""
    try:
        return f"os:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return f"os:uid-{os.getuid()}"


def _now(text: str | None) -> float:
    if text is None:
        return time.time()
    try:
        return parse_retention(text, header="--now")
    except InvalidArgument as exc:
        raise typer.BadParameter(exc.message, param_hint="--now") from exc


@retention_app.command("enforce")
def enforce(
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report the objects past their date.")
    ] = False,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's objects.")] = None,
    bucket: Annotated[str | None, typer.Option(help="Only this bucket's objects.")] = None,
    now: Annotated[
        str | None,
        typer.Option(help="Cut-off, ISO 8601 (2031-12-31 or 2031-12-31T12:00:00Z); default: now."),
    ] = None,
) -> None:
    """Delete every object whose retention date is before now (catalog row, then its blobs on
    every replica), each deletion audited; --dry-run only lists them."""
    from blindstore import runtime
    from blindstore.keys.justification import job, justified
    from blindstore.retention import ExpiredObject, RetentionReport, enforce_retention

    cutoff = _now(now)
    first = True

    def emit(found: ExpiredObject) -> None:
        nonlocal first
        typer.echo(("" if first else ",\n") + "    " + _dumps(found.as_dict()), nl=False)
        first = False

    async def main() -> RetentionReport:
        settings = resolve_settings(data_dir, config)
        async with runtime.open_gateway(settings) as gateway:
            tenant_id = None
            if tenant is not None:
                found = await gateway.catalog.get_tenant_by_name(tenant)
                if found is None:
                    raise InvalidArgument(f"no tenant named {tenant!r}")
                tenant_id = found.tenant_id
            if bucket is not None:
                held = await gateway.catalog.get_bucket(bucket)
                if held is None or (tenant_id is not None and held.tenant_id != tenant_id):
                    raise InvalidArgument(
                        f"no bucket named {bucket!r}"
                        + (f" for tenant {tenant!r}" if tenant is not None else "")
                    )
            typer.echo(
                "{\n"
                f'  "now": {_dumps(format_retention(cutoff))},\n'
                f'  "dry_run": {_dumps(dry_run)},\n'
                '  "objects": [\n',
                nl=False,
            )
            with (
                err_console.status("looking for expired objects…") as status,
                justified(job("retention-enforce")),
            ):
                return await enforce_retention(
                    gateway,
                    now=cutoff,
                    dry_run=dry_run,
                    tenant_id=tenant_id,
                    bucket=bucket,
                    principal=operator(),
                    on_object=emit,
                    progress=lambda r: status.update(
                        f"{r.expired} expired objects, {r.deleted} deleted…"
                    ),
                    keep_objects=False,
                )

    report = run_job(main)
    typer.echo(
        ("\n" if not first else "") + "  ],\n" + f'  "totals": {_dumps(report.totals())}\n}}'
    )


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
