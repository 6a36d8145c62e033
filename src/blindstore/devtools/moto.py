"""moto's standalone S3 server (``moto_server``): the AWS S3 stand-in (tests, ``make demo``).

The ``moto_server`` script comes with ``moto[server]`` (beside the Python interpreter in a
virtualenv, else on ``PATH``). It keeps everything in memory, accepts any credentials and runs on
a free loopback port in its own process group, its output in a log file (a pipe nobody reads
would block it). It is ready when ``GET /moto-api/data.json`` answers: that path is moto's own,
so a foreign server holding the port is never taken for ours.
"""

from __future__ import annotations

import contextlib
import os
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

_LOG_TAIL_LINES = 40
_BIND_ERROR = "address already in use"


class MotoError(RuntimeError):
    """The server could not be found or started (the message includes its log)."""


@dataclass(eq=False)
class MotoServer:
    """A running moto server at ``endpoint_url``; any key pair is accepted, these are handy."""

    endpoint_url: str
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    region: str = "us-east-1"
    access_key: str = "testing"
    secret_key: str = field(default="testing", repr=False)
    _owns_workdir: bool = field(default=False, repr=False)

    @property
    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self.process.poll() is None

    def reset(self) -> None:
        """Forget every bucket and object (moto's own reset API)."""
        request = urllib.request.Request(  # noqa: S310 (our own loopback http URL)
            f"{self.endpoint_url}/moto-api/reset", method="POST", data=b""
        )
        with urllib.request.urlopen(request, timeout=10.0):  # noqa: S310
            pass

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL); idempotent."""
        if self.running:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait(timeout)
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

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def find_moto_server() -> str:
    """The ``moto_server`` script: beside ``sys.executable`` (the venv's bin/) first, then PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("moto_server")
    if found is None:
        raise MotoError("`moto_server` was not found: install moto[server]")
    return found


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
    owns_workdir = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="moto-")) if workdir is None else workdir
    directory.mkdir(parents=True, exist_ok=True)
    executable = binary or find_moto_server()
    attempts = 1 if port is not None else 3
    try:
        for attempt in range(1, attempts + 1):
            server = _launch(executable, directory, host, port or _free_port(host))
            try:
                _wait_until_ready(server, ready_timeout)
            except MotoError:
                server.stop()
                if attempt < attempts and _BIND_ERROR in server.log_tail().lower():
                    continue  # lost the port race: pick another
                raise
            server._owns_workdir = owns_workdir
            return server
    except BaseException:
        if owns_workdir:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _launch(binary: str, workdir: Path, host: str, port: int) -> MotoServer:
    log_path = workdir / f"moto-{port}.log"
    # A developer's AWS settings must not reach the stand-in (nor anything it might call).
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
            [binary, "-H", host, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=environment,
            start_new_session=True,  # own process group: stop() kills it whole
        )
    return MotoServer(
        endpoint_url=f"http://{host}:{port}", workdir=workdir, log_path=log_path, process=process
    )


def _wait_until_ready(server: MotoServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not server.running:
            raise MotoError(
                f"moto exited with status {server.process.returncode} during startup:\n"
                + server.log_tail()
            )
        with contextlib.suppress(OSError, ValueError):
            url = f"{server.endpoint_url}/moto-api/data.json"
            with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310
                if response.status == 200:
                    return
        if time.monotonic() > deadline:
            raise MotoError(
                f"moto at {server.endpoint_url} not ready after {timeout:g} s:\n"
                + server.log_tail()
            )
        time.sleep(0.05)


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
