"""``blindstore export``: a tenant's objects as plaintext files plus a signed manifest
(docs/export.md), and ``blindstore export verify`` to check such a directory, offline if need be.

The export reads with the instance's own (gateway) identity and signs the header with the key
administrator's (``--vault-token-file`` / ``BLINDSTORE_ADMIN_VAULT_TOKEN``), as ``keys shred``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from blindstore.cli.audit import record_job
from blindstore.cli.common import (
    PublicKeyOption,
    TokenFileOption,
    admin_transit,
    certificate_signer,
    resolve_settings,
    run_job,
    signing_public_keys,
    tenant_named,
)
from blindstore.cli.options import ConfigOption, DataDirOption

export_app = typer.Typer(invoke_without_command=True)
console = Console()
err_console = Console(stderr=True)


@export_app.callback()
def export(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Tenant name.")] = None,
    bucket: Annotated[str | None, typer.Option("--bucket", help="Only this bucket.")] = None,
    to: Annotated[Path | None, typer.Option("--to", help="Export directory.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a finished export in --to.")
    ] = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    vault_token_file: TokenFileOption = None,
) -> None:
    """The customer's exit: export a tenant (or one bucket) to --to, every object authenticated
    then written as a plaintext file, with a JSON Lines manifest and a signed header
    (docs/export.md). Rerun to resume. `blindstore export verify DIR` checks an export."""
    if ctx.invoked_subcommand is not None:
        return
    if tenant is None or to is None:
        raise typer.BadParameter("give --tenant and --to (or `blindstore export verify DIR`)")
    from blindstore import runtime
    from blindstore.lifecycle.export import export_tenant

    async def main() -> dict[str, Any]:
        settings = resolve_settings(data_dir, config)
        admin = admin_transit(settings, vault_token_file)
        signer = await certificate_signer(settings, admin)
        async with runtime.open_gateway(settings) as gateway:
            found = await tenant_named(gateway.catalog, tenant)
            with _progress() as progress:
                task = progress.add_task("exporting", total=None)
                result = await export_tenant(
                    gateway,
                    found,
                    to,
                    bucket=bucket,
                    signer=signer,
                    force=force,
                    on_total=lambda total: progress.update(task, total=total),
                    on_object=lambda done: progress.update(task, completed=done),
                )
            summary: dict[str, Any] = {
                "tenant": found.name,
                "bucket": bucket,
                "objects": result.exported,
                "shredded": result.shredded,
                "bytes": result.bytes,
                "written": result.written,
                "skipped": result.skipped,
                "failed": result.failed,
                "finished": result.header is not None,
            }
            await record_job(
                gateway.catalog,
                "export",
                result="200" if not result.failed else "500 InternalError",
                tenant_id=found.tenant_id,
                detail={
                    name: value
                    for name, value in summary.items()
                    if name not in {"tenant", "failed"}
                }
                | {"failed": len(result.failed)},
            )
            return summary

    summary = run_job(main, op="export")
    console.print_json(data=summary)
    if summary["failed"]:
        for failure in summary["failed"]:
            # Printed as is, no markup: a key may hold brackets.
            err_console.print(
                Text.assemble(
                    ("not exported:", "red"),
                    f" bucket {failure['bucket']!r} key {failure['key']!r} ({failure['error']}):"
                    " it could not be read and authenticated; no file was written",
                ),
                highlight=False,
                soft_wrap=True,
            )
        raise typer.Exit(code=1)


@export_app.command()
def verify(
    directory: Annotated[Path, typer.Argument(help="An export directory.")],
    public_key: PublicKeyOption = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    vault_token_file: TokenFileOption = None,
) -> None:
    """Check an export: the header's signature, the manifest's digest, every file's size and
    SHA-256, no file missing or extra. Exit 1 if it does not verify."""
    from blindstore.lifecycle.certificates import CertificateInvalid, public_key_from_pem
    from blindstore.lifecycle.exportcheck import read_header, verify_export

    async def public_keys() -> dict[int, bytes]:
        return await signing_public_keys(resolve_settings(data_dir, config), vault_token_file)

    try:
        if public_key is not None:
            signature = read_header(directory).get("signature")
            version = signature.get("key_version") if isinstance(signature, dict) else None
            raw = public_key_from_pem(public_key.read_bytes())
            keys = {version: raw} if isinstance(version, int) else {}
        else:
            keys = run_job(public_keys, op="export-verify")
        summary = verify_export(directory, keys)
    except CertificateInvalid as exc:
        err_console.print(
            Text.assemble(("invalid:", "red"), " ", exc.message), highlight=False, soft_wrap=True
        )
        raise typer.Exit(code=1) from exc
    console.print_json(data=summary)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
