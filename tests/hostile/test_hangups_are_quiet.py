"""A client hanging up mid-download or mid-upload is an event, not an error: the gateway logs
it at info level without a traceback, and real errors still log (issue 9, item 11)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import pytest

from blindstore.devtools.openbao import OpenBaoServer
from tests.hostile.rawsock import (
    UNSIGNED_PAYLOAD,
    abandon,
    connect,
    object_path,
    read_status_line,
    signed_head,
)
from tests.hostile.served import Served, serving

MiB = 1024 * 1024


def _new_log_lines(served: Served, since: int) -> list[str]:
    return served.stderr_text()[since:].splitlines()


def _errors(lines: list[str]) -> list[str]:
    """Tracebacks, and records at error level or carrying an exception."""
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            record = {}
        if (
            "Traceback" in line
            or record.get("level") in ("error", "critical")
            or ("exception" in record)
        ):
            found.append(line)
    return found


@pytest.fixture(scope="module")
def chatty(openbao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A gateway logging at info level: the hang-up must show there, as an event."""
    with serving(tmp_path_factory.mktemp("chatty"), openbao, extra={"log_level": "info"}) as gw:
        yield gw


@pytest.fixture(scope="module")
def download(chatty: Served) -> str:
    served = chatty
    key = "quiet/download"
    served.s3.put_object(Bucket=served.bucket, Key=key, Body=secrets.token_bytes(32 * MiB))
    return key


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_a_download_cut_by_the_client_logs_no_traceback(
    chatty: Served, download: str, how: str
) -> None:
    served = chatty
    since = len(served.stderr_text())
    for _ in range(2):
        sock = connect(served)
        sock.sendall(signed_head(served, "GET", object_path(served.bucket, download)))
        assert read_status_line(sock) == 200
        sock.recv(65536)
        time.sleep(0.5)
        abandon(sock, how)
    time.sleep(1.5)
    lines = _new_log_lines(served, since)
    assert _errors(lines) == []
    assert any('"client_disconnected"' in line for line in lines), lines[-20:]


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_an_upload_cut_by_the_client_logs_no_traceback(chatty: Served, how: str) -> None:
    served = chatty
    since = len(served.stderr_text())
    sock = connect(served)
    sock.sendall(
        signed_head(
            served,
            "PUT",
            object_path(served.bucket, f"quiet/upload-{how}"),
            payload_hash=UNSIGNED_PAYLOAD,
            content_length=16 * MiB,
        )
        + b"x" * (2 * MiB)
    )
    time.sleep(0.5)
    abandon(sock, how)
    time.sleep(1.5)
    assert _errors(_new_log_lines(served, since)) == []
