"""`blindstore dev`: OpenBao + the gateway on local disk, two demo tenants, credentials printed."""

from __future__ import annotations

import json
import os
import secrets
import signal
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console

from blindstore import provision, runtime
from blindstore.catalog.base import Catalog
from blindstore.cli.common import dev_settings, transit_admin
from blindstore.config import Settings
from blindstore.devtools.openbao import OpenBaoError
from blindstore.devtools.persistent import start_persistent_openbao
from blindstore.devtools.process import ServiceInUseError
from blindstore.errors import ConfigError
from blindstore.gateway import Gateway
from blindstore.keys.base import KeyWrapper
from blindstore.keys.justification import job, justified
from blindstore.logs import configure_logging

DEMO_TENANT = "demo"
ALT_TENANT = "demo-alt"


async def _demo_credentials(
    catalog: Catalog,
    keys: KeyWrapper,
    name: str,
    previous: dict[str, Any],
    prefix: str,
    key_field: str,
    secret_field: str,
) -> tuple[str, str]:
    """Reuse the key pair of the previous run if it is still valid, else make one."""
    tenant = await catalog.get_tenant_by_name(name)
    if tenant is None:
        with justified(job("dev-provision", tenant=name)):
            created = await provision.create_tenant(catalog, keys, name, key_prefix=prefix)
        return created.access_key_id, created.secret_key
    akid = previous.get(key_field)
    if isinstance(akid, str):
        existing = await catalog.get_access_key(akid)
        if existing is not None and existing.tenant_id == tenant.tenant_id:
            return existing.access_key_id, existing.secret_key
    added = await provision.add_access_key(catalog, tenant)
    return added.access_key_id, added.secret_key


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.write("\n")


def run_dev(
    data_dir: Path, *, host: str, port: int, vault_port: int | None, console: Console
) -> None:
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    configure_logging("warning")
    runtime.tune_allocator()
    # SIGTERM before the server runs: behave like Ctrl-C, so the `finally` stops OpenBao.
    signal.signal(signal.SIGTERM, _interrupt)
    dev_json = data_dir / "dev.json"
    try:
        previous: dict[str, Any] = json.loads(dev_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    with console.status("starting OpenBao…"):
        try:
            openbao = start_persistent_openbao(
                data_dir / "openbao",
                port=vault_port,
                notify=lambda line: console.print(line, markup=False, highlight=False),
            )
        except (OpenBaoError, ServiceInUseError) as exc:
            # A startup failure the user can act on: one message, not a traceback.
            raise ConfigError(f"OpenBao did not start: {exc}") from exc
    try:
        admin_token = previous.get("admin_token") or secrets.token_urlsafe(24)
        settings = dev_settings(
            data_dir,
            vault_addr=openbao.addr,
            vault_token=openbao.token,
            host=host,
            port=port,
            admin_token=admin_token,
        )
        info: dict[str, Any] = {}

        async def prepare(gateway: Gateway) -> None:
            prefix = settings.vault.key_prefix
            # Provisioning creates it in production; dev holds OpenBao's root token.
            await ensure_audit_key(settings, openbao.token)
            akid, secret = await _demo_credentials(
                gateway.catalog,
                gateway.keys,
                DEMO_TENANT,
                previous,
                prefix,
                "access_key",
                "secret_key",
            )
            alt_akid, alt_secret = await _demo_credentials(
                gateway.catalog,
                gateway.keys,
                ALT_TENANT,
                previous,
                prefix,
                "alt_access_key",
                "alt_secret_key",
            )
            info.update(
                access_key=akid,
                secret_key=secret,
                alt_access_key=alt_akid,
                alt_secret_key=alt_secret,
                tenant=DEMO_TENANT,
                alt_tenant=ALT_TENANT,
                admin_token=admin_token,
                data_dir=str(data_dir),
                vault_addr=openbao.addr,
                vault_token=openbao.token,
            )

        def ready(_gateway: Gateway, bound_port: int) -> None:
            endpoint = f"http://{host}:{bound_port}"
            info["endpoint"] = endpoint
            _write_private_json(dev_json, info)
            _announce(console, info)

        anyio.run(
            lambda: runtime.serve(settings, prepare=prepare, on_ready=ready, return_on_signal=True),
            backend_options={"use_uvloop": True},
        )
    finally:
        openbao.stop()
        console.print("blindstore stopped; OpenBao stopped. State kept in", str(data_dir))


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _announce(console: Console, info: dict[str, Any]) -> None:
    endpoint, akid, secret = info["endpoint"], info["access_key"], info["secret_key"]
    body = (
        f"[bold]S3 endpoint[/bold]  {endpoint}\n"
        f"[bold]access key[/bold]   {akid}\n"
        f"[bold]secret key[/bold]   {secret}\n"
        f"[bold]region[/bold]       us-east-1\n"
        f"[bold]tenant[/bold]       {info['tenant']} (second tenant: {info['alt_tenant']})\n"
        f"[bold]OpenBao[/bold]      {info['vault_addr']}\n"
        f"[bold]state[/bold]        {info['data_dir']} (credentials in dev.json)\n"
        f"[bold]admin API[/bold]    {endpoint}/-/docs (Bearer token: admin_token in dev.json)\n\n"
        "[bold]AWS CLI[/bold]\n"
        f"  export AWS_ACCESS_KEY_ID={akid} AWS_SECRET_ACCESS_KEY='{secret}' "
        "AWS_DEFAULT_REGION=us-east-1\n"
        f"  aws --endpoint-url {endpoint} s3 mb s3://demo\n"
        f"  aws --endpoint-url {endpoint} s3 cp README.md s3://demo/\n\n"
        "[bold]boto3[/bold]\n"
        f"  s3 = boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id='{akid}',\n"
        f"                    aws_secret_access_key='{secret}', region_name='us-east-1')\n\n"
        "Ctrl-C stops the gateway and OpenBao."
    )
    # Plain lines, not a panel: the commands must survive copy and paste at any terminal width.
    console.rule("[bold green]blindstore is running")
    console.print(body, soft_wrap=True, highlight=False)
    console.rule()


async def ensure_audit_key(settings: Settings, admin_token: str) -> None:
    """Create the audit checkpoint signing key (ed25519) if it is missing."""
    vault = settings.vault
    await transit_admin(vault, admin_token).ensure_signing_key(settings.audit.key_name(vault))
