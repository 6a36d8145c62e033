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

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from blindstore.devtools import process as _process
from blindstore.devtools.process import ServiceProcess

#: Azurite's built-in development account, published in Azure's documentation (not a secret).
ACCOUNT_NAME: Final = "devstoreaccount1"
ACCOUNT_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: Where ``make install`` puts the npm package, relative to the project root.
TOOLS_SCRIPT: Final = Path(".tools/node/node_modules/.bin/azurite-blob")

_BIND_ERROR = "EADDRINUSE"


class AzuriteError(RuntimeError):
    """Azurite could not be found or started (the message includes its log)."""


@dataclass(eq=False)
class AzuriteServer(ServiceProcess):
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
    directory, owns_workdir = _process.prepare_workdir(workdir, "azurite-")
    command = [node or find_node(), str(script or find_azurite_script())]
    return _process.start_with_retries(
        lambda: _launch(
            command, directory, host=host, port=port or _process.free_port(host), debug=debug
        ),
        lambda server: _wait_until_ready(server, ready_timeout),
        attempts=1 if port is not None else 3,
        bind_error=_BIND_ERROR,
        error=AzuriteError,
        workdir=directory,
        owns_workdir=owns_workdir,
    )


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
    process = _process.launch(
        argv,
        cwd=workdir,
        log_path=log_path,
        # AZURITE_ACCOUNTS would replace the development account this module connects with.
        env_drop_names=("AZURITE_ACCOUNTS",),
        append_log=True,
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
    client = BlobServiceClient.from_connection_string(
        server.connection_string, retry_total=0, connection_timeout=1, read_timeout=5
    )

    def lists_containers() -> bool:
        # An authenticated call, not just an open port: another service on the port (the
        # reason ours is about to exit) would accept connections too.
        next(iter(client.list_containers()), None)
        return True

    with client:
        _process.wait_until(
            lists_containers,
            timeout=timeout,
            server=server,
            what="Azurite",
            where=server.blob_endpoint,
            error=AzuriteError,
            ignore=(AzureError,),
        )
