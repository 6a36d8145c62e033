"""Oversized request heads, URLs and XML bodies against the installed `blindstore serve`: each is
refused with its S3 error while it is still arriving, the client reads that error (no reset),
and the process's memory stays flat."""

from __future__ import annotations

import contextlib
import socket

from tests.hostile.rawsock import (
    UNSIGNED_PAYLOAD,
    connect,
    object_path,
    read_answer,
    signed_head,
)
from tests.hostile.served import Served

MiB = 1024 * 1024
#: What the attacker tries to send: the size that httptools used to buffer whole.
ATTACK = 64 * MiB
#: Resident memory the gateway may gain while refusing one attack.
FLAT_KIB = 16 * 1024


def _send_until_refused(sock: socket.socket, first: bytes, filler: bytes) -> int:
    """Send ``first`` then ``filler`` up to ``ATTACK`` bytes; stop when the server stops us."""
    sent = 0
    with contextlib.suppress(OSError):
        sock.sendall(first)
        sock.settimeout(2)
        while sent < ATTACK:
            sock.sendall(filler)
            sent += len(filler)
    return sent


def _code(body: bytes) -> str:
    return body.split(b"<Code>", 1)[1].split(b"</Code>", 1)[0].decode()


def test_a_64_mib_header_is_refused_while_it_arrives(served: Served) -> None:
    before = served.rss_kib()
    with connect(served) as sock:
        sent = _send_until_refused(sock, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536)
        sock.settimeout(10)
        answer = read_answer(sock)
    assert sent < ATTACK
    assert (answer.status, _code(answer.body)) == (400, "RequestHeaderSectionTooLarge")
    assert answer.headers["connection"] == "close"
    assert served.rss_kib() - before < FLAT_KIB


def test_a_64_mib_url_is_refused_while_it_arrives(served: Served) -> None:
    before = served.rss_kib()
    with connect(served) as sock:
        sent = _send_until_refused(sock, f"GET /{served.bucket}/".encode(), b"k" * 65536)
        sock.settimeout(10)
        answer = read_answer(sock)
    assert sent < ATTACK
    assert (answer.status, _code(answer.body)) == (400, "InvalidURI")
    assert served.rss_kib() - before < FLAT_KIB


def test_an_oversized_xml_body_is_answered_and_read_by_the_client(served: Served) -> None:
    size = 12 * MiB  # over the 8 MiB DeleteObjects cap
    head = signed_head(
        served,
        "POST",
        object_path(served.bucket),
        query="delete=",
        payload_hash=UNSIGNED_PAYLOAD,
        content_length=size,
    )
    with connect(served) as sock:
        sock.sendall(head)
        for _ in range(size // 65536):
            sock.sendall(b" " * 65536)  # raises on a reset: the client must get the answer
        answer = read_answer(sock)
    assert (answer.status, _code(answer.body)) == (400, "MalformedXML")
    assert answer.headers["connection"] == "close"


def test_the_head_limits_leave_room_for_a_long_presigned_url(served: Served) -> None:
    key = "long/" + "é" * 500
    served.put(key, b"presigned")
    url = served.s3.generate_presigned_url(
        "get_object", Params={"Bucket": served.bucket, "Key": key}, ExpiresIn=300
    )
    target = url.split(str(served.port), 1)[1]
    with connect(served) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
        answer = read_answer(sock)
    assert (answer.status, answer.body) == (200, b"presigned")
