"""Placement on several backends: fan-out, write quorum, read failover and repair (in process)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from blindstore import provision
from blindstore.backends.base import BlobInfo
from blindstore.backends.memory import MemoryBackend
from blindstore.catalog.base import ObjectRecord
from blindstore.catalog.sql import SqlCatalog
from blindstore.errors import BackendUnavailable, BadDigest
from blindstore.gateway import Gateway, Principal, WriteMeta
from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.maintenance import delete_due_blobs, repair_replicas
from blindstore.policy import ObjectFacts, Placement
from blindstore.s3.checksums import BodyVerifier
from blindstore.server.wire import VerifiedBody

KiB = 1024
MiB = 1024 * KiB
SMALL = os.urandom(40 * KiB)  # verified whole before release
LARGE = os.urandom(300 * KiB)  # streamed (above the world's verify_whole_below)


class FlakyBackend:
    """A memory backend that can be down, or lose its connection after ``fail_after`` bytes
    of a write (then the write is aborted: nothing stored)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inner = MemoryBackend(name)
        self.down = False
        self.fail_after: int | None = None

    def blobs(self) -> set[str]:
        return {blob for _container, blob in self.inner._blobs}

    async def put(self, container: str, blob: str, chunks: AsyncIterator[bytes]) -> int:
        if self.down:
            raise BackendUnavailable("down")
        limit = self.fail_after

        async def counted() -> AsyncIterator[bytes]:
            seen = 0
            async for chunk in chunks:
                seen += len(chunk)
                if limit is not None and seen > limit:
                    raise BackendUnavailable("connection lost mid-stream")
                yield chunk

        return await self.inner.put(container, blob, counted())

    async def get(
        self, container: str, blob: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        if self.down:
            raise BackendUnavailable("down")
        async for chunk in self.inner.get(container, blob, start, end):
            yield chunk

    async def size(self, container: str, blob: str) -> int:
        return await self.inner.size(container, blob)

    async def delete(self, container: str, blob: str) -> None:
        if self.down:
            raise BackendUnavailable("down")
        await self.inner.delete(container, blob)

    async def list(self, container: str) -> AsyncIterator[BlobInfo]:
        async for info in self.inner.list(container):
            yield info

    async def close(self) -> None:
        await self.inner.close()


def route(facts: ObjectFacts) -> Placement:
    """Identifying data on a and b (both required); the rest on two of a, b, c."""
    if facts.classification == "identifying":
        return Placement("sovereign", ("a", "b"), 2, "identifying", ())
    return Placement("anywhere", ("a", "b", "c"), 2, "unclassified", ())


class World:
    def __init__(self) -> None:
        self.stores = {name: FlakyBackend(name) for name in ("a", "b", "c")}
        # Blobs of removed rows are due for deletion at once (no reads run concurrently here).
        self.catalog = SqlCatalog("sqlite://", delete_delay=0.0)
        self.keys = InMemoryKeyWrapper()
        self.gateway = Gateway(
            self.catalog,
            self.keys,
            self.stores,
            default_backend="a",
            verify_whole_below=64 * KiB,
            io_buffer_bytes=32 * KiB,
            placement=route,
        )
        self.principal: Principal | None = None

    async def setup(self) -> None:
        made = await provision.create_tenant(self.catalog, self.keys, "t")
        self.principal = Principal(made.access_key_id, made.tenant)
        await self.gateway.create_bucket(self.principal, "b", "us-east-1")

    def put(self, key: str, data: bytes, *, identifying: bool = False) -> ObjectRecord:
        meta = WriteMeta(user_metadata={"classification": "identifying"} if identifying else {})
        assert self.principal is not None
        principal = self.principal
        return anyio.run(
            lambda: self.gateway.put_object(
                principal, "b", key, _chunks(data), _check(), meta, size=len(data)
            )
        )

    def get(self, key: str, byte_range: tuple[int, int] | None = None) -> bytes:
        assert self.principal is not None
        principal = self.principal

        async def read() -> bytes:
            got = await self.gateway.get_object(principal, "b", key, byte_range=byte_range)
            return b"".join([chunk async for chunk in got.body])

        return anyio.run(read)

    def record(self, key: str) -> ObjectRecord:
        found = anyio.run(self.catalog.get_object, "b", key)
        assert found is not None
        return found


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    anyio.run(w.setup)
    yield w
    anyio.run(w.gateway.close)


async def _chunks(data: bytes, size: int = 10 * KiB) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _check() -> VerifiedBody:
    return VerifiedBody(BodyVerifier())


def test_a_put_lands_on_every_target_of_its_rule(world: World) -> None:
    record = world.put("k", LARGE)

    assert (record.backends, record.repairs) == (("a", "b", "c"), ())
    blob = record.parts[0].blob
    assert all(store.blobs() == {blob} for store in world.stores.values())
    assert world.get("k") == LARGE


def test_the_policy_routes_by_classification(world: World) -> None:
    record = world.put("k", SMALL, identifying=True)

    assert record.backends == ("a", "b")
    assert world.stores["c"].blobs() == set()


def test_a_target_failing_mid_stream_is_dropped_and_recorded_as_a_repair(world: World) -> None:
    world.stores["b"].fail_after = 100 * KiB

    record = world.put("k", LARGE)

    assert (record.backends, record.repairs) == (("a", "c"), ("b",))
    assert world.stores["b"].blobs() == set()
    assert world.get("k") == LARGE


def test_fewer_targets_than_the_quorum_store_nothing_and_commit_nothing(world: World) -> None:
    world.stores["b"].fail_after = 50 * KiB

    with pytest.raises(BackendUnavailable) as info:
        world.put("k", LARGE, identifying=True)

    assert (info.value.code, info.value.status) == ("ServiceUnavailable", 503)
    assert all(store.blobs() == set() for store in world.stores.values())
    assert anyio.run(world.catalog.get_object, "b", "k") is None


def test_a_digest_mismatch_stores_nothing_on_any_target(world: World) -> None:
    assert world.principal is not None
    principal = world.principal
    check = VerifiedBody(BodyVerifier(content_md5=b"\0" * 16))

    with pytest.raises(BadDigest):
        anyio.run(
            lambda: world.gateway.put_object(
                principal, "b", "k", _chunks(LARGE), check, WriteMeta()
            )
        )

    assert all(store.blobs() == set() for store in world.stores.values())


@pytest.mark.parametrize("data", [SMALL, LARGE], ids=["verified whole", "streamed"])
@pytest.mark.parametrize("fault", ["down", "blob lost", "blob corrupted"])
def test_reads_fail_over_to_the_next_replica(world: World, data: bytes, fault: str) -> None:
    record = world.put("k", data)
    first = world.stores["a"]
    key = (record.container, record.parts[0].blob)
    if fault == "down":
        first.down = True
    elif fault == "blob lost":
        del first.inner._blobs[key]
    else:
        stored, modified = first.inner._blobs[key]
        first.inner._blobs[key] = (stored[:100] + bytes([stored[100] ^ 1]) + stored[101:], modified)

    assert world.get("k") == data
    assert world.get("k", (1000, 20_000)) == data[1000:20_001]


def test_a_read_fails_when_every_replica_fails(world: World) -> None:
    world.put("k", SMALL)
    for store in world.stores.values():
        store.down = True

    with pytest.raises(BackendUnavailable):
        world.get("k")


def test_multipart_records_the_backends_holding_every_part(world: World) -> None:
    first, last = os.urandom(5 * MiB), os.urandom(20 * KiB)
    assert world.principal is not None
    principal = world.principal

    async def upload() -> ObjectRecord:
        made = await world.gateway.create_upload(principal, "b", "mp", WriteMeta())
        one = await world.gateway.upload_part(
            principal, "b", "mp", made.upload_id, 1, _chunks(first, 64 * KiB), _check()
        )
        world.stores["c"].down = True
        two = await world.gateway.upload_part(
            principal, "b", "mp", made.upload_id, 2, _chunks(last), _check()
        )
        assert (one.backends, two.backends) == (("a", "b", "c"), ("a", "b"))
        return await world.gateway.complete_upload(
            principal, "b", "mp", made.upload_id, [(1, one.etag), (2, two.etag)]
        )

    record = anyio.run(upload)

    assert (record.backends, record.repairs) == (("a", "b"), ("c",))
    assert world.get("mp") == first + last


def test_repair_copies_the_ciphertext_and_makes_the_target_a_replica(world: World) -> None:
    world.stores["b"].down = True
    world.put("k", LARGE)
    world.put("small", SMALL)
    world.stores["b"].down = False

    report = anyio.run(repair_replicas, world.gateway)
    again = anyio.run(repair_replicas, world.gateway)

    assert (report.objects, report.repaired, report.blobs_copied, report.failed) == (2, 2, 2, 0)
    assert (again.objects, again.repaired) == (0, 0)
    assert (world.record("k").backends, world.record("k").repairs) == (("a", "c", "b"), ())
    world.stores["a"].down = world.stores["c"].down = True
    assert world.get("k") == LARGE
    assert world.get("small") == SMALL


def test_repair_keeps_a_target_pending_while_it_is_down(world: World) -> None:
    world.stores["b"].down = True
    world.put("k", SMALL)

    report = anyio.run(repair_replicas, world.gateway)

    assert (report.objects, report.repaired, report.failed) == (1, 0, 1)
    assert world.record("k").repairs == ("b",)


def test_deleting_an_object_removes_every_replica(world: World) -> None:
    world.put("k", SMALL)
    assert world.principal is not None

    anyio.run(world.gateway.delete_object, world.principal, "b", "k")
    assert all(store.blobs() for store in world.stores.values())  # deferred: reads may run
    report = anyio.run(
        lambda: delete_due_blobs(world.gateway, retry_seconds=1.0, failed_retry_seconds=1.0)
    )

    assert report.deleted == len(world.stores)
    assert all(store.blobs() == set() for store in world.stores.values())


def test_a_row_maced_before_revision_0002_with_its_backend_name_still_reads(world: World) -> None:
    """Rows migrated from a single `backend` keep a MAC that covered that name."""
    from dataclasses import replace

    from blindstore import crypto
    from blindstore.errors import IntegrityError
    from blindstore.gateway import _canonical_row

    record = world.put("k", SMALL, identifying=True)
    dek = anyio.run(
        world.keys.unwrap, record.key_name, record.tenant_id, record.object_id, record.wrapped_dek
    )

    def legacy(name: str) -> ObjectRecord:
        canonical = _canonical_row(record, legacy_backend=name)
        return replace(record, row_mac=crypto.row_mac(dek, record.object_id, canonical))

    anyio.run(world.catalog.put_object, legacy("b"))
    assert world.get("k") == SMALL
    anyio.run(world.catalog.put_object, legacy("c"))  # not one of its replicas
    with pytest.raises(IntegrityError):
        world.get("k")
