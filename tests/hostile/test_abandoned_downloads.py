"""Clients that stop reading a download and go away (RST or FIN) must not hurt the gateway.

Regression for issue 9 item 1: `blindstore` set SIGPIPE to SIG_DFL, so the first write to a
peer that had gone away killed the whole process.
"""

from __future__ import annotations

import secrets
import time

import pytest

from tests.hostile.rawsock import abandon, connect, object_path, read_status_line, signed_head
from tests.hostile.served import Served, sha256

BIG = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def big_object(served: Served) -> tuple[str, str]:
    """A 64 MiB object (kept out of the ledger: the check after each test would re-read it)."""
    data = secrets.token_bytes(BIG)
    served.s3.put_object(Bucket=served.bucket, Key="big/download", Body=data)
    return "big/download", sha256(data)


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_download_abandoned_after_one_kib_leaves_the_gateway_running(
    served: Served, big_object: tuple[str, str], how: str
) -> None:
    key, digest = big_object
    for _ in range(3):
        sock = connect(served)
        sock.sendall(signed_head(served, "GET", object_path(served.bucket, key)))
        assert read_status_line(sock) == 200
        assert sock.recv(1024)
        # Let the gateway fill the socket buffers and wait to write more: the death came from
        # its next write after the peer had gone.
        time.sleep(1.0)
        abandon(sock, how)
    time.sleep(1.0)  # the gateway's next writes hit the closed socket
    assert served.alive, served.stderr_tail()
    assert sha256(served.get(key)) == digest
