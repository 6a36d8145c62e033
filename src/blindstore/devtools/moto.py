"""moto's standalone S3 server (``moto_server``): the AWS S3 stand-in (tests, ``make demo``).

The ``moto_server`` script comes with ``moto[server]`` (beside the Python interpreter in a
virtualenv, else on ``PATH``). It keeps everything in memory, accepts any credentials and runs on
a free loopback port in its own process group, its output in a log file (a pipe nobody reads
would block it). It is ready when ``GET /moto-api/data.json`` answers: that path is moto's own,
so a foreign server holding the port is never taken for ours.
"""

from __future__ import annotations

import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from blindstore.devtools import process as _process
from blindstore.devtools.process import ServiceProcess

_BIND_ERROR = "address already in use"


class MotoError(RuntimeError):
    """The server could not be found or started (the message includes its log)."""


@dataclass(eq=False)
class MotoServer(ServiceProcess):
    """A running moto server at ``endpoint_url``; any key pair is accepted, these are handy."""

    endpoint_url: str
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    region: str = "us-east-1"
    access_key: str = "testing"
    secret_key: str = field(default="testing", repr=False)
    _owns_workdir: bool = field(default=False, repr=False)

    def reset(self) -> None:
        """Forget every bucket and object (moto's own reset API)."""
        request = urllib.request.Request(  # noqa: S310 (our own loopback http URL)
            f"{self.endpoint_url}/moto-api/reset", method="POST", data=b""
        )
        with urllib.request.urlopen(request, timeout=10.0):  # noqa: S310
            pass


def find_moto_server() -> str:
    """The ``moto_server`` script: beside ``sys.executable`` (the venv's bin/) first, then PATH."""
    return _process.find_executable(
        "moto_server", error=MotoError, hint="`moto_server` was not found: install moto[server]"
    )


def start_moto(
    *,
    workdir: Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    binary: str | None = None,
    ready_timeout: float = 30.0,
) -> MotoServer:
    """Start ``moto_server``, wait until it serves; stop it with ``stop()``.

    With ``port=None`` a free port is picked, and picked again if another process takes it
    before moto binds. ``workdir`` (for the log) defaults to a temporary directory that
    ``stop()`` removes.
    """
    directory, owns_workdir = _process.prepare_workdir(workdir, "moto-")
    executable = binary or find_moto_server()
    return _process.start_with_retries(
        lambda: _launch(executable, directory, host, port or _process.free_port(host)),
        lambda server: _wait_until_ready(server, ready_timeout),
        attempts=1 if port is not None else 3,
        bind_error=_BIND_ERROR,
        error=MotoError,
        workdir=directory,
        owns_workdir=owns_workdir,
    )


def _launch(binary: str, workdir: Path, host: str, port: int) -> MotoServer:
    log_path = workdir / f"moto-{port}.log"
    process = _process.launch(
        [binary, "-H", host, "-p", str(port)],
        cwd=workdir,
        log_path=log_path,
        # A developer's AWS settings must not reach the stand-in (nor anything it might call).
        env_drop_prefixes=("AWS_",),
    )
    return MotoServer(
        endpoint_url=f"http://{host}:{port}", workdir=workdir, log_path=log_path, process=process
    )


def _wait_until_ready(server: MotoServer, timeout: float) -> None:
    def serves() -> bool:
        url = f"{server.endpoint_url}/moto-api/data.json"
        with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310
            return bool(response.status == 200)

    _process.wait_until(
        serves,
        timeout=timeout,
        server=server,
        what="moto",
        where=server.endpoint_url,
        error=MotoError,
    )
