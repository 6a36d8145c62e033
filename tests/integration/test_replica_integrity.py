"""A replica whose blob is corrupt is seen, reported and repaired; with none left the object is
quarantined (docs/format.md §9).

Two local backends hold every object (a placement policy with two targets); the tests corrupt
blobs on disk behind the gateway's back, then read through the real gateway.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from blindstore.audit.events import AuditFilter
from blindstore.catalog.base import ObjectRecord
from blindstore.cli import transparency as transparency_cli
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.maintenance import RepairReport, repair_replicas
from blindstore.transparency import TransparencyRecord
from tests.gwserver import RunningGateway, start_admin_gateway

TOKEN = "admin-token-for-integrity"
BUCKET = "scans"

POLICY = """\
version: 1
backends:
  first:
    kind: local
    provider: Hôpital Nord
    jurisdiction: EEA
    settings: {{path: "{root}/first"}}
  second:
    kind: local
    provider: Hôpital Nord
    jurisdiction: EEA
    settings: {{path: "{root}/second"}}
rules:
  - name: both
    targets: [first, second]
    write_quorum: 2
"""


@pytest.fixture
def gw(openbao: OpenBaoServer, tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_admin_gateway(
        tmp_path,
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        admin_token=TOKEN,
        policy=POLICY.format(root=tmp_path),
    )
    running.client("demo").create_bucket(Bucket=BUCKET)
    yield running
    running.stop()


def _record(gw: RunningGateway, key: str) -> ObjectRecord:
    record = gw.run(gw.gateway.catalog.get_object(BUCKET, key))
    assert record is not None
    return record


def _blob(gw: RunningGateway, backend: str, record: ObjectRecord) -> Path:
    return gw.data_dir.parent / backend / record.container / record.parts[0].blob


def _corrupt(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _failures_metric(gw: RunningGateway) -> dict[str, float]:
    request = urllib.request.Request(gw.endpoint + "/-/metrics")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/plain")
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("blindstore_integrity_failures_total{"):
            labels, value = line.rsplit(" ", 1)
            found[labels.split('backend="')[1].split('"')[0]] = float(value)
    return found


def _transparency(gw: RunningGateway, key: str) -> Any:
    request = urllib.request.Request(f"{gw.endpoint}/-/transparency/objects/{BUCKET}/{key}")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _integrity_events(gw: RunningGateway) -> list[Any]:
    found = gw.run(
        gw.gateway.catalog.query_audit(AuditFilter(operation="integrity.failure"), limit=50)
    )
    return [record.event for record in reversed(found)]


def _repair(gw: RunningGateway) -> RepairReport:
    return gw.run(repair_replicas(gw.gateway))


def _get(gw: RunningGateway, key: str) -> bytes:
    body: bytes = gw.client("demo").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return body


@pytest.mark.parametrize(
    ("size", "offset"),
    [
        # Verified whole before the status line (the small-object path); a chunk tag fails.
        (100_000, 20_000),
        # Streamed (above verify_whole_below); the commitment fails before any byte is sent.
        (5 * 1024 * 1024 + 7, 40),
    ],
    ids=["small", "streamed"],
)
def test_a_corrupt_replica_is_reported_skipped_and_repaired(
    gw: RunningGateway, size: int, offset: int
) -> None:
    data = os.urandom(size)
    gw.client("demo").put_object(Bucket=BUCKET, Key="scan", Body=data)
    record = _record(gw, "scan")
    assert record.backends == ("first", "second")
    _corrupt(_blob(gw, "first", record), offset)

    # Served from the replica that verifies.
    assert _get(gw, "scan") == data

    assert _failures_metric(gw) == {"first": 1.0}
    [event] = _integrity_events(gw)
    assert (event.object_id, event.backends, event.result) == (
        record.object_id,
        ("first",),
        "moved_to_repairs",
    )
    assert event.detail["part"] == 0
    assert event.bucket is None
    assert event.key is None
    marked = _record(gw, "scan")
    assert (marked.backends, marked.repairs, marked.quarantined) == (("second",), ("first",), None)

    # The next read skips the bad replica: no new failure.
    assert _get(gw, "scan") == data
    assert _failures_metric(gw) == {"first": 1.0}

    report = _repair(gw)
    assert (report.repaired, report.failed, report.sources_rejected) == (1, 0, 0)
    assert _blob(gw, "first", record).read_bytes() == _blob(gw, "second", record).read_bytes()
    healed = _record(gw, "scan")
    assert (healed.backends, healed.repairs) == (("second", "first"), ())

    # Both replicas serve again: with `second` now corrupt, `first` (repaired) answers.
    _corrupt(_blob(gw, "second", record), offset)
    assert _get(gw, "scan") == data
    assert _failures_metric(gw) == {"first": 1.0, "second": 1.0}


def test_with_every_replica_corrupt_the_object_is_quarantined_until_one_verifies(
    gw: RunningGateway,
) -> None:
    data = os.urandom(70_000)
    gw.client("demo").put_object(Bucket=BUCKET, Key="scan", Body=data)
    record = _record(gw, "scan")
    good = _blob(gw, "second", record).read_bytes()
    _corrupt(_blob(gw, "first", record), 100)
    _corrupt(_blob(gw, "second", record), 60_000)

    with pytest.raises(ClientError) as info:
        _get(gw, "scan")
    assert info.value.response["Error"]["Code"] == "InternalError"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    quarantined = _record(gw, "scan")
    assert quarantined.quarantined is not None
    # (The client may retry a 500: a retry fails on `second` alone, reported again.)
    events = _integrity_events(gw)
    assert [(e.backends, e.result) for e in events[:2]] == [
        (("first",), "moved_to_repairs"),
        (("second",), "quarantined"),
    ]
    assert {(e.backends, e.result) for e in events[2:]} <= {(("second",), "quarantined")}
    assert _failures_metric(gw) == {"first": 1.0, "second": float(len(events) - 1)}

    # Still quarantined (and reported again) on the next read, dated by the first failure.
    with pytest.raises(ClientError):
        _get(gw, "scan")
    assert [e.result for e in _integrity_events(gw)][-1] == "quarantined"
    assert _record(gw, "scan").quarantined == quarantined.quarantined
    # Visible to auditors: the transparency record dates the quarantine (and the CLI says so).
    document = _transparency(gw, "scan")
    assert document["quarantined"] == quarantined.quarantined
    with transparency_cli.console.capture() as printed:
        transparency_cli.render_record(TransparencyRecord.model_validate(document))
    assert f"QUARANTINED since {document['quarantined_iso']}" in printed.get()

    # No replica to copy from: repair says so and changes nothing.
    report = _repair(gw)
    assert (report.quarantined, report.repaired, report.released) == (1, 0, 0)
    assert _record(gw, "scan").quarantined is not None

    # An operator restores the blob from a backup: repair checks it, copies it, lifts the
    # quarantine.
    _blob(gw, "second", record).write_bytes(good)
    report = _repair(gw)
    assert (report.quarantined, report.repaired, report.released) == (0, 1, 1)
    healed = _record(gw, "scan")
    assert (healed.backends, healed.repairs, healed.quarantined) == (("second", "first"), (), None)
    assert _get(gw, "scan") == data
    assert _transparency(gw, "scan")["quarantined"] is None


def test_repair_never_copies_a_source_that_fails_verification(gw: RunningGateway) -> None:
    data = os.urandom(50_000)
    gw.client("demo").put_object(Bucket=BUCKET, Key="scan", Body=data)
    record = _record(gw, "scan")
    # A write that missed `first`, and a `second` that went bad since.
    gw.run(
        gw.gateway.catalog.set_replicas(BUCKET, "scan", record.object_id, ("second",), ("first",))
    )
    _blob(gw, "first", record).unlink()
    _corrupt(_blob(gw, "second", record), 30_000)

    report = _repair(gw)
    assert not _blob(gw, "first", record).exists()
    assert (report.repaired, report.failed, report.sources_rejected) == (0, 1, 1)
    assert report.quarantined == 1
    assert _record(gw, "scan").quarantined is not None
    assert [e.result for e in _integrity_events(gw)] == ["quarantined"]
    assert json.dumps(_failures_metric(gw)) == json.dumps({"second": 1.0})
