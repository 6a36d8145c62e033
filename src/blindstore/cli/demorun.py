"""`blindstore demo`: the hybrid placement in one command.

Starts OpenBao, the four provider stand-ins (SeaweedFS as an on-premise S3, moto as AWS S3,
Azurite as Azure Blob, gcp-storage-emulator as GCS) and the gateway routing by the demo policy
(`deploy/policy.demo.yaml`, endpoints filled in), then writes `<data-dir>/demo.json` so anyone
can look at what each provider actually holds. moto keeps its data in memory, so the demo starts
from a fresh data directory every time.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import yaml
from rich.console import Console

from blindstore import runtime
from blindstore.cli.common import dev_settings
from blindstore.cli.devrun import (
    ALT_TENANT,
    DEMO_TENANT,
    _demo_credentials,
    _interrupt,
    _write_private_json,
)
from blindstore.config import Settings
from blindstore.devtools.azurite import start_azurite
from blindstore.devtools.gcs_emulator import start_gcs_emulator
from blindstore.devtools.moto import start_moto
from blindstore.devtools.persistent import start_persistent_openbao
from blindstore.devtools.process import ServiceInUseError, stop_orphans
from blindstore.devtools.seaweedfs import start_seaweedfs
from blindstore.errors import ConfigError
from blindstore.gateway import Gateway
from blindstore.logs import configure_logging

GCS_PROJECT = "blindstore-demo"
_MARKER = "demo.json"


def _fresh(data_dir: Path) -> None:
    """Start from nothing: moto forgets its objects on exit, the catalog would not. Services a
    crashed previous demo left running are stopped first (they would hold ports and files)."""
    if data_dir.exists():
        if not (data_dir / _MARKER).exists() and any(data_dir.iterdir()):
            raise ConfigError(f"{data_dir} exists and is not a demo directory: choose another")
        try:
            stop_orphans(data_dir)
        except ServiceInUseError as exc:
            raise ConfigError(str(exc)) from exc
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, mode=0o700)


@contextlib.contextmanager
def _started(
    stack: ExitStack, what: str, console: Console, start: Callable[[], Any]
) -> Iterator[Any]:
    with console.status(f"starting {what}…"):
        server = start()
    stack.callback(server.stop)
    yield server


def run_demo(data_dir: Path, *, policy_file: Path, host: str, port: int, console: Console) -> None:
    data_dir = data_dir.absolute()
    if not policy_file.is_file():
        raise ConfigError(f"demo policy {policy_file} not found (run from the repository root)")
    _fresh(data_dir)
    configure_logging("warning")
    runtime.tune_allocator()
    signal.signal(signal.SIGTERM, _interrupt)
    with ExitStack() as stack:
        started: dict[str, Any] = {}
        starters: list[tuple[str, str, Callable[[], Any]]] = [
            ("openbao", "OpenBao", lambda: start_persistent_openbao(data_dir / "openbao")),
            (
                "seaweedfs",
                "SeaweedFS (on-premise S3)",
                lambda: start_seaweedfs(workdir=data_dir / "seaweedfs"),
            ),
            ("moto", "moto (AWS S3)", lambda: start_moto(workdir=data_dir / "moto")),
            (
                "azurite",
                "Azurite (Azure Blob)",
                lambda: start_azurite(workdir=data_dir / "azurite"),
            ),
            (
                "gcs",
                "gcp-storage-emulator (GCS)",
                lambda: start_gcs_emulator(workdir=data_dir / "gcs"),
            ),
        ]
        for key, label, start in starters:
            with _started(stack, label, console, start) as server:
                started[key] = server
        settings_by_backend = _backend_settings(data_dir, started)
        policy_path = _write_policy(policy_file, data_dir / "policy.yaml", settings_by_backend)
        openbao = started["openbao"]
        admin_token = secrets.token_urlsafe(24)
        settings = dev_settings(
            data_dir,
            vault_addr=openbao.addr,
            vault_token=openbao.token,
            host=host,
            port=port,
            admin_token=admin_token,
            policy=policy_path,
        )
        info: dict[str, Any] = {}

        async def prepare(gateway: Gateway) -> None:
            await _prepare(gateway, settings, openbao, info)

        async def ready(gateway: Gateway, bound: int) -> None:
            info["endpoint"] = f"http://{host}:{bound}"
            tenants = {t.name: t.container for t in await gateway.catalog.list_tenants()}
            info["backends"] = _describe(policy_path, settings_by_backend, started, tenants)
            _write_private_json(data_dir / _MARKER, info)
            _announce(console, info, data_dir)

        try:
            anyio.run(
                lambda: runtime.serve(
                    settings, prepare=prepare, on_ready=ready, return_on_signal=True
                ),
                backend_options={"use_uvloop": True},
            )
        finally:
            console.print("stopping the demo…")
    console.print("demo stopped.")


def _backend_settings(data_dir: Path, s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    seaweed, moto, azurite, gcs = s["seaweedfs"], s["moto"], s["azurite"], s["gcs"]
    return {
        "sovereign-disk": {"path": str(data_dir / "sovereign-disk")},
        "onprem-s3": {
            "endpoint_url": seaweed.endpoint_url,
            "access_key": seaweed.access_key,
            "secret_key": seaweed.secret_key,
            "addressing_style": "path",
        },
        "aws": {
            "endpoint_url": moto.endpoint_url,
            "access_key": moto.access_key,
            "secret_key": moto.secret_key,
            "region": "eu-west-3",
            "addressing_style": "path",
        },
        "azure": {"connection_string": azurite.connection_string},
        "gcs": {"endpoint_url": gcs.endpoint_url, "project": GCS_PROJECT},
    }


def _write_policy(source: Path, target: Path, settings: dict[str, dict[str, Any]]) -> Path:
    policy = yaml.safe_load(source.read_text(encoding="utf-8"))
    for name, values in settings.items():
        policy["backends"][name]["settings"] = values
    target.write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False), encoding="utf-8")
    target.chmod(0o600)
    return target


async def _prepare(
    gateway: Gateway, settings: Settings, openbao: Any, info: dict[str, Any]
) -> None:
    prefix = settings.vault.key_prefix
    akid, secret = await _demo_credentials(
        gateway.catalog, gateway.keys, DEMO_TENANT, {}, prefix, "access_key", "secret_key"
    )
    alt_akid, alt_secret = await _demo_credentials(
        gateway.catalog, gateway.keys, ALT_TENANT, {}, prefix, "alt_access_key", "alt_secret_key"
    )
    info.update(
        access_key=akid,
        secret_key=secret,
        alt_access_key=alt_akid,
        alt_secret_key=alt_secret,
        tenant=DEMO_TENANT,
        alt_tenant=ALT_TENANT,
        admin_token=settings.admin.resolve_token(),
        data_dir=str(settings.storage.path.parent),
        vault_addr=openbao.addr,
        vault_token=openbao.token,
    )


def _describe(
    policy_path: Path,
    settings: dict[str, dict[str, Any]],
    s: dict[str, Any],
    tenants: dict[str, str],
) -> list[dict[str, Any]]:
    """Every backend, how to reach it, and the container each tenant's ciphertext goes to."""
    policy = yaml.safe_load(policy_path.read_text(encoding="utf-8"))
    described = []
    for name, declared in policy["backends"].items():
        entry: dict[str, Any] = {
            "name": name,
            "kind": declared["kind"],
            "provider": declared["provider"],
            "containers": dict(tenants),
        }
        values = settings[name]
        if declared["kind"] == "local":
            entry["path"] = values["path"]
        elif declared["kind"] == "s3":
            entry.update(
                endpoint=values["endpoint_url"],
                access_key=values["access_key"],
                secret_key=values["secret_key"],
            )
        elif declared["kind"] == "azure":
            entry.update(
                endpoint=s["azurite"].blob_endpoint, connection_string=values["connection_string"]
            )
        else:
            entry.update(endpoint=values["endpoint_url"], project=values["project"])
        described.append(entry)
    return described


def _announce(console: Console, info: dict[str, Any], data_dir: Path) -> None:
    console.rule("[bold green]blindstore demo is running")
    lines = [
        f"S3 endpoint  {info['endpoint']}",
        f"access key   {info['access_key']}",
        f"secret key   {info['secret_key']}",
        f"tenants      {info['tenant']}, {info['alt_tenant']}",
        "",
        "Placement (deploy/policy.demo.yaml): bucket 'patient-records' → identifying → "
        "sovereign disk + on-premise S3; 'research-exports' → pseudonymized → sovereign disk + "
        "AWS; anything else → AWS + Azure + GCS. Set the header x-amz-meta-classification to "
        "choose per object. Identifying objects need the headers x-blindstore-consent-ref and "
        "x-blindstore-legal-basis (docs/provenance.md).",
        "",
        "Where the ciphertext is:",
    ]
    for backend in info["backends"]:
        where = backend.get("path") or backend.get("endpoint")
        lines.append(f"  {backend['name']:15} {backend['kind']:6} {backend['provider']:30} {where}")
    lines += [
        "",
        f"Everything (credentials included) is in {data_dir / _MARKER}.",
        f"Explain a placement: blindstore policy explain {data_dir / 'policy.yaml'} "
        "--tenant demo --bucket patient-records --key scan.dcm",
        "Ctrl-C stops the gateway, the stand-ins and OpenBao.",
    ]
    console.print("\n".join(lines), soft_wrap=True, highlight=False)
    console.rule()
