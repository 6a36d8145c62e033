"""Benchmark the gateway against a do-nothing S3 endpoint (the ceiling) and rclone-crypt.

One run, one boto3 client configuration, three S3 endpoints, each its own server process:

* ``gateway``: ``blindstore serve`` over local disk, keys in an OpenBao dev server (audit on);
* ``ceiling``: ``benchmarks/ceiling_app.py``, raw ASGI that discards uploads and serves bytes
  from a buffer, under the gateway's uvicorn settings: what the HTTP stack and client allow;
* ``rclone-crypt``: ``rclone serve s3`` over an rclone ``crypt`` remote on local disk, the
  closest existing encrypting S3 gateway.

Per target: PUT and GET of one large object (MiB/s, single ``put_object``; also a multipart
``upload_fileobj``), PUT and GET of many 4 KiB objects from 8 client threads (ops/s and server
CPU ms per op) and the same GETs again after a server restart (every cache cold), the server's
peak RSS, and for the gateway the Vault round trips per object counted in OpenBao's audit log.
Prints a table with the ratios and the targets. See benchmarks/README.md.

    python benchmarks/bench_gateway.py [--size-mib 256] [--small-ops 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from rich.console import Console
from rich.table import Table

from meters import AuditCounter, MiB, ProcessMeter, machine_busy, machine_facts, process_cpu
from servers import (
    CLIENT_CONFIG,
    Target,
    s3_client,
    scratch_dir,
    start_ceiling,
    start_gateway,
    start_rclone,
)

BUCKET = "bench"
SMALL = 4096
THREADS = 8
#: After a phase, background work it caused (a key-pool refill) gets this long to finish and be
#: counted with it.
SETTLE_SECONDS = 0.5
#: Phases during which other processes used more than this share of the CPUs are flagged.
FOREIGN_CPU_WARNING = 0.05

TRANSFER_CONFIG = TransferConfig(max_concurrency=THREADS)


@dataclass
class Phase:
    name: str
    ops: int = 0
    bytes: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    vault_cpu: float = 0.0
    peak_rss: int = 0
    vault_calls: dict[str, int] = field(default_factory=dict)
    #: CPU used by other processes on the machine during the phase, as a share of all CPUs:
    #: above a few percent, the numbers of this phase are disturbed.
    foreign_cpu: float = 0.0

    @property
    def mib_per_s(self) -> float:
        return self.bytes / MiB / self.seconds if self.seconds else 0.0

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def per_op_ms(self, cpu: float) -> float:
        return cpu * 1000 / self.ops if self.ops else 0.0

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["mib_per_s"] = round(self.mib_per_s, 2)
        out["ops_per_s"] = round(self.ops_per_s, 1)
        out["server_cpu_ms_per_op"] = round(self.per_op_ms(self.server_cpu), 4)
        out["client_cpu_ms_per_op"] = round(self.per_op_ms(self.client_cpu), 4)
        out["vault_cpu_ms_per_op"] = round(self.per_op_ms(self.vault_cpu), 4)
        if self.bytes:
            out["server_cpu_ms_per_mib"] = round(self.server_cpu * 1000 / (self.bytes / MiB), 3)
        calls = sum(self.vault_calls.values())
        out["vault_calls_per_op"] = round(calls / self.ops, 5) if self.ops else 0.0
        out["foreign_cpu"] = round(self.foreign_cpu, 3)
        return out


@dataclass
class TargetResult:
    name: str
    phases: dict[str, Phase] = field(default_factory=dict)
    startup_rss: int = 0
    idle_rss: int = 0
    peak_rss: int = 0
    error: str | None = None
    wire: dict[str, dict[str, str]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "startup_rss": self.startup_rss,
            "idle_rss": self.idle_rss,
            "peak_rss": self.peak_rss,
            "phases": {name: phase.summary() for name, phase in self.phases.items()},
            "wire": self.wire,
        }


class Runner:
    """Runs the phases against one target, measuring each."""

    def __init__(self, target: Target, args: argparse.Namespace, large: bytes) -> None:
        self.target = target
        self.args = args
        self.large = large
        self.small = secrets.token_bytes(SMALL)
        self.meter = ProcessMeter(target.pid)
        self.vault_meter = ProcessMeter(target.vault.process.pid) if target.vault else None
        self.audit = (
            AuditCounter(target.vault.audit_log_path)
            if target.vault and target.vault.audit_log_path
            else None
        )
        self.client = self._new_client()
        self.result = TargetResult(target.name, startup_rss=self.meter.startup_peak)
        self.me = psutil.Process()
        self._watch_wire()

    def _new_client(self, config: Config = CLIENT_CONFIG) -> Any:
        return s3_client(
            self.target.endpoint, self.target.access_key, self.target.secret_key, config
        )

    def _watch_wire(self) -> None:
        """Record the headers boto3 sent on the first request of each operation."""
        interesting = ("x-amz-content-sha256", "content-encoding", "transfer-encoding")

        def record(request: Any, event_name: str = "", **_: Any) -> None:
            op = event_name.rpartition(".")[2] or "?"
            if op in self.result.wire:
                return
            headers = {k.lower(): v for k, v in request.headers.items()}
            shown = {k: headers[k] for k in interesting if k in headers}
            for name, value in headers.items():
                if name.startswith(("x-amz-checksum", "x-amz-sdk-checksum", "x-amz-trailer")):
                    shown[name] = value if "mode" in name or "sdk" in name else "(set)"
            sha = shown.get("x-amz-content-sha256", "")
            if len(sha) == 64:
                shown["x-amz-content-sha256"] = "(SHA-256 of the payload)"
            self.result.wire[op] = {
                k: v.decode() if isinstance(v, bytes) else str(v) for k, v in shown.items()
            }

        self.client.meta.events.register("before-send.s3.*", record)

    def run(self) -> TargetResult:
        args = self.args
        self.client.create_bucket(Bucket=BUCKET)
        self._warm_up()
        self.result.idle_rss = self.meter.rss()
        self._phase("large_put", 1, len(self.large), self._large_put)
        self._phase("large_get", 1, len(self.large), self._large_get)
        if not args.no_multipart:
            self._phase("large_multipart_put", 1, len(self.large), self._multipart_put)
        self._phase("small_put", args.small_ops, args.small_ops * SMALL, self._small_put)
        self._phase("small_get", args.small_ops, args.small_ops * SMALL, self._small_get)
        self._check_content()
        if self.target.restartable and not args.no_cold:
            self._restart()
            self._phase("small_get_cold", args.small_ops, args.small_ops * SMALL, self._small_get)
        peaks = [self.result.startup_rss, *(p.peak_rss for p in self.result.phases.values())]
        self.result.peak_rss = max(peaks)
        return self.result

    def close(self) -> None:
        self.meter.stop()
        if self.vault_meter is not None:
            self.vault_meter.stop()
        self.client.close()

    # ---------------------------------------------------------------- measuring

    def _phase(self, name: str, ops: int, size: int, work: Callable[[], None]) -> None:
        # Dirty pages of earlier phases (and targets) are written back now, not during this one.
        os.sync()
        if self.audit is not None:
            self.audit.take()  # anything earlier belongs to the previous phase
        self.meter.reset_peak()
        server0 = self.meter.cpu_seconds()
        vault0 = self.vault_meter.cpu_seconds() if self.vault_meter else 0.0
        client0 = process_cpu(self.me)
        busy0 = machine_busy()
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
        client = process_cpu(self.me) - client0
        busy = machine_busy() - busy0
        time.sleep(SETTLE_SECONDS)
        server_cpu = self.meter.cpu_seconds() - server0
        vault_cpu = (self.vault_meter.cpu_seconds() - vault0) if self.vault_meter else 0.0
        ours = client + server_cpu + vault_cpu
        phase = Phase(
            name,
            ops=ops,
            bytes=size,
            seconds=seconds,
            server_cpu=server_cpu,
            client_cpu=client,
            vault_cpu=vault_cpu,
            peak_rss=self.meter.peak_rss(),
            vault_calls=dict(self.audit.take()) if self.audit is not None else {},
            foreign_cpu=max(0.0, busy - ours) / (seconds * (os.cpu_count() or 1)),
        )
        self.result.phases[name] = phase

    def _restart(self) -> None:
        """A new server process: the same objects on disk, every cache empty."""
        self.meter.stop()
        self.client.close()
        self.target.restart()
        self.meter = ProcessMeter(self.target.pid)
        self.result.startup_rss = max(self.result.startup_rss, self.meter.startup_peak)
        self.client = self._new_client()
        # Connections and credentials, through objects the cold phase does not read.
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda i: self._get_all(f"warm/{i}", 1), range(2 * THREADS)))
        time.sleep(SETTLE_SECONDS)

    def _warm_up(self) -> None:
        """Connections, caches, the first key-pool refill: not part of any phase."""
        keys = [f"warm/{i}" for i in range(2 * THREADS)]
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda k: self.client.put_object(Bucket=BUCKET, Key=k, Body=b"w"), keys))
            list(pool.map(lambda k: self._get_all(k, 1), keys))
        time.sleep(SETTLE_SECONDS)

    # ---------------------------------------------------------------- phases

    def _large_put(self) -> None:
        self.client.put_object(Bucket=BUCKET, Key="large", Body=self.large)

    def _large_get(self) -> None:
        self._get_all("large", len(self.large))

    def _multipart_put(self) -> None:
        self.client.upload_fileobj(
            io.BytesIO(self.large), BUCKET, "large-multipart", Config=TRANSFER_CONFIG
        )

    def _small_put(self) -> None:
        body = self.small

        def put(i: int) -> None:
            self.client.put_object(Bucket=BUCKET, Key=f"small/{i:06d}", Body=body)

        _in_threads(put, self.args.small_ops)

    def _small_get(self) -> None:
        _in_threads(lambda i: self._get_all(f"small/{i:06d}", SMALL), self.args.small_ops)

    def _get_all(self, key: str, expected: int) -> None:
        response = self.client.get_object(Bucket=BUCKET, Key=key)
        body = response["Body"]
        got = 0
        for chunk in body.iter_chunks(MiB):
            got += len(chunk)
        if got != expected:
            raise RuntimeError(f"GET {key}: {got} bytes, expected {expected}")

    def _check_content(self) -> None:
        """The stored bytes are the ones sent (not for the ceiling, which keeps none)."""
        if self.target.name == "ceiling":
            return
        got = self.client.get_object(Bucket=BUCKET, Key="small/000000")["Body"].read()
        if got != self.small:
            raise RuntimeError("small/000000 came back different")
        # Some servers send the whole object's checksum with a range: not what is measured here.
        plain = self._new_client(
            CLIENT_CONFIG.merge(Config(response_checksum_validation="when_required"))
        )
        response = plain.get_object(Bucket=BUCKET, Key="large", Range="bytes=1000-2000")
        if response["Body"].read() != self.large[1000:2001]:
            raise RuntimeError("a range of the large object came back different")


def _in_threads(op: Callable[[int], None], count: int) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in pool.map(op, range(count)):
            pass


# ---------------------------------------------------------------------------- report

STARTERS: dict[str, Callable[..., Target]] = {
    "ceiling": start_ceiling,
    "rclone-crypt": start_rclone,
    "gateway": start_gateway,
}


@dataclass(frozen=True)
class Row:
    label: str
    value: Callable[[TargetResult], float | None]
    fmt: str
    #: ("ratio_rclone", 2.0): gateway/rclone ≥ 2.0; ("max", 1.0): gateway value ≤ 1.0.
    target: tuple[str, float] | None = None
    gateway_only: bool = False


def _phase_value(
    phase: str, getter: Callable[[Phase], float]
) -> Callable[[TargetResult], float | None]:
    def value(result: TargetResult) -> float | None:
        found = result.phases.get(phase)
        return getter(found) if found is not None else None

    return value


def _vault_per_op(p: Phase) -> float:
    return sum(p.vault_calls.values()) / p.ops if p.ops else 0.0


def _per_mib(phase: str, which: str) -> Callable[[TargetResult], float | None]:
    return _phase_value(phase, lambda p: getattr(p, which) * 1000 / (p.bytes / MiB))


def _per_op(phase: str, which: str) -> Callable[[TargetResult], float | None]:
    return _phase_value(phase, lambda p: p.per_op_ms(getattr(p, which)))


def _mib_s(phase: str) -> Callable[[TargetResult], float | None]:
    return _phase_value(phase, lambda p: p.mib_per_s)


def _ops_s(phase: str) -> Callable[[TargetResult], float | None]:
    return _phase_value(phase, lambda p: p.ops_per_s)


def _vault(phase: str) -> Callable[[TargetResult], float | None]:
    return _phase_value(phase, _vault_per_op)


def _rss(result: TargetResult) -> float | None:
    return result.peak_rss / MiB if result.peak_rss else None


ROWS = [
    Row("large PUT MiB/s (put_object)", _mib_s("large_put"), ".1f", ("ratio_rclone", 2.0)),
    Row("large GET MiB/s", _mib_s("large_get"), ".1f", ("ratio_rclone", 1.2)),
    Row("large PUT MiB/s (multipart)", _mib_s("large_multipart_put"), ".1f"),
    Row("large PUT server CPU ms/MiB", _per_mib("large_put", "server_cpu"), ".2f"),
    Row("large GET server CPU ms/MiB", _per_mib("large_get", "server_cpu"), ".2f"),
    Row("large PUT client CPU ms/MiB", _per_mib("large_put", "client_cpu"), ".2f"),
    Row("large GET client CPU ms/MiB", _per_mib("large_get", "client_cpu"), ".2f"),
    Row("4 KiB PUT ops/s (8 threads)", _ops_s("small_put"), ".0f"),
    Row("4 KiB GET ops/s (8 threads)", _ops_s("small_get"), ".0f"),
    Row("4 KiB GET after restart ops/s", _ops_s("small_get_cold"), ".0f"),
    Row("4 KiB PUT server CPU ms/op", _per_op("small_put", "server_cpu"), ".3f", ("max", 1.0)),
    Row("4 KiB GET server CPU ms/op", _per_op("small_get", "server_cpu"), ".3f", ("max", 0.5)),
    Row("4 KiB GET after restart server CPU ms/op", _per_op("small_get_cold", "server_cpu"), ".3f"),
    Row("4 KiB PUT client CPU ms/op", _per_op("small_put", "client_cpu"), ".3f"),
    Row("4 KiB GET client CPU ms/op", _per_op("small_get", "client_cpu"), ".3f"),
    Row("peak server RSS MiB", _rss, ".1f", ("max", 150.0)),
    Row("server RSS after warm-up MiB", lambda r: r.idle_rss / MiB if r.idle_rss else None, ".1f"),
    Row("4 KiB PUT Vault round trips/object", _vault("small_put"), ".4f", ("max", 0.02), True),
    Row("4 KiB GET Vault round trips/object", _vault("small_get"), ".4f", ("max", 0.02), True),
    Row(
        "4 KiB GET after restart Vault round trips/object",
        _vault("small_get_cold"),
        ".4f",
        gateway_only=True,
    ),
    Row("4 KiB PUT OpenBao CPU ms/op", _per_op("small_put", "vault_cpu"), ".3f", gateway_only=True),
    Row("4 KiB GET OpenBao CPU ms/op", _per_op("small_get", "vault_cpu"), ".3f", gateway_only=True),
    Row(
        "4 KiB GET after restart OpenBao CPU ms/op",
        _per_op("small_get_cold", "vault_cpu"),
        ".3f",
        gateway_only=True,
    ),
]


def evaluate(results: dict[str, TargetResult]) -> list[dict[str, Any]]:
    """Every row: values per target, the gateway's ratios, the target and whether it is met."""
    rows = []
    for row in ROWS:
        values = {
            name: (None if (row.gateway_only and name != "gateway") or r.error else row.value(r))
            for name, r in results.items()
        }
        gw, rc, ce = values.get("gateway"), values.get("rclone-crypt"), values.get("ceiling")
        ratio_rclone = gw / rc if gw is not None and rc else None
        ratio_ceiling = gw / ce if gw is not None and ce else None
        met: bool | None = None
        goal = ""
        if row.target is not None:
            kind, bound = row.target
            if kind == "ratio_rclone":
                goal = f"≥ {bound:g}× rclone"
                met = ratio_rclone >= bound if ratio_rclone is not None else None
            else:
                goal = f"≤ {bound:g}"
                met = gw <= bound if gw is not None else None
        rows.append(
            {
                "metric": row.label,
                "values": values,
                "gateway_vs_rclone": ratio_rclone,
                "gateway_vs_ceiling": ratio_ceiling,
                "target": goal,
                "met": met,
                "fmt": row.fmt,
            }
        )
    return rows


def print_table(console: Console, rows: list[dict[str, Any]], names: list[str]) -> None:
    table = Table(title="blindstore gateway vs ceiling vs rclone-crypt", title_justify="left")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("gw/rclone", justify="right")
    table.add_column("gw/ceiling", justify="right")
    table.add_column("target")
    table.add_column("met")
    for row in rows:
        fmt = row["fmt"]
        cells = [
            "—" if row["values"].get(n) is None else format(row["values"][n], fmt) for n in names
        ]
        ratios = [
            "" if row[k] is None else f"{row[k]:.2f}×"
            for k in ("gateway_vs_rclone", "gateway_vs_ceiling")
        ]
        met = {True: "[green]yes[/green]", False: "[red]NO[/red]", None: ""}[row["met"]]
        table.add_row(row["metric"], *cells, *ratios, row["target"], met)
    console.print(table)


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="large object size (MiB)")
    parser.add_argument("--small-ops", type=int, default=2000, help="4 KiB objects per phase")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument(
        "--targets",
        default=",".join(STARTERS),
        help=f"comma-separated subset of {', '.join(STARTERS)}",
    )
    parser.add_argument("--no-multipart", action="store_true", help="skip the multipart PUT")
    parser.add_argument(
        "--no-cold", action="store_true", help="skip the 4 KiB GETs after a server restart"
    )
    parser.add_argument(
        "--gateway-log-level", default="info", help="the gateway's log_level (default: info)"
    )
    parser.add_argument(
        "--no-audit", action="store_true", help="turn the gateway's audit trail off (its cost)"
    )
    parser.add_argument("--workdir", type=Path, help="keep data and server logs here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is not met")
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(STARTERS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    return args


def run_target(
    name: str, root: Path, args: argparse.Namespace, large: bytes, console: Console
) -> TargetResult:
    workdir = root / name
    workdir.mkdir()
    # The gateway's tenant keys are made by the gateway; the others accept any fixed pair.
    access_key, secret_key = "BENCHACCESSKEY000000", secrets.token_hex(20)
    try:
        with console.status(f"{name}: starting"):
            if name == "gateway":
                target = start_gateway(
                    workdir, log_level=args.gateway_log_level, audit=not args.no_audit
                )
            else:
                target = STARTERS[name](workdir, access_key, secret_key)
    except Exception as exc:
        console.print(f"[red]{name} did not start:[/red] {exc}")
        return TargetResult(name, error=repr(exc))
    runner: Runner | None = None
    try:
        with console.status(f"{name}: running"):
            runner = Runner(target, args, large)
            result = runner.run()
    except Exception as exc:
        console.print(f"[red]{name} failed:[/red] {exc!r}\n{target.log_tail()}")
        result = runner.result if runner is not None else TargetResult(name)
        result.error = repr(exc)
    finally:
        if runner is not None:
            runner.close()
        target.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    large = os.urandom(args.size_mib * MiB)
    results: dict[str, TargetResult] = {}
    started = time.monotonic()
    with scratch_dir(args.workdir) as workdir:
        for name in args.targets:
            results[name] = run_target(name, workdir, args, large, console)
            phases = results[name].phases
            done = ", ".join(f"{p}: {v.seconds:.1f}s" for p, v in phases.items())
            console.print(f"[bold]{name}[/bold] done ({done})")
    rows = evaluate(results)
    print_table(console, rows, args.targets)
    wire = next((r.wire for r in results.values() if r.wire), {})
    for op in ("PutObject", "GetObject", "UploadPart"):
        if op in wire:
            shown = ", ".join(f"{k}: {v}" for k, v in sorted(wire[op].items())) or "(none)"
            console.print(f"[dim]boto3 {op} sends {shown}[/dim]")
    disturbed = [
        f"{name}/{phase.name} {phase.foreign_cpu:.0%}"
        for name, result in results.items()
        for phase in result.phases.values()
        if phase.foreign_cpu > FOREIGN_CPU_WARNING
    ]
    if disturbed:
        console.print(
            "[yellow]Other processes used the CPUs during: "
            + ", ".join(disturbed)
            + " (share of all CPUs): those numbers are disturbed; run again on a quiet "
            "machine.[/yellow]"
        )
    console.print(
        f"[dim]{args.size_mib} MiB large object, {args.small_ops} × 4 KiB objects, "
        f"{THREADS} client threads, {os.cpu_count()} CPUs, "
        f"{time.monotonic() - started:.0f} s in all[/dim]"
    )
    if args.json is not None:
        document = {
            "settings": {
                "size_mib": args.size_mib,
                "small_ops": args.small_ops,
                "threads": THREADS,
                "gateway_log_level": args.gateway_log_level,
            },
            "machine": machine_facts(),
            "targets": {name: r.summary() for name, r in results.items()},
            "table": [{k: v for k, v in row.items() if k != "fmt"} for row in rows],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    failed = any(r.error for r in results.values())
    unmet = any(row["met"] is False for row in rows)
    return 1 if failed or (args.check and unmet) else 0


if __name__ == "__main__":
    sys.exit(main())
