"""Sending S3 responses over raw ASGI: fixed bodies, streamed bodies and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]

XML = "application/xml"


@dataclass(slots=True)
class Response:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: A streamed body; when set, ``body`` is ignored and Content-Length must be in ``headers``.
    stream: AsyncIterator[bytes] | None = None
    #: HEAD: send the headers (including Content-Length) but no body.
    head: bool = False

    @classmethod
    def xml(cls, body: bytes, status: int = 200) -> Response:
        return cls(status=status, headers=[("content-type", XML)], body=body)


def _encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    # Header values may carry UTF-8 user metadata; S3 sends it as-is (RFC 2047 aside).
    return [(k.encode("latin-1"), v.encode("utf-8")) for k, v in headers]


async def send_response(send: Send, response: Response, request_id: str) -> None:
    headers = list(response.headers)
    headers.append(("x-amz-request-id", request_id))
    headers.append(("server", "blindstore"))
    has_length = any(k == "content-length" for k, _ in headers)
    if response.stream is None and not has_length:
        headers.append(("content-length", str(len(response.body))))
    await send(
        {"type": "http.response.start", "status": response.status, "headers": _encode(headers)}
    )
    if response.head or response.status in (204, 304):
        await send({"type": "http.response.body", "body": b""})
        return
    if response.stream is None:
        await send({"type": "http.response.body", "body": response.body})
        return
    # A failure while streaming propagates: the server then closes the connection without
    # completing the body, so the client sees a truncated response, never unverified bytes.
    try:
        async for chunk in response.stream:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        # Also when the client has gone: release the object's reader (backend, keys) now.
        aclose = getattr(response.stream, "aclose", None)
        if aclose is not None:
            await aclose()
    await send({"type": "http.response.body", "body": b""})
