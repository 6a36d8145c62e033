"""Slow headers (slowloris), stalled bodies, readers that stop reading and hundreds of idle
connections: each is closed after its configured timeout while other clients are served
normally meanwhile."""

from __future__ import annotations

import secrets
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from blindstore.devtools.openbao import OpenBaoServer
from tests.hostile.rawsock import (
    UNSIGNED_PAYLOAD,
    closed_by_peer,
    connect,
    object_path,
    read_answer,
    read_status_line,
    send_slowly,
    signed_head,
)
from tests.hostile.served import Served, serve_gateway

HEADER_TIMEOUT = 2.0
BODY_IDLE_TIMEOUT = 2.0
SEND_TIMEOUT = 2.0
#: Open connections the crowded gateway accepts.
CEILING = 40
#: Scheduling on a loaded 2-core machine: how late a timeout may fire.
SLACK = 4.0


@pytest.fixture(scope="module")
def slow(openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    gateway = serve_gateway(
        tmp_path_factory.mktemp("slow"),
        openbao,
        limits={
            "header_timeout_seconds": HEADER_TIMEOUT,
            "body_idle_timeout_seconds": BODY_IDLE_TIMEOUT,
            "send_timeout_seconds": SEND_TIMEOUT,
        },
    )
    yield gateway
    gateway.stop()


class _NormalClient:
    """A well-behaved client working in a thread; records each request's duration."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.durations: list[float] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _NormalClient:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            began = time.monotonic()
            try:
                data = secrets.token_bytes(64 * 1024)
                self.served.put(f"normal/{n % 5}", data)
                assert self.served.get(f"normal/{n % 5}") == data
            except BaseException as exc:
                self.errors.append(exc)
                return
            self.durations.append(time.monotonic() - began)
            time.sleep(0.1)

    def check(self, at_least: int) -> None:
        assert not self.errors, self.errors
        assert len(self.durations) >= at_least, self.durations
        assert max(self.durations) < 5.0, self.durations


def test_slow_headers_are_cut_after_the_header_timeout(slow: Served) -> None:
    head = signed_head(slow, "GET", object_path(slow.bucket, "canary/object"))
    with _NormalClient(slow) as normal:
        sock = connect(slow)
        began = time.monotonic()
        finished = send_slowly(sock, head[:20], interval=1.0)
        if finished:
            assert closed_by_peer(sock, within=HEADER_TIMEOUT + SLACK)
        elapsed = time.monotonic() - began
        sock.close()
        assert elapsed < HEADER_TIMEOUT + SLACK
    normal.check(at_least=3)


def test_a_stalled_body_is_cut_after_the_idle_timeout(slow: Served) -> None:
    key = "stalled/body"
    head = signed_head(
        slow,
        "PUT",
        object_path(slow.bucket, key),
        payload_hash=UNSIGNED_PAYLOAD,
        content_length=1024 * 1024,
    )
    with _NormalClient(slow) as normal:
        sock = connect(slow)
        sock.sendall(head + b"x" * 1024)
        began = time.monotonic()
        assert closed_by_peer(sock, within=BODY_IDLE_TIMEOUT + SLACK)
        assert time.monotonic() - began >= BODY_IDLE_TIMEOUT - 0.5
        sock.close()
    normal.check(at_least=3)
    listed = slow.s3.list_objects_v2(Bucket=slow.bucket, Prefix="stalled/")
    assert listed.get("KeyCount", 0) == 0


def test_a_reader_that_stops_reading_is_cut_after_the_send_timeout(slow: Served) -> None:
    size = 32 * 1024 * 1024
    slow.put("stalled/download", secrets.token_bytes(size))
    with _NormalClient(slow) as normal:
        sock = socket.socket()
        # A small window, so that the gateway's writes pause (flow control) soon.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.connect(("127.0.0.1", slow.port))
        sock.sendall(signed_head(slow, "GET", object_path(slow.bucket, "stalled/download")))
        assert read_status_line(sock) == 200
        time.sleep(SEND_TIMEOUT + SLACK)  # read nothing: the gateway must give up on us
        received, cut = 0, False
        sock.settimeout(5)
        try:
            while chunk := sock.recv(1024 * 1024):
                received += len(chunk)
            cut = True  # EOF before the whole body
        except ConnectionError:
            cut = True
        except TimeoutError:
            cut = False
        finally:
            sock.close()
        assert cut, f"the gateway kept a stalled reader ({received} bytes read at the end)"
        assert received < size
    normal.check(at_least=3)


def test_hundreds_of_idle_connections_do_not_starve_a_normal_client(slow: Served) -> None:
    idle = [connect(slow) for _ in range(400)]
    try:
        with _NormalClient(slow) as normal:
            time.sleep(HEADER_TIMEOUT)
        normal.check(at_least=2)
        # Every idle connection is closed by the gateway after the header timeout.
        selector = selectors.DefaultSelector()
        for sock in idle:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        open_ones = set(idle)
        deadline = time.monotonic() + HEADER_TIMEOUT + SLACK
        while open_ones and time.monotonic() < deadline:
            for event, _ in selector.select(timeout=0.5):
                sock = event.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except ConnectionError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    open_ones.discard(sock)
        assert not open_ones, f"{len(open_ones)} idle connections still open"
    finally:
        for sock in idle:
            sock.close()


@pytest.fixture(scope="module")
def crowded(openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    gateway = serve_gateway(
        tmp_path_factory.mktemp("crowded"),
        openbao,
        limits={"header_timeout_seconds": HEADER_TIMEOUT, "max_connections": CEILING},
    )
    yield gateway
    gateway.stop()


def test_connections_beyond_the_ceiling_get_slow_down_until_the_idle_ones_are_cut(
    crowded: Served,
) -> None:
    idle = [connect(crowded) for _ in range(CEILING)]
    try:
        time.sleep(0.5)  # every idle connection has been accepted and counted
        with connect(crowded) as extra:
            extra.settimeout(5)
            answer = read_answer(extra)
        assert answer.status == 503
        assert b"<Code>SlowDown</Code>" in answer.body
        # The idle ones are cut after the header timeout; then everyone is served again.
        time.sleep(HEADER_TIMEOUT + SLACK)
        crowded.put("crowded/after", b"served")
        assert crowded.get("crowded/after") == b"served"
    finally:
        for sock in idle:
            sock.close()
