"""uvicorn's httptools protocol with the per-connection limits of ``limits.*`` enforced on the wire.

uvicorn bounds idle keep-alive connections and nothing else. This protocol adds, before any
application code runs:

- a deadline on the request head (slowloris: a client that dribbles its headers);
- a size bound on the URL and on the header section, counted while reading, so that an attacker's
  64 MiB header never reaches memory whole (httptools buffers a header value until it ends);
- a ceiling on open connections and on requests in flight, answered with S3's ``503 SlowDown``;
- a send timeout: a client that stops reading a response is cut once the transport has been
  paused for writing (flow control) that long;
- a lingering close: when we answer before reading the whole request (an oversized body, a
  refused head), we half-close and discard what the client is still sending, within a byte and
  time budget, so that it reads our error instead of a connection reset.

Refusals written here are S3 XML error documents (``s3.xml.render_error``) with
``Connection: close``, like every other error of the S3 plane.
"""

from __future__ import annotations

import asyncio
import http
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httptools
import structlog
from uvicorn._types import ASGI3Application, ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from blindstore.errors import (
    BadRequest,
    BlindstoreError,
    InvalidURI,
    RequestHeaderSectionTooLarge,
    SlowDown,
)
from blindstore.s3 import xml
from blindstore.server.body import ClientDisconnected

log = structlog.get_logger("blindstore.s3")

#: The request line's fixed parts (method, spaces, version, CRLF) on top of the URL.
_REQUEST_LINE_SLACK = 64


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one gateway process allows its clients (``limits.*`` in the settings)."""

    header_timeout: float = 20.0
    max_header_bytes: int = 16 * 1024
    max_url_bytes: int = 16 * 1024
    max_connections: int = 1000
    max_concurrent_requests: int = 256
    send_timeout: float = 60.0
    #: After an early answer: how much of the rest of the request we read and discard, and for
    #: how long, before closing (then the client may see a reset, having sent far too much).
    linger_bytes: int = 16 * 1024 * 1024
    linger_seconds: float = 5.0

    @property
    def max_head_bytes(self) -> int:
        """Bytes a request head may take on the wire before it is refused."""
        return self.max_url_bytes + self.max_header_bytes + _REQUEST_LINE_SLACK


class _RefuseRequest(Exception):
    """Raised from a parser callback to stop parsing; carries the S3 error to answer."""

    def __init__(self, error: BlindstoreError) -> None:
        super().__init__(error.code)
        self.error = error


class _Cycle(RequestResponseCycle):
    """uvicorn's request cycle, except that sending to a client that has gone away raises
    ``ClientDisconnected`` instead of silently discarding: a download to a vanished (or cut)
    client stops instead of decrypting the rest of the object into the void."""

    async def send(self, message: ASGISendEvent) -> None:
        if self._cut():
            raise ClientDisconnected()
        await super().send(message)
        if self._cut():  # the client went away while we waited for it to read
            raise ClientDisconnected()

    def _cut(self) -> bool:
        return self.disconnected and not self.response_complete


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ConnectionLimits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._send_deadline: asyncio.TimerHandle | None = None
        self._linger_deadline: asyncio.TimerHandle | None = None
        #: Between a message's start (or the connection's) and the end of its headers.
        self._head_open = True
        #: Heads completed during the current ``feed_data`` (its bytes were not all head).
        self._heads_completed = 0
        self._head_wire_bytes = 0
        self._url_bytes = 0
        self._header_bytes = 0
        #: Discarding the rest of a request we have answered; ``None`` when not lingering.
        self._linger_left: int | None = None

    # ----------------------------------------------------------------- timers

    def _arm(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(
                self.limits.header_timeout, self._head_too_slow
            )

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_timers(self) -> None:
        self._disarm()
        for timer in (self._send_deadline, self._linger_deadline):
            if timer is not None:
                timer.cancel()
        self._send_deadline = self._linger_deadline = None

    # ----------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            # Answered at once: the client reads it as the answer to its first request.
            log.warning("connection_refused", reason="max_connections")
            self._refuse(SlowDown())
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_deadline is None:
            self._send_deadline = self.loop.call_later(
                self.limits.send_timeout, self._reader_too_slow
            )

    def resume_writing(self) -> None:
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None
        super().resume_writing()

    def _reader_too_slow(self) -> None:
        self._send_deadline = None
        log.info("connection_closed", reason="send_timeout")
        # abort, not close: close would wait for a write buffer the client never drains.
        self.transport.abort()

    # ----------------------------------------------------------------- parsing

    def data_received(self, data: bytes) -> None:
        if self._linger_left is not None:
            self._discard(data)
            return
        if self.transport.is_closing():
            return
        head_was_open = self._head_open
        self._heads_completed = 0
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            refusal = exc.__context__
            if isinstance(refusal, _RefuseRequest):
                log.info("request_refused", reason=refusal.error.code)
                self._refuse(refusal.error)
            else:
                log.info("request_refused", reason="invalid_http")
                self._refuse(BadRequest("Invalid HTTP request received."))
            return
        if head_was_open and self._head_open and not self._heads_completed:
            # Everything fed was head and the head is not complete: httptools holds it (a header
            # value is buffered whole), so bound what it may hold.
            self._head_wire_bytes += len(data)
            if self._head_wire_bytes > self.limits.max_head_bytes:
                log.info("request_refused", reason="head_too_large")
                self._refuse(self._header_section_too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_wire_bytes = self._url_bytes = self._header_bytes = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self.limits.max_url_bytes:
            raise _RefuseRequest(
                InvalidURI(
                    f"The request URI is longer than the {self.limits.max_url_bytes} bytes this"
                    " gateway accepts."
                )
            )
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_bytes > self.limits.max_header_bytes:
            raise _RefuseRequest(self._header_section_too_large())
        super().on_header(name, value)

    def _header_section_too_large(self) -> RequestHeaderSectionTooLarge:
        return RequestHeaderSectionTooLarge(MaxSizeAllowed=str(self.limits.max_header_bytes))

    def on_headers_complete(self) -> None:
        self._disarm()
        self._head_open = False
        self._heads_completed += 1
        if len(self.tasks) >= self.limits.max_concurrent_requests:
            log.warning("request_refused", reason="max_concurrent_requests")
            raise _RefuseRequest(SlowDown())
        self._start_request()

    def _start_request(self) -> None:
        """uvicorn's ``on_headers_complete`` with our request cycle (and without its plain-text
        concurrency limit: ours answers S3 XML, above)."""
        http_version = self.parser.get_http_version()
        method = self.parser.get_method()
        self.scope["method"] = method.decode("ascii")
        if http_version != "1.1":
            self.scope["http_version"] = http_version
        parsed_url = httptools.parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        self.scope["path"] = self.root_path + path
        self.scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        self.scope["query_string"] = parsed_url.query or b""
        existing_cycle = self.cycle
        self.cycle = _Cycle(
            scope=self.scope,
            transport=_LingeringTransport(self),  # type: ignore[arg-type]
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and self.parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        app: ASGI3Application = self.app
        if existing_cycle is None or existing_cycle.response_complete:
            self._start_asgi_task(self.cycle, app)
        else:
            # Pipelined requests wait for the one before them.
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, app))

    def on_response_complete(self) -> None:
        if self._linger_left is not None:
            return  # closing: no keep-alive timer, no pipelined request started
        super().on_response_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_open = True
        self._head_wire_bytes = 0

    # ----------------------------------------------------------------- refusing, lingering

    def _refuse(self, error: BlindstoreError) -> None:
        """Answer ``error`` as S3 XML on the wire (no application involved), then close."""
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # The application is still answering an earlier request (or this one's body was
            # malformed): two answers would interleave, so the connection just ends.
            self.transport.close()
            return
        request_id = secrets.token_hex(8).upper()
        fields = error.fields if error.expose_message else {}
        body = xml.render_error(
            error.code, error.public_message, request_id=request_id, fields=fields
        )
        phrase = http.HTTPStatus(error.status).phrase
        head = [
            f"HTTP/1.1 {error.status} {phrase}",
            "content-type: application/xml",
            f"content-length: {len(body)}",
            "connection: close",
            f"x-amz-request-id: {request_id}",
            "server: blindstore",
        ]
        if error.status == 503:
            head.append("retry-after: 1")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body)
        self._unset_keepalive_if_required()
        self._disarm()
        self.linger()

    def linger(self) -> None:
        """Half-close after our answer and discard what the client still sends, within budget."""
        if self.transport.is_closing() or self._linger_left is not None:
            return
        self._linger_left = self.limits.linger_bytes
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_deadline = self.loop.call_later(self.limits.linger_seconds, self._linger_over)

    def _discard(self, data: bytes) -> None:
        assert self._linger_left is not None
        self._linger_left -= len(data)
        if self._linger_left < 0:
            self._linger_over()

    def _linger_over(self) -> None:
        self._linger_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class _LingeringTransport:
    """The transport a request cycle writes to. When the cycle closes the connection after a
    complete response while the request body is still arriving (an early error), the close
    becomes a lingering close; every other close is immediate."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: GuardedHttpToolsProtocol) -> None:
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)

    def is_closing(self) -> bool:
        return self._protocol.transport.is_closing()

    def close(self) -> None:
        protocol = self._protocol
        cycle = protocol.cycle
        if cycle is not None and cycle.response_complete and cycle.more_body:
            protocol.linger()
        else:
            protocol.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """A protocol class with these limits (uvicorn instantiates the class it is given)."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
