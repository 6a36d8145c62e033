"""Orphan blob collection (SECURITY-NOTES §5.3 cases 27-28, 39) and ``blindstore gc``.

A write lands its blob first and commits its catalog row last, so a crash in between leaves an
orphan: a blob no row (nor pending multipart part) points at. GC deletes orphans older than the
grace period, never a referenced blob; ``--dry-run`` only counts them. An upload the client
abandons mid-body leaves nothing behind at all, not even a temporary file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from blindstore.backends.ids import new_blob_id
from blindstore.cli.main import app
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.maintenance import GcReport, collect_garbage
from tests.gwserver import RunningGateway, start_gateway
from tests.integration import blobs, rawhttp

BUCKET = "gc-test"


@pytest.fixture
def gc_gw(openbao: OpenBaoServer, tmp_path: Path) -> Iterator[RunningGateway]:
    """A gateway of this test's own: GC with no grace period acts on every blob it holds."""
    running = start_gateway(
        tmp_path / "gateway", vault_addr=openbao.addr, vault_token=openbao.token
    )
    running.client("demo").create_bucket(Bucket=BUCKET)
    try:
        yield running
    finally:
        running.stop()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def write_orphan(gw: RunningGateway, tenant: str = "demo") -> Path:
    """A blob written straight to the backend, as if the gateway died before its catalog row."""
    record = gw.run(gw.gateway.catalog.get_tenant_by_name(tenant))
    assert record is not None
    backend = gw.gateway.backends[gw.gateway.default_backend]
    blob = new_blob_id()
    gw.run(backend.put(record.container, blob, _once(os.urandom(96 + 500))))
    path = gw.blob_dir / record.container / blob
    assert path.is_file()
    return path


def crash_before_commit(gw: RunningGateway, key: str) -> Path:
    """Store an object, then drop its catalog row but not its blob: the state a crash between
    the blob write and the catalog commit leaves (no row, no deferred deletion)."""
    gw.client("demo").put_object(Bucket=BUCKET, Key=key, Body=os.urandom(20_000))
    path = blobs.blob_path(gw, BUCKET, key)
    catalog = gw.gateway.catalog
    assert gw.run(catalog.delete_object(BUCKET, key)) is not None
    recorded = gw.run(catalog.due_deletions(time.time() + 10 * 365 * 86400, limit=10_000))
    gw.run(
        catalog.finish_deletions(
            [d for d in recorded if gw.blob_dir / d.container / d.blob == path]
        )
    )
    assert path.is_file()
    return path


def backdate(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def gc(gw: RunningGateway, **kwargs: Any) -> GcReport:
    return gw.run(collect_garbage(gw.gateway, **kwargs))


def referenced_files(gw: RunningGateway) -> set[Path]:
    """The blob files of committed objects and pending multipart parts."""
    refs = gw.run(gw.gateway.catalog.referenced_blobs(gw.gateway.default_backend))
    return {gw.blob_dir / container / blob for container, blob in refs}


def test_gc_deletes_orphans_and_keeps_every_referenced_blob(gc_gw: RunningGateway) -> None:
    s3 = gc_gw.client("demo")
    kept = os.urandom(30_000)
    s3.put_object(Bucket=BUCKET, Key="kept", Body=kept)
    other = gc_gw.client("other")
    other.create_bucket(Bucket="gc-other")
    other.put_object(Bucket="gc-other", Key="theirs", Body=b"theirs")
    pending = s3.create_multipart_upload(Bucket=BUCKET, Key="pending")
    s3.upload_part(
        Bucket=BUCKET, Key="pending", UploadId=pending["UploadId"], PartNumber=1, Body=b"p" * 1000
    )
    orphans = {
        write_orphan(gc_gw),
        write_orphan(gc_gw, "other"),
        crash_before_commit(gc_gw, "crashed"),
    }
    referenced = referenced_files(gc_gw)
    assert len(referenced) == 3
    assert referenced.isdisjoint(orphans)
    assert blobs.blob_files(gc_gw) == referenced | orphans

    report = gc(gc_gw, grace_seconds=0)

    assert (report.scanned, report.referenced, report.orphans, report.deleted) == (6, 3, 3, 3)
    assert report.bytes_freed == 2 * (96 + 500) + blobs.segment_size(20_000)
    assert blobs.blob_files(gc_gw) == referenced
    assert s3.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == kept
    assert other.get_object(Bucket="gc-other", Key="theirs")["Body"].read() == b"theirs"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=BUCKET, Key="crashed")
    assert info.value.response["Error"]["Code"] == "NoSuchKey"
    # The pending upload is intact and still completes.
    part = s3.list_parts(Bucket=BUCKET, Key="pending", UploadId=pending["UploadId"])["Parts"][0]
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="pending",
        UploadId=pending["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert s3.get_object(Bucket=BUCKET, Key="pending")["Body"].read() == b"p" * 1000


def test_gc_keeps_orphans_younger_than_the_grace_period(gc_gw: RunningGateway) -> None:
    """A write in flight has its blob before its row: the grace period protects it."""
    young = write_orphan(gc_gw)
    old = write_orphan(gc_gw)
    backdate(old, 7200)

    report = gc(gc_gw, grace_seconds=3600)

    assert (report.young, report.orphans, report.deleted) == (1, 1, 1)
    assert young.is_file()
    assert not old.exists()


def test_gc_dry_run_reports_orphans_and_deletes_nothing(gc_gw: RunningGateway) -> None:
    orphan = write_orphan(gc_gw)
    stale_temp = orphan.with_name(".tmp-" + orphan.name + "-0123456789abcdef")
    stale_temp.write_bytes(b"half a blob")
    backdate(stale_temp, 7200)
    before = blobs.blob_files(gc_gw)

    report = gc(gc_gw, grace_seconds=0, dry_run=True)

    # The stale temporary file is reported, not removed.
    assert (report.orphans, report.deleted) == (1, 0)
    assert (report.temp_files, report.temp_files_removed) == (1, 0)
    assert blobs.blob_files(gc_gw) == before
    assert stale_temp.is_file()

    report = gc(gc_gw, grace_seconds=0)

    assert (report.orphans, report.deleted) == (1, 1)
    assert (report.temp_files, report.temp_files_removed) == (1, 1)
    assert not orphan.exists()
    assert not stale_temp.exists()


def test_gc_keeps_and_reports_temporary_files_younger_than_the_grace_period(
    gc_gw: RunningGateway,
) -> None:
    """A PUT in flight writes to a temporary file: the grace period protects it too."""
    orphan = write_orphan(gc_gw)
    young_temp = orphan.with_name(".tmp-" + orphan.name + "-fedcba9876543210")
    young_temp.write_bytes(b"a blob being written")

    report = gc(gc_gw, grace_seconds=3600, dry_run=True)
    assert (report.temp_files, report.temp_files_removed) == (0, 0)
    report = gc(gc_gw, grace_seconds=3600)

    assert (report.temp_files, report.temp_files_removed) == (0, 0)
    assert young_temp.is_file()


def _later() -> float:
    """A time at which every deferred deletion recorded by these tests is due."""
    return time.time() + 10 * 86400


def test_gc_deletes_due_deferred_deletions_and_never_counts_waiting_ones_as_orphans(
    gc_gw: RunningGateway,
) -> None:
    s3 = gc_gw.client("demo")
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"version 1")
    replaced = blobs.blob_path(gc_gw, BUCKET, "k")
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"version 2")
    s3.put_object(Bucket=BUCKET, Key="gone", Body=b"deleted")
    deleted = blobs.blob_path(gc_gw, BUCKET, "gone")
    s3.delete_object(Bucket=BUCKET, Key="gone")
    for path in (replaced, deleted):
        backdate(path, 7200)  # old enough to be an orphan, were it one

    report = gc(gc_gw, grace_seconds=0)

    assert (report.deferred, report.orphans, report.deleted) == (2, 0, 0)
    assert (report.deferred_due, report.deferred_deleted) == (0, 0)
    assert replaced.is_file()
    assert deleted.is_file()

    dry = gc(gc_gw, grace_seconds=0, dry_run=True, clock=_later)

    assert (dry.deferred_due, dry.deferred_deleted, dry.orphans) == (2, 0, 0)
    assert replaced.is_file()
    assert deleted.is_file()

    done = gc(gc_gw, grace_seconds=0, clock=_later)

    assert (done.deferred_due, done.deferred_deleted, done.deferred, done.orphans) == (2, 2, 0, 0)
    assert not replaced.exists()
    assert not deleted.exists()
    assert gc_gw.run(gc_gw.gateway.catalog.deferred_blobs("local")) == set()
    assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"version 2"


def test_gc_never_deletes_a_blob_a_row_references_even_if_recorded_for_deletion(
    gc_gw: RunningGateway,
) -> None:
    """Blob ids are never reused; should a row point at a blob recorded for deletion anyway
    (an insider's edit), the row wins: the record is dropped and the blob stays."""
    s3 = gc_gw.client("demo")
    s3.put_object(Bucket=BUCKET, Key="kept", Body=b"kept")
    kept = blobs.blob_path(gc_gw, BUCKET, "kept")
    catalog = gc_gw.gateway.catalog
    # Another object id: an id names one object version, and the catalog refuses a second row
    # holding one; the edit plants a row of its own that names the same blob.
    alias = replace(blobs.record(gc_gw, BUCKET, "kept"), key="alias", object_id=os.urandom(16))
    gc_gw.run(catalog.put_object(alias))
    gc_gw.run(catalog.delete_object(BUCKET, "alias"))
    assert gc_gw.run(catalog.deferred_blobs("local")) == {(alias.container, alias.parts[0].blob)}

    report = gc(gc_gw, grace_seconds=0, clock=_later)

    assert (report.deferred_due, report.deferred_deleted, report.referenced) == (1, 0, 1)
    assert kept.is_file()
    assert gc_gw.run(catalog.deferred_blobs("local")) == set()
    assert s3.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == b"kept"


def _run_cli(*args: str) -> dict[str, int]:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    # The report is the last JSON document printed (a progress line may precede it).
    output = result.stdout
    report: dict[str, int] = json.loads(output[output.index("{") :])
    return report


def test_the_gc_command_removes_orphans_of_a_dev_data_dir(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    data_dir = tmp_path / "dev"
    gw = start_gateway(data_dir, vault_addr=openbao.addr, vault_token=openbao.token)
    try:
        s3 = gw.client("demo")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="kept", Body=b"kept")
        kept = blobs.blob_path(gw, BUCKET, "kept")
        orphan = crash_before_commit(gw, "crashed")
        young = write_orphan(gw)
    finally:
        gw.stop()
    backdate(orphan, 7200)
    (data_dir / "dev.json").write_text(
        json.dumps({"vault_addr": openbao.addr, "vault_token": openbao.token})
    )
    common = ("gc", "--data-dir", str(data_dir), "--grace", "3600")

    dry = _run_cli(*common, "--dry-run")

    assert (dry["scanned"], dry["referenced"], dry["young"]) == (3, 1, 1)
    assert (dry["orphans"], dry["deleted"]) == (1, 0)
    assert orphan.is_file()

    done = _run_cli(*common)

    assert (done["orphans"], done["deleted"], done["bytes_freed"]) == (
        1,
        1,
        blobs.segment_size(20_000),
    )
    assert not orphan.exists()
    assert kept.is_file()
    assert young.is_file()


def test_the_gc_command_without_a_dev_instance_fails_cleanly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["gc", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "dev.json" in result.output


# ---------------------------------------------------------------------------- abandoned upload


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_an_upload_abandoned_mid_body_leaves_no_blob_and_no_temporary_file(
    gc_gw: RunningGateway,
) -> None:
    declared, sent = 8 * 1024 * 1024, 4 * 1024 * 1024
    request = rawhttp.sign(
        gc_gw,
        "PUT",
        rawhttp.object_path(BUCKET, "abandoned"),
        headers={"Content-Length": str(declared)},
        payload_hash="UNSIGNED-PAYLOAD",
    )
    before = blobs.blob_files(gc_gw)
    sock = rawhttp.open_raw(gc_gw)
    try:
        sock.sendall(rawhttp.request_head(request))
        piece = os.urandom(64 * 1024)
        for _ in range(sent // len(piece)):
            sock.sendall(piece)
        # The gateway is streaming the body to disk: a temporary file exists.
        _wait_for(lambda: bool(blobs.temp_files(gc_gw)), "the upload to reach the disk")
    finally:
        sock.close()

    _wait_for(lambda: not blobs.temp_files(gc_gw), "the temporary file to be removed")
    assert blobs.blob_files(gc_gw) == before
    assert gc_gw.run(gc_gw.gateway.catalog.get_object(BUCKET, "abandoned")) is None
    report = gc(gc_gw, grace_seconds=0)
    assert (report.orphans, report.temp_files_removed) == (0, 0)
