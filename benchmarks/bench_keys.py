"""Benchmark the key paths: Vault calls per object and 4 KiB ops/s under three key configurations.

Each configuration runs against its own fresh OpenBao dev server (audit on) and
``blindstore serve`` process (local disk, SQLite), one after the other:

* ``no pool``: ``keys.pool_size: 0`` and ``keys.cache_ttl_seconds: 0``: every PUT wraps its DEK
  in its own Transit call and every GET unwraps in its own (the unbatched baseline);
* ``pool + cache``: the defaults (pre-wrapped DEK pool, 60 s unwrap cache, micro-batching);
* ``bucket keys``: ``keys.bucket_keys.enabled`` (opt-in, weaker model: DEKs wrapped locally
  under a bucket key that Transit wraps once; docs/operations.md "Bucket-key mode").

Phases, from ``--clients`` threads, after a warm-up (connections, first pool refill) in another
bucket that no number includes: PUT of ``--objects`` new 4 KiB objects; GET of each right after
(``get after put``: whatever the PUT left in RAM); the server is restarted (same data, every
cache empty) and each object is read again (``get cold``) and once more (``get warm``). Vault
calls are counted in OpenBao's audit log (a batch call is one), per object. See
benchmarks/README.md.

    python benchmarks/bench_keys.py [--objects 1000] [--clients 8] [--json out.json]
"""

from __future__ import annotations

import argparse
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
from rich.console import Console
from rich.table import Table

from meters import AuditCounter, ProcessMeter, machine_busy, machine_facts, process_cpu
from servers import Target, s3_client, scratch_dir, start_gateway

BUCKET = "bench-keys"
SMALL = 4096
#: After a phase, background work it caused (a pool refill) gets this long to be counted with it.
SETTLE_SECONDS = 0.5
#: Phases during which other processes used more than this share of the CPUs are flagged.
FOREIGN_CPU_WARNING = 0.05

CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "no pool": {"pool_size": 0, "cache_ttl_seconds": 0},
    "pool + cache": {},
    "bucket keys": {"bucket_keys": {"enabled": True}},
}
PHASES = ("put", "get after put", "get cold", "get warm")


@dataclass
class PhaseResult:
    ops: int
    seconds: float
    vault_calls: dict[str, int] = field(default_factory=dict)
    #: CPU used by other processes on the machine during the phase, as a share of all CPUs.
    foreign_cpu: float = 0.0

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def calls_per_object(self) -> float:
        return sum(self.vault_calls.values()) / self.ops if self.ops else 0.0


@dataclass
class ConfigResult:
    name: str
    keys: dict[str, Any]
    phases: dict[str, PhaseResult] = field(default_factory=dict)


class Runner:
    def __init__(self, target: Target, objects: int, clients: int) -> None:
        assert target.vault is not None
        assert target.vault.audit_log_path is not None
        self.target = target
        self.objects = objects
        self.clients = clients
        self.body = secrets.token_bytes(SMALL)
        self.audit = AuditCounter(target.vault.audit_log_path)
        self.meter = ProcessMeter(target.pid)
        self.vault_meter = ProcessMeter(target.vault.process.pid)
        self.me = psutil.Process()
        # One client for every thread: boto3 clients are thread-safe (sessions are not).
        self.client = s3_client(target.endpoint, target.access_key, target.secret_key)

    def run(self, result: ConfigResult) -> None:
        self.client.create_bucket(Bucket=BUCKET)
        self.client.create_bucket(Bucket="warm-up")
        self._warm_up()
        result.phases["put"] = self._phase(self._put)
        result.phases["get after put"] = self._phase(self._get)
        self._restart()
        result.phases["get cold"] = self._phase(self._get)
        result.phases["get warm"] = self._phase(self._get)

    def close(self) -> None:
        self.meter.stop()
        self.vault_meter.stop()
        self.client.close()

    def _phase(self, op: Callable[[int], None]) -> PhaseResult:
        self.audit.take()  # anything earlier belongs to no phase
        ours0 = self._our_cpu()
        busy0 = machine_busy()
        started = time.perf_counter()
        with ThreadPoolExecutor(self.clients) as pool:
            for _ in pool.map(op, range(self.objects)):
                pass
        seconds = time.perf_counter() - started
        foreign = (machine_busy() - busy0) - (self._our_cpu() - ours0)
        time.sleep(SETTLE_SECONDS)
        return PhaseResult(
            self.objects,
            seconds,
            dict(self.audit.take()),
            foreign_cpu=max(0.0, foreign) / (seconds * (os.cpu_count() or 1)),
        )

    def _our_cpu(self) -> float:
        return process_cpu(self.me) + self.meter.cpu_seconds() + self.vault_meter.cpu_seconds()

    def _put(self, i: int) -> None:
        self.client.put_object(Bucket=BUCKET, Key=f"small/{i:06d}", Body=self.body)

    def _get(self, i: int) -> None:
        got = self.client.get_object(Bucket=BUCKET, Key=f"small/{i:06d}")["Body"].read()
        if got != self.body:
            raise RuntimeError(f"small/{i:06d} came back different")

    def _warm_up(self) -> None:
        """Connections and the first pool refill, in a bucket the phases never touch."""

        def touch(i: int) -> None:
            self.client.put_object(Bucket="warm-up", Key=f"w/{i}", Body=b"w")
            self.client.get_object(Bucket="warm-up", Key=f"w/{i}")["Body"].read()

        with ThreadPoolExecutor(self.clients) as pool:
            list(pool.map(touch, range(2 * self.clients)))
        time.sleep(SETTLE_SECONDS)

    def _restart(self) -> None:
        """A new server process: the same objects, every key in RAM gone."""
        self.meter.stop()
        self.client.close()
        self.target.restart()
        self.meter = ProcessMeter(self.target.pid)
        self.client = s3_client(
            self.target.endpoint, self.target.access_key, self.target.secret_key
        )
        # Connections, through requests that need no key.
        with ThreadPoolExecutor(self.clients) as pool:
            list(pool.map(lambda _: self.client.head_bucket(Bucket=BUCKET), range(self.clients)))
        time.sleep(SETTLE_SECONDS)


def run_config(name: str, keys: dict[str, Any], args: argparse.Namespace) -> ConfigResult:
    result = ConfigResult(name, keys)
    with scratch_dir(args.workdir / name.replace(" ", "-") if args.workdir else None) as work:
        target = start_gateway(work, log_level="warning", keys=keys)
        try:
            runner = Runner(target, args.objects, args.clients)
            try:
                runner.run(result)
            finally:
                runner.close()
        except BaseException:
            print(target.log_tail(), file=sys.stderr)
            raise
        finally:
            target.stop()
    return result


def report(results: list[ConfigResult], args: argparse.Namespace) -> None:
    # Wide enough for the table even when the output is not a terminal (a log, CI).
    console = Console(width=max(Console().width, 150))
    table = Table(
        title=f"Key paths: {args.objects} × 4 KiB objects, {args.clients} clients "
        "(Vault calls per object from OpenBao's audit log)"
    )
    table.add_column("configuration")
    for phase in PHASES:
        table.add_column(f"{phase}\ncalls/obj", justify="right")
    for phase in PHASES:
        table.add_column(f"{phase}\nops/s", justify="right")
    for result in results:
        table.add_row(
            result.name,
            *(f"{result.phases[p].calls_per_object:.3f}" for p in PHASES),
            *(f"{result.phases[p].ops_per_s:.0f}" for p in PHASES),
        )
    console.print(table)
    console.print(
        "[dim]put: new keys; get after put: right after the PUTs; get cold: after a restart; "
        "get warm: the same GETs again. A batch call counts once.[/dim]"
    )
    disturbed = [
        f"{r.name}/{name} ({p.foreign_cpu:.0%})"
        for r in results
        for name, p in r.phases.items()
        if p.foreign_cpu > FOREIGN_CPU_WARNING
    ]
    if disturbed:
        console.print(
            "[yellow]Other processes used more than "
            f"{FOREIGN_CPU_WARNING:.0%} of the CPUs during: {', '.join(disturbed)}; "
            "their ops/s are disturbed (Vault calls per object are not).[/yellow]"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--objects", type=int, default=1000, help="4 KiB objects per phase")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGURATIONS),
        help="comma-separated subset of: " + ", ".join(CONFIGURATIONS),
    )
    parser.add_argument("--workdir", type=Path, help="keep data and logs here")
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGURATIONS]
    if unknown:
        parser.error(f"unknown configurations: {unknown}")
    results = [run_config(name, CONFIGURATIONS[name], args) for name in names]
    report(results, args)
    if args.json:
        document = {
            "machine": machine_facts(),
            "objects": args.objects,
            "clients": args.clients,
            "results": [
                {
                    "name": r.name,
                    "keys": r.keys,
                    "phases": {
                        name: {
                            **asdict(p),
                            "ops_per_s": round(p.ops_per_s, 1),
                            "vault_calls_per_object": round(p.calls_per_object, 5),
                        }
                        for name, p in r.phases.items()
                    },
                }
                for r in results
            ],
        }
        args.json.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
