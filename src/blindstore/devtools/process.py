"""What the stand-in service starters share: launching, stopping, ports, readiness.

Each service runs in its own process group (``stop()`` kills it whole) with its output in a log
file (a pipe nobody reads would block it) and an environment stripped of the variables that would
reconfigure it. A port picked free can be taken by another process before the service binds it:
``start_with_retries`` launches again on such a lost race.

A service must not outlive the process that started it (a crashed or ``kill -9``-ed `blindstore
dev` would leave an OpenBao holding its storage, which the next start would then find in its
way): on Linux the kernel sends it SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), and
where that is unavailable or bypassed, the pid file ``launch`` writes next to the service lets
the next start find the orphan and stop it (``stop_orphans``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

#: Lines of service output quoted in a startup error.
LOG_TAIL_LINES = 40

#: ``launch`` records each service as ``<cwd>/<PID_FILE_PREFIX><program>.pid``.
PID_FILE_PREFIX = ".blindstore-"
_PR_SET_PDEATHSIG = 1


class ServiceProcess:
    """Mixin for a service dataclass declaring ``process``, ``workdir``, ``log_path`` and
    ``_owns_workdir`` (the working directory is removed by ``stop()`` when owned)."""

    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    _owns_workdir: bool

    @property
    def running(self) -> bool:
        """Whether the service process is still alive."""
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0, *, kill_after: float | None = None) -> None:
        """Terminate the process group (SIGTERM, then SIGKILL after ``timeout``); idempotent.

        ``kill_after`` bounds the wait after SIGKILL (default: ``timeout``).
        """
        if self.running:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait(timeout if kill_after is None else kill_after)
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._owns_workdir = False

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the service's output."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


S = TypeVar("S", bound=ServiceProcess)


def find_executable(name: str, *, error: type[Exception], hint: str) -> str:
    """``name`` beside ``sys.executable`` (a virtualenv's bin/) first, then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise error(hint)
    return found


def prepare_workdir(workdir: Path | None, prefix: str) -> tuple[Path, bool]:
    """The working directory (a new temporary one for ``None``) and whether the caller owns it."""
    directory = Path(tempfile.mkdtemp(prefix=prefix)) if workdir is None else workdir
    directory.mkdir(parents=True, exist_ok=True)
    return directory, workdir is None


def launch(
    argv: list[str],
    *,
    cwd: Path,
    log_path: Path,
    env_drop_prefixes: tuple[str, ...] = (),
    env_drop_names: Collection[str] = (),
    append_log: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group, output to ``log_path``, without the variables
    named in ``env_drop_names`` or starting with one of ``env_drop_prefixes``.

    The service gets SIGTERM when this process dies, and its pid is recorded in ``cwd`` for
    ``stop_orphans`` (module docstring)."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in env_drop_names and not name.startswith(env_drop_prefixes)
    }
    with log_path.open("ab" if append_log else "wb") as log:
        process = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=environment,
            start_new_session=True,  # own process group: stop() kills it whole
            preexec_fn=_die_with_parent(),  # noqa: PLW1509 (async-signal-safe calls only)
        )
    _write_pid_file(cwd / f"{PID_FILE_PREFIX}{Path(argv[0]).name}.pid", process.pid)
    return process


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when its parent dies; ``None``
    where ``prctl`` does not exist (the pid file still catches the orphan at the next start).

    The death signal fires when the *thread* that forked exits: services are launched from the
    main thread of the commands that start them."""
    libc_name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    parent = os.getpid()

    def in_child() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody will send the signal.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a pid reused from another
    process apart); ``None`` if no such process (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # Field 22; the command name (field 2) may contain spaces, so count after its ")".
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _write_pid_file(path: Path, pid: int) -> None:
    record = {"pid": pid, "start": _start_time(pid), "parent": os.getpid()}
    record["parent_start"] = _start_time(os.getpid())
    with contextlib.suppress(OSError):
        path.write_text(" ".join(f"{k}={v}" for k, v in record.items()) + "\n", "ascii")


def _read_pid_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


class ServiceInUseError(RuntimeError):
    """A service recorded in the directory still belongs to a running process."""


def stop_orphans(directory: Path, *, timeout: float = 10.0) -> list[int]:
    """Stop the services a dead process launched under ``directory`` (pid files of ``launch``,
    searched recursively); the pids stopped. A service whose parent still runs is not an
    orphan: ``ServiceInUseError`` (another command is using the directory)."""
    stopped: list[int] = []
    if not directory.is_dir():
        return stopped
    for pid_file in sorted(directory.rglob(f"{PID_FILE_PREFIX}*.pid")):
        record = _read_pid_file(pid_file)
        try:
            pid, parent = int(record["pid"]), int(record["parent"])
        except (KeyError, ValueError):
            pid_file.unlink(missing_ok=True)
            continue
        if _start_time(pid) is None or _start_time(pid) != record.get("start"):
            pid_file.unlink(missing_ok=True)  # gone (or the pid now names another process)
            continue
        if parent == os.getpid():
            continue  # ours, running
        if _start_time(parent) == record.get("parent_start"):
            raise ServiceInUseError(
                f"{pid_file.parent} is in use by process {parent} (stop it first)"
            )
        _stop_pid(pid, timeout)
        pid_file.unlink(missing_ok=True)
        stopped.append(pid)
    return stopped


def _stop_pid(pid: int, timeout: float) -> None:
    """SIGTERM the orphan's process group (it leads one: ``start_new_session``), SIGKILL if it
    is still there after ``timeout``."""
    start = _start_time(pid)
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _start_time(pid) != start:
                return  # exited (reaped by init) or gone
            if _is_zombie(pid):
                return
            time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


def free_port(
    host: str = "127.0.0.1", *, also_next: bool = False, error: type[Exception] = RuntimeError
) -> int:
    """A port nobody listens on now; with ``also_next``, one whose successor is free too."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port: int = probe.getsockname()[1]
        if not also_next:
            return port
        if port < 65535 and _can_bind(host, port) and _can_bind(host, port + 1):
            return port
    raise error("no free pair of loopback ports found")


def free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports free now (held together while picking, so all differ)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket())
            probe.bind((host, 0))
            ports.append(probe.getsockname()[1])
        return ports


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    server: ServiceProcess,
    what: str,
    where: str,
    error: type[Exception],
    ignore: tuple[type[Exception], ...] = (OSError, ValueError),
    give_up: Callable[[], bool] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``check`` (an exception in ``ignore`` counts as False) until it holds; raise
    ``error`` with the log tail if the process exits, ``give_up`` holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if not server.running:
            raise error(
                f"{what} exited with status {server.process.returncode} during startup:\n"
                + server.log_tail()
            )
        with contextlib.suppress(*ignore):
            if check():
                return
        if (give_up is not None and give_up()) or time.monotonic() > deadline:
            raise error(f"{what} at {where} not ready after {timeout:g} s:\n" + server.log_tail())
        time.sleep(interval)


def start_with_retries(
    launch_once: Callable[[], S],
    ready: Callable[[S], None],
    *,
    attempts: int,
    bind_error: str,
    error: type[Exception],
    workdir: Path,
    owns_workdir: bool,
) -> S:
    """Launch and wait for readiness, launching again (up to ``attempts`` in all) when ``ready``
    raised ``error`` and the log shows ``bind_error`` (a lost port race). On failure an owned
    ``workdir`` is removed."""
    try:
        for attempt in range(1, attempts + 1):
            server = launch_once()
            try:
                ready(server)
            except error:
                server.stop()
                if attempt < attempts and bind_error.lower() in server.log_tail().lower():
                    continue  # lost the port race: pick another
                raise
            server._owns_workdir = owns_workdir
            return server
    except BaseException:
        if owns_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    raise AssertionError("unreachable")  # the loop returns or raises


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
