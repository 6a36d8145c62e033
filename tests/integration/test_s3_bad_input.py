"""Hostile and broken requests: XML bombs, huge headers, cut and stalled bodies, error format."""

from __future__ import annotations

import hashlib
import secrets
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from blindstore.devtools.openbao import OpenBaoServer
from tests.gwserver import RunningGateway, start_gateway
from tests.integration import rawhttp
from tests.integration.rawhttp import object_path

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<{root}><{item}>&lol9;</{item}></{root}>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<{root}><{item}>&xxe;</{item}></{root}>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">
<{root}><{item}>x</{item}></{root}>"""


def _deep(root: bytes, depth: int = 10_000) -> bytes:
    return b"<" + root + b">" + b"<a>" * depth + b"</a>" * depth + b"</" + root + b">"


def _complete_body(parts: int) -> bytes:
    items = b"".join(
        b'<Part><PartNumber>%d</PartNumber><ETag>"%s"</ETag></Part>'
        % (n, hashlib.md5(b"").hexdigest().encode())
        for n in range(1, parts + 1)
    )
    return b"<CompleteMultipartUpload>" + items + b"</CompleteMultipartUpload>"


def _delete_body(keys: int) -> bytes:
    items = b"".join(b"<Object><Key>k%d</Key></Object>" % n for n in range(keys))
    return b"<Delete>" + items + b"</Delete>"


def _hostile(root: bytes, item: bytes) -> dict[str, bytes]:
    return {
        "billion laughs": BILLION_LAUGHS.replace(b"{root}", root).replace(b"{item}", item),
        "xxe": XXE.replace(b"{root}", root).replace(b"{item}", item),
        "external dtd": EXTERNAL_DTD.replace(b"{root}", root).replace(b"{item}", item),
        "deep nesting": _deep(root),
        "garbage": secrets.token_bytes(4096),
        "empty": b"",
        "truncated": b"<" + root + b"><" + item + b">",
        "invalid utf-8": b"<" + root + b"><" + item + b">\xff\xfe</" + item + b"></" + root + b">",
        "wrong root": b"<Tagging><TagSet/></Tagging>",
        "over the size cap": b"<" + root + b">" + b" " * (9 << 20) + b"</" + root + b">",
    }


COMPLETE_CASES = {
    **_hostile(b"CompleteMultipartUpload", b"Part"),
    "10001 parts": _complete_body(10_001),
    "no parts": b"<CompleteMultipartUpload></CompleteMultipartUpload>",
    "part without etag": b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
    b"</CompleteMultipartUpload>",
    "non-numeric part number": b"<CompleteMultipartUpload><Part><PartNumber>one</PartNumber>"
    b"<ETag>x</ETag></Part></CompleteMultipartUpload>",
}
DELETE_CASES = {
    **_hostile(b"Delete", b"Object"),
    "1001 keys": _delete_body(1001),
    "no objects": b"<Delete><Quiet>true</Quiet></Delete>",
    "object without key": b"<Delete><Object><VersionId>x</VersionId></Object></Delete>",
    "quiet not a boolean": b"<Delete><Quiet>maybe</Quiet><Object><Key>k</Key></Object></Delete>",
}


def _assert_error_document(response: rawhttp.RawResponse, status: int, code: str) -> None:
    assert response.status == status, response.body[:300]
    fields = response.error()
    assert fields["Code"] == code
    assert fields["Message"]
    assert fields["RequestId"] == response.headers["x-amz-request-id"]
    assert response.headers["content-type"] == "application/xml"
    for leak in (b"Traceback", b'File "', b"blindstore.", b"Exception"):
        assert leak not in response.body


@pytest.mark.parametrize("case", sorted(COMPLETE_CASES))
def test_hostile_complete_multipart_body_is_malformed_xml(
    gw: RunningGateway, s3: Any, bucket: str, case: str
) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"")
    request = rawhttp.sign(
        gw, "POST", object_path(bucket, "mp"), query=f"uploadId={uid}", body=COMPLETE_CASES[case]
    )
    response = rawhttp.send_expecting_continue(request, gw)
    _assert_error_document(response, 400, "MalformedXML")
    assert b"root:" not in response.body  # nothing of /etc/passwd
    assert len(s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)["Parts"]) == 1


@pytest.mark.parametrize("case", sorted(DELETE_CASES))
def test_hostile_delete_objects_body_is_malformed_xml(
    gw: RunningGateway, s3: Any, bucket: str, case: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k0", Body=b"kept")
    request = rawhttp.sign(
        gw, "POST", object_path(bucket), query="delete=", body=DELETE_CASES[case]
    )
    response = rawhttp.send_expecting_continue(request, gw)
    _assert_error_document(response, 400, "MalformedXML")
    assert s3.get_object(Bucket=bucket, Key="k0")["Body"].read() == b"kept"


def test_hostile_tagging_body_is_malformed_xml(gw: RunningGateway, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x")
    body = BILLION_LAUGHS.replace(b"{root}", b"Tagging").replace(b"{item}", b"TagSet")
    response = rawhttp.signed(gw, "PUT", object_path(bucket, "t"), query="tagging=", body=body)
    _assert_error_document(response, 400, "MalformedXML")


# ---------------------------------------------------------------------------- headers


@pytest.mark.parametrize("size", [20 * 1024, 1024 * 1024])
def test_oversized_header_section_is_refused(
    gw: RunningGateway, s3: Any, bucket: str, size: int
) -> None:
    response = rawhttp.signed(
        gw,
        "PUT",
        object_path(bucket, "big-headers"),
        body=b"x",
        headers={"x-amz-meta-padding": "p" * size},
    )
    _assert_error_document(response, 400, "RequestHeaderSectionTooLarge")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="big-headers")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_many_small_headers_count_toward_the_limit(gw: RunningGateway, bucket: str) -> None:
    headers = {f"x-amz-meta-h{i}": "v" * 20 for i in range(1000)}
    response = rawhttp.signed(gw, "PUT", object_path(bucket, "many"), body=b"x", headers=headers)
    _assert_error_document(response, 400, "RequestHeaderSectionTooLarge")


# ---------------------------------------------------------------------------- bodies


@pytest.fixture(scope="module")
def impatient_gw(
    openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """A gateway of its own (a blob directory no other test writes) with a 1 s body timeout."""
    running = start_gateway(
        tmp_path_factory.mktemp("impatient"),
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        overrides={"limits": {"body_idle_timeout_seconds": 1}},
    )
    yield running
    running.stop()


@pytest.fixture
def impatient_bucket(impatient_gw: RunningGateway) -> str:
    name = f"slow-{secrets.token_hex(6)}"
    impatient_gw.client().create_bucket(Bucket=name)
    return name


def _files(root: Path) -> tuple[set[Path], set[Path]]:
    """(blobs, temporary files) under a blob directory."""
    files = {p for p in root.rglob("*") if p.is_file()}
    temp = {p for p in files if p.name.startswith(".tmp-")}
    return files - temp, temp


def _wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _start_put(gw: RunningGateway, bucket: str, key: str, length: int) -> socket.socket:
    """Open a signed, unsigned-payload PUT of ``length`` bytes; send only its head."""
    request = rawhttp.sign(
        gw,
        "PUT",
        object_path(bucket, key),
        headers={"Content-Length": str(length)},
        payload_hash="UNSIGNED-PAYLOAD",
    )
    sock = rawhttp.open_raw(gw)
    sock.sendall(rawhttp.request_head(request))
    return sock


def test_client_that_disconnects_mid_body_stores_nothing(
    impatient_gw: RunningGateway, impatient_bucket: str
) -> None:
    gw, bucket = impatient_gw, impatient_bucket
    blobs_before, _ = _files(gw.blob_dir)
    sock = _start_put(gw, bucket, "cut", 8 << 20)
    sock.sendall(secrets.token_bytes(3 << 20))
    # The gateway is streaming ciphertext to a temporary file by now.
    _wait_for(lambda: _files(gw.blob_dir)[1], "the temporary file of the upload")
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    _wait_for(lambda: not _files(gw.blob_dir)[1], "the temporary file to be removed")
    assert _files(gw.blob_dir)[0] == blobs_before
    with pytest.raises(ClientError) as exc:
        gw.client().head_object(Bucket=bucket, Key="cut")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@pytest.mark.parametrize("sent", [0, 1000, 3 << 20])
def test_client_that_stalls_mid_body_gets_request_timeout(
    impatient_gw: RunningGateway, impatient_bucket: str, sent: int
) -> None:
    gw, bucket = impatient_gw, impatient_bucket
    blobs_before, _ = _files(gw.blob_dir)
    sock = _start_put(gw, bucket, "stalled", 8 << 20)
    try:
        sock.sendall(secrets.token_bytes(sent))
        response = rawhttp.read_response(sock)  # the gateway answers while we stall
        _assert_error_document(response, 400, "RequestTimeout")
        assert response.headers["connection"] == "close"
        assert sock.recv(1) == b""  # and closes the connection
    finally:
        sock.close()
    _wait_for(lambda: not _files(gw.blob_dir)[1], "the temporary file to be removed")
    assert _files(gw.blob_dir)[0] == blobs_before
    with pytest.raises(ClientError) as exc:
        gw.client().head_object(Bucket=bucket, Key="stalled")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_put_without_content_length_is_missing_content_length(
    gw: RunningGateway, bucket: str
) -> None:
    request = rawhttp.sign(gw, "PUT", object_path(bucket, "no-length"), body=b"")
    sock = rawhttp.open_raw(gw)
    try:
        sock.sendall(rawhttp.request_head(request))
        _assert_error_document(rawhttp.read_response(sock), 411, "MissingContentLength")
    finally:
        sock.close()


def test_refused_upload_leaves_the_connection_usable(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    """boto3 waits for 100 Continue and never sends the body of a refused PUT: the gateway
    must not read the next request as that body."""
    client = rawhttp.boto_client(gw)
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=f"missing-{secrets.token_hex(4)}", Key="k", Body=b"x")
    assert exc.value.response["Error"]["Code"] == "NoSuchBucket"
    client.put_object(Bucket=bucket, Key="after", Body=b"fine")
    assert client.get_object(Bucket=bucket, Key="after")["Body"].read() == b"fine"


# ---------------------------------------------------------------------------- error documents


def test_error_documents_carry_code_message_and_request_id(gw: RunningGateway, bucket: str) -> None:
    cases = [
        (rawhttp.signed(gw, "GET", object_path(bucket, "nope")), 404, "NoSuchKey"),
        (rawhttp.signed(gw, "GET", "/no-such-bucket-x1/k"), 404, "NoSuchBucket"),
        (rawhttp.send(gw, "GET", object_path(bucket, "k")), 403, "AccessDenied"),
        (
            rawhttp.signed(gw, "GET", object_path(bucket, "k"), creds=_wrong_secret(gw)),
            403,
            "SignatureDoesNotMatch",
        ),
        (rawhttp.signed(gw, "POST", object_path(bucket, "k")), 405, "MethodNotAllowed"),
        (rawhttp.signed(gw, "GET", object_path(bucket), query="acl="), 501, "NotImplemented"),
        (rawhttp.signed(gw, "GET", f"/{bucket}/%ff%fe"), 400, "InvalidURI"),
        (
            rawhttp.send(gw, "GET", "/", headers={"Authorization": "AWS4-HMAC-SHA256 junk"}),
            400,
            "AuthorizationHeaderMalformed",
        ),
    ]
    ids = set()
    for response, status, code in cases:
        _assert_error_document(response, status, code)
        ids.add(response.headers["x-amz-request-id"])
    assert len(ids) == len(cases)


def test_error_resource_names_the_request_path(gw: RunningGateway, bucket: str) -> None:
    response = rawhttp.signed(gw, "GET", object_path(bucket, "dir/missing key"))
    root = ET.fromstring(response.body)
    assert root.findtext("Resource") == f"/{bucket}/dir/missing%20key"
    assert root.findtext("Key") == "dir/missing key"


def _wrong_secret(gw: RunningGateway) -> Any:
    from botocore.credentials import Credentials

    return Credentials(gw.tenants["demo"].access_key, "not-the-secret")
