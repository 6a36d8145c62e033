"""What the stand-in service starters share: launching, stopping, ports, readiness.

Each service runs in its own process group (``stop()`` kills it whole) with its output in a log
file (a pipe nobody reads would block it) and an environment stripped of the variables that would
reconfigure it. A port picked free can be taken by another process before the service binds it:
``start_with_retries`` launches again on such a lost race.
"""

from __future__ import annotations

import contextlib
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
    named in ``env_drop_names`` or starting with one of ``env_drop_prefixes``."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in env_drop_names and not name.startswith(env_drop_prefixes)
    }
    with log_path.open("ab" if append_log else "wb") as log:
        return subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=environment,
            start_new_session=True,  # own process group: stop() kills it whole
        )


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
