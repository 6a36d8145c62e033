"""ASGI request bodies as async iterators, with idle timeouts and disconnect detection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from blindstore.errors import IncompleteBody, MalformedXML, RequestTimeout

Receive = Callable[[], Awaitable[dict[str, Any]]]


class ClientDisconnected(IncompleteBody):
    """The client went away mid-body: nothing is stored, nothing is answered."""


class TrackedReceive:
    """An ASGI ``receive`` that remembers whether the request body was read to its end."""

    __slots__ = ("_receive", "complete", "received")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.complete = False
        #: Body bytes received so far, as sent (for the audit record).
        self.received = 0

    async def __call__(self) -> dict[str, Any]:
        message = await self._receive()
        self.received += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True
        return message


def declares_body(scope: dict[str, Any]) -> bool:
    """Whether the request announces a body (a non-zero Content-Length, or chunked framing)."""
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered == b"transfer-encoding" or (lowered == b"content-length" and value != b"0"):
            return True
    return False


async def receive_body(
    receive: Receive, *, idle_timeout: float, expected_length: int | None
) -> AsyncIterator[bytes]:
    """Yield the raw request body; enforce Content-Length and a per-message idle timeout."""
    received = 0
    while True:
        try:
            with anyio.fail_after(idle_timeout):
                message = await receive()
        except TimeoutError:
            raise RequestTimeout() from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        data: bytes = message.get("body", b"")
        if data:
            received += len(data)
            if expected_length is not None and received > expected_length:
                raise IncompleteBody()
            yield data
        if not message.get("more_body", False):
            break
    if expected_length is not None and received != expected_length:
        raise IncompleteBody()


async def drain(receive: Receive, limit: int, *, idle_timeout: float) -> bytes:
    """Read a whole (small) body into memory, refusing more than ``limit`` bytes and a client
    that sends nothing for ``idle_timeout`` seconds."""
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            with anyio.fail_after(idle_timeout):
                message = await receive()
        except TimeoutError:
            raise RequestTimeout() from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        data: bytes = message.get("body", b"")
        size += len(data)
        if size > limit:
            raise MalformedXML()
        chunks.append(data)
        if not message.get("more_body", False):
            return b"".join(chunks)
