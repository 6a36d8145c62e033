"""The `blindstore` command as a subprocess: help, `tenants create/list` and `blindstore dev`."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from botocore.config import Config

from blindstore.devtools.openbao import OpenBaoServer, free_port
from tests.gwserver import Credentials, start_gateway

pytestmark = pytest.mark.integration

BLINDSTORE = Path(sys.executable).parent / "blindstore"
DEV_FIELDS = {
    "endpoint",
    "access_key",
    "secret_key",
    "data_dir",
    "vault_addr",
    "vault_token",
    "alt_access_key",
    "alt_secret_key",
    "tenant",
    "alt_tenant",
}


def blindstore(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(BLINDSTORE), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"blindstore {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stderr}{result.stdout}"
        )
    return result


def s3_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


@pytest.mark.parametrize(
    "command",
    [
        (),
        ("dev",),
        ("serve",),
        ("tenants",),
        ("tenants", "create"),
        ("tenants", "list"),
        ("access-keys", "seal"),
        ("gc",),
    ],
    ids=lambda c: " ".join(c) or "blindstore",
)
def test_help_of_every_command(command: tuple[str, ...]) -> None:
    out = blindstore(*command, "--help").stdout
    assert "Usage: blindstore" in out
    assert "--help" in out


def test_top_level_help_lists_the_subcommands() -> None:
    out = blindstore("--help").stdout
    for name in ("dev", "serve", "tenants", "gc"):
        assert name in out


# ---------------------------------------------------------------------------- tenants


@pytest.fixture
def data_dir(tmp_path: Path, openbao: OpenBaoServer) -> Path:
    """A data dir whose dev.json points at the session OpenBao (as `blindstore dev` writes it)."""
    path = tmp_path / "state"
    path.mkdir()
    (path / "dev.json").write_text(
        json.dumps({"vault_addr": openbao.addr, "vault_token": openbao.token})
    )
    return path


def test_tenants_create_prints_keys_that_work_against_a_gateway(
    data_dir: Path, openbao: OpenBaoServer
) -> None:
    name = f"clinic-{secrets.token_hex(4)}"
    created = json.loads(blindstore("tenants", "create", name, "--data-dir", str(data_dir)).stdout)
    assert created["tenant"] == name
    assert len(created["access_key"]) == 20
    assert len(created["secret_key"]) == 40
    assert name not in created["transit_key"]  # key names never carry the human name
    listed = json.loads(blindstore("tenants", "list", "--data-dir", str(data_dir)).stdout)
    assert {
        "tenant": name,
        "tenant_id": created["tenant_id"],
        "transit_key": created["transit_key"],
    } in listed
    assert all("secret_key" not in row and "access_key" not in row for row in listed)

    running = start_gateway(
        data_dir, vault_addr=openbao.addr, vault_token=openbao.token, tenants=()
    )
    try:
        running.tenants[name] = Credentials(name, created["access_key"], created["secret_key"])
        s3 = running.client(name)
        s3.create_bucket(Bucket="records")
        s3.put_object(Bucket="records", Key="r.txt", Body=b"made by the CLI's keys")
        assert s3.get_object(Bucket="records", Key="r.txt")["Body"].read() == (
            b"made by the CLI's keys"
        )
    finally:
        running.stop()


def test_tenants_create_refuses_an_existing_name(data_dir: Path) -> None:
    blindstore("tenants", "create", "twice", "--data-dir", str(data_dir))
    again = blindstore("tenants", "create", "twice", "--data-dir", str(data_dir), check=False)
    assert again.returncode == 2
    assert "already exists" in again.stderr
    listed = json.loads(blindstore("tenants", "list", "--data-dir", str(data_dir)).stdout)
    assert [row["tenant"] for row in listed].count("twice") == 1


def test_tenants_list_without_dev_json_explains_what_is_missing(tmp_path: Path) -> None:
    result = blindstore("tenants", "list", "--data-dir", str(tmp_path), check=False)
    assert result.returncode == 2
    assert "dev.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_data_dir_and_config_together_are_refused(tmp_path: Path) -> None:
    result = blindstore(
        "tenants", "list", "--data-dir", str(tmp_path), "--config", str(tmp_path / "c.yaml"),
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "not both" in result.stderr


# ---------------------------------------------------------------------------- blindstore dev


class DevProcess:
    """A `blindstore dev` subprocess whose output goes to a file we can poll."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.port = free_port()
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [str(BLINDSTORE), "dev", "--data-dir", str(data_dir), "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while "Ctrl-C stops the gateway" not in self.output:
            if self.process.poll() is not None:
                raise AssertionError(f"blindstore dev exited early:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"blindstore dev not ready:\n{self.output}")
            time.sleep(0.1)
        info: dict[str, Any] = json.loads((self.data_dir / "dev.json").read_text())
        return info

    def interrupt(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """Last resort after a failed test: stop it and everything it started."""
        if self.process.poll() is not None:
            return
        children = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        for child in children:
            if child.is_running():
                child.kill()


@pytest.fixture
def dev_processes() -> Iterator[list[DevProcess]]:
    started: list[DevProcess] = []
    yield started
    for dev in started:
        dev.kill()


def port_is_open(addr: str) -> bool:
    host, port = addr.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) == 0


def test_dev_runs_openbao_and_the_gateway_and_keeps_state_across_restarts(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    """First start, both demo tenants usable, Ctrl-C stops everything, restart sees the data."""
    data_dir = tmp_path / "dev"
    first = DevProcess(data_dir, tmp_path / "first.log")
    dev_processes.append(first)
    info = first.wait_ready()
    assert set(info) >= DEV_FIELDS
    assert info["endpoint"] == f"http://127.0.0.1:{first.port}"
    assert Path(info["data_dir"]) == data_dir.absolute()
    assert (info["tenant"], info["alt_tenant"]) == ("demo", "demo-alt")
    assert stat.S_IMODE(os.stat(data_dir / "dev.json").st_mode) == 0o600
    for value in (info["endpoint"], info["access_key"], info["secret_key"]):
        assert value in first.output
    assert port_is_open(info["vault_addr"])

    demo = s3_client(info["endpoint"], info["access_key"], info["secret_key"])
    alt = s3_client(info["endpoint"], info["alt_access_key"], info["alt_secret_key"])
    demo.create_bucket(Bucket="ward")
    demo.put_object(Bucket="ward", Key="chart.txt", Body=b"demo tenant's chart")
    alt.create_bucket(Bucket="lab")
    alt.put_object(Bucket="lab", Key="result.txt", Body=b"alt tenant's result")
    assert demo.get_object(Bucket="ward", Key="chart.txt")["Body"].read() == b"demo tenant's chart"
    assert alt.get_object(Bucket="lab", Key="result.txt")["Body"].read() == b"alt tenant's result"
    assert [b["Name"] for b in demo.list_buckets()["Buckets"]] == ["ward"]
    assert [b["Name"] for b in alt.list_buckets()["Buckets"]] == ["lab"]

    openbao = [
        p for p in psutil.Process(first.process.pid).children(recursive=True) if "bao" in p.name()
    ]
    assert len(openbao) == 1
    assert first.interrupt() == 0
    assert "OpenBao stopped" in first.output
    _gone, alive = psutil.wait_procs(openbao, timeout=10)
    assert alive == []
    assert not port_is_open(info["vault_addr"])
    assert not port_is_open(info["endpoint"])

    second = DevProcess(data_dir, tmp_path / "second.log")
    dev_processes.append(second)
    again = second.wait_ready()
    for field in ("access_key", "secret_key", "alt_access_key", "alt_secret_key", "vault_token"):
        assert again[field] == info[field], field
    assert again["endpoint"] == f"http://127.0.0.1:{second.port}"
    demo = s3_client(again["endpoint"], info["access_key"], info["secret_key"])
    alt = s3_client(again["endpoint"], info["alt_access_key"], info["alt_secret_key"])
    assert demo.get_object(Bucket="ward", Key="chart.txt")["Body"].read() == b"demo tenant's chart"
    assert alt.get_object(Bucket="lab", Key="result.txt")["Body"].read() == b"alt tenant's result"
    assert second.interrupt() == 0


def test_dev_seals_the_clear_secrets_of_an_older_data_directory(
    tmp_path: Path, dev_processes: list[DevProcess]
) -> None:
    """A data directory from before sealed secrets: `blindstore dev` seals them and the printed
    credentials keep working."""
    data_dir = tmp_path / "dev"
    first = DevProcess(data_dir, tmp_path / "first.log")
    dev_processes.append(first)
    info = first.wait_ready()
    assert first.interrupt() == 0
    catalog = data_dir / "catalog.db"
    # What an older blindstore left: the secret in clear, nothing sealed.
    with sqlite3.connect(catalog) as conn:
        conn.execute(
            "UPDATE access_keys SET secret_key = ?, sealed_secret = NULL WHERE access_key_id = ?",
            (info["secret_key"], info["access_key"]),
        )

    second = DevProcess(data_dir, tmp_path / "second.log")
    dev_processes.append(second)
    again = second.wait_ready()

    assert (again["access_key"], again["secret_key"]) == (info["access_key"], info["secret_key"])
    s3 = s3_client(again["endpoint"], info["access_key"], info["secret_key"])
    s3.create_bucket(Bucket="after-upgrade")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["after-upgrade"]
    assert second.interrupt() == 0
    with sqlite3.connect(catalog) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        row = conn.execute(
            "SELECT secret_key, sealed_secret FROM access_keys WHERE access_key_id = ?",
            (info["access_key"],),
        ).fetchone()
    assert row[0] is None
    assert row[1].startswith("cs1:")
    assert info["secret_key"].encode() not in catalog.read_bytes()
