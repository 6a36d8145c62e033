"""The installed `blindstore dev` as a subprocess: OpenBao (raft storage) + gateway on disk."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blindstore.devtools.openbao import free_port
from tests.hostile.served import BLINDSTORE, clean_environment, s3_client, wait_for_port


@dataclass(eq=False)
class DevRun:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path

    @property
    def info(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.data_dir / "dev.json").read_text())
        return loaded

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def s3(self) -> Any:
        return s3_client(self.endpoint, self.info["access_key"], self.info["secret_key"])

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_dev(data_dir: Path, *, timeout: float = 120) -> DevRun:
    """``blindstore dev --data-dir DIR --port P``; returns once it announced its endpoint."""
    port = free_port()
    log_path = data_dir.parent / f"{data_dir.name}-dev-{port}.out"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [BLINDSTORE, "dev", "--data-dir", str(data_dir), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**clean_environment(), "COLUMNS": "200", "TERM": "dumb"},
        )
    run = DevRun(data_dir=data_dir, port=port, process=process, log_path=log_path)
    try:
        wait_for_port(port, process, timeout, log=log_path)
        deadline = time.monotonic() + 30
        # dev.json of a previous run names an endpoint too: only this run's port counts.
        while _info_or_empty(data_dir).get("endpoint") != run.endpoint:
            assert run.alive, run.output()
            assert time.monotonic() < deadline, "dev.json never named the endpoint"
            time.sleep(0.1)
    except BaseException:
        run.stop()
        raise
    return run


def _info_or_empty(data_dir: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads((data_dir / "dev.json").read_text())
    except (OSError, ValueError):
        return {}
    return loaded


def openbao_pids(data_dir: Path) -> list[int]:
    """Pids of the `bao server` processes running on this data directory's configuration."""
    config = str(data_dir.absolute() / "openbao" / "openbao.hcl")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(arg.decode(errors="replace").endswith(config) for arg in argv):
            found.append(int(proc.name))
    return found
