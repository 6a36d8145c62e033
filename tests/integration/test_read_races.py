"""A GET always returns one whole version, whatever overwrites, multipart completions and DELETEs
of the same key commit while it streams (issue 9, item 3).

The replaced blobs used to be deleted right after the overwrite's commit: readers still
streaming them got a truncated body (objects above ``verify_whole_below``) or a 500 (smaller
ones). Here the delete delay is short (0.5 s), so the deferred deleter runs throughout, and one
slow reader takes longer than the delay: only its lease keeps its blob.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError

from blindstore.devtools.openbao import OpenBaoServer
from tests.contract.postgres import fresh_database
from tests.gwserver import RunningGateway, start_gateway
from tests.integration import blobs, rawhttp

BUCKET = "races"
KEY = "contended"
MiB = 1024 * 1024
DELETE_DELAY = 0.5
#: Seconds of contention per object size.
DURATION = 4.0


@pytest.fixture
def race_gw(openbao: OpenBaoServer, tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(
        tmp_path / "gateway",
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        overrides={"storage": {"delete_delay_seconds": DELETE_DELAY}},
    )
    running.client("demo").create_bucket(Bucket=BUCKET)
    try:
        yield running
    finally:
        running.stop()


class Race:
    """Writers and readers on one key; what the readers saw. Readers go through ``gw``,
    writers through ``writer_gw`` (default: the same gateway)."""

    def __init__(
        self, gw: RunningGateway, size: int, writer_gw: RunningGateway | None = None
    ) -> None:
        self.gw = gw
        self.writer_gw = writer_gw or gw
        self.size = size
        # A few distinct bodies: every PUT still stores a new blob under a new DEK.
        self.versions = [os.urandom(size) for _ in range(3)]
        self.digests = {hashlib.sha256(v).hexdigest() for v in self.versions}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.whole = 0
        self.absent = 0
        self.failures: list[str] = []

    def client(self, gw: RunningGateway | None = None) -> Any:
        return (gw or self.gw).client("demo", read_timeout=60, max_pool_connections=2)

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    def put(self, s3: Any, n: int) -> None:
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=self.versions[n % len(self.versions)])

    def complete_multipart(self, s3: Any, n: int) -> None:
        body = self.versions[n % len(self.versions)]
        cut = 5 * MiB if len(body) > 5 * MiB else len(body)
        pieces = [body[:cut], body[cut:]] if cut < len(body) else [body]
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"]
        parts = []
        for number, piece in enumerate(pieces, 1):
            made = s3.upload_part(
                Bucket=BUCKET, Key=KEY, UploadId=upload, PartNumber=number, Body=piece
            )
            parts.append({"PartNumber": number, "ETag": made["ETag"]})
        s3.complete_multipart_upload(
            Bucket=BUCKET, Key=KEY, UploadId=upload, MultipartUpload={"Parts": parts}
        )

    def writer(self, steps: list[Callable[[Any, int], None]]) -> None:
        s3 = self.client(self.writer_gw)
        n = 0
        while not self.stop.is_set():
            try:
                steps[n % len(steps)](s3, n)
            except ClientError as exc:
                self.fail(f"write: {exc.response['Error']['Code']}")
            n += 1

    def delete(self, s3: Any, _n: int) -> None:
        s3.delete_object(Bucket=BUCKET, Key=KEY)

    def reader(self, pause: float) -> None:
        s3 = self.client()
        while not self.stop.is_set():
            try:
                body = s3.get_object(Bucket=BUCKET, Key=KEY)["Body"]
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "NoSuchKey":  # between a DELETE and a PUT
                    with self.lock:
                        self.absent += 1
                    continue
                self.fail(f"GET: {exc.response['ResponseMetadata']['HTTPStatusCode']}")
                continue
            received = bytearray()
            try:
                while piece := body.read(256 * 1024):
                    received += piece
                    time.sleep(pause)
            except (IncompleteReadError, ResponseStreamingError) as exc:
                self.fail(f"cut after {len(received)} bytes: {type(exc).__name__}")
                continue
            if hashlib.sha256(received).hexdigest() not in self.digests:
                self.fail(f"a body of {len(received)} bytes that no writer wrote")
                continue
            with self.lock:
                self.whole += 1

    def run(self, duration: float, *, slow_reader_pause: float) -> None:
        self.put(self.client(self.writer_gw), 0)
        threads = [
            threading.Thread(target=self.writer, args=([self.put],)),
            threading.Thread(
                target=self.writer, args=([self.complete_multipart, self.delete, self.put],)
            ),
            *(threading.Thread(target=self.reader, args=(0.0,)) for _ in range(3)),
            threading.Thread(target=self.reader, args=(slow_reader_pause,)),
        ]
        for thread in threads:
            thread.start()
        time.sleep(duration)
        self.stop.set()
        for thread in threads:
            thread.join(120)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _live_blob_files(gw: RunningGateway) -> set[Path]:
    found = gw.run(gw.gateway.catalog.get_object(BUCKET, KEY))
    if found is None:
        return set()
    return {gw.blob_dir / found.container / part.blob for part in found.parts}


@pytest.mark.parametrize(
    ("size", "slow_reader_pause"),
    [(6 * MiB, 0.05), (64 * 1024, 0.6)],
    ids=["6MiB-streamed", "64KiB-verified-whole"],
)
def test_reads_racing_overwrites_and_deletes_always_get_one_whole_version(
    race_gw: RunningGateway, size: int, slow_reader_pause: float
) -> None:
    race = Race(race_gw, size)

    race.run(DURATION, slow_reader_pause=slow_reader_pause)

    assert race.failures == []
    assert race.whole >= 8, f"too few reads to mean anything ({race.whole} whole)"
    # Every replaced blob goes once its delay has passed: none is leaked.
    _wait_for(
        lambda: blobs.blob_files(race_gw) == _live_blob_files(race_gw),
        "the deferred deletion of every replaced blob",
    )
    assert race_gw.run(race_gw.gateway.catalog.deferred_blobs("local")) == set()


def _upload_in_parts(s3: Any, key: str, pieces: list[bytes]) -> None:
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    parts = []
    for number, piece in enumerate(pieces, 1):
        made = s3.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number, Body=piece
        )
        parts.append({"PartNumber": number, "ETag": made["ETag"]})
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        piece = sock.recv(min(256 * 1024, size - len(received)))
        if not piece:
            break
        received += piece
    return bytes(received)


def test_a_download_outlasting_the_delete_delay_is_not_cut_by_its_gateway(
    race_gw: RunningGateway,
) -> None:
    """The second part's blob is opened only once the first is sent, long after the overwrite
    made it due: the read's lease keeps it. (The client's small receive window holds the
    gateway inside the first part, 10 MiB, more than the socket buffers take.)"""
    s3 = race_gw.client("demo")
    pieces = [os.urandom(10 * MiB), os.urandom(MiB)]
    _upload_in_parts(s3, KEY, pieces)
    request = rawhttp.sign(race_gw, "GET", rawhttp.object_path(BUCKET, KEY))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(60)
    try:
        sock.connect(("127.0.0.1", race_gw.port))
        sock.sendall(rawhttp.request_head(request))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 200")
        s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"the next version")
        # The old blobs are due; the deleter runs every tenth of the delay meanwhile.
        time.sleep(DELETE_DELAY * 6)
        old = blobs.record(race_gw, BUCKET, KEY)
        assert old.size == len(b"the next version")

        body = _read_exactly(sock, len(pieces[0]) + len(pieces[1]))
    finally:
        sock.close()

    assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(pieces)).digest()
    # Once the read is over, its blobs go at the deleter's next pass.
    _wait_for(
        lambda: blobs.blob_files(race_gw) == _live_blob_files(race_gw),
        "the deferred deletion of the blobs the read released",
    )


@pytest.fixture
def two_gateways(openbao: OpenBaoServer, tmp_path: Path) -> Iterator[list[RunningGateway]]:
    """Two gateways sharing one PostgreSQL catalog and one blob store, as a cluster runs."""
    with fresh_database() as url:
        shared = {"catalog": {"url": url}, "storage": {"delete_delay_seconds": 2.0}}
        first = start_gateway(
            tmp_path / "a", vault_addr=openbao.addr, vault_token=openbao.token, overrides=shared
        )
        started = [first]
        try:
            shared["storage"]["path"] = str(first.blob_dir)
            second = start_gateway(
                tmp_path / "b",
                vault_addr=openbao.addr,
                vault_token=openbao.token,
                tenants=(),
                overrides=shared,
            )
            started.append(second)
            second.tenants.update(first.tenants)
            first.client("demo").create_bucket(Bucket=BUCKET)
            yield started
        finally:
            for gw in started:
                gw.stop()


def test_an_overwrite_through_another_gateway_never_cuts_a_read_within_the_delay(
    two_gateways: list[RunningGateway],
) -> None:
    """Reads through one gateway, overwrites and deletes through the other: the deleting
    gateway holds no lease on the other's reads, the delay protects them. Both deleters then
    work on the same records, harmlessly."""
    reading, writing = two_gateways
    race = Race(reading, 6 * MiB, writer_gw=writing)

    race.run(DURATION, slow_reader_pause=0.0)

    assert race.failures == []
    assert race.whole >= 8, f"too few reads to mean anything ({race.whole} whole)"
    _wait_for(
        lambda: blobs.blob_files(reading) == _live_blob_files(reading),
        "the deferred deletion of every replaced blob",
    )
