"""Run a real gateway (uvicorn, httptools) in a background thread for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config

from blindstore import provision, runtime
from blindstore.cli.devrun import ensure_audit_key
from blindstore.cli.main import dev_settings
from blindstore.config import Settings
from blindstore.errors import BlindstoreError
from blindstore.gateway import Gateway
from blindstore.keys.transit import TransitKeyWrapper

T = TypeVar("T")


@dataclass
class Credentials:
    tenant: str
    access_key: str
    secret_key: str


@dataclass
class RunningGateway:
    endpoint: str
    port: int
    settings: Settings
    data_dir: Path
    gateway: Gateway
    tenants: dict[str, Credentials]
    _loop: asyncio.AbstractEventLoop
    _stop: Callable[[], None]
    _thread: threading.Thread
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def blob_dir(self) -> Path:
        return self.settings.storage.path

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the gateway's event loop (to reach the catalog, keys...)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def add_tenant(self, name: str) -> Credentials:
        """Provision one more tenant (its Transit key and an access key) on the running gateway."""
        made = self.run(provision.create_tenant(self.gateway.catalog, self.gateway.keys, name))
        self.tenants[name] = Credentials(name, made.access_key_id, made.secret_key)
        return self.tenants[name]

    def client(self, tenant: str = "demo", *, addressing: str = "path", **config: Any) -> Any:
        creds = self.tenants[tenant]
        cache_key = (tenant, addressing)
        if not config and cache_key in self._clients:
            return self._clients[cache_key]
        endpoint = self.endpoint
        if addressing == "virtual":
            # *.localhost does not resolve everywhere: the gateway doubles as the HTTP proxy and
            # still receives Host: bucket.localhost:<port>.
            endpoint = f"http://localhost:{self.port}"
            config.setdefault("proxies", {"http": self.endpoint})
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=creds.access_key,
            aws_secret_access_key=creds.secret_key,
            region_name="us-east-1",
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": addressing},
                retries={"max_attempts": 1, "mode": "standard"},
                **config,
            ),
        )
        if not config:
            self._clients[cache_key] = client
        return client

    def stop(self) -> None:
        self._stop()
        self._thread.join(30)


def start_gateway(
    data_dir: Path,
    *,
    vault_addr: str,
    vault_token: str,
    tenants: tuple[str, ...] = ("demo", "other"),
    overrides: dict[str, Any] | None = None,
    admin_token: str | None = None,
) -> RunningGateway:
    """A gateway on a free port with ``tenants`` created. Tenant keys are created with the
    gateway's own token, or with ``admin_token`` when the gateway's identity may not create keys
    (the least-privilege ``blindstore-gateway`` policy)."""
    base = dev_settings(data_dir, vault_addr=vault_addr, vault_token=vault_token, port=0)
    settings = base
    if overrides:
        merged = base.model_dump(mode="json")
        for section, values in overrides.items():
            merged[section] = {**merged.get(section, {}), **values}
        # The token is a SecretStr: dumped masked, so put it back (unless the overrides log in
        # by another method, which takes no static token).
        method = (merged["vault"].get("auth") or {}).get("method", "token")
        merged["vault"]["token"] = vault_token if method == "token" else None
        settings = Settings.model_validate(merged)
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        try:
            async with runtime.open_gateway(settings) as gateway:
                creds = {}
                admin = (
                    TransitKeyWrapper(url=vault_addr, token=admin_token, mount=settings.vault.mount)
                    if admin_token is not None
                    else None
                )
                try:
                    for name in tenants:
                        made = await provision.create_tenant(
                            gateway.catalog, admin or gateway.keys, name
                        )
                        creds[name] = Credentials(name, made.access_key_id, made.secret_key)
                finally:
                    if admin is not None:
                        await admin.close()
                with contextlib.suppress(BlindstoreError):
                    # Audit checkpoints are signed with it (provisioning creates it).
                    await ensure_audit_key(settings, admin_token or vault_token)
                server = runtime.make_server(settings, gateway)
                task = asyncio.create_task(server.serve())
                while not server.started:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.01)
                state.update(
                    gateway=gateway,
                    creds=creds,
                    server=server,
                    loop=asyncio.get_running_loop(),
                    port=server.servers[0].sockets[0].getsockname()[1],
                )
                ready.set()
                await task
        except BaseException as exc:
            state["error"] = exc
            ready.set()
            raise

    def thread_main() -> None:
        import contextlib

        import uvloop

        with contextlib.suppress(BaseException):
            uvloop.run(main())

    thread = threading.Thread(target=thread_main, name="gateway", daemon=True)
    thread.start()
    if not ready.wait(60) or "error" in state:
        raise RuntimeError(f"gateway did not start: {state.get('error')!r}")

    def stop() -> None:
        state["server"].should_exit = True

    port = state["port"]
    return RunningGateway(
        endpoint=f"http://127.0.0.1:{port}",
        port=port,
        settings=settings,
        data_dir=data_dir,
        gateway=state["gateway"],
        tenants=state["creds"],
        _loop=state["loop"],
        _stop=stop,
        _thread=thread,
    )


def write_instance_file(
    data_dir: Path, *, vault_addr: str, vault_token: str, name: str = "dev.json"
) -> None:
    """What `blindstore dev` (``dev.json``) or `blindstore demo` (``demo.json``) writes: where
    OpenBao is, so that CLI commands given ``--data-dir data_dir`` act on this instance."""
    (data_dir / name).write_text(
        json.dumps({"vault_addr": vault_addr, "vault_token": vault_token}), encoding="utf-8"
    )


def start_cli_gateway(
    data_dir: Path,
    *,
    vault_addr: str,
    vault_token: str,
    instance_file: str = "dev.json",
    tenants: tuple[str, ...] = ("demo", "other"),
    overrides: dict[str, Any] | None = None,
) -> RunningGateway:
    """``start_gateway`` with the instance file the CLI reads (``--data-dir data_dir``)."""
    write_instance_file(
        data_dir, vault_addr=vault_addr, vault_token=vault_token, name=instance_file
    )
    return start_gateway(
        data_dir,
        vault_addr=vault_addr,
        vault_token=vault_token,
        tenants=tenants,
        overrides=overrides,
    )


def start_admin_gateway(
    root: Path,
    *,
    vault_addr: str,
    vault_token: str,
    admin_token: str,
    policy: str,
    tenants: tuple[str, ...] = ("demo",),
) -> RunningGateway:
    """A gateway in ``root / "gw"`` with the admin API on (``admin_token``), routing by the
    placement policy ``policy`` (YAML text, written to ``root / "policy.yaml"``)."""
    policy_file = root / "policy.yaml"
    policy_file.write_text(policy, encoding="utf-8")
    return start_gateway(
        root / "gw",
        vault_addr=vault_addr,
        vault_token=vault_token,
        tenants=tenants,
        overrides={"admin": {"token": admin_token}, "placement": {"policy": str(policy_file)}},
    )
