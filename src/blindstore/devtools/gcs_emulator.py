"""gcp-storage-emulator, the Google Cloud Storage stand-in, for demos and the tests.

The ``gcp-storage-emulator`` script comes from the PyPI package of the same name (next to the
Python interpreter in a virtualenv, else on ``PATH``). It runs on a free loopback port in its
own process group, with its output in a log file, and keeps its data on disk under
``<workdir>/data/.cloudstorage`` (``in_memory=True`` keeps it in RAM instead). It is ready when
it has logged that it serves and listing buckets succeeds.

What it does not do like GCS (the backend and its tests allow for these): it ignores the
settings of a created bucket (location, soft delete, access controls: every bucket gets 7 days
of soft delete), cannot cancel a resumable upload session (``DELETE`` answers 501; the session
and its bytes stay in ``.meta`` and ``_resumable/``, but never become an object), returns every
object of a listing in one page, rewrites a resumable upload's bytes and its whole ``.meta``
JSON on every request (keep objects few and small), and serves one request at a time.
"""

from __future__ import annotations

import contextlib
import json
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

#: Lines of emulator output quoted in a startup error.
_LOG_TAIL_LINES = 40
_BIND_ERROR = "address already in use"
_STARTED = "[SERVER] All services started"
#: Environment variables the emulator reads, which would override our command line.
_EMULATOR_VARIABLES = ("PORT", "HOST", "STORAGE_BASE", "STORAGE_DIR", "PROJECT_NUMBER")


class GcsEmulatorError(RuntimeError):
    """The emulator could not be found or started (message includes its log)."""


@dataclass(eq=False)
class GcsEmulator:
    """A running emulator: ``endpoint_url`` (``http://127.0.0.1:<port>``) and where it keeps
    its data (``storage_root``, None in memory) and output (``log_path``)."""

    endpoint_url: str
    workdir: Path
    storage_root: Path | None
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    _owns_workdir: bool = field(default=False, repr=False)

    @property
    def running(self) -> bool:
        """Whether the emulator process is still alive."""
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the emulator's process group (SIGTERM, then SIGKILL); idempotent."""
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
        """The last lines of the emulator's output."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> GcsEmulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def find_emulator_binary() -> str:
    """The ``gcp-storage-emulator`` script: beside ``sys.executable`` first, then PATH."""
    beside = Path(sys.executable).parent / "gcp-storage-emulator"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("gcp-storage-emulator")
    if found is None:
        raise GcsEmulatorError(
            "the `gcp-storage-emulator` script was not found: install gcp-storage-emulator"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def start_gcs_emulator(
    *,
    workdir: Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    in_memory: bool = False,
    binary: str | None = None,
    ready_timeout: float = 30.0,
) -> GcsEmulator:
    """Start the emulator and wait until it serves; stop it with ``stop()``.

    With ``port=None`` a free port is picked, and picked again if another process takes it
    before the emulator binds. ``workdir=None`` uses a temporary directory removed by
    ``stop()``.
    """
    owns_workdir = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="gcs-emulator-")) if workdir is None else workdir
    directory.mkdir(parents=True, exist_ok=True)
    executable = binary or find_emulator_binary()
    attempts = 1 if port is not None else 3
    try:
        for attempt in range(1, attempts + 1):
            emulator = _launch(
                executable, directory, host=host, port=port or free_port(host), in_memory=in_memory
            )
            try:
                _wait_until_ready(emulator, ready_timeout)
            except GcsEmulatorError:
                emulator.stop()
                if attempt < attempts and _BIND_ERROR in emulator.log_tail().lower():
                    continue  # lost the port race: pick another
                raise
            emulator._owns_workdir = owns_workdir
            return emulator
    except BaseException:
        if owns_workdir:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _launch(binary: str, workdir: Path, *, host: str, port: int, in_memory: bool) -> GcsEmulator:
    log_path = workdir / f"gcs-emulator-{port}.log"
    data_dir = workdir / "data"
    command = [binary, "--data-dir", str(data_dir), "start", f"--host={host}", f"--port={port}"]
    if in_memory:
        command.append("--in-memory")
    # A developer's settings for another emulator must not reconfigure this one.
    environment = {
        name: value for name, value in os.environ.items() if name not in _EMULATOR_VARIABLES
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=environment,
            start_new_session=True,  # own process group: stop() kills it whole
        )
    return GcsEmulator(
        endpoint_url=f"http://{host}:{port}",
        workdir=workdir,
        storage_root=None if in_memory else data_dir / ".cloudstorage",
        log_path=log_path,
        process=process,
    )


def _wait_until_ready(emulator: GcsEmulator, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not emulator.running:
            raise GcsEmulatorError(
                f"gcp-storage-emulator exited with status {emulator.process.returncode} during "
                "startup:\n" + emulator.log_tail()
            )
        # Our own process must have bound the port (it logs this line only then): another
        # emulator already on the port would answer the listing too.
        if _STARTED in emulator.log_tail():
            with contextlib.suppress(OSError, ValueError):
                if _lists_buckets(emulator.endpoint_url):
                    return
        # The emulator does not exit when it cannot bind: its server thread dies, the process
        # waits forever.
        if _BIND_ERROR in emulator.log_tail().lower() or time.monotonic() > deadline:
            raise GcsEmulatorError(
                f"gcp-storage-emulator at {emulator.endpoint_url} not ready after {timeout:g} s:\n"
                + emulator.log_tail()
            )
        time.sleep(0.05)


def _lists_buckets(endpoint_url: str) -> bool:
    """Whether ``GET /storage/v1/b`` answers with a bucket listing."""
    url = f"{endpoint_url}/storage/v1/b?project=blindstore"
    with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 (our loopback URL)
        listing = json.loads(response.read())
    return isinstance(listing, dict) and listing.get("kind") == "storage#buckets"


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


__all__ = ["GcsEmulator", "GcsEmulatorError", "find_emulator_binary", "start_gcs_emulator"]
