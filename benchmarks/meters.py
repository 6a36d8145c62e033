"""What the benchmarks measure outside the client: a server process's CPU and peak RSS, the CPU
of the whole machine, and the Vault round trips recorded in OpenBao's audit log."""

from __future__ import annotations

import json
import os
import platform
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import botocore
import psutil

MiB = 1024 * 1024


def process_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) one process has used so far, its children not included."""
    times = process.cpu_times()
    return float(times.user + times.system)


def machine_busy() -> float:
    """CPU seconds spent by everything on the machine (all CPUs, not idle nor waiting)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def machine_facts() -> dict[str, Any]:
    """What the numbers were measured on, for the JSON output."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
    }


class ProcessMeter:
    """CPU seconds (user + system, the process and its children) and peak RSS of one server.

    The peak is the kernel's high-water mark (``VmHWM``), reset per phase through
    ``/proc/<pid>/clear_refs`` where that is allowed; a 50 ms sampler of the RSS backs it up
    (and is the only source where the reset is refused).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.process = psutil.Process(pid)
        self._sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name=f"rss-{pid}", daemon=True)
        self._thread.start()
        #: Peak RSS from the process's start to the first reset (startup, imports).
        self.startup_peak = self._hwm()
        self.reset_supported = True

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in [self.process, *self._children()]:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def reset_peak(self) -> None:
        """Start a new peak window (the current RSS is its floor)."""
        if self.reset_supported:
            try:
                Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            except OSError:
                self.reset_supported = False
        self._sampled = self.rss()

    def peak_rss(self) -> int:
        """The peak RSS since the last ``reset_peak`` (since start if never reset)."""
        sampled = self._sampled
        return max(sampled, self._hwm()) if self.reset_supported else sampled

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1)

    def _hwm(self) -> int:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _children(self) -> list[psutil.Process]:
        try:
            return self.process.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                rss = self.rss()
            except psutil.Error:
                return
            if rss > self._sampled:
                self._sampled = rss


class AuditCounter:
    """Counts the requests OpenBao's file audit device logged since the last ``take()``.

    Each API call is one ``"type": "request"`` line (and one ``"response"`` line): the honest,
    external count of round trips, whatever the gateway thinks it did.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = path.stat().st_size if path.exists() else 0

    def take(self) -> Counter[str]:
        """Requests by kind (``encrypt``, ``decrypt``, ``other``) since the last call."""
        counts: Counter[str] = Counter()
        if not self.path.exists():
            return counts
        with self.path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        # A line still being written stays for the next take.
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("type") != "request":
                continue
            path = str(entry.get("request", {}).get("path", ""))
            if path.startswith("transit/encrypt/"):
                counts["encrypt"] += 1
            elif path.startswith("transit/decrypt/"):
                counts["decrypt"] += 1
            else:
                counts["other"] += 1
        return counts
