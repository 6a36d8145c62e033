"""A single-node OpenBao that keeps its keys across restarts, for `blindstore dev`.

`bao server -dev` keeps everything in memory: restarting `make run` would then lose every tenant
key and make the data directory unreadable (a crypto-shred by accident). This runs OpenBao with
file storage under the data directory instead, initialises it once (one unseal key share) and
unseals it on every start. The unseal key and root token sit in ``<dir>/init.json`` (mode 0600):
acceptable for a developer machine, never for production.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from blindstore.devtools.openbao import (
    OpenBaoError,
    OpenBaoServer,
    find_bao_binary,
    free_port,
)
from blindstore.devtools.process import launch, wait_until


def _call(
    addr: str, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Vault-Token"] = token
    request = urllib.request.Request(  # noqa: S310 (our own loopback http URL)
        f"{addr}/v1/{path}", data=data, method=method, headers=headers
    )
    with urllib.request.urlopen(request, timeout=10.0) as response:  # noqa: S310
        raw = response.read()
    decoded = json.loads(raw) if raw else {}
    return decoded if isinstance(decoded, dict) else {}


def start_persistent_openbao(
    directory: Path, *, port: int | None = None, ready_timeout: float = 30.0
) -> OpenBaoServer:
    """Start (initialising on first use) an OpenBao whose storage lives in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = port or free_port()
    addr = f"http://127.0.0.1:{port}"
    config = directory / "openbao.hcl"
    data = directory / "data"
    data.mkdir(exist_ok=True, mode=0o700)
    config.write_text(
        # OpenBao 2 keeps only integrated (raft) storage among the local ones.
        f'storage "raft" {{\n  path = {json.dumps(str(data))}\n  node_id = "blindstore-dev"\n}}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}\n'
        f'api_addr = "{addr}"\ncluster_addr = "http://127.0.0.1:{port + 1}"\nui = false\n',
        encoding="utf-8",
    )
    log_path = directory / "openbao.log"
    process = launch(
        [find_bao_binary(), "server", f"-config={config}"],
        cwd=directory,
        log_path=log_path,
        env_drop_prefixes=("VAULT_", "BAO_"),
        append_log=True,
    )
    server = OpenBaoServer(
        addr=addr,
        token="",
        workdir=directory,
        log_path=log_path,
        audit_log_path=None,
        process=process,
    )
    try:
        _wait_for_listener(server, ready_timeout)
        server.token = _init_and_unseal(server, directory / "init.json")
        _ensure_transit(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_listener(server: OpenBaoServer, timeout: float) -> None:
    def answers() -> bool:
        _call(server.addr, "GET", "sys/seal-status")
        return True

    wait_until(
        answers,
        timeout=timeout,
        server=server,
        what="OpenBao",
        where=server.addr,
        error=OpenBaoError,
    )


def _init_and_unseal(server: OpenBaoServer, init_file: Path) -> str:
    status = _call(server.addr, "GET", "sys/seal-status")
    if not status.get("initialized"):
        result = _call(server.addr, "PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
        fd = os.open(init_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(
                {"unseal_key": result["keys_base64"][0], "root_token": result["root_token"]}, out
            )
    try:
        saved = json.loads(init_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise OpenBaoError(
            f"OpenBao storage is initialised but {init_file} is unreadable: {exc}"
        ) from exc
    _call(server.addr, "PUT", "sys/unseal", {"key": saved["unseal_key"]})
    deadline = time.monotonic() + 30
    while _call(server.addr, "GET", "sys/seal-status").get("sealed"):
        if time.monotonic() > deadline:
            raise OpenBaoError("OpenBao stayed sealed:\n" + server.log_tail())
        time.sleep(0.05)
    token: str = saved["root_token"]
    # Writable once this node is active (leader elected): sys/health answers 200 only then. A
    # standby answers 429; since OpenBao 2 it serves reads (lookup-self too) but fails writes.
    while True:
        try:
            _call(server.addr, "GET", "sys/health")
            _call(server.addr, "GET", "auth/token/lookup-self", token=token)
            return token
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise OpenBaoError("OpenBao did not become active:\n" + server.log_tail()) from None
            time.sleep(0.05)


def _ensure_transit(server: OpenBaoServer) -> None:
    mounts = _call(server.addr, "GET", "sys/mounts", token=server.token)
    listing = mounts.get("data", mounts)
    if "transit/" not in listing:
        _call(server.addr, "POST", "sys/mounts/transit", {"type": "transit"}, token=server.token)
    # Set on every start: data directories made before data-subject keys had upsert disabled.
    _call(server.addr, "POST", "transit/config/keys", {"disable_upsert": False}, token=server.token)


def random_token() -> str:
    return secrets.token_hex(16)
