"""OpenBao frozen (SIGSTOP) mid-load then resumed, and OpenBao killed then restarted: writes
answer 503 meanwhile (never anything written unencrypted, never a 500), and the gateway recovers
by itself. The module has an OpenBao of its own, with raft storage so that it survives a kill."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from blindstore.devtools.openbao import OpenBaoServer
from blindstore.devtools.persistent import start_persistent_openbao
from tests.hostile.served import Served, files_under, serve_gateway

#: Recognisable plaintext: if it ever reaches the blob store in clear, the scan finds it.
MARKER = b"PLAINTEXT-MUST-NEVER-REACH-DISK:"
RECOVERY = 60.0


@pytest.fixture(scope="module")
def vault_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("own-openbao")


@pytest.fixture(scope="module")
def own_openbao(vault_dir: Path) -> Iterator[list[OpenBaoServer]]:
    """The module's OpenBao, in a list so that a test can replace it after killing it."""
    holder = [start_persistent_openbao(vault_dir / "openbao")]
    yield holder
    holder[0].stop()


@pytest.fixture(scope="module")
def outage(
    own_openbao: list[OpenBaoServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    gateway = serve_gateway(
        tmp_path_factory.mktemp("outage"),
        own_openbao[0],
        # Every PUT needs Transit (no pre-wrapped DEKs); a frozen Vault is given up on quickly.
        extra={"vault": {"timeout_seconds": 2}, "keys": {"pool_size": 0}},
    )
    yield gateway
    gateway.stop()


def _payload(n: int) -> bytes:
    return (MARKER + str(n).encode()) * 2000


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        status: int = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        return status
    return None


class _Writer:
    """PUTs in a loop; acknowledged ones join the ledger, failures are recorded by status."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.acknowledged = 0
        self.failures: list[int | None] = []
        self.unexpected: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._n = 0

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(90)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._n += 1
            try:
                self.served.put(f"load/{threading.get_ident()}/{self._n}", _payload(self._n))
                self.acknowledged += 1
            except ClientError as exc:
                self.failures.append(_status(exc))
            except BotoCoreError as exc:
                self.unexpected.append(exc)
            time.sleep(0.05)


def _assert_never_in_clear(served: Served) -> None:
    for path in files_under(served.data_dir / "blobs"):
        assert MARKER not in path.read_bytes(), f"plaintext reached {path.name}"


def _wait_until_writes_work(served: Served) -> None:
    deadline = time.monotonic() + RECOVERY
    while True:
        try:
            served.put("recovered", _payload(0))
            return
        except (ClientError, BotoCoreError):
            assert time.monotonic() < deadline, "the gateway did not recover by itself"
            time.sleep(0.5)


def test_frozen_openbao_gives_503_then_the_gateway_recovers(
    outage: Served, own_openbao: list[OpenBaoServer]
) -> None:
    bao = own_openbao[0].process.pid
    with _Writer(outage) as writer:
        time.sleep(1.0)
        os.kill(bao, signal.SIGSTOP)
        try:
            time.sleep(14.0)  # a PUT gives up after ~10 s (2 s timeout, retries)
        finally:
            os.kill(bao, signal.SIGCONT)
        time.sleep(1.0)
    assert not writer.unexpected, writer.unexpected
    assert writer.failures, "no write failed while OpenBao was frozen"
    assert set(writer.failures) == {503}, writer.failures
    _wait_until_writes_work(outage)
    _assert_never_in_clear(outage)


def test_killed_openbao_gives_503_and_a_restarted_one_is_used_again(
    outage: Served, own_openbao: list[OpenBaoServer], vault_dir: Path
) -> None:
    port = int(own_openbao[0].addr.rsplit(":", 1)[1])
    own_openbao[0].process.kill()
    own_openbao[0].process.wait(10)
    with pytest.raises(ClientError) as refused:
        outage.put("while-dead", _payload(1))
    assert _status(refused.value) == 503
    own_openbao[0] = start_persistent_openbao(vault_dir / "openbao", port=port)
    _wait_until_writes_work(outage)
    _assert_never_in_clear(outage)
