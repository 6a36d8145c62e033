"""The services `blindstore dev` and `demo` start: a lost `sys/init` answer, orphans.

Regressions for issue 9 item 2 (`sys/init` blocks until the first raft election; a client that
gave up first left OpenBao initialised with its keys never saved, and every later start failed)
and item 11 (a service left by a dead command must be stopped at the next start, not reused).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blindstore.devtools import persistent
from blindstore.devtools import process as services
from blindstore.devtools.openbao import OpenBaoError

_real_urlopen = urllib.request.urlopen


def _slow_init(times: int) -> Callable[..., Any]:
    """``urlopen`` under which the first ``times`` ``sys/init`` calls give up after 1 ms, as a
    client does when the raft election outlasts its timeout (OpenBao completes it anyway)."""
    left = [times]

    def urlopen(request: urllib.request.Request, *args: Any, **kwargs: Any) -> Any:
        if request.full_url.endswith("/v1/sys/init") and request.method == "PUT" and left[0]:
            left[0] -= 1
            kwargs["timeout"] = 0.001
        return _real_urlopen(request, *args, **kwargs)

    return urlopen


def test_a_lost_init_answer_is_recovered_within_the_same_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _slow_init(1))
    server = persistent.start_persistent_openbao(tmp_path / "openbao")
    try:
        assert server.request("GET", "sys/mounts/transit/tune")
    finally:
        server.stop()
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 1
    assert "keys were never saved" in said[0]
    assert (tmp_path / "openbao" / "init.json").stat().st_mode & 0o777 == 0o600


def test_a_start_that_keeps_losing_init_fails_cleanly_and_the_next_start_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _slow_init(100))
    with pytest.raises(OpenBaoError, match="could not initialise"):
        persistent.start_persistent_openbao(tmp_path / "openbao")
    monkeypatch.setattr(urllib.request, "urlopen", _real_urlopen)
    server = persistent.start_persistent_openbao(tmp_path / "openbao")
    try:
        server.request("POST", "transit/keys/probe", {})
    finally:
        server.stop()
    # And once more: the saved keys unseal it.
    server = persistent.start_persistent_openbao(tmp_path / "openbao")
    try:
        assert server.request("GET", "transit/keys/probe")
    finally:
        server.stop()


@pytest.fixture
def dead_parent_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = services.launch(["sleep", "60"], cwd=tmp_path, log_path=tmp_path / "sleep.log")
    yield process
    process.kill()
    process.wait()


def _rewrite_parent(pid_file: Path, parent: int) -> None:
    fields = dict(item.split("=", 1) for item in pid_file.read_text().split())
    fields["parent"] = str(parent)
    fields["parent_start"] = "0"
    pid_file.write_text(" ".join(f"{k}={v}" for k, v in fields.items()) + "\n")


def test_a_service_whose_parent_died_is_stopped_at_the_next_start(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], dead_parent_pid: int
) -> None:
    pid_file = tmp_path / ".blindstore-sleep.pid"
    assert pid_file.exists()
    _rewrite_parent(pid_file, dead_parent_pid)
    assert services.stop_orphans(tmp_path.parent) == [sleeper.pid]
    sleeper.wait(5)
    assert not pid_file.exists()


def test_a_service_whose_parent_still_runs_is_not_touched(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    pid_file = tmp_path / ".blindstore-sleep.pid"
    _rewrite_parent(pid_file, os.getppid())  # pytest's parent: alive, and not us
    fields = dict(item.split("=", 1) for item in pid_file.read_text().split())
    stat = Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[-1].split()
    fields["parent_start"] = stat[19]
    pid_file.write_text(" ".join(f"{k}={v}" for k, v in fields.items()) + "\n")
    with pytest.raises(services.ServiceInUseError, match="in use"):
        services.stop_orphans(tmp_path)
    assert sleeper.poll() is None


def test_a_service_dies_with_the_process_that_launched_it(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from blindstore.devtools.process import launch;"
        "p = Path(sys.argv[1]); c = launch(['sleep', '60'], cwd=p, log_path=p / 'log');"
        "print(c.pid, flush=True); import os; os._exit(0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    child = int(done.stdout.strip())
    deadline = time.monotonic() + 5
    while _alive(child):
        assert time.monotonic() < deadline, "the service outlived the process that launched it"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
