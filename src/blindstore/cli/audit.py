"""``blindstore audit``: verify the hash-chained audit trail, export it, query it."""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console

from blindstore.cli.common import resolve_settings, run_job
from blindstore.cli.options import ConfigOption, DataDirOption
from blindstore.errors import ConfigError

audit_app = typer.Typer(
    help="The audit trail: verify its hash chain, export it, query it.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

ObjectIdOption = Annotated[
    str | None, typer.Option("--object-id", help="Object id (32 hex digits).")
]
BucketOption = Annotated[str | None, typer.Option("--bucket", help="Bucket name.")]
KeyOption = Annotated[str | None, typer.Option("--key", help="Object key.")]
PrincipalOption = Annotated[
    str | None,
    typer.Option(
        "--principal", help="Access key id, `admin` or `os:<user>`; '' = unauthenticated."
    ),
]
TenantOption = Annotated[str | None, typer.Option("--tenant", help="Tenant name.")]
OperationOption = Annotated[
    str | None, typer.Option("--operation", help="GetObject, PutObject, keys.shred...")
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="From this time (ISO 8601 or epoch seconds).")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Before this time (ISO 8601 or epoch seconds).")
]


Filters = dict[str, str | None]


def _filter_options(
    object_id: ObjectIdOption = None,
    bucket: BucketOption = None,
    key: KeyOption = None,
    principal: PrincipalOption = None,
    tenant: TenantOption = None,
    operation: OperationOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """The options that filter the audit trail, declared once: ``with_filters`` puts them in a
    command's signature. Named as ``blindstore.audit.query.resolve_filter`` takes them."""


def with_filters(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with the options of ``_filter_options`` in place of its ``filters`` parameter,
    which receives their values as one mapping. Typer reads the signature set here."""
    options = inspect.signature(_filter_options, eval_str=True).parameters
    params: list[inspect.Parameter] = []
    for param in inspect.signature(command, eval_str=True).parameters.values():
        params.extend(options.values() if param.name == "filters" else [param])

    @functools.wraps(command)
    def with_options(**given: Any) -> None:
        command(filters={name: given.pop(name) for name in options}, **given)

    del with_options.__wrapped__  # else inspect.signature would read command's own
    with_options.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in params}
    return with_options


def _open_catalog(data_dir: Path | None, config: Path | None) -> Any:
    from blindstore import runtime

    return runtime.open_catalog(resolve_settings(data_dir, config))


@audit_app.command()
def verify(
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            help="Verify checkpoints offline with this PEM public key (`blindstore audit "
            "signing-key`); repeat for older key versions, in version order. Default: ask "
            "OpenBao for the signing key's public keys.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    vault_token_file: Annotated[
        Path | None,
        typer.Option(
            "--vault-token-file",
            help="A token that may read the signing key (the auditor's; default: "
            "BLINDSTORE_ADMIN_VAULT_TOKEN, else the instance's).",
        ),
    ] = None,
) -> None:
    """Check the whole chain, every signed checkpoint and every live object row against the
    write records; exit 1 naming each problem's seq (and each rolled-back object's key)."""
    from blindstore.audit.chain import SigningKey
    from blindstore.audit.query import verify_log
    from blindstore.cli.common import admin_transit
    from blindstore.lifecycle.certificates import public_key_from_pem

    async def main() -> dict[str, Any]:
        settings = resolve_settings(data_dir, config)
        # Pinned: the configured key (audit.signing_key or the default), whatever the
        # checkpoint rows name.
        name = settings.audit.key_name(settings.vault)
        catalog = _open_catalog(data_dir, config)
        try:
            checkpoints = await catalog.audit_checkpoints()
            versions: dict[int, bytes] = {}
            if public_key:
                versions = {
                    version: public_key_from_pem(path.read_bytes())
                    for version, path in enumerate(public_key, start=1)
                }
            elif checkpoints:
                info = await admin_transit(settings, vault_token_file).key_info(name)
                versions = dict(info.public_keys) if info is not None else {}
            report = await verify_log(catalog, SigningKey(name, versions), checkpoints=checkpoints)
        finally:
            await catalog.close()
        return report.as_dict()

    report = run_job(main)
    if as_json:
        console.print_json(data=report)
    if report["intact"]:
        signed = report["last_signed_seq"]
        err_console.print(
            f"chain intact, {report['records']} records, {report['objects']} objects match "
            "their last write record, "
            + (f"last signed checkpoint at seq {signed}" if signed else "no signed checkpoint yet")
            + (
                f" ({report['unsigned_tail']} records after it are not covered by a signature)"
                if report["unsigned_tail"]
                else ""
            ),
            soft_wrap=True,
        )
        return
    for problem in report["problems"]:
        err_console.print(
            f"seq {problem['seq']}: {problem['kind']}: {problem['message']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    for mismatch in report["mismatches"]:
        seq = mismatch["seq"] or "-"
        err_console.print(
            f"object {mismatch['bucket']}/{mismatch['key']}: seq {seq}: {mismatch['kind']}: "
            f"{mismatch['message']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    err_console.print(
        f"[red]chain NOT intact[/red]: {len(report['problems'])} problem(s) in "
        f"{report['records']} records, {len(report['mismatches'])} object(s) not the version "
        "last written",
        soft_wrap=True,
    )
    raise typer.Exit(code=1)


@audit_app.command()
@with_filters
def export(
    output: Annotated[
        Path | None, typer.Option("--output", help="Write here (default: stdout).")
    ] = None,
    filters: Filters | None = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Write records in seq order as JSON Lines (streamed), with their hashes."""
    from blindstore.audit.query import export as export_records
    from blindstore.audit.query import resolve_filter

    filters = filters or {}

    async def main() -> int:
        catalog = _open_catalog(data_dir, config)
        count = 0
        try:
            selection = (
                await resolve_filter(catalog, **filters)
                if any(v is not None for v in filters.values())
                else None
            )
            with _output(output) as out:
                async for record in export_records(catalog, selection):
                    out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
                    out.write("\n")
                    count += 1
        finally:
            await catalog.close()
        return count

    count = run_job(main)
    err_console.print(f"{count} record(s) exported")


@audit_app.command()
@with_filters
def query(
    filters: Filters | None = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    oldest_first: Annotated[
        bool, typer.Option("--oldest-first", help="Seq order instead of newest first.")
    ] = False,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Print matching records as a JSON array (newest first)."""
    from blindstore.audit.query import query as query_records
    from blindstore.audit.query import resolve_filter

    async def main() -> list[dict[str, Any]]:
        catalog = _open_catalog(data_dir, config)
        try:
            selection = await resolve_filter(catalog, **(filters or {}))
            return await query_records(
                catalog, selection, limit=limit, newest_first=not oldest_first
            )
        finally:
            await catalog.close()

    typer.echo(json.dumps(run_job(main), ensure_ascii=False, indent=2))


@audit_app.command("signing-key")
def signing_key(
    output: Annotated[Path | None, typer.Option("--output", help="Write the PEM here.")] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    vault_token_file: Annotated[
        Path | None, typer.Option("--vault-token-file", help="A token that may read the key.")
    ] = None,
) -> None:
    """Print the public key that verifies audit checkpoints (PEM, latest version)."""
    from blindstore.cli.common import admin_transit
    from blindstore.lifecycle.certificates import public_key_pem

    async def main() -> str:
        settings = resolve_settings(data_dir, config)
        info = await admin_transit(settings, vault_token_file).key_info(
            settings.audit.key_name(settings.vault)
        )
        if info is None or not info.public_keys:
            raise ConfigError("the audit signing key does not exist in OpenBao")
        return public_key_pem(info.public_keys[max(info.public_keys)])

    pem = run_job(main)
    if output is not None:
        output.write_text(pem, encoding="utf-8")
    typer.echo(pem, nl=False)


async def record_job(
    catalog: Any,
    operation: str,
    *,
    result: str = "200",
    tenant_id: bytes | None = None,
    key_name: str | None = None,
    detail: dict[str, str | int | float | bool | None] | None = None,
) -> None:
    """Append a CLI job's audit record (principal ``os:<user>``); raises if it cannot, so that
    the job reports the failure."""
    import getpass
    import secrets
    import time

    from blindstore.audit.events import AuditEvent
    from blindstore.audit.log import CatalogAuditLog

    event = AuditEvent(
        time=time.time(),
        request_id=f"job-{secrets.token_hex(6)}",
        principal=f"os:{getpass.getuser()}",
        operation=operation,
        result=result,
        tenant_id=tenant_id,
        key_name=key_name,
        source="cli",
        detail=detail or {},
    )
    await CatalogAuditLog(catalog).append(event)


class _output:
    """stdout, or a file opened for writing (closed afterwards)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._file: IO[str] | None = None

    def __enter__(self) -> IO[str]:
        if self._path is None:
            return sys.stdout
        self._file = self._path.open("w", encoding="utf-8")
        return self._file

    def __exit__(self, *_exc: object) -> None:
        if self._file is not None:
            self._file.close()
