"""A single-node OpenBao that keeps its keys across restarts, for `blindstore dev`.

`bao server -dev` keeps everything in memory: restarting `make run` would then lose every tenant
key and make the data directory unreadable (a crypto-shred by accident). This runs OpenBao with
file storage under the data directory instead, initialises it once (one unseal key share) and
unseals it on every start. The unseal key and root token sit in ``<dir>/init.json`` (mode 0600):
acceptable for a developer machine, never for production.

``sys/init`` answers only after the first raft election (5–10 s, longer on a loaded machine), so
it gets a long timeout, and its answer is saved atomically the moment it arrives. If it is lost
anyway (the call timed out, the command was interrupted), OpenBao is initialised but its keys
are gone: it cannot hold any data yet (nothing of ours is written before the keys are saved), so
the next start re-creates it instead of failing for ever.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blindstore.devtools.openbao import (
    OpenBaoError,
    OpenBaoServer,
    find_bao_binary,
    free_port,
)
from blindstore.devtools.process import launch, stop_orphans, wait_until

#: How long ``sys/init`` may take (it returns after the first raft election).
INIT_TIMEOUT_SECONDS = 120.0
#: Ordinary API calls.
CALL_TIMEOUT_SECONDS = 10.0


class _KeysNeverSaved(Exception):
    """OpenBao's storage is (or may be) initialised, but its unseal key and root token were not
    saved: nothing can ever unseal it, and it holds nothing of ours."""


def _call(
    addr: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
    *,
    timeout: float = CALL_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Vault-Token"] = token
    request = urllib.request.Request(  # noqa: S310 (our own loopback http URL)
        f"{addr}/v1/{path}", data=data, method=method, headers=headers
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        raw = response.read()
    decoded = json.loads(raw) if raw else {}
    return decoded if isinstance(decoded, dict) else {}


def start_persistent_openbao(
    directory: Path,
    *,
    port: int | None = None,
    ready_timeout: float = 30.0,
    init_timeout: float = INIT_TIMEOUT_SECONDS,
    notify: Callable[[str], object] | None = None,
) -> OpenBaoServer:
    """Start (initialising on first use) an OpenBao whose storage lives in ``directory``.

    An OpenBao left running by a dead previous command is stopped first; one initialised whose
    keys were never saved is re-created, with one line to ``notify`` (default: stderr).
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stop_orphans(directory)
    port = port or free_port()
    for attempt in (1, 2):
        server = _launch(directory, port)
        try:
            _wait_for_listener(server, ready_timeout)
            server.token = _init_and_unseal(server, directory / "init.json", init_timeout)
            _ensure_transit(server)
        except _KeysNeverSaved as lost:
            server.stop()
            if attempt == 2:
                raise OpenBaoError(f"could not initialise OpenBao in {directory}: {lost}") from None
            (notify or _to_stderr)(
                f"OpenBao in {directory} was initialised but its keys were never saved "
                "(an earlier start was interrupted); it holds no data yet: re-creating it."
            )
            shutil.rmtree(directory / "data")
        except BaseException:
            server.stop()
            raise
        else:
            return server
    raise AssertionError("unreachable: the loop returns or raises")


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _launch(directory: Path, port: int) -> OpenBaoServer:
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
    return OpenBaoServer(
        addr=addr,
        token="",
        workdir=directory,
        log_path=log_path,
        audit_log_path=None,
        process=process,
    )


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


def _init_and_unseal(server: OpenBaoServer, init_file: Path, init_timeout: float) -> str:
    status = _call(server.addr, "GET", "sys/seal-status")
    if not status.get("initialized"):
        _save_keys(init_file, _initialise(server, init_timeout))
    saved = _saved_keys(init_file)
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


def _initialise(server: OpenBaoServer, timeout: float) -> dict[str, str]:
    """``sys/init`` with one key share: the unseal key and root token it returns."""
    try:
        result = _call(
            server.addr,
            "PUT",
            "sys/init",
            {"secret_shares": 1, "secret_threshold": 1},
            timeout=timeout,
        )
        return {"unseal_key": result["keys_base64"][0], "root_token": result["root_token"]}
    except (OSError, ValueError, KeyError, IndexError) as exc:
        # The request may still complete inside OpenBao after we gave up: its answer is lost.
        raise _KeysNeverSaved(f"sys/init gave no keys ({type(exc).__name__}: {exc})") from exc


def _save_keys(init_file: Path, keys: dict[str, str]) -> None:
    """Write ``init.json`` (0600) so that it is either absent or whole, even after a crash."""
    partial = init_file.with_name(f".{init_file.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(keys, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, init_file)
    directory = os.open(init_file.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _saved_keys(init_file: Path) -> dict[str, str]:
    if not init_file.exists():
        raise _KeysNeverSaved(f"{init_file.name} was never written")
    try:
        saved = json.loads(init_file.read_text(encoding="utf-8"))
        return {"unseal_key": str(saved["unseal_key"]), "root_token": str(saved["root_token"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OpenBaoError(
            f"OpenBao storage is initialised but {init_file} is unreadable ({exc}); "
            "if nothing in this data directory matters, remove it and start again"
        ) from None


def _ensure_transit(server: OpenBaoServer) -> None:
    mounts = _call(server.addr, "GET", "sys/mounts", token=server.token)
    listing = mounts.get("data", mounts)
    if "transit/" not in listing:
        _call(server.addr, "POST", "sys/mounts/transit", {"type": "transit"}, token=server.token)
    # Set on every start: data directories made before data-subject keys had upsert disabled.
    _call(server.addr, "POST", "transit/config/keys", {"disable_upsert": False}, token=server.token)


def random_token() -> str:
    return secrets.token_hex(16)
