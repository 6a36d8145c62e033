"""The audit trail against a real gateway and OpenBao: what is recorded, that a failed record
fails the request, that tampering with the catalog is caught, signed checkpoints, concurrency."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from click.testing import Result
from typer.testing import CliRunner

from blindstore.audit.chain import AuditRecord, SigningKey, verify
from blindstore.audit.events import AuditFilter
from blindstore.audit.query import verify_log
from blindstore.cli.main import app
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.keys.admin import TransitAdmin
from blindstore.keys.transit import make_client
from tests.gwserver import RunningGateway, start_cli_gateway, write_instance_file

ADMIN_TOKEN = "audit-admin-token"
CHECKPOINT_EVERY = 8


@pytest.fixture(scope="module")
def agw(
    openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """A gateway of this module's own (tests install triggers in its catalog)."""
    running = start_cli_gateway(
        tmp_path_factory.mktemp("audit"),
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        overrides={
            "audit": {"checkpoint_every": CHECKPOINT_EVERY, "checkpoint_seconds": 3600},
            "admin": {"token": ADMIN_TOKEN},
        },
    )
    yield running
    running.stop()


@pytest.fixture
def bucket(agw: RunningGateway) -> str:
    name = f"audit-{secrets.token_hex(5)}"
    agw.client("demo").create_bucket(Bucket=name)
    return name


def catalog_path(gw: RunningGateway) -> Path:
    return Path(gw.settings.catalog.url.removeprefix("sqlite:///"))


def records(gw: RunningGateway, selection: AuditFilter) -> list[AuditRecord]:
    return list(reversed(gw.run(gw.gateway.catalog.query_audit(selection, limit=1000))))


def audit_cli(data_dir: Path, *args: str, expect: int) -> Result:
    result = CliRunner().invoke(app, ["audit", *args, "--data-dir", str(data_dir)])
    assert result.exit_code == expect, result.output + repr(result.exception)
    return result


# ---------------------------------------------------------------------------- what is recorded


def test_put_and_get_are_recorded_with_the_object_facts(agw: RunningGateway, bucket: str) -> None:
    s3 = agw.client("demo")
    body = secrets.token_bytes(4096)
    etag = s3.put_object(Bucket=bucket, Key="scan.dcm", Body=body)["ETag"].strip('"')
    assert s3.get_object(Bucket=bucket, Key="scan.dcm")["Body"].read() == body

    put, get = records(agw, AuditFilter(bucket=bucket, key="scan.dcm"))
    stored = agw.run(agw.gateway.catalog.get_object(bucket, "scan.dcm"))
    assert stored is not None
    tenant = agw.run(agw.gateway.catalog.get_tenant_by_name("demo"))
    assert tenant is not None
    for record, operation in ((put, "PutObject"), (get, "GetObject")):
        event = record.event
        assert event.operation == operation
        assert event.result == "200"
        assert event.principal == agw.tenants["demo"].access_key
        assert event.tenant_id == tenant.tenant_id
        assert event.object_id == stored.object_id
        assert event.version == etag
        assert event.backends == stored.backends
        assert (event.key_name, event.key_version) == (stored.key_name, stored.key_version)
        assert event.source == "127.0.0.1"
        assert event.request_id
    assert put.event.bytes >= 4096  # the body as received (signed chunks add framing)
    assert get.event.bytes == 4096
    assert agw.run(agw.gateway.catalog.last_access(stored.object_id)) == get.event.time


def test_denied_and_failed_requests_are_recorded(agw: RunningGateway, bucket: str) -> None:
    s3 = agw.client("demo")
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="missing")
    with pytest.raises(ClientError):
        agw.client("other").get_object(Bucket=bucket, Key="missing")
    forged = boto3.client(
        "s3",
        endpoint_url=agw.endpoint,
        aws_access_key_id=agw.tenants["demo"].access_key,
        aws_secret_access_key="not-the-secret",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError):
        forged.get_object(Bucket=bucket, Key="missing")

    found = records(agw, AuditFilter(bucket=bucket, key="missing"))
    assert [(r.event.principal, r.event.operation, r.event.result) for r in found] == [
        (agw.tenants["demo"].access_key, "GetObject", "404 NoSuchKey"),
        (agw.tenants["other"].access_key, "GetObject", "403 AccessDenied"),
        ("", "GetObject", "403 SignatureDoesNotMatch"),
    ]
    assert found[2].event.tenant_id is None


def _admin_call(
    gw: RunningGateway, path: str, *, token: str | None, body: bytes | None = None
) -> int:
    request = urllib.request.Request(
        f"{gw.endpoint}{path}", data=body, method="POST" if body else "GET"
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/yaml")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_admin_requests_are_recorded_with_their_route(agw: RunningGateway) -> None:
    assert _admin_call(agw, "/-/health", token=None) == 200
    assert _admin_call(agw, "/-/policy/validate", token=ADMIN_TOKEN, body=b"version: 1\n") == 200
    assert _admin_call(agw, "/-/policy/validate", token="wrong", body=b"version: 1\n") == 401
    # A tenant's S3 secret opens nothing on the admin plane, and the attempt is on record.
    tenant_secret = agw.tenants["demo"].secret_key
    assert _admin_call(agw, "/-/policy/validate", token=tenant_secret, body=b"x: 1\n") == 401

    admin = records(agw, AuditFilter(operation="admin.ValidatePolicy"))[-3:]
    assert [(r.event.principal, r.event.result) for r in admin] == [
        ("admin", "200"),
        ("", "401"),
        ("", "401"),
    ]
    health = records(agw, AuditFilter(operation="admin.Health"))
    assert health
    assert health[-1].event.result == "200"
    # Readiness probes act on nothing and are polled every few seconds: unrecorded.
    assert _admin_call(agw, "/-/ready", token=None) == 200
    assert records(agw, AuditFilter(operation="admin.Ready")) == []


# ---------------------------------------------------------------------------- fail closed


def test_a_failing_audit_write_fails_the_request(agw: RunningGateway, bucket: str) -> None:
    s3 = agw.client("demo")
    body = secrets.token_bytes(4096)
    s3.put_object(Bucket=bucket, Key="kept", Body=body)
    db = sqlite3.connect(catalog_path(agw), isolation_level=None)
    db.execute(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit refused by test'); END"
    )
    try:
        raw = boto3.client(
            "s3",
            endpoint_url=agw.endpoint,
            aws_access_key_id=agw.tenants["demo"].access_key,
            aws_secret_access_key=agw.tenants["demo"].secret_key,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )
        with pytest.raises(ClientError) as put_error:
            raw.put_object(Bucket=bucket, Key="refused", Body=body)
        assert put_error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        with pytest.raises(ClientError) as get_error:
            raw.get_object(Bucket=bucket, Key="kept")
        assert get_error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert get_error.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert _admin_call(agw, "/-/health", token=None) == 503
    finally:
        db.execute("DROP TRIGGER refuse_audit")
        db.close()
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == body
    assert _admin_call(agw, "/-/health", token=None) == 200
    # The refused PUT's row and record were one transaction: neither exists.
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="refused")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_write_commits_its_record_with_its_row_once(agw: RunningGateway, bucket: str) -> None:
    s3 = agw.client("demo")
    s3.put_object(Bucket=bucket, Key="once", Body=b"x")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="parts", UploadId=upload, PartNumber=1, Body=b"y")
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="parts",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "once"})

    for key, operation in (
        ("once", "PutObject"),
        ("parts", "CompleteMultipartUpload"),
        ("copied", "CopyObject"),
    ):
        row = agw.run(agw.gateway.catalog.get_object(bucket, key))
        assert row is not None
        found = records(agw, AuditFilter(bucket=bucket, key=key, operation=operation))
        assert [(r.event.result, r.event.object_id, r.event.version) for r in found] == [
            ("200", row.object_id, row.etag)
        ]
        assert found[0].event.principal == agw.tenants["demo"].access_key


def test_a_refused_get_sends_no_object_bytes(agw: RunningGateway, bucket: str) -> None:
    from tests.integration import rawhttp

    s3 = agw.client("demo")
    marker = b"PLAINTEXT-MARKER-" + secrets.token_hex(8).encode()
    s3.put_object(Bucket=bucket, Key="secret", Body=marker * 100)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "secret"})
    db = sqlite3.connect(catalog_path(agw), isolation_level=None)
    db.execute(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit refused by test'); END"
    )
    try:
        response = rawhttp.fetch(agw, url)
    finally:
        db.execute("DROP TRIGGER refuse_audit")
        db.close()
    assert response.status == 503
    assert response.code == "ServiceUnavailable"
    assert marker not in response.body


# ---------------------------------------------------------------------------- tampering


def _snapshot(gw: RunningGateway, tmp_path: Path, openbao: OpenBaoServer) -> Path:
    """A copy of the gateway's catalog in a data directory the CLI can act on."""
    data_dir = tmp_path / "copy"
    (data_dir / ".blindstore").mkdir(parents=True)
    write_instance_file(data_dir, vault_addr=openbao.addr, vault_token=openbao.token)
    target = sqlite3.connect(_copy_path(data_dir))
    source = sqlite3.connect(catalog_path(gw))
    source.backup(target)
    source.close()
    target.close()
    return data_dir


def _copy_path(data_dir: Path) -> Path:
    from blindstore.cli.main import dev_settings

    url = dev_settings(data_dir, vault_addr="http://x", vault_token="t").catalog.url
    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _traffic(gw: RunningGateway, bucket: str, n: int = 6) -> None:
    s3 = gw.client("demo")
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"t{i}", Body=b"x" * 100)


@pytest.mark.parametrize(
    ("tamper", "kind"),
    [
        ("UPDATE audit_log SET principal = 'someone-else' WHERE seq = {seq}", "edited"),
        ("UPDATE audit_log SET result = '403 AccessDenied' WHERE seq = {seq}", "edited"),
        ("DELETE FROM audit_log WHERE seq = {seq}", "deleted"),
        (
            # Make room and insert a forged copy of the record before, as a forger would.
            "UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= {seq};"
            "UPDATE audit_log SET seq = seq - 1000000 + 1 WHERE seq >= 1000000;"
            "INSERT INTO audit_log SELECT {seq}, time, request_id, 'forger', tenant_id, "
            "operation, bucket, key, object_id, version, backends, key_name, key_version, "
            "result, bytes, source, detail, prev_hash, hash FROM audit_log WHERE seq = {seq} - 1",
            "edited",
        ),
        (
            # Swap two records' contents.
            "UPDATE audit_log SET seq = -1 WHERE seq = {seq};"
            "UPDATE audit_log SET seq = {seq} WHERE seq = {seq} + 1;"
            "UPDATE audit_log SET seq = {seq} + 1 WHERE seq = -1",
            "reordered",
        ),
    ],
)
def test_tampering_with_the_catalog_is_detected_and_located(
    agw: RunningGateway,
    bucket: str,
    tmp_path: Path,
    openbao: OpenBaoServer,
    tamper: str,
    kind: str,
) -> None:
    _traffic(agw, bucket)
    data_dir = _snapshot(agw, tmp_path, openbao)
    audit_cli(data_dir, "verify", expect=0)
    db = sqlite3.connect(_copy_path(data_dir), isolation_level=None)
    (last,) = db.execute("SELECT max(seq) FROM audit_log").fetchone()
    seq = last - 3
    db.executescript(tamper.format(seq=seq))
    db.close()

    result = audit_cli(data_dir, "verify", "--json", expect=1)
    report = json.loads(result.stdout)
    assert not report["intact"]
    assert (seq, kind) in [(p["seq"], p["kind"]) for p in report["problems"]]
    assert f"seq {seq}: {kind}" in result.stderr


# ---------------------------------------------------------------------------- checkpoints


def _wait_for_checkpoint(gw: RunningGateway, above: int) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        checkpoints = gw.run(gw.gateway.catalog.audit_checkpoints())
        if checkpoints and checkpoints[-1].seq > above:
            return checkpoints[-1].seq
        time.sleep(0.1)
    raise AssertionError("no checkpoint was signed")


def test_checkpoints_are_signed_with_the_transit_key_and_verify(
    agw: RunningGateway, bucket: str, tmp_path: Path, openbao: OpenBaoServer
) -> None:
    before = agw.run(agw.gateway.catalog.audit_checkpoints())
    _traffic(agw, bucket, CHECKPOINT_EVERY + 1)
    seq = _wait_for_checkpoint(agw, before[-1].seq if before else 0)

    checkpoints = agw.run(agw.gateway.catalog.audit_checkpoints())
    assert {cp.key_name for cp in checkpoints} == {"hgw-audit"}
    admin = TransitAdmin(make_client(openbao.addr, openbao.token))
    info = agw.run(admin.key_info("hgw-audit"))
    assert info is not None
    assert info.type == "ed25519"
    all_records = agw.run(agw.gateway.catalog.audit_records(limit=10_000))
    # Verified locally with the public key: OpenBao is trusted to sign, not to verify.
    key = SigningKey("hgw-audit", info.public_keys)
    assert verify(all_records, checkpoints, key) == []
    report = agw.run(verify_log(agw.gateway.catalog, key))
    assert report.intact
    assert report.last_signed_seq >= seq

    data_dir = _snapshot(agw, tmp_path, openbao)
    result = audit_cli(data_dir, "verify", expect=0)
    assert "chain intact" in result.stderr
    assert "last signed checkpoint at seq" in result.stderr

    # Offline, with the published PEM.
    pem = tmp_path / "audit.pem"
    audit_cli(data_dir, "signing-key", "--output", str(pem), expect=0)
    audit_cli(data_dir, "verify", "--public-key", str(pem), expect=0)

    # A chain rewritten consistently after an edit still fails the signed checkpoint.
    db = sqlite3.connect(_copy_path(data_dir), isolation_level=None)
    db.execute("DELETE FROM audit_log WHERE seq > ?", (seq - 2,))
    db.close()
    result = audit_cli(data_dir, "verify", "--json", expect=1)
    kinds = {p["kind"] for p in json.loads(result.stdout)["problems"]}
    assert "checkpoint-missing-record" in kinds


# ---------------------------------------------------------------------------- export, query


def test_export_and_query(
    agw: RunningGateway, bucket: str, tmp_path: Path, openbao: OpenBaoServer
) -> None:
    _traffic(agw, bucket, 3)
    data_dir = _snapshot(agw, tmp_path, openbao)
    out = tmp_path / "audit.jsonl"
    audit_cli(data_dir, "export", "--output", str(out), "--bucket", bucket, expect=0)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["key"] for line in lines if line["operation"] == "PutObject"] == ["t0", "t1", "t2"]
    assert all(line["tenant"] == "demo" for line in lines)
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)

    everything = audit_cli(data_dir, "export", expect=0).stdout.splitlines()
    assert len(everything) >= len(lines)

    result = audit_cli(
        data_dir, "query", "--bucket", bucket, "--operation", "PutObject", "--limit", "2", expect=0
    )
    newest = json.loads(result.stdout)
    assert [r["key"] for r in newest] == ["t2", "t1"]
    audit_cli(data_dir, "query", "--tenant", "nobody", expect=2)


# ---------------------------------------------------------------------------- concurrency


def test_parallel_requests_make_one_unbroken_chain(agw: RunningGateway, bucket: str) -> None:
    start = agw.run(agw.gateway.catalog.audit_head())
    s3 = agw.client("demo")

    def work(i: int) -> None:
        s3.put_object(Bucket=bucket, Key=f"p{i}", Body=b"y" * 4096)
        s3.get_object(Bucket=bucket, Key=f"p{i}")["Body"].read()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(work, range(64)))

    head = agw.run(agw.gateway.catalog.audit_head())
    assert head is not None
    assert head[0] - (start[0] if start else 0) >= 128
    report = agw.run(verify_log(agw.gateway.catalog, SigningKey("hgw-audit", {}), checkpoints=[]))
    assert report.intact, report.problems
    mine = records(agw, AuditFilter(bucket=bucket))
    assert sum(r.event.operation == "GetObject" and r.event.result == "200" for r in mine) == 64
