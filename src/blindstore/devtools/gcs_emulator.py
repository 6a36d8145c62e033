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

import json
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from blindstore.devtools import process as _process
from blindstore.devtools.process import ServiceProcess

_BIND_ERROR = "address already in use"
_STARTED = "[SERVER] All services started"
#: Environment variables the emulator reads, which would override our command line.
_EMULATOR_VARIABLES = ("PORT", "HOST", "STORAGE_BASE", "STORAGE_DIR", "PROJECT_NUMBER")


class GcsEmulatorError(RuntimeError):
    """The emulator could not be found or started (message includes its log)."""


@dataclass(eq=False)
class GcsEmulator(ServiceProcess):
    """A running emulator: ``endpoint_url`` (``http://127.0.0.1:<port>``) and where it keeps
    its data (``storage_root``, None in memory) and output (``log_path``)."""

    endpoint_url: str
    workdir: Path
    storage_root: Path | None
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    _owns_workdir: bool = field(default=False, repr=False)


def find_emulator_binary() -> str:
    """The ``gcp-storage-emulator`` script: beside ``sys.executable`` first, then PATH."""
    return _process.find_executable(
        "gcp-storage-emulator",
        error=GcsEmulatorError,
        hint="the `gcp-storage-emulator` script was not found: install gcp-storage-emulator",
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port nobody listens on now."""
    return _process.free_port(host)


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
    directory, owns_workdir = _process.prepare_workdir(workdir, "gcs-emulator-")
    executable = binary or find_emulator_binary()
    return _process.start_with_retries(
        lambda: _launch(
            executable, directory, host=host, port=port or free_port(host), in_memory=in_memory
        ),
        lambda emulator: _wait_until_ready(emulator, ready_timeout),
        attempts=1 if port is not None else 3,
        bind_error=_BIND_ERROR,
        error=GcsEmulatorError,
        workdir=directory,
        owns_workdir=owns_workdir,
    )


def _launch(binary: str, workdir: Path, *, host: str, port: int, in_memory: bool) -> GcsEmulator:
    log_path = workdir / f"gcs-emulator-{port}.log"
    data_dir = workdir / "data"
    command = [binary, "--data-dir", str(data_dir), "start", f"--host={host}", f"--port={port}"]
    if in_memory:
        command.append("--in-memory")
    process = _process.launch(
        command,
        cwd=workdir,
        log_path=log_path,
        # A developer's settings for another emulator must not reconfigure this one.
        env_drop_names=_EMULATOR_VARIABLES,
    )
    return GcsEmulator(
        endpoint_url=f"http://{host}:{port}",
        workdir=workdir,
        storage_root=None if in_memory else data_dir / ".cloudstorage",
        log_path=log_path,
        process=process,
    )


def _wait_until_ready(emulator: GcsEmulator, timeout: float) -> None:
    _process.wait_until(
        # Our own process must have bound the port (it logs this line only then): another
        # emulator already on the port would answer the listing too.
        lambda: _STARTED in emulator.log_tail() and _lists_buckets(emulator.endpoint_url),
        timeout=timeout,
        server=emulator,
        what="gcp-storage-emulator",
        where=emulator.endpoint_url,
        error=GcsEmulatorError,
        # The emulator does not exit when it cannot bind: its server thread dies, the process
        # waits forever.
        give_up=lambda: _BIND_ERROR in emulator.log_tail().lower(),
    )


def _lists_buckets(endpoint_url: str) -> bool:
    """Whether ``GET /storage/v1/b`` answers with a bucket listing."""
    url = f"{endpoint_url}/storage/v1/b?project=blindstore"
    with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 (our loopback URL)
        listing = json.loads(response.read())
    return isinstance(listing, dict) and listing.get("kind") == "storage#buckets"


__all__ = ["GcsEmulator", "GcsEmulatorError", "find_emulator_binary", "start_gcs_emulator"]
