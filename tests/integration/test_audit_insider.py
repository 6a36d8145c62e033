"""An insider with write access to the catalog and the blob store, against a real gateway and
OpenBao: rollback and resurrection of objects (issue 9 M3), rewritten audit tails, renamed and
deleted checkpoints (M4). Each is invisible to the gateway's reads (the row MAC verifies) and to
the hash chain alone; ``blindstore audit verify`` must report it."""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from botocore.exceptions import ClientError

from blindstore.audit.chain import AuditRecord, Checkpoint, chain, checkpoint_bytes
from blindstore.audit.events import AuditFilter
from blindstore.catalog.sql import SqlCatalog
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.keys.admin import TransitAdmin
from blindstore.keys.transit import make_client
from tests.gwserver import RunningGateway, start_cli_gateway
from tests.integration import blobs
from tests.integration.test_audit import _copy_path, _snapshot, audit_cli, catalog_path, records


@pytest.fixture(scope="module")
def igw(
    openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """A gateway of this module's own: its catalog and blobs are tampered with."""
    running = start_cli_gateway(
        tmp_path_factory.mktemp("insider"),
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        # Checkpoints only when a test asks for one (``_checkpoint``).
        overrides={"audit": {"checkpoint_every": 1_000_000, "checkpoint_seconds": 3600}},
    )
    yield running
    running.stop()


@pytest.fixture
def bucket(igw: RunningGateway) -> str:
    name = f"insider-{secrets.token_hex(5)}"
    igw.client("demo").create_bucket(Bucket=name)
    return name


def _row(gw: RunningGateway, bucket: str, key: str) -> tuple[Any, ...]:
    db = sqlite3.connect(catalog_path(gw))
    row = db.execute("SELECT * FROM objects WHERE bucket = ? AND key = ?", (bucket, key)).fetchone()
    db.close()
    assert row is not None
    return tuple(row)


def _restore(gw: RunningGateway, bucket: str, key: str, row: tuple[Any, ...]) -> None:
    """Put an old row back, as from a backup: ``DELETE`` + ``INSERT`` of its exact values."""
    db = sqlite3.connect(catalog_path(gw), isolation_level=None)
    db.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))
    db.execute(f"INSERT INTO objects VALUES ({','.join('?' * len(row))})", row)
    db.close()


def _verify(gw: RunningGateway, tmp_path: Path, openbao: OpenBaoServer, expect: int) -> Any:
    data_dir = _snapshot(gw, tmp_path, openbao)
    result = audit_cli(data_dir, "verify", "--json", expect=expect)
    return json.loads(result.stdout), result.stderr


def _mismatches(report: Any, bucket: str) -> list[tuple[str, str, int]]:
    return [(m["key"], m["kind"], m["seq"]) for m in report["mismatches"] if m["bucket"] == bucket]


def _last_seq(gw: RunningGateway, bucket: str, key: str | None, operation: str) -> int:
    found = [
        r.seq
        for r in records(gw, AuditFilter(bucket=bucket, operation=operation))
        if key is None or r.event.key == key
    ]
    return found[-1]


# ---------------------------------------------------------------------------- M3: rollback


def test_an_untouched_store_matches_its_write_records(
    igw: RunningGateway, bucket: str, tmp_path: Path, openbao: OpenBaoServer
) -> None:
    s3 = igw.client("demo")
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    s3.put_object(Bucket=bucket, Key="a", Body=b"2")
    s3.copy_object(Bucket=bucket, Key="b", CopySource={"Bucket": bucket, "Key": "a"})
    upload = s3.create_multipart_upload(Bucket=bucket, Key="c")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="c", UploadId=upload, PartNumber=1, Body=b"p")
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="c",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    s3.put_object(Bucket=bucket, Key="d", Body=b"gone")
    s3.delete_object(Bucket=bucket, Key="d")
    s3.put_object(Bucket=bucket, Key="d", Body=b"back, through the gateway")

    report, stderr = _verify(igw, tmp_path, openbao, expect=0)
    assert report["objects"] >= 4
    assert report["mismatches"] == []
    assert "objects match their last write record" in stderr
    put = records(igw, AuditFilter(bucket=bucket, key="a", operation="PutObject"))[-1]
    assert put.event.detail["row_mac"] == blobs.record(igw, bucket, "a").row_mac.hex()


def test_an_object_rolled_back_to_an_older_row_and_blob_is_reported(
    igw: RunningGateway, bucket: str, tmp_path: Path, openbao: OpenBaoServer
) -> None:
    s3 = igw.client("demo")
    s3.put_object(Bucket=bucket, Key="chart", Body=b"allergy: none")
    old_row = _row(igw, bucket, "chart")
    old_blob = blobs.blob_path(igw, bucket, "chart")
    old_bytes = old_blob.read_bytes()
    s3.put_object(Bucket=bucket, Key="chart", Body=b"allergy: penicillin")
    overwrite = _last_seq(igw, bucket, "chart", "PutObject")

    _restore(igw, bucket, "chart", old_row)
    old_blob.write_bytes(old_bytes)
    # Online, the old version reads back: its row MAC verifies (the documented limit).
    assert s3.get_object(Bucket=bucket, Key="chart")["Body"].read() == b"allergy: none"

    report, stderr = _verify(igw, tmp_path, openbao, expect=1)
    assert _mismatches(report, bucket) == [("chart", "rolled-back", overwrite)]
    assert f"object {bucket}/chart: seq {overwrite}: rolled-back" in stderr


@pytest.mark.parametrize("how", ["DeleteObject", "DeleteObjects"])
def test_a_resurrected_deleted_object_is_reported(
    igw: RunningGateway, bucket: str, tmp_path: Path, openbao: OpenBaoServer, how: str
) -> None:
    s3 = igw.client("demo")
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")
    s3.put_object(Bucket=bucket, Key="note", Body=b"to be forgotten")
    row = _row(igw, bucket, "note")
    blob = blobs.blob_path(igw, bucket, "note")
    saved = blob.read_bytes()
    if how == "DeleteObject":
        s3.delete_object(Bucket=bucket, Key="note")
    else:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "note"}, {"Key": "other"}]})
    deletion = _last_seq(igw, bucket, "note" if how == "DeleteObject" else None, how)

    _restore(igw, bucket, "note", row)
    blob.write_bytes(saved)
    assert s3.get_object(Bucket=bucket, Key="note")["Body"].read() == b"to be forgotten"

    report, _ = _verify(igw, tmp_path, openbao, expect=1)
    assert ("note", "resurrected", deletion) in _mismatches(report, bucket)


def test_a_row_with_no_write_record_is_reported(
    igw: RunningGateway, bucket: str, tmp_path: Path, openbao: OpenBaoServer
) -> None:
    igw.client("demo").put_object(Bucket=bucket, Key="real", Body=b"x")
    row = list(_row(igw, bucket, "real"))
    row[1] = "planted"
    row[3] = secrets.token_bytes(16)  # object_id
    _restore(igw, bucket, "planted", tuple(row))

    report, _ = _verify(igw, tmp_path, openbao, expect=1)
    assert _mismatches(report, bucket) == [("planted", "unrecorded", 0)]


# ---------------------------------------------------------------------------- M4: checkpoints


def _checkpoint(gw: RunningGateway) -> Checkpoint:
    assert gw.gateway.audit is not None
    signed = gw.run(gw.gateway.audit.checkpoint())
    assert signed is not None
    return signed


def _rewrite_tail(path: Path, from_seq: int) -> None:
    """An insider's consistent rewrite of the records from ``from_seq`` on: the principal of
    each is changed and every hash after it recomputed (``time`` etc. kept as stored)."""

    async def read() -> list[AuditRecord]:
        catalog = SqlCatalog(f"sqlite:///{path}")
        try:
            return await catalog.audit_records(after_seq=from_seq - 2, limit=10_000)
        finally:
            await catalog.close()

    before, *tail = anyio.run(read)
    events = [dataclasses.replace(r.event, principal="insider") for r in tail]
    db = sqlite3.connect(path, isolation_level=None)
    for record in chain(events, after_seq=before.seq, prev_hash=before.hash):
        db.execute(
            "UPDATE audit_log SET principal = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            ("insider", record.prev_hash, record.hash, record.seq),
        )
    db.close()


def test_a_tail_rewritten_before_the_next_checkpoint_is_recorded_as_a_discontinuity(
    igw: RunningGateway, bucket: str, tmp_path: Path, openbao: OpenBaoServer
) -> None:
    s3 = igw.client("demo")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    base = _checkpoint(igw)
    for i in range(3):
        s3.get_object(Bucket=bucket, Key="k")["Body"].read()
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"y")
    _rewrite_tail(catalog_path(igw), base.seq + 2)

    signed = _checkpoint(igw)
    assert signed.kind == "discontinuity"
    assert signed.from_seq == base.seq + 1

    report, stderr = _verify(igw, tmp_path, openbao, expect=1)
    assert (base.seq + 1, "discontinuity") in [(p["seq"], p["kind"]) for p in report["problems"]]
    assert f"seq {base.seq + 1}: discontinuity: seq {base.seq + 1}..{signed.seq}" in stderr
    # Re-anchored: the next segment is vouched for again.
    s3.put_object(Bucket=bucket, Key="after", Body=b"z")
    assert _checkpoint(igw).kind == "checkpoint"


def test_a_deleted_checkpoint_is_detected(
    igw: RunningGateway, bucket: str, tmp_path: Path, openbao: OpenBaoServer
) -> None:
    s3 = igw.client("demo")
    seqs = []
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"c{i}", Body=b"x")
        seqs.append(_checkpoint(igw).seq)
    data_dir = _snapshot(igw, tmp_path, openbao)
    db = sqlite3.connect(_copy_path(data_dir), isolation_level=None)
    db.execute("DELETE FROM audit_checkpoints WHERE seq = ?", (seqs[1],))
    db.close()

    result = audit_cli(data_dir, "verify", "--json", expect=1)
    problems = [(p["seq"], p["kind"]) for p in json.loads(result.stdout)["problems"]]
    assert (seqs[2], "checkpoint-chain") in problems


def test_a_checkpoint_naming_another_signing_key_fails_verification(
    igw: RunningGateway, bucket: str, tmp_path: Path, openbao: OpenBaoServer
) -> None:
    # The insider rewrites the tail and endorses it with a checkpoint signed by an ed25519 key
    # they control (any other Transit key), naming that key in the row.
    s3 = igw.client("demo")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    base = _checkpoint(igw)
    s3.put_object(Bucket=bucket, Key="k2", Body=b"x")
    s3.put_object(Bucket=bucket, Key="k3", Body=b"x")
    data_dir = _snapshot(igw, tmp_path, openbao)
    path = _copy_path(data_dir)
    _rewrite_tail(path, base.seq + 1)
    db = sqlite3.connect(path, isolation_level=None)
    seq, digest = db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    admin = TransitAdmin(make_client(openbao.addr, openbao.token))
    igw.run(admin.ensure_signing_key("insider-audit"))
    signature, version = igw.run(
        admin.sign("insider-audit", checkpoint_bytes(seq, bytes(digest), 1.0))
    )
    db.execute(
        "INSERT INTO audit_checkpoints (seq, hash, time, key_name, key_version, signature) "
        "VALUES (?, ?, 1.0, 'insider-audit', ?, ?)",
        (seq, digest, version, signature),
    )
    db.close()

    result = audit_cli(data_dir, "verify", "--json", expect=1)
    problems = [(p["seq"], p["kind"]) for p in json.loads(result.stdout)["problems"]]
    assert (seq, "checkpoint-key") in problems


# ---------------------------------------------------------------------------- no false alarm


def test_concurrent_traffic_with_frequent_checkpoints_raises_no_alarm(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    """Writes, reads and deletes from many clients while checkpoints are signed every few
    records: every checkpoint is an endorsement and verify finds nothing."""
    data_dir = tmp_path / "busy"
    data_dir.mkdir()
    gw = start_cli_gateway(
        data_dir,
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        overrides={"audit": {"checkpoint_every": 3, "checkpoint_seconds": 3600}},
    )
    try:
        s3 = gw.client("demo")
        s3.create_bucket(Bucket="busy")

        def work(i: int) -> None:
            for j in range(6):
                key = f"k{i % 4}"
                s3.put_object(Bucket="busy", Key=key, Body=b"x" * (i + j))
                try:
                    s3.get_object(Bucket="busy", Key=key)["Body"].read()
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "NoSuchKey":  # deleted meanwhile: fine
                        raise
                if j % 3 == 2:
                    s3.delete_objects(Bucket="busy", Delete={"Objects": [{"Key": key}]})
                elif j % 3 == 1:
                    s3.delete_object(Bucket="busy", Key=key)

        with ThreadPoolExecutor(12) as pool:
            list(pool.map(work, range(12)))
    finally:
        gw.stop()  # signs the last checkpoint

    result = audit_cli(data_dir, "verify", "--json", expect=0)
    report = json.loads(result.stdout)
    assert report["checkpoints"] > 10
    assert report["unsigned_tail"] == 0
    kinds = anyio.run(_checkpoint_kinds, gw)
    assert kinds == {"checkpoint"}


async def _checkpoint_kinds(gw: RunningGateway) -> set[str]:
    catalog = SqlCatalog(gw.settings.catalog.url)
    try:
        return {c.kind for c in await catalog.audit_checkpoints()}
    finally:
        await catalog.close()
