"""Signed S3 requests over a plain socket, for clients that misbehave on purpose.

http.client always reads whole answers and closes politely; an attacker stops reading, resets
the connection (``SO_LINGER`` 0 makes ``close()`` send RST), half-closes it (FIN after part of a
body) or stalls. Requests are signed with botocore's SigV4 signer; a body sent in pieces is
signed ``UNSIGNED-PAYLOAD`` so that the head can go before the body exists.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.hostile.served import REGION, Served

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


class _Signer(S3SigV4Auth):
    def __init__(self, credentials: Credentials, payload_hash: str | None) -> None:
        super().__init__(credentials, "s3", REGION)
        self._payload_hash = payload_hash

    def payload(self, request: object) -> str:
        if self._payload_hash is not None:
            return self._payload_hash
        return str(super().payload(request))


def object_path(bucket: str, key: str = "") -> str:
    """A path-style request path, percent-encoded as SigV4 encodes it."""
    return f"/{bucket}/{quote(key, safe='/~')}" if key else f"/{bucket}"


def signed_head(
    served: Served,
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    payload_hash: str | None = None,
    content_length: int | None = None,
) -> bytes:
    """The request line and headers of a signed request, as bytes to write on a socket.

    ``payload_hash=UNSIGNED_PAYLOAD`` with ``content_length`` signs a body sent later.
    """
    host = f"127.0.0.1:{served.port}"
    target = path + (f"?{query}" if query else "")
    request = AWSRequest(
        method=method, url=f"http://{host}{target}", data=body, headers=dict(headers or {})
    )
    _Signer(Credentials(served.access_key, served.secret_key), payload_hash).add_auth(request)
    sent = {name: str(value) for name, value in request.headers.items()}
    sent["Host"] = host
    length = len(body) if content_length is None else content_length
    if method in {"PUT", "POST"} or length:
        sent["Content-Length"] = str(length)
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in sent.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(served: Served, timeout: float = 30) -> socket.socket:
    return socket.create_connection(("127.0.0.1", served.port), timeout=timeout)


def reset(sock: socket.socket) -> None:
    """Close with RST, not FIN (``SO_LINGER`` on, 0 s)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def half_close(sock: socket.socket) -> None:
    """Send FIN (no more data from us), then close."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    sock.close()


def abandon(sock: socket.socket, how: str) -> None:
    """Leave a connection the way a client that goes away does: ``"rst"`` or ``"fin"``."""
    if how == "rst":
        reset(sock)
    elif how == "fin":
        half_close(sock)
    else:
        raise ValueError(how)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def read_answer(sock: socket.socket) -> Answer:
    """One whole HTTP/1.1 response."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    data = response.read()
    return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


def read_status_line(sock: socket.socket) -> int:
    """Read until the end of the response head; its status code (the body is left unread)."""
    seen = b""
    while b"\r\n\r\n" not in seen:
        chunk = sock.recv(4096)
        if not chunk:
            break
        seen += chunk
    line = seen.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1.1 "), seen[:200]
    return int(line.split()[1])


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the server closes (EOF or reset) the connection within ``within`` seconds;
    whatever it sends before (an error answer) is read and dropped."""
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True


def send_slowly(sock: socket.socket, data: bytes, *, interval: float) -> bool:
    """Send ``data`` one byte every ``interval`` s; False once the server has closed on us."""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return False
        time.sleep(interval)
    return True
