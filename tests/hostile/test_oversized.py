"""A 50 MiB XML body (DeleteObjects, CompleteMultipartUpload) against the installed `blindstore
serve`: refused with a 4xx and the connection closed *while it is still arriving*, by a client that
stops sending once it sees the answer; the gateway never buffers it whole and its memory stays
flat. (Oversized heads and URLs, and a client that sends its whole oversized body and reads the
error: test_oversized_inputs.py.)"""

from __future__ import annotations

import contextlib
import secrets
import select
import socket
from collections.abc import Iterator

import pytest

from tests.hostile.rawsock import (
    UNSIGNED_PAYLOAD,
    closed_by_peer,
    object_path,
    signed_head,
)
from tests.hostile.served import Served

KiB, MiB = 1024, 1024 * 1024
REFUSALS = {400, 413, 414, 431}
#: How much the gateway's RSS may grow while refusing one oversized request.
RSS_GROWTH_KIB = 24 * 1024


def _push(
    served: Served, first: bytes, filler: Iterator[bytes], total: int, tail: bytes
) -> tuple[int, int]:
    """Send ``first`` then ``filler`` chunks (``total`` bytes in all) while watching for an
    answer; stop at the answer or when the gateway closes. If all went, ``tail`` ends the
    request (so that a gateway that buffers it whole still answers). (bytes sent, status)."""
    sock = socket.socket()
    # Small buffers: what the kernels hold for us cannot hide that the server stopped reading.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
    sock.settimeout(15)
    sock.connect(("127.0.0.1", served.port))
    sent, status = 0, 0
    try:
        pending = first
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            if not pending:
                pending = next(filler, b"")
                if not pending:
                    break
            try:
                n = sock.send(pending[: 64 * KiB])
            except (ConnectionError, TimeoutError):
                break
            sent += n
            pending = pending[n:]
        if sent >= total and tail:
            with contextlib.suppress(ConnectionError, TimeoutError):
                sock.sendall(tail)
        status = _status(sock)
        if status:
            assert closed_by_peer(sock, within=10), "the connection stayed open after the refusal"
    finally:
        sock.close()
    return sent, status


def _status(sock: socket.socket) -> int:
    seen = b""
    try:
        while b"\r\n" not in seen:
            chunk = sock.recv(4096)
            if not chunk:
                break
            seen += chunk
    except (ConnectionError, TimeoutError):
        pass
    if not seen.startswith(b"HTTP/1.1 "):
        return 0  # reset or closed without an answer
    return int(seen.split()[1])


def _repeat(chunk: bytes, total: int) -> Iterator[bytes]:
    produced = 0
    while produced < total:
        yield chunk
        produced += len(chunk)


def _assert_refused_early(
    served: Served, first: bytes, filler: Iterator[bytes], total: int, tail: bytes = b""
) -> None:
    before = served.rss_kib()
    sent, status = _push(served, first, filler, total, tail)
    assert status in REFUSALS, f"no 4xx answer (status {status}) after {sent} bytes"
    assert sent < total, "the gateway read the whole oversized request before refusing it"
    assert served.rss_kib() - before < RSS_GROWTH_KIB


@pytest.mark.parametrize("operation", ["DeleteObjects", "CompleteMultipartUpload"])
def test_a_fifty_mib_xml_body_is_refused_while_it_arrives(served: Served, operation: str) -> None:
    total = 50 * MiB
    if operation == "DeleteObjects":
        path, query = object_path(served.bucket), "delete="
        opening, item = b"<Delete>", b"<Object><Key>" + b"k" * 200 + b"</Key></Object>"
    else:
        upload = served.s3.create_multipart_upload(Bucket=served.bucket, Key="xml/bomb")
        path = object_path(served.bucket, "xml/bomb")
        query = f"uploadId={upload['UploadId']}"
        opening = b"<CompleteMultipartUpload>"
        item = b"<Part><PartNumber>1</PartNumber><ETag>" + secrets.token_hex(16).encode()
        item += b"</ETag></Part>"
    head = signed_head(
        served, "POST", path, query=query, payload_hash=UNSIGNED_PAYLOAD, content_length=total
    )
    _assert_refused_early(served, head + opening, _repeat(item * 400, total), total)
