"""Benchmark the gateway on each storage stand-in against the same bytes sent direct to it.

For each stand-in (local disk, moto, SeaweedFS, Azurite, gcp-storage-emulator), in one run: start
it, start a gateway (``blindstore serve``, OpenBao dev server) whose ``storage.backend`` is that
stand-in, then PUT and GET one object of ``--size-mib`` through the gateway (boto3, the
benchmarks' one client configuration) and the same bytes direct to the stand-in with its own SDK
(boto3, azure-storage-blob, google-cloud-storage; plain file I/O for the disk). Prints MB/s and
the gateway/direct ratios, and where the CPU went. See benchmarks/README.md.

    python benchmarks/bench_backends.py [--backends moto,azurite] [--size-mib 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from meters import MiB, ProcessMeter, machine_busy, machine_facts, process_cpu
from servers import Target, scratch_dir, start_gateway
from standins import KINDS, Expect, S3Direct, StandIn, start_standin

#: Object size per stand-in when ``--size-mib`` is not given: the whole run stays under ~3
#: minutes on a 2-core machine. The GCS emulator reads a blob's whole file for every ranged GET
#: and rewrites it for every resumable chunk, and the gateway's GCS backend reads 1 MiB ranges
#: and writes 8 MiB chunks: O(n²) in the size (128 MiB takes ~10 s per GET), hence 32 MiB.
DEFAULT_SIZE_MIB = {"local": 128, "moto": 128, "seaweedfs": 128, "azurite": 128, "gcs": 32}
#: Timed rounds per stand-in; the median of each measurement is reported.
DEFAULT_REPEAT = 3
#: After each operation, background work it caused (a deleted blob, a key-pool refill, the
#: stand-in's own bookkeeping) gets this long to be counted with it.
SETTLE_SECONDS = 0.3
#: Operations during which other processes used more than this share of the CPUs, and more than
#: a few of psutil's 10 ms ticks, are flagged.
FOREIGN_CPU_WARNING = 0.05
FOREIGN_CPU_MIN_SECONDS = 0.05
PATHS = ("direct", "gateway")
OPS = ("put", "get")
MB = 1_000_000


@dataclass
class Sample:
    """One timed operation: wall time, and the CPU each process used for it (seconds)."""

    seconds: float
    client_cpu: float
    gateway_cpu: float
    standin_cpu: float
    vault_cpu: float
    #: CPU used by other processes during the operation, as a share of all CPUs.
    foreign_cpu: float

    @property
    def disturbed(self) -> bool:
        foreign_seconds = self.foreign_cpu * self.seconds * (os.cpu_count() or 1)
        return self.foreign_cpu > FOREIGN_CPU_WARNING and foreign_seconds > FOREIGN_CPU_MIN_SECONDS


@dataclass
class Series:
    """The samples of one path (direct or gateway) and one operation (put or get)."""

    size: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def mb_per_s(self) -> float:
        return self.size / MB / self.seconds

    def cpu_ms_per_mib(self, which: str) -> float:
        """Mean CPU of ``which`` (client, gateway, standin, vault) per MiB moved."""
        total: float = sum(getattr(s, f"{which}_cpu") for s in self.samples)
        return total * 1000 / (self.size / MiB * len(self.samples))

    def summary(self) -> dict[str, Any]:
        return {
            "seconds": [round(s.seconds, 4) for s in self.samples],
            "median_seconds": round(self.seconds, 4),
            "mb_per_s": round(self.mb_per_s, 2),
            "cpu_ms_per_mib": {
                who: round(self.cpu_ms_per_mib(who), 2)
                for who in ("client", "gateway", "standin", "vault")
            },
            "foreign_cpu": [round(s.foreign_cpu, 3) for s in self.samples],
        }


@dataclass
class BackendResult:
    kind: str
    size_mib: int
    series: dict[str, Series] = field(default_factory=dict)
    direct_mechanism: str = ""
    gateway_mechanism: str = ""
    #: Wall time for this stand-in: starting everything, warming up, measuring, stopping.
    seconds: float = 0.0
    error: str | None = None

    def mb_per_s(self, path: str, op: str) -> float | None:
        found = self.series.get(f"{path}_{op}")
        return found.mb_per_s if found is not None and found.samples else None

    def ratio(self, op: str) -> float | None:
        """Gateway throughput as a share of direct throughput."""
        direct, gateway = self.mb_per_s("direct", op), self.mb_per_s("gateway", op)
        return gateway / direct if direct and gateway is not None else None

    def summary(self) -> dict[str, Any]:
        return {
            "label": KINDS[self.kind],
            "size_mib": self.size_mib,
            "error": self.error,
            "seconds": round(self.seconds, 1),
            "direct_mechanism": self.direct_mechanism,
            "gateway_mechanism": self.gateway_mechanism,
            "mb_per_s": {
                f"{path}_{op}": _round(self.mb_per_s(path, op), 2) for path in PATHS for op in OPS
            },
            "ratio": {op: _round(self.ratio(op), 3) for op in OPS},
            "series": {name: series.summary() for name, series in self.series.items()},
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class Runner:
    """Measures one stand-in: direct and through its gateway, alternately, ``repeat`` times."""

    def __init__(
        self, standin: StandIn, gateway: Target, data: bytes, repeat: int, result: BackendResult
    ) -> None:
        self.data = data
        self.repeat = repeat
        self.result = result
        self.paths = {
            "direct": standin.direct,
            "gateway": S3Direct(gateway.endpoint, gateway.access_key, gateway.secret_key),
        }
        self.me = psutil.Process()
        self.gateway_meter = ProcessMeter(gateway.pid)
        self.standin_meter = ProcessMeter(standin.pid) if standin.pid else None
        self.vault_meter = ProcessMeter(gateway.vault.process.pid) if gateway.vault else None
        for path in PATHS:
            for op in OPS:
                result.series[f"{path}_{op}"] = Series(len(data))

    def run(self) -> None:
        warm = os.urandom(MiB)
        for client in self.paths.values():
            # Buckets, connections, the gateway's first key-pool refill: in no number.
            client.prepare()
            client.put("warm", warm)
            client.get("warm", Expect(warm))
        time.sleep(SETTLE_SECONDS)
        for round_ in range(self.repeat):
            # Alternate which path goes first, so that drift (page cache, a stand-in's growing
            # state) does not always favour the same one.
            order = PATHS if round_ % 2 == 0 else PATHS[::-1]
            key = f"large-{round_}"
            for op in OPS:
                for path in order:
                    client = self.paths[path]
                    work: Callable[[], None] = (
                        functools.partial(client.put, key, self.data)
                        if op == "put"
                        else functools.partial(client.get, key, Expect(self.data))
                    )
                    self.result.series[f"{path}_{op}"].samples.append(self._measure(work))

    def close(self) -> None:
        self.paths["gateway"].close()
        for meter in (self.gateway_meter, self.standin_meter, self.vault_meter):
            if meter is not None:
                meter.stop()

    def _measure(self, work: Callable[[], None]) -> Sample:
        # Dirty pages of earlier operations are written back now, not during this one.
        os.sync()
        meters = (self.gateway_meter, self.standin_meter, self.vault_meter)
        before = [m.cpu_seconds() if m else 0.0 for m in meters]
        client0 = process_cpu(self.me)
        busy0 = machine_busy()
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
        client = process_cpu(self.me) - client0
        busy = machine_busy() - busy0
        time.sleep(SETTLE_SECONDS)
        gateway, standin, vault = (
            (m.cpu_seconds() if m else 0.0) - b for m, b in zip(meters, before, strict=True)
        )
        ours = client + gateway + standin + vault
        return Sample(
            seconds,
            client,
            gateway,
            standin,
            vault,
            max(0.0, busy - ours) / (seconds * (os.cpu_count() or 1)),
        )


def run_backend(kind: str, root: Path, args: argparse.Namespace, console: Console) -> BackendResult:
    size_mib = args.size_mib or DEFAULT_SIZE_MIB[kind]
    result = BackendResult(kind, size_mib)
    started = time.monotonic()
    workdir = root / kind
    standin: StandIn | None = None
    gateway: Target | None = None
    runner: Runner | None = None
    try:
        with console.status(f"{KINDS[kind]}: starting it and its gateway"):
            standin = start_standin(kind, workdir / "standin")
            result.direct_mechanism = standin.direct.mechanism
            result.gateway_mechanism = standin.gateway_mechanism
            gateway_dir = workdir / "gateway"
            gateway_dir.mkdir()
            gateway = start_gateway(
                gateway_dir, log_level=args.gateway_log_level, storage=standin.storage
            )
        with console.status(f"{KINDS[kind]}: {args.repeat} × PUT and GET of {size_mib} MiB"):
            runner = Runner(
                standin, gateway, secrets.token_bytes(size_mib * MiB), args.repeat, result
            )
            runner.run()
    except Exception as exc:
        result.error = repr(exc)
        tails = [
            f"{who} log:\n{thing.log_tail()}"
            for who, thing in (("gateway", gateway), ("stand-in", standin))
            if thing is not None and thing.log_tail()
        ]
        console.print(f"[red]{KINDS[kind]} failed:[/red] {exc!r}\n" + "\n".join(tails))
    finally:
        if runner is not None:
            runner.close()
        if gateway is not None:
            gateway.stop()
        if standin is not None:
            standin.stop()
    result.seconds = time.monotonic() - started
    return result


# ---------------------------------------------------------------------------- report


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def print_tables(console: Console, results: list[BackendResult]) -> None:
    table = Table(
        title="PUT/GET through the gateway vs direct to each stand-in (MB/s = 10⁶ bytes/s, "
        "median of the rounds; ratio = gateway / direct)",
        title_justify="left",
    )
    for name in ("backend", "object MiB", "direct PUT", "gateway PUT", "ratio"):
        table.add_column(name, justify="left" if name == "backend" else "right")
    for name in ("direct GET", "gateway GET", "ratio"):
        table.add_column(name, justify="right")
    for r in results:
        table.add_row(
            KINDS[r.kind] + (" [red](failed)[/red]" if r.error else ""),
            str(r.size_mib),
            _mb(r.mb_per_s("direct", "put")),
            _mb(r.mb_per_s("gateway", "put")),
            _ratio(r.ratio("put")),
            _mb(r.mb_per_s("direct", "get")),
            _mb(r.mb_per_s("gateway", "get")),
            _ratio(r.ratio("get")),
        )
    console.print(table)

    cpu = Table(
        title="Where the CPU went: ms of CPU per MiB moved (mean of the rounds; 2 busy cores "
        "= 2 CPU-seconds per second of wall time)",
        title_justify="left",
    )
    cpu.add_column("backend / path")
    for op in ("PUT", "GET"):
        for who in ("client", "gateway", "stand-in", "OpenBao", "wall"):
            cpu.add_column(f"{op} {who}", justify="right")
    for r in results:
        for path in PATHS:
            cells = []
            for op in OPS:
                series = r.series.get(f"{path}_{op}")
                if series is None or not series.samples:
                    cells += ["—"] * 5
                    continue
                cells += [
                    f"{series.cpu_ms_per_mib(who):.1f}"
                    for who in ("client", "gateway", "standin", "vault")
                ]
                cells.append(f"{series.seconds * 1000 / (series.size / MiB):.1f}")
            cpu.add_row(f"{r.kind} {path}", *cells)
    console.print(cpu)


def print_notes(console: Console, results: list[BackendResult], args: argparse.Namespace) -> None:
    for r in results:
        if r.direct_mechanism:
            console.print(
                f"[dim]{r.kind}: direct = {r.direct_mechanism}; gateway → {r.kind} = "
                f"{r.gateway_mechanism}[/dim]"
            )
    console.print(
        "[dim]client → gateway: " + S3Direct.mechanism + " (boto3 signs the payload: SHA-256 "
        "and CRC32 of every upload)[/dim]"
    )
    disturbed = [
        f"{r.kind} {name} {sample.foreign_cpu:.0%}"
        for r in results
        for name, series in r.series.items()
        for sample in series.samples
        if sample.disturbed
    ]
    if disturbed:
        console.print(
            "[yellow]Other processes used the CPUs during: " + ", ".join(disturbed) + " (share "
            "of all CPUs): those numbers are disturbed; run again on a quiet machine.[/yellow]"
        )
    sizes = (
        f"{args.size_mib} MiB for every stand-in"
        if args.size_mib
        else "per stand-in defaults ("
        + ", ".join(f"{k} {v} MiB" for k, v in DEFAULT_SIZE_MIB.items())
        + ": the GCS emulator reads or rewrites the whole blob for each of the gateway's 1 MiB "
        "ranged reads and 8 MiB resumable chunks, O(n²) in the size; --size-mib sets one size "
        "for all)"
    )
    total = sum(r.seconds for r in results)
    console.print(
        f"[dim]Object size: {sizes}. {args.repeat} rounds each, {os.cpu_count()} CPUs, "
        f"{total:.0f} s in all ("
        + ", ".join(f"{r.kind} {r.seconds:.0f} s" for r in results)
        + ")[/dim]"
    )


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--backends",
        default=",".join(KINDS),
        help=f"comma-separated subset of {', '.join(KINDS)} (default: all, in that order)",
    )
    parser.add_argument(
        "--size-mib",
        type=int,
        help="object size in MiB for every stand-in (default: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_SIZE_MIB.items())
        + ")",
    )
    parser.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT, help="timed rounds per stand-in (median)"
    )
    parser.add_argument("--json", type=Path, help="write every number to this file")
    parser.add_argument(
        "--gateway-log-level", default="info", help="the gateway's log_level (default: info)"
    )
    parser.add_argument("--workdir", type=Path, help="keep data and server logs here")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - set(KINDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))} (known: {', '.join(KINDS)})")
    if args.size_mib is not None and args.size_mib < 1:
        parser.error("--size-mib must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.workdir is not None:
        used = [kind for kind in args.backends if (args.workdir / kind).exists()]
        if used:
            parser.error(f"{args.workdir} already holds {', '.join(used)}: give an empty --workdir")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    results: list[BackendResult] = []
    with scratch_dir(args.workdir) as workdir:
        for kind in args.backends:
            result = run_backend(kind, workdir, args, console)
            results.append(result)
            console.print(
                f"[bold]{KINDS[kind]}[/bold] done in {result.seconds:.0f} s"
                + (" [red](failed)[/red]" if result.error else "")
            )
    print_tables(console, results)
    print_notes(console, results, args)
    if args.json is not None:
        document = {
            "settings": {
                "backends": args.backends,
                "size_mib": {r.kind: r.size_mib for r in results},
                "repeat": args.repeat,
                "gateway_log_level": args.gateway_log_level,
                "mb": "10^6 bytes",
            },
            "machine": machine_facts(),
            "backends": {r.kind: r.summary() for r in results},
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
