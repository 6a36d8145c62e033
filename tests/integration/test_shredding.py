"""Crypto-shredding against a real OpenBao: tenant, data subject and object, with certificates."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from blindstore.catalog.base import ObjectRecord, Tenant
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.errors import KeyServiceError
from blindstore.keys.transit import TransitKeyWrapper
from blindstore.subjects import SUBJECT_HEADER, is_subject_key
from tests.gwserver import RunningGateway
from tests.integration.keycli import (
    forget_cached_keys,
    fresh_tenant,
    keys_cli,
    record,
)

pytestmark = pytest.mark.usefixtures("lifecycle_gw")


def _error(call: Callable[[], object]) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"].get("Message", ""),
    )


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for the gateways' revocation refresh (0.2 s in this module)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _refused(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "KeyShredded"
    return False


def _tenant(gw: RunningGateway, name: str) -> Tenant:
    found = gw.run(gw.gateway.catalog.get_tenant_by_name(name))
    assert found is not None
    return found


def _unwrap(gw: RunningGateway, openbao: OpenBaoServer, rec: ObjectRecord) -> bytes:
    async def unwrap() -> bytes:
        wrapper = TransitKeyWrapper(url=openbao.addr, token=openbao.token)
        try:
            return await wrapper.unwrap(rec.key_name, rec.tenant_id, rec.object_id, rec.wrapped_dek)
        finally:
            await wrapper.close()

    return gw.run(unwrap())


def _key_exists(openbao: OpenBaoServer, name: str) -> bool:
    try:
        openbao.request("GET", f"transit/keys/{name}")
    except OSError:  # urllib's HTTPError: 404
        return False
    return True


def test_tenant_shred_makes_every_read_fail_and_leaves_other_tenants_alone(
    lifecycle_gw: RunningGateway, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    gw = lifecycle_gw
    name, s3, bucket = fresh_tenant(gw)
    _other, s3_other, other_bucket = fresh_tenant(gw)
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"DUPONT_Jean_{i}.dcm", Body=b"scan %d" % i)
    s3.create_multipart_upload(Bucket=bucket, Key="pending.dcm")
    s3_other.put_object(Bucket=other_bucket, Key="kept.dcm", Body=b"kept")
    tenant = _tenant(gw, name)
    saved = record(gw, bucket, "DUPONT_Jean_0.dcm")
    container = gw.blob_dir / tenant.container
    assert any(container.iterdir())
    certificate_file = tmp_path / "certificate.json"

    certificate = keys_cli(
        gw,
        "shred",
        "--tenant",
        name,
        "--grace",
        "0",
        "--yes",
        "--operator",
        "dpo@hospital.example",
        "--certificate-out",
        str(certificate_file),
    )

    # Every request of the tenant now fails with a clear, permanent error (once the gateway's
    # revocation refresh has run: 0.2 s here)...
    _eventually(lambda: _refused(s3, bucket, "DUPONT_Jean_1.dcm"))
    status, code, message = _error(lambda: s3.get_object(Bucket=bucket, Key="DUPONT_Jean_1.dcm"))
    assert (status, code) == (410, "KeyShredded")
    assert "crypto-shredding" in message
    assert _error(lambda: s3.list_objects_v2(Bucket=bucket))[1] == "KeyShredded"
    assert _error(lambda: s3.put_object(Bucket=bucket, Key="new", Body=b"x"))[1] == "KeyShredded"
    # ...the other tenant is untouched...
    assert s3_other.get_object(Bucket=other_bucket, Key="kept.dcm")["Body"].read() == b"kept"
    # ...the Transit key is gone, so even a saved wrapped DEK opens nothing...
    assert not _key_exists(openbao, tenant.key_name)
    with pytest.raises(KeyServiceError):
        _unwrap(gw, openbao, saved)
    # ...and the tenant's container is empty, its catalog rows gone.
    assert not [p for p in container.rglob("*") if p.is_file()]
    assert gw.run(gw.gateway.catalog.get_object(bucket, "DUPONT_Jean_1.dcm")) is None

    assert certificate["scope"] == "tenant"
    assert certificate["tenant"] == {"id": tenant.tenant_id.hex(), "name": name}
    assert certificate["keys"] == [{"name": tenant.key_name, "existed": True, "versions": [1]}]
    assert certificate["destroyed"]["objects"] == 3
    assert certificate["destroyed"]["pending_uploads"] == 1
    assert certificate["destroyed"]["bytes"] == sum(len(b"scan %d" % i) for i in range(3))
    assert certificate["operator"] == "dpo@hospital.example"
    assert certificate["signature"]["algorithm"] == "ed25519"
    assert json.loads(certificate_file.read_text()) == certificate
    stored = keys_cli(gw, "certificate", certificate["shred_id"])
    assert stored == certificate


def test_a_certificate_verifies_online_and_offline_and_any_alteration_is_detected(
    lifecycle_gw: RunningGateway, tmp_path: Path
) -> None:
    gw = lifecycle_gw
    name, s3, bucket = fresh_tenant(gw)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    certificate_file = tmp_path / "certificate.json"
    keys_cli(
        gw, "shred", "--tenant", name, "--grace", "0", "--yes",
        "--certificate-out", str(certificate_file),
    )  # fmt: skip
    public_key = tmp_path / "signing.pem"
    keys_cli(gw, "signing-key", "--output", str(public_key))
    assert public_key.read_text().startswith("-----BEGIN PUBLIC KEY-----")

    online = keys_cli(gw, "verify-certificate", str(certificate_file))
    offline = keys_cli(
        gw, "verify-certificate", str(certificate_file), "--public-key", str(public_key)
    )
    assert online["valid"] is True
    assert offline["valid"] is True

    altered = json.loads(certificate_file.read_text())
    altered["destroyed"]["objects"] = 0
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(altered))
    refused = keys_cli(gw, "verify-certificate", str(forged), expect=1)
    assert "does not match" in refused.output
    refused = keys_cli(
        gw, "verify-certificate", str(forged), "--public-key", str(public_key), expect=1
    )
    assert "does not match" in refused.output


def test_tenant_shred_with_a_grace_period_can_be_restored_then_is_purged_when_due(
    lifecycle_gw: RunningGateway, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    gw = lifecycle_gw
    name, s3, bucket = fresh_tenant(gw)
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept for now")
    tenant = _tenant(gw, name)

    pending = keys_cli(gw, "shred", "--tenant", name, "--grace", "1h", "--yes")
    assert pending["status"] == "pending"
    _eventually(lambda: _refused(s3, bucket, "k"))
    config = openbao.request("GET", f"transit/keys/{tenant.key_name}")["data"]
    assert isinstance(config, dict)
    assert config["soft_deleted"] is True
    assert keys_cli(gw, "purge") == []  # not due yet

    keys_cli(gw, "restore", pending["shred_id"])
    _eventually(lambda: not _refused(s3, bucket, "k"))
    forget_cached_keys(gw)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept for now"

    again = keys_cli(gw, "shred", "--tenant", name, "--grace", "1s", "--yes")
    time.sleep(1.1)
    certificates = keys_cli(gw, "purge", "--certificates-dir", str(tmp_path / "certs"))
    assert [c["shred_id"] for c in certificates] == [again["shred_id"]]
    assert (tmp_path / "certs" / f"{again['shred_id']}.json").exists()
    assert not _key_exists(openbao, tenant.key_name)
    assert keys_cli(gw, "restore", again["shred_id"], expect=2).exit_code == 2


def test_shred_asks_for_confirmation(lifecycle_gw: RunningGateway) -> None:
    gw = lifecycle_gw
    name, s3, bucket = fresh_tenant(gw)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")

    result = keys_cli(gw, "shred", "--tenant", name, "--grace", "0", stdin="n\n", expect=1)

    assert "Continue?" in result.output
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_subject_shred_makes_exactly_that_subjects_objects_unreadable(
    lifecycle_gw: RunningGateway, openbao: OpenBaoServer
) -> None:
    gw = lifecycle_gw
    name, s3, bucket = fresh_tenant(gw)
    patient_a, patient_b = "NIR-1850775123456", "NIR-2900675654321"

    def put(key: str, body: bytes, subject: str | None) -> None:
        if subject is None:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        else:
            _put_with_subject(s3, bucket, key, body, subject)

    put("a/1.dcm", b"a one", patient_a)
    put("a/2.dcm", b"a two", patient_a)
    put("b/1.dcm", b"b one", patient_b)
    put("plain.txt", b"no subject", None)
    upload = _upload_with_subject(s3, bucket, "a/big.dcm", patient_a)
    s3.copy_object(Bucket=bucket, Key="b/copy.dcm", CopySource={"Bucket": bucket, "Key": "b/1.dcm"})

    a1, b1 = record(gw, bucket, "a/1.dcm"), record(gw, bucket, "b/1.dcm")
    tenant = _tenant(gw, name)
    assert is_subject_key(a1.key_name)
    assert is_subject_key(b1.key_name)
    assert a1.key_name != b1.key_name != tenant.key_name
    assert record(gw, bucket, "a/2.dcm").key_name == a1.key_name
    assert record(gw, bucket, "b/copy.dcm").key_name == b1.key_name
    assert record(gw, bucket, "plain.txt").key_name == tenant.key_name
    assert (
        SUBJECT_HEADER
        not in s3.head_object(Bucket=bucket, Key="a/1.dcm")["ResponseMetadata"]["HTTPHeaders"]
    )
    # The subject id reaches neither OpenBao (its audit log), nor the backend, nor the catalog.
    for where in (openbao.audit_log_path, *gw.blob_dir.rglob("*"), *gw.data_dir.glob("catalog*")):
        if where is not None and where.is_file():
            assert patient_a.encode() not in where.read_bytes(), where

    pending = keys_cli(
        gw, "shred", "--tenant", name, "--subject", patient_a, "--grace", "1s", "--yes"
    )
    assert pending["keys"] == [a1.key_name]
    _eventually(lambda: _refused(s3, bucket, "a/1.dcm"))
    assert _refused(s3, bucket, "a/2.dcm")
    # Nor is the shredded patient's metadata served, by any path that reveals it.
    etag = record(gw, bucket, "a/1.dcm").etag
    for metadata in (
        lambda: s3.head_object(Bucket=bucket, Key="a/1.dcm"),
        lambda: s3.head_object(Bucket=bucket, Key="a/1.dcm", IfNoneMatch=f'"{etag}"'),
        lambda: s3.get_object(Bucket=bucket, Key="a/1.dcm", IfNoneMatch=f'"{etag}"'),
        lambda: s3.get_object(Bucket=bucket, Key="a/1.dcm", IfMatch='"other"'),
        lambda: s3.get_object_tagging(Bucket=bucket, Key="a/1.dcm"),
        lambda: s3.put_object_tagging(
            Bucket=bucket, Key="a/1.dcm", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}
        ),
    ):
        with pytest.raises(ClientError) as refused:
            metadata()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    assert s3.get_object(Bucket=bucket, Key="b/1.dcm")["Body"].read() == b"b one"
    assert s3.get_object(Bucket=bucket, Key="b/copy.dcm")["Body"].read() == b"b one"
    assert s3.get_object(Bucket=bucket, Key="plain.txt")["Body"].read() == b"no subject"

    time.sleep(1.1)
    (certificate,) = keys_cli(gw, "purge")
    assert certificate["scope"] == "subject"
    assert certificate["destroyed"]["objects"] == 2
    assert certificate["destroyed"]["pending_uploads"] == 1
    assert certificate["keys"][0]["name"] == a1.key_name
    assert patient_a not in json.dumps(certificate)
    assert not _key_exists(openbao, a1.key_name)
    with pytest.raises(KeyServiceError):
        _unwrap(gw, openbao, a1)
    assert _error(lambda: s3.get_object(Bucket=bucket, Key="a/1.dcm"))[1] == "NoSuchKey"
    assert _error(lambda: s3.list_parts(Bucket=bucket, Key="a/big.dcm", UploadId=upload))[1] == (
        "NoSuchUpload"
    )
    forget_cached_keys(gw)
    assert s3.get_object(Bucket=bucket, Key="b/1.dcm")["Body"].read() == b"b one"
    # The same patient, readmitted later, gets a new key.
    _put_with_subject(s3, bucket, "a/3.dcm", b"a three", patient_a)
    assert s3.get_object(Bucket=bucket, Key="a/3.dcm")["Body"].read() == b"a three"
    assert record(gw, bucket, "a/3.dcm").key_name not in (a1.key_name, b1.key_name)


def _with_subject(s3: Any, subject: str) -> Callable[..., None]:
    def add_header(request: Any, **_kwargs: Any) -> None:
        request.headers[SUBJECT_HEADER] = subject

    return add_header


def _put_with_subject(s3: Any, bucket: str, key: str, body: bytes, subject: str) -> None:
    handler = _with_subject(s3, subject)
    s3.meta.events.register_first("before-sign.s3.PutObject", handler)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    finally:
        s3.meta.events.unregister("before-sign.s3.PutObject", handler)


def _upload_with_subject(s3: Any, bucket: str, key: str, subject: str) -> str:
    handler = _with_subject(s3, subject)
    s3.meta.events.register_first("before-sign.s3.CreateMultipartUpload", handler)
    try:
        upload_id: str = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    finally:
        s3.meta.events.unregister("before-sign.s3.CreateMultipartUpload", handler)
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"part")
    return upload_id


def test_an_invalid_subject_id_is_refused_and_nothing_is_stored(
    lifecycle_gw: RunningGateway,
) -> None:
    gw = lifecycle_gw
    _name, s3, bucket = fresh_tenant(gw)

    status, code, _message = _error(lambda: _put_with_subject(s3, bucket, "k", b"x", " " * 3))

    assert (status, code) == (400, "InvalidArgument")
    assert gw.run(gw.gateway.catalog.get_object(bucket, "k")) is None


def test_delete_leaves_no_copy_of_the_wrapped_key_in_the_catalog(
    lifecycle_gw: RunningGateway,
) -> None:
    gw = lifecycle_gw
    _name, s3, bucket = fresh_tenant(gw)
    s3.put_object(Bucket=bucket, Key="erase-me", Body=b"x")
    rec = record(gw, bucket, "erase-me")
    wrapped = rec.wrapped_dek.encode()
    catalog_file = gw.data_dir / "catalog.db"

    s3.delete_object(Bucket=bucket, Key="erase-me")
    with sqlite3.connect(catalog_file) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    for path in gw.data_dir.glob("catalog.db*"):
        assert wrapped not in path.read_bytes(), path
    assert gw.run(gw.gateway.catalog.get_object(bucket, "erase-me")) is None
