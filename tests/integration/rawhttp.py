"""Hand-made S3 requests for the integration tests: what boto3 will not send.

Requests are signed with botocore's own SigV4 signer (``S3SigV4Auth``), with the knobs boto3
does not expose: a chosen clock, a chosen ``x-amz-content-sha256`` value, any body. They go out
over ``http.client`` to the gateway's port, with whatever ``Host`` the test wants (virtual-hosted
names such as ``bucket.localhost:<port>`` need no DNS that way).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from tests.gwserver import RunningGateway

REGION = "us-east-1"
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, str]:
        """The fields of an S3 XML error document (Code, Message, RequestId, ...)."""
        root = ET.fromstring(self.body)
        assert root.tag == "Error", self.body[:200]
        return {child.tag: child.text or "" for child in root}

    @property
    def code(self) -> str:
        return self.error()["Code"]


class _Signer(S3SigV4Auth):
    """botocore's S3 signer with a fixed clock and, optionally, a fixed payload hash."""

    def __init__(self, credentials: Credentials, when: datetime, payload_hash: str | None) -> None:
        super().__init__(credentials, "s3", REGION)
        self._when = when
        self._payload_hash = payload_hash

    def payload(self, request: Any) -> str:
        if self._payload_hash is not None:
            return self._payload_hash
        return str(super().payload(request))

    def add_auth(self, request: Any) -> None:
        # SigV4Auth.add_auth, with the clock passed in rather than read.
        request.context["timestamp"] = self._when.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        self._inject_signature_to_request(request, self.signature(string_to_sign, request))


def boto_client(
    gw: RunningGateway,
    tenant: str = "demo",
    *,
    addressing: str = "path",
    s3: Mapping[str, Any] | None = None,
    **config: Any,
) -> Any:
    """A boto3 client like ``gw.client``, with extra ``s3`` options (payload signing...).

    Virtual-hosted addressing (``bucket.localhost:<port>``) needs no DNS: ``*.localhost`` does
    not resolve everywhere, so the gateway doubles as the client's HTTP proxy and receives the
    request in absolute form, with the virtual-hosted ``Host``.
    """
    creds = gw.tenants[tenant]
    endpoint = gw.endpoint
    if addressing == "virtual":
        endpoint = f"http://localhost:{gw.port}"
        config.setdefault("proxies", {"http": gw.endpoint})
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        region_name=REGION,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing, **(s3 or {})},
            retries={"max_attempts": 1, "mode": "standard"},
            **config,
        ),
    )


def virtual_client(gw: RunningGateway, tenant: str = "demo", **config: Any) -> Any:
    """A boto3 client that addresses buckets as ``bucket.localhost:<port>``."""
    return boto_client(gw, tenant, addressing="virtual", **config)


def credentials(gw: RunningGateway, tenant: str = "demo") -> Credentials:
    creds = gw.tenants[tenant]
    return Credentials(creds.access_key, creds.secret_key)


def object_path(bucket: str, key: str = "") -> str:
    """A path-style request path, percent-encoded as SigV4 (and boto3) encode it."""
    return f"/{bucket}/{quote(key, safe='/~')}" if key else f"/{bucket}"


@dataclass
class SignedRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    #: The values a streaming (aws-chunked) body chains its chunk signatures from.
    signature: str
    timestamp: str
    scope: str
    signing_key: bytes


def sign(
    gw: RunningGateway,
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    creds: Credentials | None = None,
    host: str | None = None,
    when: datetime | None = None,
    payload_hash: str | None = None,
) -> SignedRequest:
    """Sign a request; ``path`` and ``query`` must already be percent-encoded."""
    creds = creds or credentials(gw)
    when = when or datetime.now(UTC)
    host = host or f"127.0.0.1:{gw.port}"
    target = path + (f"?{query}" if query else "")
    request = AWSRequest(
        method=method, url=f"http://{host}{target}", data=body, headers=dict(headers or {})
    )
    signer = _Signer(creds, when, payload_hash)
    signer.add_auth(request)
    out = {name: str(value) for name, value in request.headers.items()}
    out["Host"] = host
    authorization = out["Authorization"]
    timestamp = when.strftime(SIGV4_TIMESTAMP)
    return SignedRequest(
        method=method,
        target=target,
        headers=out,
        body=body,
        signature=authorization.rsplit("Signature=", 1)[1],
        timestamp=timestamp,
        scope=f"{timestamp[:8]}/{REGION}/s3/aws4_request",
        signing_key=signing_key(creds.secret_key, timestamp[:8]),
    )


class _QuerySigner(S3SigV4QueryAuth):
    """botocore's presigned-URL signer with a fixed clock."""

    def __init__(self, credentials: Credentials, when: datetime, expires: int) -> None:
        super().__init__(credentials, "s3", REGION, expires=expires)
        self._when = when

    def add_auth(self, request: Any) -> None:
        request.context["timestamp"] = self._when.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        self._inject_signature_to_request(request, self.signature(string_to_sign, request))


def presign(
    gw: RunningGateway,
    method: str,
    path: str,
    *,
    creds: Credentials | None = None,
    when: datetime | None = None,
    expires: int = 300,
) -> str:
    """A presigned URL as botocore builds it, signed at ``when`` (default: now)."""
    request = AWSRequest(method=method, url=f"{gw.endpoint}{path}")
    signer = _QuerySigner(creds or credentials(gw), when or datetime.now(UTC), expires)
    signer.add_auth(request)
    return str(request.prepare().url)


def signing_key(secret: str, date: str) -> bytes:
    key = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
    for part in (REGION, "s3", "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def send(
    gw: RunningGateway,
    method: str,
    target: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 30,
) -> RawResponse:
    """Send one request to the gateway over a fresh connection and read the whole answer."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        all_headers = dict(headers or {})
        all_headers.setdefault("Host", f"127.0.0.1:{gw.port}")
        all_headers.setdefault("Content-Length", str(len(body)))
        for name, value in all_headers.items():
            conn.putheader(name, value.encode("utf-8"))
        conn.endheaders()
        if body:
            conn.send(body)
        response = conn.getresponse()
        data = response.read()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def send_signed(request: SignedRequest, gw: RunningGateway) -> RawResponse:
    return send(gw, request.method, request.target, headers=request.headers, body=request.body)


def signed(
    gw: RunningGateway, method: str, path: str, *, body: bytes = b"", **kwargs: Any
) -> RawResponse:
    """Sign and send in one go (see :func:`sign` for the arguments)."""
    return send_signed(sign(gw, method, path, body=body, **kwargs), gw)


def fetch(gw: RunningGateway, url: str, method: str = "GET", body: bytes = b"") -> RawResponse:
    """Fetch a (presigned) URL at the gateway, keeping its host name as the ``Host`` header."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = {"Host": parts.netloc}
    return send(gw, method, target, headers=headers, body=body)


# ---------------------------------------------------------------------------- aws-chunked


def chunk_signature(request: SignedRequest, previous: str, data: bytes) -> str:
    """The signature of one aws-chunked chunk, chained from the previous one."""
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            request.timestamp,
            request.scope,
            previous,
            EMPTY_SHA256,
            hashlib.sha256(data).hexdigest(),
        ]
    )
    return hmac.digest(request.signing_key, string_to_sign.encode(), "sha256").hex()


def signed_chunks(
    request: SignedRequest, chunks: Sequence[bytes], trailers: Mapping[str, str] | None = None
) -> bytes:
    """An aws-chunked body whose chunks chain their signatures from the request's seed.

    With ``trailers`` (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER), the trailer lines follow
    the final chunk, signed by ``x-amz-trailer-signature``.
    """
    out = bytearray()
    previous = request.signature
    for data in [*chunks, b""]:
        previous = chunk_signature(request, previous, data)
        out += f"{len(data):x};chunk-signature={previous}\r\n".encode() + data
        out += b"\r\n" if data or trailers is None else b""
    if trailers is not None:
        lines = "".join(f"{name}:{value}\n" for name, value in trailers.items())
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                request.timestamp,
                request.scope,
                previous,
                hashlib.sha256(lines.encode()).hexdigest(),
            ]
        )
        signature = hmac.digest(request.signing_key, string_to_sign.encode(), "sha256").hex()
        out += lines.replace("\n", "\r\n").encode()
        out += f"x-amz-trailer-signature:{signature}\r\n\r\n".encode()
    return bytes(out)


def unsigned_chunks(chunks: Sequence[bytes], trailers: Mapping[str, str]) -> bytes:
    """An aws-chunked body without signatures, ending in trailer lines."""
    out = bytearray()
    for data in chunks:
        out += f"{len(data):x}\r\n".encode() + data + b"\r\n"
    out += b"0\r\n"
    for name, value in trailers.items():
        out += f"{name}:{value}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def open_raw(gw: RunningGateway, timeout: float = 30) -> socket.socket:
    """A plain TCP connection to the gateway, for requests http.client cannot send."""
    return socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)


def read_response(sock: socket.socket) -> RawResponse:
    """Read one HTTP/1.1 response from a raw socket."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    data = response.read()
    return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


def request_head(request: SignedRequest, headers: Mapping[str, str] | None = None) -> bytes:
    """The request line and header section of ``request``, as bytes to write on a socket."""
    lines = [f"{request.method} {request.target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in {**request.headers, **(headers or {})}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_expecting_continue(request: SignedRequest, gw: RunningGateway) -> RawResponse:
    """Send ``request`` with ``Expect: 100-continue``: the body goes only if the gateway asks.

    A gateway that refuses the request from its head answers at once; the body is then never
    sent, so a large refused body cannot end in a connection reset before the answer is read.
    """
    head = request_head(
        request, {"Expect": "100-continue", "Content-Length": str(len(request.body))}
    )
    sock = open_raw(gw)
    try:
        sock.sendall(head)
        interim = b"HTTP/1.1 100 Continue\r\n\r\n"
        seen = b""
        while len(seen) < len(interim):
            seen = sock.recv(len(interim), socket.MSG_PEEK)
            if not seen or not interim.startswith(seen[: len(interim)]):
                break
        if seen == interim:
            sock.recv(len(interim))
            sock.sendall(request.body)
        return read_response(sock)
    finally:
        sock.close()
