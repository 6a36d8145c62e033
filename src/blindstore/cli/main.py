"""The `blindstore` command: dev, serve, tenants, gc, repair, policy, keys, report, transparency,
retention.

Commands that act on an instance take ``--data-dir`` (a `blindstore dev` directory, whose
``dev.json`` says where OpenBao is) or ``--config`` (a production settings file).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.console import Console

from blindstore import config as config_module
from blindstore.cli.audit import audit_app
from blindstore.cli.common import (
    DEFAULT_DATA_DIR,
    dev_settings,
    err_console,
    reported_failures,
    resolve_settings,
    run_job,
)
from blindstore.cli.export import export_app
from blindstore.cli.keys import keys_app
from blindstore.cli.options import ConfigOption, DataDirOption
from blindstore.cli.policy import policy_app
from blindstore.cli.report import report_app
from blindstore.cli.retention import retention_app
from blindstore.cli.transparency import transparency
from blindstore.keys.justification import job, justified

app = typer.Typer(
    name="blindstore",
    help="An S3 encryption gateway for health data.",
    no_args_is_help=True,
    add_completion=False,
)
tenants_app = typer.Typer(help="Tenants and their access keys.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
access_keys_app = typer.Typer(help="S3 access keys and their sealed secrets.", no_args_is_help=True)
app.add_typer(access_keys_app, name="access-keys")
app.add_typer(policy_app, name="policy")
app.add_typer(keys_app, name="keys")
app.add_typer(report_app, name="report")
app.add_typer(retention_app, name="retention")
app.add_typer(audit_app, name="audit")
app.add_typer(export_app, name="export")


@app.callback()
def _log_to_stderr() -> None:
    """Logs go to stderr as JSON lines (warnings and up): stdout carries the commands' output
    (JSON a script can parse). ``serve``, ``dev`` and ``demo`` set their own level."""
    from blindstore.logs import configure_logging

    configure_logging("warning")


console = Console()

# Tests and older callers import these from here.
__all__ = ["DEFAULT_DATA_DIR", "app", "dev_settings", "main", "resolve_settings"]


# ---------------------------------------------------------------------------- dev, serve


@app.command()
def dev(
    data_dir: Annotated[Path, typer.Option(help="All state: catalog, blobs, OpenBao.")] = (
        DEFAULT_DATA_DIR
    ),
    port: Annotated[int, typer.Option(help="Gateway port.")] = 9000,
    host: Annotated[str, typer.Option(help="Gateway address.")] = "127.0.0.1",
    vault_port: Annotated[int, typer.Option(help="OpenBao port (0: a free one).")] = 0,
) -> None:
    """Start OpenBao and the gateway on local disk with two demo tenants; print credentials."""
    from blindstore.cli import devrun

    with reported_failures():
        devrun.run_dev(
            data_dir, host=host, port=port, vault_port=vault_port or None, console=console
        )


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="Demo state (wiped at every start).")] = Path(
        ".blindstore-demo"
    ),
    policy: Annotated[Path, typer.Option(help="The demo placement policy.")] = Path(
        "deploy/policy.demo.yaml"
    ),
    port: Annotated[int, typer.Option(help="Gateway port.")] = 9000,
    host: Annotated[str, typer.Option(help="Gateway address.")] = "127.0.0.1",
) -> None:
    """OpenBao, four provider stand-ins and the gateway routing by the demo policy."""
    from blindstore.cli import demorun

    with reported_failures():
        demorun.run_demo(data_dir, policy_file=policy, host=host, port=port, console=console)


@app.command()
def serve(config: Annotated[Path, typer.Option(help="Settings file (YAML).")]) -> None:
    """Run the gateway against an existing OpenBao/Vault (production)."""
    from blindstore import runtime
    from blindstore.logs import configure_logging

    with reported_failures():
        settings = config_module.load(config)
    configure_logging(settings.log_level)

    def ready(_gateway: object, bound_port: int) -> None:
        err_console.print(f"blindstore S3 endpoint: http://{settings.listen.host}:{bound_port}")

    with reported_failures():
        anyio.run(
            lambda: runtime.serve(settings, on_ready=ready), backend_options={"use_uvloop": True}
        )


# ---------------------------------------------------------------------------- tenants


@tenants_app.command("create")
def tenants_create(name: str, data_dir: DataDirOption = None, config: ConfigOption = None) -> None:
    """Create a tenant, its Transit key and an access key pair (printed once)."""
    from blindstore import provision, runtime

    async def main() -> provision.NewCredentials:
        settings = resolve_settings(data_dir, config)
        async with runtime.open_gateway(settings) as gateway:
            with justified(job("tenants-create", tenant=name)):
                return await provision.create_tenant(
                    gateway.catalog, gateway.keys, name, key_prefix=settings.vault.key_prefix
                )

    created = run_job(main)
    console.print_json(
        data={
            "tenant": created.tenant.name,
            "tenant_id": created.tenant.tenant_id.hex(),
            "transit_key": created.tenant.key_name,
            "access_key": created.access_key_id,
            "secret_key": created.secret_key,
        }
    )


@tenants_app.command("list")
def tenants_list(data_dir: DataDirOption = None, config: ConfigOption = None) -> None:
    """List tenants (never their secrets)."""
    from blindstore import runtime

    async def main() -> list[dict[str, str]]:
        settings = resolve_settings(data_dir, config)
        catalog = runtime.open_catalog(settings)
        try:
            return [
                {"tenant": t.name, "tenant_id": t.tenant_id.hex(), "transit_key": t.key_name}
                for t in await catalog.list_tenants()
            ]
        finally:
            await catalog.close()

    console.print_json(data=run_job(main))


@access_keys_app.command("seal")
def access_keys_seal(data_dir: DataDirOption = None, config: ConfigOption = None) -> None:
    """Seal the secrets a catalog from before sealed secrets holds in clear, and erase them.

    Runs with the gateway's settings (its Vault identity may encrypt under the credentials key);
    `blindstore serve` and `dev` do the same before they listen. Idempotent.
    """
    from blindstore import provision, runtime
    from blindstore.keys.credentials import credentials_key_name

    async def main() -> dict[str, object]:
        settings = resolve_settings(data_dir, config)
        prefix = settings.vault.key_prefix
        async with runtime.open_gateway(settings) as gateway:
            sealed = await provision.seal_stored_secrets(
                gateway.catalog, gateway.keys, key_prefix=prefix
            )
        return {"sealed": sealed, "credentials_key": credentials_key_name(prefix)}

    console.print_json(data=run_job(main))


# ---------------------------------------------------------------------------- maintenance


@app.command()
def gc(
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    grace: Annotated[
        float, typer.Option(help="Only blobs older than this many seconds are removed.")
    ] = 3600.0,
    dry_run: Annotated[
        bool, typer.Option(help="Report orphans, due deletions and temporary files; delete none.")
    ] = False,
) -> None:
    """Delete orphan blobs (written but never committed to the catalog), the blobs of replaced
    and deleted objects whose delete delay has passed, and stale temporary files."""
    from blindstore import runtime
    from blindstore.cli.audit import record_job
    from blindstore.maintenance import collect_garbage

    async def main() -> dict[str, int]:
        settings = resolve_settings(data_dir, config)
        async with runtime.open_gateway(settings) as gateway:
            with console.status("scanning backends…") as status, justified(job("gc")):
                report = await collect_garbage(
                    gateway,
                    grace_seconds=grace,
                    dry_run=dry_run,
                    progress=lambda r: status.update(f"scanned {r.scanned} blobs…"),
                )
            counts = {name: getattr(report, name) for name in report.__slots__}
            await record_job(gateway.catalog, "gc", detail={"dry_run": dry_run, **counts})
        return counts

    console.print_json(data=run_job(main))


@app.command()
def repair(data_dir: DataDirOption = None, config: ConfigOption = None) -> None:
    """Copy objects to replicas that missed their write or failed verification (each blob
    verified under its data key on the way); re-check quarantined objects."""
    from blindstore import runtime
    from blindstore.cli.audit import record_job
    from blindstore.maintenance import repair_replicas

    async def main() -> dict[str, int]:
        settings = resolve_settings(data_dir, config)
        async with runtime.open_gateway(settings) as gateway:
            with console.status("repairing replicas…"), justified(job("repair")):
                report = await repair_replicas(gateway)
            counts = {name: getattr(report, name) for name in report.__slots__}
            await record_job(gateway.catalog, "repair", detail=counts)
        return counts

    console.print_json(data=run_job(main))


app.command("transparency")(transparency)


def main() -> None:
    # SIGPIPE stays ignored (Python's default): with SIG_DFL, the first write to a client that
    # went away would kill `serve`, `dev` or `demo` outright. A command whose stdout reader
    # went away (`blindstore ... | head`) gets BrokenPipeError instead, and ends quietly here.
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except BrokenPipeError:
        _stdout_gone()


def _stdout_gone() -> None:
    """End like a command whose reader closed the pipe: no traceback, and no second error when
    the interpreter flushes stdout at exit (it now points at /dev/null)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(1)
