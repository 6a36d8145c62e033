"""The installed `blindstore serve`, started as a subprocess exactly as in production.

``serve_gateway`` writes a YAML settings file, provisions a tenant with
``blindstore tenants create NAME --config FILE``, starts ``blindstore serve --config FILE`` and
waits until it answers; the returned ``Served`` drives it (boto3 client, a ledger of every
acknowledged PUT, ``restart()``, ``kill9()``) and checks that it still tells the truth
(``assert_intact``). Every gateway started here is registered in ``LIVE`` until stopped, so the
suite's autouse check (conftest.py) can verify each one after every attack.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.config import Config

from blindstore.devtools.openbao import OpenBaoServer, free_port

BLINDSTORE = str(Path(sys.executable).parent / "blindstore")
REGION = "us-east-1"
CANARY_KEY = "canary/object"

#: Gateways started and not yet stopped: the autouse check verifies each after every test.
LIVE: list[Served] = []


def clean_environment() -> dict[str, str]:
    """The test's environment without the variables that would point at another Vault."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def s3_client(endpoint: str, access_key: str, secret_key: str, *, timeout: float = 60) -> Any:
    """A boto3 client with retries off: a failure of the gateway must show, not be retried."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=timeout,
        ),
    )


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], timeout: float = 60, *, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log is not None else ""
            raise AssertionError(
                f"the gateway exited during startup ({process.returncode}):\n{tail}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the gateway did not listen on {port} within {timeout} s")


@dataclass(eq=False)
class Served:
    """One running `blindstore serve` process and what the tests know it acknowledged."""

    config_path: Path
    data_dir: Path
    port: int
    access_key: str
    secret_key: str
    bucket: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path = field(repr=False)
    #: Key → sha256 of every PUT the gateway acknowledged (they must all read back identical).
    ledger: dict[str, str] = field(default_factory=dict)
    canary_sha256: str = ""
    #: How many times the process was started again (restart(), kill9() then restart()).
    restarts: int = 0
    _s3: Any = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = s3_client(self.endpoint, self.access_key, self.secret_key)
        return self._s3

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    # ------------------------------------------------------------------ objects

    def put(self, key: str, data: bytes) -> None:
        """PUT ``data`` in ``bucket``; once acknowledged, it joins the ledger."""
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        self.ledger[key] = sha256(data)

    def get(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def assert_intact(self) -> None:
        """The process answers: the canary and every ledger entry read back byte-identical."""
        assert self.alive, f"the gateway died ({self.process.returncode}):\n{self.stderr_tail()}"
        client = s3_client(self.endpoint, self.access_key, self.secret_key, timeout=30)
        canary = client.get_object(Bucket=self.bucket, Key=CANARY_KEY)["Body"].read()
        assert sha256(canary) == self.canary_sha256, "the canary object changed"
        for key, digest in self.ledger.items():
            body = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            assert sha256(body) == digest, f"acknowledged object {key!r} reads back different"

    # ------------------------------------------------------------------ process

    def start(self) -> None:
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [BLINDSTORE, "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=clean_environment(),
            )
        finally:
            log.close()
        wait_for_port(self.port, self.process, log=self.log_path)
        self._s3 = None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (graceful), SIGKILL if it lingers; unregisters the gateway."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self in LIVE:
            LIVE.remove(self)

    def kill9(self) -> None:
        """SIGKILL the process and reap it (nothing of it runs afterwards)."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def restart(self) -> None:
        """Start the process again on the same port and settings (after kill9() or not)."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        self.start()
        self.restarts += 1

    def stderr_text(self) -> str:
        """Everything the process (and its predecessors after restarts) wrote to stderr."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stderr_tail(self, chars: int = 4000) -> str:
        return self.stderr_text()[-chars:]

    def rss_kib(self) -> int:
        """The process's resident set size (VmRSS), KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def gc(self, *extra: str) -> dict[str, int]:
        """Run ``blindstore gc --config FILE --grace 0`` (plus ``extra``); its JSON counts."""
        done = subprocess.run(
            [BLINDSTORE, "gc", "--config", str(self.config_path), "--grace", "0", *extra],
            capture_output=True,
            text=True,
            env=clean_environment(),
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        counts: dict[str, int] = json.loads(done.stdout)
        return counts


def write_config(
    directory: Path,
    openbao: OpenBaoServer,
    port: int,
    *,
    limits: Mapping[str, Any] | None = None,
    storage_path: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """A production-style settings file; ``limits`` (any keys) go through as written, and
    ``extra`` sections are merged over the defaults."""
    settings: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "vault": {
            "addr": openbao.addr,
            "token": openbao.token,
            # A prefix of this gateway's own: gateways sharing one OpenBao never share keys.
            "key_prefix": f"hs{secrets.token_hex(4)}-",
        },
        "storage": {"path": str(storage_path or directory / "blobs")},
        "catalog": {"url": f"sqlite:///{directory / 'catalog.db'}"},
        "log_level": "warning",
    }
    if limits:
        settings["limits"] = dict(limits)
    for name, value in (extra or {}).items():
        # One level deep: ``extra={"vault": {"timeout_seconds": 2}}`` keeps addr and token.
        if isinstance(value, Mapping) and isinstance(settings.get(name), dict):
            settings[name] = {**settings[name], **value}
        else:
            settings[name] = value
    path = directory / "blindstore.yaml"
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def create_tenant(config_path: Path, name: str) -> dict[str, str]:
    """``blindstore tenants create NAME --config FILE``: the printed credentials."""
    created = subprocess.run(
        [BLINDSTORE, "tenants", "create", name, "--config", str(config_path)],
        capture_output=True,
        text=True,
        env=clean_environment(),
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    creds: dict[str, str] = json.loads(created.stdout)
    return creds


def serve_gateway(
    tmp_path: Path,
    openbao: OpenBaoServer,
    *,
    limits: Mapping[str, Any] | None = None,
    storage_path: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Served:
    """Provision and start a `blindstore serve` in ``tmp_path``; stop it with ``stop()``.

    A bucket is created and holds a canary object; both are checked after every hostile test.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config_path = write_config(
        tmp_path, openbao, port, limits=limits, storage_path=storage_path, extra=extra
    )
    creds = create_tenant(config_path, f"hostile-{secrets.token_hex(3)}")
    served = Served(
        config_path=config_path,
        data_dir=tmp_path,
        port=port,
        access_key=creds["access_key"],
        secret_key=creds["secret_key"],
        bucket=f"hostile-{secrets.token_hex(4)}",
        process=None,  # type: ignore[arg-type]  # set by start()
        log_path=tmp_path / "serve.stderr",
    )
    served.start()
    LIVE.append(served)
    try:
        served.s3.create_bucket(Bucket=served.bucket)
        canary = secrets.token_bytes(100_000)
        served.s3.put_object(Bucket=served.bucket, Key=CANARY_KEY, Body=canary)
        served.canary_sha256 = sha256(canary)
    except BaseException:
        served.stop()
        raise
    return served


@contextmanager
def serving(
    tmp_path: Path,
    openbao: OpenBaoServer,
    *,
    limits: Mapping[str, Any] | None = None,
    storage_path: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Iterator[Served]:
    """``serve_gateway`` as a context manager (the gateway stops at the end)."""
    served = serve_gateway(tmp_path, openbao, limits=limits, storage_path=storage_path, extra=extra)
    try:
        yield served
    finally:
        served.stop()


def files_under(root: Path) -> list[Path]:
    """Every file below ``root`` (blob store inspection)."""
    return [path for path in root.rglob("*") if path.is_file()]


def temp_files_under(root: Path) -> list[Path]:
    """The local backend's in-progress ``.tmp-`` files below ``root``."""
    return [path for path in files_under(root) if path.name.startswith(".tmp-")]
