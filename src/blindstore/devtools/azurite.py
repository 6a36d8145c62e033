"""A real Azurite blob service (Azure Blob Storage's stand-in) for the tests and ``make demo``.

Azurite comes from npm (``make install`` puts it in ``<project>/.tools/node``); it is run with the
``node`` found on ``PATH``. The service listens on a free loopback port, keeps its data in
``<workdir>/data`` (its ``--location``: a LokiJS metadata database plus extent files, which the
blindness tests read raw), writes its access log to ``<workdir>/azurite.log`` and, with
``debug=True``, every request's headers to ``<workdir>/debug.log``. It runs in its own process
group and is ready when a ``list_containers`` call with the well-known development account
succeeds.

Azurite saves its metadata database every 5 s and when stopped (SIGTERM), so raw files may lag
the API by that much while it runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

#: Azurite's built-in development account, published in Azure's documentation (not a secret).
ACCOUNT_NAME: Final = "devstoreaccount1"
ACCOUNT_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: Where ``make install`` puts the npm package, relative to the project root.
TOOLS_SCRIPT: Final = Path(".tools/node/node_modules/.bin/azurite-blob")

_LOG_TAIL_LINES = 40
_BIND_ERROR = "EADDRINUSE"


class AzuriteError(RuntimeError):
    """Azurite could not be found or started (the message includes its log)."""


@dataclass(eq=False)
class AzuriteServer:
    """A running Azurite blob service and the facts needed to connect to it."""

    host: str
    port: int
    workdir: Path
    data_dir: Path
    log_path: Path
    debug_log_path: Path | None
    process: subprocess.Popen[bytes] = field(repr=False)
    account_name: str = ACCOUNT_NAME
    account_key: str = field(default=ACCOUNT_KEY, repr=False)
    _owns_workdir: bool = field(default=False, repr=False)

    @property
    def blob_endpoint(self) -> str:
        """``http://<host>:<port>/<account>`` (Azurite puts the account in the path)."""
        return f"http://{self.host}:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        """A connection string with the account key, as Azure's portal would give one."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )

    @property
    def running(self) -> bool:
        """Whether the service process is still alive."""
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process group (SIGTERM, which saves the database, then SIGKILL)."""
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
        """The last lines of the service's console output."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> AzuriteServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def find_azurite_script(start: Path | None = None) -> Path:
    """``azurite-blob``: under ``.tools/node`` of the project holding ``start`` (default: the
    working directory) or this file, else on ``PATH``. Symlinks are resolved, so that it can be
    run as ``node <script>``.
    """
    here = Path(__file__).resolve()
    for base in (Path.cwd() if start is None else start.resolve(), here):
        for directory in (base, *base.parents):
            candidate = directory / TOOLS_SCRIPT
            if candidate.is_file():
                return candidate.resolve()
    found = shutil.which("azurite-blob")
    if found is None:
        raise AzuriteError("azurite-blob was not found: run `make install` (npm azurite)")
    return Path(found).resolve()


def find_node() -> str:
    """The ``node`` executable on PATH."""
    found = shutil.which("node")
    if found is None:
        raise AzuriteError("the `node` executable was not found on PATH (Azurite needs Node.js)")
    return found


def start_azurite(
    *,
    workdir: Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    debug: bool = False,
    script: Path | None = None,
    node: str | None = None,
    ready_timeout: float = 30.0,
) -> AzuriteServer:
    """Start Azurite's blob service and wait until it answers; stop it with ``stop()``.

    With ``port=None`` a free port is picked, and picked again if another process takes it
    first. ``workdir=None`` uses a temporary directory that ``stop()`` removes.
    """
    owns_workdir = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="azurite-")) if workdir is None else workdir
    directory.mkdir(parents=True, exist_ok=True)
    command = [node or find_node(), str(script or find_azurite_script())]
    attempts = 1 if port is not None else 3
    try:
        for attempt in range(1, attempts + 1):
            server = _launch(
                command, directory, host=host, port=port or _free_port(host), debug=debug
            )
            try:
                _wait_until_ready(server, ready_timeout)
            except AzuriteError:
                server.stop()
                if attempt < attempts and _BIND_ERROR in server.log_tail():
                    continue  # lost the port race: pick another
                raise
            server._owns_workdir = owns_workdir
            return server
    except BaseException:
        if owns_workdir:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _launch(
    command: list[str], workdir: Path, *, host: str, port: int, debug: bool
) -> AzuriteServer:
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    log_path = workdir / "azurite.log"
    debug_log = workdir / "debug.log" if debug else None
    argv = [
        *command,
        "--blobHost",
        host,
        "--blobPort",
        str(port),
        "--location",
        str(data_dir),
        # The SDK is often newer than the API versions Azurite knows; it serves them anyway.
        "--skipApiVersionCheck",
        # Ignore headers Azurite does not implement rather than failing the request.
        "--loose",
        # Azurite would otherwise try to send usage data to Microsoft.
        "--disableTelemetry",
    ]
    if debug_log is not None:
        argv += ["--debug", str(debug_log)]
    # AZURITE_ACCOUNTS would replace the development account this module connects with.
    environment = {name: value for name, value in os.environ.items() if name != "AZURITE_ACCOUNTS"}
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=environment,
            start_new_session=True,  # own process group: stop() kills it whole
        )
    return AzuriteServer(
        host=host,
        port=port,
        workdir=workdir,
        data_dir=data_dir,
        log_path=log_path,
        debug_log_path=debug_log,
        process=process,
    )


def _wait_until_ready(server: AzuriteServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    client = BlobServiceClient.from_connection_string(
        server.connection_string, retry_total=0, connection_timeout=1, read_timeout=5
    )
    with client:
        while True:
            if not server.running:
                raise AzuriteError(
                    f"Azurite exited with status {server.process.returncode} during startup:\n"
                    + server.log_tail()
                )
            # An authenticated call, not just an open port: another service on the port (the
            # reason ours is about to exit) would accept connections too.
            with contextlib.suppress(AzureError):
                next(iter(client.list_containers()), None)
                return
            if time.monotonic() > deadline:
                raise AzuriteError(
                    f"Azurite at {server.blob_endpoint} not ready after {timeout:g} s:\n"
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
