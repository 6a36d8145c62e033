"""``blindstore export`` to a directory (the customer's exit), against a real OpenBao: read back
with nothing but the Python standard library, verified (and tampering caught), resumed after
an interruption, and a corrupted object refused rather than written."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from typer.testing import CliRunner

from blindstore.audit.events import AuditFilter
from blindstore.cli.common import admin_transit, certificate_signer, resolve_settings
from blindstore.cli.main import app
from blindstore.lifecycle.export import export_tenant, object_file
from blindstore.subjects import SUBJECT_HEADER
from tests.gwserver import RunningGateway
from tests.integration import blobs
from tests.integration.keycli import fresh_tenant, keys_cli

pytestmark = pytest.mark.usefixtures("lifecycle_gw")

MiB = 1 << 20
#: Keys no file system should ever see as paths.
HOSTILE_KEYS = ("../../etc/passwd", "a/\x01\x1fctl\x7f", "é/" + "k" * 1000)

#: The reader a customer would write: standard library only (run with -I -S: no site-packages,
#: so no blindstore). Prints {"bucket\0key": base64 of the file} after checking size and SHA-256.
PLAIN_READER = r"""
import base64, hashlib, json, sys
root = sys.argv[1]
out = {}
with open(root + "/manifest.jsonl", encoding="ascii") as manifest:
    for line in manifest:
        entry = json.loads(line)
        if entry["status"] != "exported":
            out[entry["bucket"] + "\0" + entry["key"]] = entry["status"]
            continue
        with open(root + "/" + entry["file"], "rb") as handle:
            data = handle.read()
        assert len(data) == entry["size"], entry["file"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
        out[entry["bucket"] + "\0" + entry["key"]] = base64.b64encode(data).decode()
json.dump(out, sys.stdout)
"""


def _export_records(gw: RunningGateway, tenant: str) -> list[dict[str, Any]]:
    """The ``export`` audit records of ``tenant``: result and detail, oldest first."""
    found = gw.run(gw.gateway.catalog.get_tenant_by_name(tenant))
    assert found is not None
    records = gw.run(
        gw.gateway.catalog.query_audit(
            AuditFilter(tenant_id=found.tenant_id, operation="export"), newest_first=False
        )
    )
    return [{"result": r.event.result, **r.event.detail} for r in records]


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _export(gw: RunningGateway, tenant: str, dest: Path, *extra: str) -> Result:
    return _cli(
        "export", "--tenant", tenant, "--to", str(dest), "--data-dir", str(gw.data_dir), *extra
    )


def _with_headers(s3: Any, operation: str, extra: dict[str, str]) -> Callable[[], None]:
    def add(request: Any, **_kwargs: Any) -> None:
        for name, value in extra.items():
            request.headers[name] = value

    event = f"before-sign.s3.{operation}"
    s3.meta.events.register_first(event, add)
    return lambda: s3.meta.events.unregister(event, add)


def _populate(gw: RunningGateway) -> tuple[str, str, str, dict[tuple[str, str], bytes]]:
    """A tenant with two buckets, hostile keys, a multipart object, metadata, tags, provenance,
    and one object under a data subject whose shredding is requested. Returns (tenant, first
    bucket, second bucket, the readable objects' bodies)."""
    name, s3, first = fresh_tenant(gw)
    second = first + "-two"
    s3.create_bucket(Bucket=second)
    bodies: dict[tuple[str, str], bytes] = {}
    undo = _with_headers(
        s3,
        "PutObject",
        {
            "x-blindstore-origin-system": "PACS-1",
            "x-blindstore-consent-ref": "consent-42",
            "x-blindstore-legal-basis": "gdpr-9-2-h",
        },
    )
    try:
        bodies[(first, "report.pdf")] = os.urandom(70_000)
        s3.put_object(
            Bucket=first,
            Key="report.pdf",
            Body=bodies[(first, "report.pdf")],
            ContentType="application/pdf",
            Metadata={"ward": "cardiology"},
            Tagging="kind=report",
        )
    finally:
        undo()
    for index, key in enumerate(HOSTILE_KEYS):
        bodies[(second, key)] = os.urandom(100 + index)
        s3.put_object(Bucket=second, Key=key, Body=bodies[(second, key)])
    bodies[(second, "empty")] = b""
    s3.put_object(Bucket=second, Key="empty", Body=b"")
    parts = [os.urandom(5 * MiB), os.urandom(MiB + 7)]
    upload = s3.create_multipart_upload(Bucket=first, Key="scan.dcm")
    etags = [
        s3.upload_part(
            Bucket=first, Key="scan.dcm", UploadId=upload["UploadId"], PartNumber=n, Body=part
        )["ETag"]
        for n, part in enumerate(parts, start=1)
    ]
    s3.complete_multipart_upload(
        Bucket=first,
        Key="scan.dcm",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    bodies[(first, "scan.dcm")] = b"".join(parts)
    undo = _with_headers(s3, "PutObject", {SUBJECT_HEADER: "PATIENT-7"})
    try:
        s3.put_object(Bucket=first, Key="patient7.dcm", Body=b"forgotten")
    finally:
        undo()
    keys_cli(gw, "shred", "--tenant", name, "--subject", "PATIENT-7", "--grace", "1h", "--yes")
    # A subject whose shredding is complete: its objects are gone from the catalog; the header
    # names the shredding request.
    undo = _with_headers(s3, "PutObject", {SUBJECT_HEADER: "PATIENT-8"})
    try:
        s3.put_object(Bucket=second, Key="patient8.dcm", Body=b"destroyed")
    finally:
        undo()
    keys_cli(gw, "shred", "--tenant", name, "--subject", "PATIENT-8", "--grace", "0", "--yes")
    return name, first, second, bodies


@pytest.fixture(scope="module")
def exported(
    lifecycle_gw: RunningGateway, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, str, dict[tuple[str, str], bytes]]:
    gw = lifecycle_gw
    name, first, _second, bodies = _populate(gw)
    dest = tmp_path_factory.mktemp("export") / "out"
    result = _export(gw, name, dest)
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads(result.stdout)
    assert (summary["objects"], summary["shredded"], summary["failed"]) == (len(bodies), 1, [])
    return dest, name, first, bodies


def test_an_export_reads_back_byte_identical_with_the_standard_library_alone(
    exported: tuple[Path, str, str, dict[tuple[str, str], bytes]],
) -> None:
    dest, _name, first, bodies = exported
    read = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PLAIN_READER, str(dest)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    found = json.loads(read.stdout)
    expected: dict[str, str] = {
        f"{bucket}\0{key}": base64.b64encode(body).decode()
        for (bucket, key), body in bodies.items()
    }
    expected[f"{first}\0patient7.dcm"] = "shredded"
    assert found == expected
    # No key became a path: every file is a digest name directly under objects/.
    assert sorted(p.name for p in (dest / "objects").iterdir()) == sorted(
        object_file(bucket, key).split("/")[1] for bucket, key in bodies
    )


def test_the_manifest_carries_metadata_tags_provenance_and_says_what_was_shredded(
    exported: tuple[Path, str, str, dict[tuple[str, str], bytes]],
) -> None:
    dest, name, first, bodies = exported
    second = first + "-two"
    lines = [json.loads(line) for line in (dest / "manifest.jsonl").read_text().splitlines()]
    by_key = {(line["bucket"], line["key"]): line for line in lines}
    report = by_key[(first, "report.pdf")]
    assert report["content_type"] == "application/pdf"
    assert report["user_metadata"] == {"ward": "cardiology"}
    assert report["tags"] == {"kind": "report"}
    assert report["provenance"] == {
        "origin_system": "PACS-1",
        "consent_ref": "consent-42",
        "legal_basis": "gdpr-9-2-h",
    }
    assert report["etag"] == hashlib.md5(bodies[(first, "report.pdf")]).hexdigest()
    assert by_key[(first, "scan.dcm")]["etag"].endswith("-2")
    assert by_key[(first, "patient7.dcm")] == {
        "bucket": first,
        "key": "patient7.dcm",
        "status": "shredded",
    }
    header = json.loads((dest / "export.json").read_text())
    assert header["tenant"] == name
    assert (header["objects"], header["shredded"]) == (len(bodies), 1)
    assert header["bytes"] == sum(len(body) for body in bodies.values())
    assert sorted((s["scope"], s["destroyed"] is None) for s in header["shreddings"]) == [
        ("subject", False),
        ("subject", True),
    ]
    assert (second, "patient8.dcm") not in by_key
    assert (
        header["manifest_sha256"]
        == hashlib.sha256((dest / "manifest.jsonl").read_bytes()).hexdigest()
    )


def test_each_export_run_leaves_one_audit_record(
    lifecycle_gw: RunningGateway,
    exported: tuple[Path, str, str, dict[tuple[str, str], bytes]],
) -> None:
    _dest, name, _first, bodies = exported
    records = _export_records(lifecycle_gw, name)
    assert records[0]["result"] == "200"
    assert (records[0]["objects"], records[0]["shredded"], records[0]["failed"]) == (
        len(bodies),
        1,
        0,
    )


def _verify(dest: Path, *extra: str) -> Result:
    return _cli("export", "verify", str(dest), *extra)


def _tampered(dest: Path, tmp_path: Path, change: Callable[[Path], None]) -> Path:
    copy = tmp_path / f"copy-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(dest, copy)
    change(copy)
    return copy


def test_export_verify_passes_offline_and_fails_on_any_tampering(
    lifecycle_gw: RunningGateway,
    exported: tuple[Path, str, str, dict[tuple[str, str], bytes]],
    tmp_path: Path,
) -> None:
    dest, _name, first, _bodies = exported
    pem = tmp_path / "signing.pem"
    keys_cli(lifecycle_gw, "signing-key", "--output", str(pem))
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    work = tmp_path / "work"
    work.mkdir()

    online = _verify(dest, "--data-dir", str(lifecycle_gw.data_dir))
    assert online.exit_code == 0, online.output
    offline = _verify(dest, "--public-key", str(pem))
    assert offline.exit_code == 0, offline.output
    assert json.loads(offline.stdout)["valid"] is True

    victim = object_file(first, "report.pdf")

    def flip(root: Path) -> None:
        path = root / victim
        data = bytearray(path.read_bytes())
        data[1234] ^= 0x01
        path.write_bytes(bytes(data))

    def remove(root: Path) -> None:
        (root / victim).unlink()

    def add(root: Path) -> None:
        (root / "objects" / "smuggled").write_bytes(b"x")

    def edit(root: Path) -> None:
        manifest = root / "manifest.jsonl"
        manifest.write_text(
            manifest.read_text().replace('"ward":"cardiology"', '"ward":"oncology"')
        )

    for change, reason in (
        (flip, "does not match its size and SHA-256"),
        (remove, "missing"),
        (add, "not in the manifest"),
        (edit, "does not match the signed digest"),
    ):
        result = _verify(_tampered(dest, work, change), "--public-key", str(pem))
        assert result.exit_code == 1, (reason, result.output)
        assert reason in result.output

    wrong = keys_dir / "wrong.pem"
    wrong.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    result = _verify(dest, "--public-key", str(wrong))
    assert result.exit_code == 1
    assert "signature does not match" in result.output


def test_a_finished_export_is_not_overwritten_without_force(
    lifecycle_gw: RunningGateway,
    exported: tuple[Path, str, str, dict[tuple[str, str], bytes]],
) -> None:
    dest, name, _first, bodies = exported
    before = (dest / "export.json").read_bytes()

    refused = _export(lifecycle_gw, name, dest)

    assert refused.exit_code == 2
    assert "--force" in refused.output
    assert (dest / "export.json").read_bytes() == before

    forced = _export(lifecycle_gw, name, dest, "--force")

    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["written"] == len(bodies)
    assert _verify(dest, "--data-dir", str(lifecycle_gw.data_dir)).exit_code == 0
    # One audit record per run that did work: the first export and the forced one.
    assert [r["result"] for r in _export_records(lifecycle_gw, name)] == ["200", "200"]


class _Interrupted(Exception):
    pass


def test_an_interrupted_export_resumes_without_rewriting_finished_files(
    lifecycle_gw: RunningGateway, tmp_path: Path
) -> None:
    gw = lifecycle_gw
    name, s3, bucket = fresh_tenant(gw)
    bodies = {f"k{i:02d}": os.urandom(1000 + i) for i in range(6)}
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    dest = tmp_path / "out"
    settings = resolve_settings(gw.data_dir, None)

    def stop_after_three(done: int) -> None:
        if done == 3:
            raise _Interrupted

    async def first_run() -> None:
        signer = await certificate_signer(settings, admin_transit(settings, None))
        tenant = await gw.gateway.catalog.get_tenant_by_name(name)
        assert tenant is not None
        await export_tenant(gw.gateway, tenant, dest, signer=signer, on_object=stop_after_three)

    with pytest.raises(_Interrupted):
        gw.run(first_run())
    assert not (dest / "export.json").exists()
    finished = {
        key: (dest / object_file(bucket, key)).stat()
        for key in bodies
        if (dest / object_file(bucket, key)).exists()
    }
    assert sorted(finished) == ["k00", "k01", "k02"]
    # Meanwhile: an exported object is tagged (same ETag, new metadata), another deleted.
    s3.put_object_tagging(
        Bucket=bucket, Key="k00", Tagging={"TagSet": [{"Key": "late", "Value": "tag"}]}
    )
    s3.delete_object(Bucket=bucket, Key="k01")
    del bodies["k01"]

    resumed = _export(gw, name, dest)

    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert (summary["skipped"], summary["written"], summary["objects"]) == (2, 3, 5)
    for key in ("k00", "k02"):
        after = (dest / object_file(bucket, key)).stat()
        before = finished[key]
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    for key, body in bodies.items():
        assert (dest / object_file(bucket, key)).read_bytes() == body
    assert not (dest / object_file(bucket, "k01")).exists()
    lines = [json.loads(line) for line in (dest / "manifest.jsonl").read_text().splitlines()]
    assert [line["key"] for line in lines] == sorted(bodies)
    assert lines[0]["tags"] == {"late": "tag"}
    assert not (dest / "journal.jsonl").exists()
    assert _verify(dest, "--data-dir", str(gw.data_dir)).exit_code == 0


def test_a_corrupted_object_fails_the_export_naming_it_and_writes_no_file(
    lifecycle_gw: RunningGateway, tmp_path: Path
) -> None:
    gw = lifecycle_gw
    name, s3, bucket = fresh_tenant(gw)
    s3.put_object(Bucket=bucket, Key="good", Body=os.urandom(50_000))
    # Larger than limits.verify_whole_below: streamed, so chunks reach the temporary file
    # before the flipped one fails.
    s3.put_object(Bucket=bucket, Key="bad [scan].dcm", Body=os.urandom(5 * MiB))
    blob = blobs.blob_path(gw, bucket, "bad [scan].dcm")
    data = bytearray(blob.read_bytes())
    data[-100] ^= 0x40
    blob.write_bytes(bytes(data))
    dest = tmp_path / "out"

    result = _export(gw, name, dest)

    assert result.exit_code == 1, result.output
    assert "'bad [scan].dcm'" in result.stderr
    assert json.loads(result.stdout)["failed"] == [
        {"bucket": bucket, "key": "bad [scan].dcm", "error": "IntegrityError"}
    ]
    assert not (dest / object_file(bucket, "bad [scan].dcm")).exists()
    assert (dest / object_file(bucket, "good")).is_file()
    assert not (dest / "export.json").exists()
    assert not [p for p in (dest / "objects").iterdir() if p.name.startswith(".")]
    assert [(r["result"], r["failed"]) for r in _export_records(gw, name)] == [
        ("500 InternalError", 1)
    ]


def test_an_export_refuses_a_directory_that_is_not_an_exports_and_a_file(
    lifecycle_gw: RunningGateway, tmp_path: Path
) -> None:
    name, s3, bucket = fresh_tenant(lifecycle_gw)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.odt").write_bytes(b"precious")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"x")

    refused = _export(lifecycle_gw, name, foreign)
    assert refused.exit_code == 2
    assert "not an export's (thesis.odt)" in refused.output
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.odt"]
    failed = _export(lifecycle_gw, name, not_a_dir)
    assert failed.exit_code == 2
    assert "cannot write the export in" in failed.output
    assert _export_records(lifecycle_gw, name) == []
