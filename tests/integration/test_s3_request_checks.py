"""Request checks at the edge: what S3 refuses is refused before anything is stored, audit
records of hostile requests stay small, and a client hanging up is not an error."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import socket
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from blindstore.audit.events import AuditFilter
from tests.gwserver import RunningGateway
from tests.integration import rawhttp
from tests.integration.rawhttp import object_path

MiB = 1024 * 1024


def _records(gw: RunningGateway, selection: AuditFilter) -> list[Any]:
    return list(gw.run(gw.gateway.catalog.query_audit(selection, limit=100)))


def _raw(gw: RunningGateway, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"</Error>" in data or (b"\r\n\r\n" in data and b" 200 " in data[:20]):
                break
    return int(data.split(b" ", 2)[1]), data


def _presigned_target(gw: RunningGateway, method: str, **params: Any) -> tuple[str, str]:
    url = gw.client().generate_presigned_url(method, Params=params, ExpiresIn=300)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}", parts.netloc


# ---------------------------------------------------------------------------- audit records


def test_an_anonymous_request_with_a_huge_key_leaves_a_bounded_audit_record(
    gw: RunningGateway,
) -> None:
    assert gw.gateway.audit is not None
    bucket = f"nobody-{secrets.token_hex(4)}"
    key = "k" * 12_000
    status, _ = _raw(gw, f"GET /{bucket}/{key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 403
    (record,) = _records(gw, AuditFilter(bucket=bucket))
    assert record.event.principal == ""
    assert len(record.event.key) < 300
    assert record.event.key.startswith("k" * 100)
    assert hashlib.sha256(key.encode()).hexdigest() in record.event.key
    assert "12000 bytes" in record.event.key


def test_a_real_key_is_recorded_whole(gw: RunningGateway, s3: Any, bucket: str) -> None:
    key = "é" * 512  # 1024 UTF-8 bytes: the longest S3 key
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    (record,) = _records(gw, AuditFilter(bucket=bucket, operation="PutObject"))
    assert record.event.key == key


# ---------------------------------------------------------------------------- DeleteObjects


_DELETE = (
    b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Object><Key>victim</Key></Object></Delete>"
)


def test_delete_objects_without_content_md5_or_checksum_is_refused(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="victim", Body=b"kept")
    response = rawhttp.signed(gw, "POST", object_path(bucket), query="delete=", body=_DELETE)
    assert response.status == 400
    assert response.code == "InvalidRequest"
    assert response.error()["Message"] == "Missing required header for this request: Content-MD5"
    assert s3.get_object(Bucket=bucket, Key="victim")["Body"].read() == b"kept"


def test_delete_objects_with_content_md5_deletes(gw: RunningGateway, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="victim", Body=b"gone")
    md5 = base64.b64encode(hashlib.md5(_DELETE).digest()).decode()
    response = rawhttp.signed(
        gw,
        "POST",
        object_path(bucket),
        query="delete=",
        body=_DELETE,
        headers={"Content-MD5": md5},
    )
    assert response.status == 200, response.body
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_boto3_delete_objects_is_accepted(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}]})
    assert [d["Key"] for d in result["Deleted"]] == ["a"]


# ---------------------------------------------------------------------------- metadata


def _blob_count(gw: RunningGateway) -> int:
    return sum(1 for path in gw.blob_dir.rglob("*") if path.is_file())


def _signed_put_with_raw_header(
    gw: RunningGateway, bucket: str, key: str, name: bytes, value: bytes, body: bytes
) -> bytes:
    """A SigV4-signed PUT carrying a header value that is not UTF-8 (signed as its wire bytes,
    which botocore's str-based signer cannot do)."""
    creds = gw.tenants["demo"]
    now = datetime.now(UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = f"127.0.0.1:{gw.port}".encode()
    path = f"/{bucket}/{key}".encode()
    headers = sorted(
        [
            (b"host", host),
            (b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD"),
            (b"x-amz-date", stamp.encode()),
            (name, value),
        ]
    )
    signed = b";".join(n for n, _ in headers)
    canonical = b"\n".join(
        [b"PUT", path, b"", *(n + b":" + v for n, v in headers), b"", signed, b"UNSIGNED-PAYLOAD"]
    )
    scope = f"{day}/us-east-1/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical).hexdigest()]
    ).encode()
    signing_key = ("AWS4" + creds.secret_key).encode()
    for part in (day, "us-east-1", "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing_key, to_sign, hashlib.sha256).hexdigest()
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={signed.decode()}, Signature={signature}"
    ).encode()
    head = b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    return (
        b"PUT " + path + b" HTTP/1.1\r\n" + head + b"authorization: " + authorization + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


@pytest.mark.parametrize("header", [b"x-amz-meta-note", b"content-disposition"])
def test_non_utf8_metadata_is_refused_before_anything_is_stored(
    gw: RunningGateway, s3: Any, bucket: str, header: bytes
) -> None:
    blobs = _blob_count(gw)
    request = _signed_put_with_raw_header(gw, bucket, "meta", header, b"caf\xe9 \xff", b"hello")
    status, data = _raw(gw, request)
    assert status == 400, data
    assert b"<Code>InvalidArgument</Code>" in data
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert _blob_count(gw) == blobs


def test_utf8_metadata_is_stored(gw: RunningGateway, s3: Any, bucket: str) -> None:
    value = "café ✓".encode()
    request = _signed_put_with_raw_header(gw, bucket, "meta", b"x-amz-meta-note", value, b"hi")
    status, data = _raw(gw, request)
    assert status == 200, data
    assert (
        s3.head_object(Bucket=bucket, Key="meta")["ResponseMetadata"]["HTTPHeaders"][
            "x-amz-meta-note"
        ].encode("latin-1")
        == value
    )


# ---------------------------------------------------------------------------- hang-ups


def _tracebacks(caplog: pytest.LogCaptureFixture, captured: str) -> list[str]:
    logged = [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    return logged + (["Traceback in output"] if "Traceback" in captured else [])


def test_a_client_hanging_up_mid_download_is_not_an_error(
    gw: RunningGateway,
    s3: Any,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    s3.put_object(Bucket=bucket, Key="big", Body=b"\0" * (16 * MiB))
    target, host = _presigned_target(gw, "get_object", Bucket=bucket, Key="big")
    caplog.set_level(logging.INFO)
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST, mid-body
    time.sleep(1.5)
    assert len(s3.get_object(Bucket=bucket, Key="big")["Body"].read()) == 16 * MiB
    out, err = capfd.readouterr()
    assert _tracebacks(caplog, out + err) == []
    # Seen as a hang-up (the object reader stops), not as a download delivered whole: each cut
    # download's record (committed before its status line) is followed by one saying it was cut.
    # The audit trail says so whatever the process's log level; the log line is checked against
    # the installed process in tests/hostile/test_hangups_are_quiet.py.
    selection = AuditFilter(bucket=bucket, key="big", operation="GetObject")
    answered = gw.run(gw.gateway.catalog.query_audit(selection, limit=100))
    results = sorted(record.event.result for record in answered)
    assert results == ["200"] * 4 + ["200 (client disconnected)"] * 3, results


def test_a_client_hanging_up_mid_upload_is_not_an_error(
    gw: RunningGateway,
    s3: Any,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    target, host = _presigned_target(gw, "put_object", Bucket=bucket, Key="cut")
    caplog.set_level(logging.INFO)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(
            f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {8 * MiB}\r\n\r\n".encode()
            + b"x" * MiB
        )
        time.sleep(0.3)
    time.sleep(1.5)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    out, err = capfd.readouterr()
    assert _tracebacks(caplog, out + err) == []
