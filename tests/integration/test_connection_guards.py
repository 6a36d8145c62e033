"""Per-connection limits: a client that dribbles its request head is disconnected."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blindstore.devtools.openbao import OpenBaoServer
from tests.gwserver import RunningGateway, start_gateway


@pytest.fixture
def strict_gw(openbao: OpenBaoServer, tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(
        tmp_path,
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        tenants=("demo",),
        overrides={"limits": {"header_timeout_seconds": 1}},
    )
    yield running
    running.stop()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False


def test_a_client_that_never_finishes_its_headers_is_disconnected(
    strict_gw: RunningGateway,
) -> None:
    with socket.create_connection(("127.0.0.1", strict_gw.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert _closed_within(sock, 5)
        assert time.monotonic() - started < 4


def test_a_client_that_connects_and_sends_nothing_is_disconnected(
    strict_gw: RunningGateway,
) -> None:
    with socket.create_connection(("127.0.0.1", strict_gw.port)) as sock:
        assert _closed_within(sock, 5)


def test_a_prompt_client_is_served_normally(strict_gw: RunningGateway) -> None:
    assert strict_gw.client().list_buckets()["Buckets"] == []
