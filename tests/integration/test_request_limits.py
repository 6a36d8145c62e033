"""The wire limits of ``limits.*``, attacked over raw sockets against a real gateway.

Every refusal is an S3 XML error the client can read (not a reset, not uvicorn's plain text),
and the gateway keeps serving afterwards.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from blindstore.devtools.openbao import OpenBaoServer
from tests.gwserver import RunningGateway, start_gateway

MiB = 1024 * 1024

STRICT = {
    "header_timeout_seconds": 3,
    "max_url_bytes": 4096,
    "send_timeout_seconds": 1,
    "body_idle_timeout_seconds": 1,
    "keep_alive_timeout_seconds": 2,
}


@pytest.fixture(scope="module")
def strict(openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    running = start_gateway(
        tmp_path_factory.mktemp("strict"),
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        tenants=("demo",),
        overrides={"limits": STRICT},
    )
    running.client().create_bucket(Bucket="limits")
    yield running
    running.stop()


def _gateway(openbao: OpenBaoServer, tmp_path: Path, **limits: Any) -> RunningGateway:
    return start_gateway(
        tmp_path,
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        tenants=("demo",),
        overrides={"limits": limits},
    )


def _connect(gw: RunningGateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10)


def _read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One response, read until its Content-Length (or the connection's end)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _code(body: bytes) -> str:
    found = re.search(rb"<Code>([^<]*)</Code>", body)
    assert found, body[:300]
    return found.group(1).decode()


def _still_serves(gw: RunningGateway) -> None:
    assert "Buckets" in gw.client().list_buckets()


def _presigned(gw: RunningGateway, method: str, **params: Any) -> tuple[str, str]:
    """(request target, host) of a presigned URL."""
    url = gw.client().generate_presigned_url(method, Params=params, ExpiresIn=300)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}", parts.netloc


# ---------------------------------------------------------------------------- request head


def test_an_oversized_header_section_is_refused_while_it_is_still_arriving(strict: Any) -> None:
    with _connect(strict) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: ")
        # 1 MiB of one header value, never finished: refused long before it ends.
        for _ in range(16):
            try:
                sock.sendall(b"a" * 65536)
            except OSError:
                break
        status, headers, body = _read_response(sock)
    assert status == 400
    assert _code(body) == "RequestHeaderSectionTooLarge"
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/xml"
    _still_serves(strict)


def test_too_many_headers_are_refused_while_they_arrive(strict: Any) -> None:
    with _connect(strict) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for i in range(2000):
            try:
                sock.sendall(b"X-H%d: %s\r\n" % (i, b"v" * 40))
            except OSError:
                break
        status, _, body = _read_response(sock)
    assert status == 400
    assert _code(body) == "RequestHeaderSectionTooLarge"


def test_an_overlong_url_is_refused_while_it_is_still_arriving(strict: Any) -> None:
    with _connect(strict) as sock:
        sock.sendall(b"GET /limits/")
        for _ in range(16):
            try:
                sock.sendall(b"k" * 65536)
            except OSError:
                break
        status, headers, body = _read_response(sock)
    assert status == 400
    assert _code(body) == "InvalidURI"
    assert headers["connection"] == "close"
    _still_serves(strict)


def test_a_presigned_url_within_the_limit_is_served(strict: Any) -> None:
    strict.client().put_object(Bucket="limits", Key="k" * 1000, Body=b"hello")
    target, host = _presigned(strict, "get_object", Bucket="limits", Key="k" * 1000)
    with _connect(strict) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        status, _, body = _read_response(sock)
    assert (status, body) == (200, b"hello")


def test_garbage_instead_of_http_gets_an_s3_error(strict: Any) -> None:
    with _connect(strict) as sock:
        sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        status, headers, body = _read_response(sock)
    assert status == 400
    assert headers["content-type"] == "application/xml"
    assert _code(body) == "BadRequest"


# ---------------------------------------------------------------------------- ceilings


def test_connections_beyond_the_ceiling_get_slow_down(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    gw = _gateway(openbao, tmp_path, max_connections=4)
    idle = [_connect(gw) for _ in range(4)]
    try:
        time.sleep(0.3)
        with _connect(gw) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = _read_response(sock)
        assert status == 503
        assert _code(body) == "SlowDown"
        assert headers["retry-after"] == "1"
        assert headers["connection"] == "close"
    finally:
        for sock in idle:
            sock.close()
    # Served again once the gateway has seen the idle connections go.
    deadline = time.monotonic() + 10
    while True:
        try:
            _still_serves(gw)
            break
        except ClientError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    gw.stop()


def test_requests_beyond_the_concurrency_ceiling_get_slow_down(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    gw = _gateway(openbao, tmp_path, max_concurrent_requests=1)
    gw.client().create_bucket(Bucket="busy")
    target, host = _presigned(gw, "put_object", Bucket="busy", Key="slow")
    try:
        with _connect(gw) as busy:
            # An upload in flight that is waiting for the rest of its body.
            busy.sendall(
                f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000\r\n\r\n".encode()
                + b"x" * 10
            )
            time.sleep(0.5)
            with _connect(gw) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, body = _read_response(sock)
            assert status == 503
            assert _code(body) == "SlowDown"
            busy.sendall(b"x" * 990)
            assert _read_response(busy)[0] == 200
        _still_serves(gw)
    finally:
        gw.stop()


def test_an_idle_keep_alive_connection_is_closed(strict: Any) -> None:
    with _connect(strict) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _read_response(sock)
        sock.settimeout(6)
        started = time.monotonic()
        assert sock.recv(1024) == b""
        assert time.monotonic() - started < 5


# ---------------------------------------------------------------------------- slow readers


def test_a_client_that_stops_reading_a_download_is_disconnected(strict: Any) -> None:
    size = 32 * MiB
    strict.client().put_object(Bucket="limits", Key="big", Body=b"\0" * size)
    target, host = _presigned(strict, "get_object", Bucket="limits", Key="big")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", strict.port))
    with sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        time.sleep(4)  # reading nothing: the send timeout (1 s) cuts the connection
        sock.settimeout(5)
        received = 0
        try:
            while chunk := sock.recv(MiB):
                received += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    assert received < size
    _still_serves(strict)


# ---------------------------------------------------------------------------- XML bodies


def test_an_xml_body_that_stalls_gets_request_timeout(strict: Any) -> None:
    target, host = _presigned(strict, "create_bucket", Bucket="stalled")
    with _connect(strict) as sock:
        sock.sendall(
            f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 200\r\n\r\n".encode()
            + b"<CreateBucketConfiguration>"
        )
        status, _, body = _read_response(sock, timeout=10)
    assert status == 400
    assert _code(body) == "RequestTimeout"
    _still_serves(strict)


def test_an_oversized_xml_body_is_answered_not_reset(strict: Any) -> None:
    target, host = _presigned(strict, "create_bucket", Bucket="oversized")
    size = 6 * MiB
    with _connect(strict) as sock:
        sock.sendall(
            f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        # The client sends its whole body before reading, as most HTTP clients do.
        for _ in range(size // 65536):
            sock.sendall(b" " * 65536)
        status, headers, body = _read_response(sock)
    assert status == 400
    assert _code(body) == "MalformedXML"
    assert headers["connection"] == "close"
    _still_serves(strict)


def test_a_request_sent_in_one_segment_with_a_large_body_is_served(strict: Any) -> None:
    """Only head bytes count against the head limits, however the segments fall."""
    target, host = _presigned(strict, "put_object", Bucket="limits", Key="one-segment")
    body = b"b" * (40 * 1024)  # head and body in one read: more than the head limit
    with _connect(strict) as sock:
        sock.sendall(
            f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert _read_response(sock)[0] == 200
    got = strict.client().get_object(Bucket="limits", Key="one-segment")["Body"].read()
    assert got == body


def test_pipelined_requests_are_each_answered(strict: Any) -> None:
    target, host = _presigned(strict, "head_bucket", Bucket="limits")
    one = f"HEAD {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with _connect(strict) as sock:
        sock.sendall(one * 3)
        sock.settimeout(10)
        data = b""
        while data.count(b"HTTP/1.1 200") < 3:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
