"""The Backend contract, and S3-specific behaviours, against S3Backend on real stand-ins.

moto's standalone server plays AWS S3 and SeaweedFS an on-premise S3; both are started once per
test session. Each test gets its own random ``bucket_prefix``, so tests never see each other's
buckets, and its buckets are emptied and deleted afterwards. ``artifacts`` lists every object
and every pending multipart upload under that prefix, read directly with boto3.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import boto3
import pytest
import stamina
from botocore.config import Config

from blindstore.backends.s3 import S3Backend, S3BackendSettings
from blindstore.errors import BackendUnavailable, BlobNotFound
from tests.contract.backend_contract import (
    CONTAINER,
    Artifacts,
    BackendContract,
    blob_id,
    chunked,
    listing,
    read_all,
)
from tests.services.moto import moto_server  # noqa: F401
from tests.services.seaweedfs import seaweedfs  # noqa: F401

MiB = 1024 * 1024


@dataclass(eq=False)
class S3Store:
    """Connection facts for one stand-in, and a plain boto3 client to inspect it."""

    name: str
    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str
    addressing_style: str
    client: Any = field(repr=False)

    def settings(self, prefix: str, **overrides: Any) -> S3BackendSettings:
        values: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": self.region,
            "addressing_style": self.addressing_style,
            "bucket_prefix": prefix,
        }
        values.update(overrides)
        return S3BackendSettings(**values)

    def buckets(self, prefix: str) -> list[str]:
        return sorted(
            b["Name"] for b in self.client.list_buckets()["Buckets"] if b["Name"].startswith(prefix)
        )

    def held(self, prefix: str) -> list[str]:
        """Every object and pending multipart upload in the buckets under ``prefix``."""
        found: list[str] = []
        for bucket in self.buckets(prefix):
            container = bucket.removeprefix(prefix)
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                found += [f"{container}/{item['Key']}" for item in page.get("Contents", [])]
            uploads = self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            found += [f"{container}/{upload['Key']} (pending upload)" for upload in uploads]
        return sorted(found)

    def remove(self, prefix: str) -> None:
        """Delete the buckets under ``prefix`` with everything in them."""
        for bucket in self.buckets(prefix):
            uploads = self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            for upload in uploads:
                self.client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    self.client.delete_object(Bucket=bucket, Key=item["Key"])
            self.client.delete_bucket(Bucket=bucket)


def _client(endpoint_url: str, access_key: str, secret_key: str, region: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 2}),
    )


def _store(name: str, server: Any, *, style: str = "path", region: str = "us-east-1") -> S3Store:
    """Facts of a running moto or SeaweedFS server."""
    client = _client(server.endpoint_url, server.access_key, server.secret_key, region)
    return S3Store(
        name, server.endpoint_url, server.access_key, server.secret_key, region, style, client
    )


@pytest.fixture(scope="session", params=["moto", "seaweedfs"])
def store(request: pytest.FixtureRequest) -> S3Store:
    """Each stand-in in turn. moto runs with the default ("auto") addressing style."""
    if request.param == "moto":
        return _store("moto", request.getfixturevalue("moto_server"), style="auto")
    return _store("seaweedfs", request.getfixturevalue("seaweedfs"))


@pytest.fixture
def seaweed_store(seaweedfs: Any) -> S3Store:  # noqa: F811 (the imported fixture)
    return _store("seaweedfs", seaweedfs)


@pytest.fixture
def seaweed_prefix(seaweed_store: S3Store) -> Iterator[str]:
    """A bucket prefix of this test's own on SeaweedFS; its buckets are removed afterwards."""
    chosen = f"t{secrets.token_hex(5)}-"
    yield chosen
    seaweed_store.remove(chosen)


@pytest.fixture(autouse=True)
def configured_retry_counts() -> Iterator[None]:
    """The backend's own retry counts, still without waits (the session default is one try).

    Retrying is part of this backend's behaviour, and moto needs it: two concurrent PUTs of one
    key race inside moto and one of them may get a 500, as AWS answers now and then.
    """
    stamina.set_testing(True, attempts=10, cap=True)
    try:
        yield
    finally:
        stamina.set_testing(True)


@pytest.fixture
def prefix(store: S3Store) -> Iterator[str]:
    """A bucket prefix of this test's own; its buckets are removed afterwards."""
    chosen = f"t{secrets.token_hex(5)}-"
    yield chosen
    store.remove(chosen)


class TestS3Backend(BackendContract):
    @pytest.fixture
    def backend(self, store: S3Store, prefix: str) -> Iterator[S3Backend]:
        backend = S3Backend(store.settings(prefix))
        yield backend
        anyio.run(backend.close)

    @pytest.fixture
    def artifacts(self, store: S3Store, prefix: str) -> Artifacts:
        async def held() -> list[str]:
            return await anyio.to_thread.run_sync(store.held, prefix)

        return held


# ---------------------------------------------------------------------- S3-specific behaviours


@pytest.mark.anyio
async def test_containers_are_buckets_named_with_the_prefix(store: S3Store, prefix: str) -> None:
    backend = S3Backend(store.settings(prefix))
    try:
        await backend.put(CONTAINER, blob_id(1), chunked(b"x"))
    finally:
        await backend.close()

    assert store.buckets(prefix) == [prefix + CONTAINER]


@pytest.mark.anyio
async def test_buckets_are_created_in_the_configured_region(
    moto_server: Any,  # noqa: F811 (the imported fixture)
) -> None:
    store = _store("moto", moto_server, region="eu-west-3")
    prefix = f"t{secrets.token_hex(5)}-"
    backend = S3Backend(store.settings(prefix))
    try:
        await backend.put(CONTAINER, blob_id(1), chunked(b"x"))
        location = store.client.get_bucket_location(Bucket=prefix + CONTAINER)
        assert location["LocationConstraint"] == "eu-west-3"
    finally:
        await backend.close()
        store.remove(prefix)


@pytest.mark.anyio
async def test_objects_are_octet_stream_without_metadata_or_tags(
    store: S3Store, prefix: str
) -> None:
    backend = S3Backend(store.settings(prefix, part_size=5 * MiB))
    try:
        await backend.put(CONTAINER, blob_id(1), chunked(b"small"))
        await backend.put(CONTAINER, blob_id(2), chunked(*[b"\x07" * MiB] * 6))  # multipart
    finally:
        await backend.close()

    for blob in (blob_id(1), blob_id(2)):
        head = store.client.head_object(Bucket=prefix + CONTAINER, Key=blob)
        tags = store.client.get_object_tagging(Bucket=prefix + CONTAINER, Key=blob)
        assert head["ContentType"] == "application/octet-stream"
        assert head["Metadata"] == {}
        assert tags["TagSet"] == []


@pytest.mark.anyio
async def test_listing_follows_continuation_tokens(store: S3Store, prefix: str) -> None:
    backend = S3Backend(store.settings(prefix, list_page_size=2))
    blobs = sorted(blob_id(n) for n in range(1, 6))
    try:
        for blob in blobs:
            await backend.put(CONTAINER, blob, chunked(b"page"))
        found = await listing(backend)
    finally:
        await backend.close()

    assert [info.blob for info in found] == blobs


def _pending(store: S3Store, bucket: str) -> list[str]:
    try:
        uploads = store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    except store.client.exceptions.NoSuchBucket:
        return []
    return [upload["Key"] for upload in uploads]


@pytest.mark.anyio
async def test_put_failing_midway_leaves_no_object_and_no_pending_upload(
    store: S3Store, prefix: str
) -> None:
    backend = S3Backend(store.settings(prefix, part_size=5 * MiB))
    bucket = prefix + CONTAINER
    pending_before_failure: list[str] = []

    async def breaks_off() -> AsyncIterator[bytes]:
        for _ in range(48):  # 12 MiB: two parts uploaded, a third being filled
            yield b"\x05" * (256 * 1024)
        pending_before_failure.extend(await anyio.to_thread.run_sync(_pending, store, bucket))
        raise ConnectionResetError

    try:
        with pytest.raises(ConnectionResetError):
            await backend.put(CONTAINER, blob_id(1), breaks_off())
        with pytest.raises(BlobNotFound):
            await backend.size(CONTAINER, blob_id(1))
    finally:
        await backend.close()

    assert pending_before_failure == [blob_id(1)]  # the failure did hit a multipart upload
    assert _pending(store, bucket) == []
    assert store.held(prefix) == []


@pytest.mark.anyio
async def test_cancelled_multipart_put_is_aborted(store: S3Store, prefix: str) -> None:
    backend = S3Backend(store.settings(prefix, part_size=5 * MiB))
    bucket = prefix + CONTAINER
    uploading = anyio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        for _ in range(12):  # 6 MiB: the first part is on its way
            yield b"\x06" * (512 * 1024)
        uploading.set()
        await anyio.sleep_forever()
        yield b""  # pragma: no cover - never reached

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(backend.put, CONTAINER, blob_id(1), stalls())
            await uploading.wait()
            assert await anyio.to_thread.run_sync(_pending, store, bucket) == [blob_id(1)]
            tg.cancel_scope.cancel()
    finally:
        await backend.close()

    assert _pending(store, bucket) == []
    assert store.held(prefix) == []


@pytest.mark.anyio
async def test_twenty_mib_streamed_round_trip_is_multipart_in_bounded_memory(
    seaweed_store: S3Store, seaweed_prefix: str
) -> None:
    part_size = 5 * MiB
    backend = S3Backend(seaweed_store.settings(seaweed_prefix, part_size=part_size))
    chunk = bytes(range(256)) * 256  # 64 KiB, the same object every time: no allocation
    count = 320  # 20 MiB

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield chunk

    expected = hashlib.sha256(chunk * count).digest()
    # botocore loads and caches what a multipart upload needs on first use: not per-put memory.
    await backend.put(CONTAINER, blob_id(2), chunked(*[chunk] * 96))
    tracemalloc.start()
    try:
        stored = await backend.put(CONTAINER, blob_id(1), stream())
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        async for block in backend.get(CONTAINER, blob_id(1)):
            digest.update(block)
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await backend.close()

    head = seaweed_store.client.head_object(Bucket=seaweed_prefix + CONTAINER, Key=blob_id(1))
    assert stored == count * len(chunk)
    assert digest.digest() == expected
    assert head["ETag"].strip('"').endswith("-4")  # four 5 MiB parts
    # Two parts (one uploading, one filling) and botocore's own ~2 MiB; never the blob.
    assert put_peak < 2 * part_size + 4 * MiB, put_peak
    assert get_peak < 4 * MiB, get_peak


@pytest.mark.anyio
async def test_ranged_reads_of_a_multipart_blob_cross_part_boundaries(
    seaweed_store: S3Store, seaweed_prefix: str
) -> None:
    backend = S3Backend(seaweed_store.settings(seaweed_prefix, part_size=5 * MiB))
    data = bytes(range(251)) * (11 * MiB // 251)
    try:
        await backend.put(CONTAINER, blob_id(1), chunked(data[: 7 * MiB], data[7 * MiB :]))
        for start, end in [(5 * MiB - 10, 5 * MiB + 10), (10 * MiB - 1, None), (0, 3)]:
            assert await read_all(backend, blob_id(1), start, end) == data[start:end]
    finally:
        await backend.close()


@pytest.mark.anyio
async def test_unreachable_endpoint_is_backend_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = S3Backend(
        S3BackendSettings(
            endpoint_url=f"http://127.0.0.1:{port}",
            access_key="nobody",
            secret_key="nothing",
            connect_timeout_seconds=1.0,
        )
    )
    try:
        with pytest.raises(BackendUnavailable):
            await backend.put(CONTAINER, blob_id(1), chunked(b"data"))
        with pytest.raises(BackendUnavailable):
            await read_all(backend, blob_id(1))
        with pytest.raises(BackendUnavailable):
            await backend.size(CONTAINER, blob_id(1))
        with pytest.raises(BackendUnavailable):
            await backend.delete(CONTAINER, blob_id(1))
        with pytest.raises(BackendUnavailable):
            await listing(backend)
    finally:
        await backend.close()


@pytest.mark.anyio
async def test_refused_credentials_are_backend_unavailable_and_logged(
    seaweed_store: S3Store, caplog: pytest.LogCaptureFixture
) -> None:
    settings = seaweed_store.settings("twrongkey-", secret_key="not-the-secret")
    backend = S3Backend(settings)
    try:
        with caplog.at_level(logging.ERROR, logger="blindstore.backends.s3"):
            with pytest.raises(BackendUnavailable):
                await backend.put(CONTAINER, blob_id(1), chunked(b"data"))
            with pytest.raises(BackendUnavailable):
                await backend.size(CONTAINER, blob_id(1))
    finally:
        await backend.close()

    assert "refused" in caplog.text
    assert seaweed_store.buckets("twrongkey-") == []


def test_settings_never_show_the_secret_key() -> None:
    settings = S3BackendSettings(access_key="AKIDEXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG")

    assert "wJalrXUtnFEMI" not in repr(settings)
    assert "wJalrXUtnFEMI" not in str(settings.model_dump())


@pytest.mark.parametrize(
    "values",
    [
        {"access_key": "AKIDEXAMPLE"},
        {"secret_key": "secret"},
        {"profile": "p", "access_key": "a", "secret_key": "s"},
        {"bucket_prefix": "Upper-"},
        {"bucket_prefix": "xn--abc"},
        {"part_size": 4 * MiB},
    ],
)
def test_inconsistent_settings_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        S3BackendSettings(**values)
