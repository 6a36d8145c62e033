"""The gateway over in-process fakes: memory backend, in-memory KEK, in-memory SQLite catalog."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blindstore import provision
from blindstore.backends.memory import MemoryBackend
from blindstore.catalog.base import DeferredDelete
from blindstore.catalog.sql import SqlCatalog
from blindstore.errors import (
    EntityTooSmall,
    IntegrityError,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    NoSuchKey,
    NotModified,
    PreconditionFailed,
    ServiceUnavailable,
)
from blindstore.gateway import Gateway, Principal, WriteMeta, multipart_etag
from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.maintenance import DeferredReport, delete_due_blobs
from blindstore.s3.checksums import BodyVerifier
from blindstore.s3.conditions import Conditions
from blindstore.server.wire import VerifiedBody

MiB = 1024 * 1024


#: The world's ``storage.delete_delay_seconds``.
DELETE_DELAY = 60.0


class World:
    def __init__(self) -> None:
        self.backend = MemoryBackend()
        self.keys = InMemoryKeyWrapper()
        #: Seconds added to the real time: tests move the world's clock forward with it.
        self.skew = 0.0
        self.catalog = SqlCatalog("sqlite://", delete_delay=DELETE_DELAY, clock=self.clock)
        self.gateway = Gateway(
            self.catalog,
            self.keys,
            {"memory": self.backend},
            default_backend="memory",
            verify_whole_below=64 * 1024,
            clock=self.clock,
        )
        self.principal: Principal | None = None

    def clock(self) -> float:
        return time.time() + self.skew

    async def delete_due(self, batch: int = 500) -> DeferredReport:
        return await delete_due_blobs(
            self.gateway, retry_seconds=1.0, failed_retry_seconds=1.0, batch=batch
        )

    async def setup(self) -> Principal:
        made = await provision.create_tenant(self.catalog, self.keys, "t")
        self.principal = Principal(made.access_key_id, made.tenant)
        await self.gateway.create_bucket(self.principal, "b", "us-east-1")
        return self.principal


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    anyio.run(w.setup)
    yield w
    anyio.run(w.gateway.close)


async def _chunks(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _check() -> VerifiedBody:
    return VerifiedBody(BodyVerifier())


async def _put(w: World, key: str, data: bytes, **kw: object) -> None:
    assert w.principal is not None
    await w.gateway.put_object(w.principal, "b", key, _chunks(data), _check(), WriteMeta(), **kw)  # type: ignore[arg-type]


async def _get(w: World, key: str, **kw: object) -> bytes:
    assert w.principal is not None
    read = await w.gateway.get_object(w.principal, "b", key, **kw)  # type: ignore[arg-type]
    return b"".join([c async for c in read.body])


async def _multipart(w: World, key: str, parts: list[bytes]) -> None:
    assert w.principal is not None
    upload = await w.gateway.create_upload(w.principal, "b", key, WriteMeta())
    etags = []
    for number, part in enumerate(parts, 1):
        made = await w.gateway.upload_part(
            w.principal, "b", key, upload.upload_id, number, _chunks(part), _check()
        )
        etags.append((number, made.etag))
    await w.gateway.complete_upload(w.principal, "b", key, upload.upload_id, etags)


def test_put_get_round_trip_for_chunk_boundary_sizes(world: World) -> None:
    for size in (0, 1, 16383, 16384, 16385, 3 * 16384, 100_000):
        data = os.urandom(size)
        anyio.run(_put, world, f"k{size}", data)
        assert anyio.run(_get, world, f"k{size}") == data


def test_etag_is_the_md5_of_the_plaintext(world: World) -> None:
    data = b"hello world"
    anyio.run(_put, world, "k", data)
    record = anyio.run(world.catalog.get_object, "b", "k")
    assert record is not None
    assert record.etag == hashlib.md5(data).hexdigest()


_LARGE = os.urandom(10 * MiB + 70_000)
_TAIL = os.urandom(40_000)


@pytest.fixture(scope="module")
def multipart_world() -> Iterator[World]:
    w = World()
    anyio.run(w.setup)
    anyio.run(_multipart, w, "mp", [_LARGE[: 5 * MiB], _LARGE[5 * MiB :], _TAIL])
    yield w
    anyio.run(w.gateway.close)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_range_of_a_multipart_object_equals_the_plaintext_slice(
    multipart_world: World, data: st.DataObject
) -> None:
    plain = _LARGE + _TAIL
    start = data.draw(st.integers(0, len(plain) - 1))
    end = data.draw(st.integers(start, len(plain) - 1))
    got = anyio.run(lambda: _get(multipart_world, "mp", byte_range=(start, end)))
    assert got == plain[start : end + 1]


def test_part_number_reads_exactly_that_part(multipart_world: World) -> None:
    got = anyio.run(lambda: _get(multipart_world, "mp", part_number=2))
    assert got == _LARGE[5 * MiB :]
    with pytest.raises(InvalidRange):
        anyio.run(lambda: _get(multipart_world, "mp", part_number=4))


def test_multipart_etag_is_md5_of_part_md5s(multipart_world: World) -> None:
    record = anyio.run(multipart_world.catalog.get_object, "b", "mp")
    assert record is not None
    md5s = [hashlib.md5(p).hexdigest() for p in (_LARGE[: 5 * MiB], _LARGE[5 * MiB :], _TAIL)]
    assert record.etag == multipart_etag(md5s)
    assert record.etag.endswith("-3")


def test_complete_refuses_small_parts_wrong_etags_and_disorder(world: World) -> None:
    p = world.principal
    assert p is not None

    async def scenario() -> None:
        upload = await world.gateway.create_upload(p, "b", "k", WriteMeta())
        one = await world.gateway.upload_part(
            p, "b", "k", upload.upload_id, 1, _chunks(b"a" * 10), _check()
        )
        two = await world.gateway.upload_part(
            p, "b", "k", upload.upload_id, 2, _chunks(b"b" * 10), _check()
        )
        with pytest.raises(EntityTooSmall):
            await world.gateway.complete_upload(
                p, "b", "k", upload.upload_id, [(1, one.etag), (2, two.etag)]
            )
        with pytest.raises(InvalidPart):
            await world.gateway.complete_upload(p, "b", "k", upload.upload_id, [(1, "0" * 32)])
        with pytest.raises(InvalidPartOrder):
            await world.gateway.complete_upload(
                p, "b", "k", upload.upload_id, [(2, two.etag), (1, one.etag)]
            )
        # A single small part is a valid (last) part.
        await world.gateway.complete_upload(p, "b", "k", upload.upload_id, [(2, two.etag)])

    anyio.run(scenario)
    assert anyio.run(_get, world, "k") == b"b" * 10


def test_retried_part_replaces_the_earlier_attempt_and_its_blob(world: World) -> None:
    p = world.principal
    assert p is not None

    async def scenario() -> None:
        upload = await world.gateway.create_upload(p, "b", "k", WriteMeta())
        await world.gateway.upload_part(p, "b", "k", upload.upload_id, 1, _chunks(b"x"), _check())
        blobs_before = len(world.backend._blobs)
        last = await world.gateway.upload_part(
            p, "b", "k", upload.upload_id, 1, _chunks(b"y"), _check()
        )
        assert len(world.backend._blobs) == blobs_before
        await world.gateway.complete_upload(p, "b", "k", upload.upload_id, [(1, last.etag)])

    anyio.run(scenario)
    assert anyio.run(_get, world, "k") == b"y"


def test_conditional_reads_and_writes(world: World) -> None:
    anyio.run(_put, world, "k", b"v1")
    record = anyio.run(world.catalog.get_object, "b", "k")
    assert record is not None
    with pytest.raises(NotModified):
        anyio.run(lambda: _get(world, "k", conditions=Conditions(if_none_match=record.etag)))
    with pytest.raises(PreconditionFailed):
        anyio.run(lambda: _get(world, "k", conditions=Conditions(if_match='"nope"')))
    with pytest.raises(PreconditionFailed):
        anyio.run(lambda: _put(world, "k", b"v2", if_none_match=True))
    with pytest.raises(PreconditionFailed):
        anyio.run(lambda: _put(world, "k", b"v2", if_match="0" * 32))
    anyio.run(lambda: _put(world, "k", b"v2", if_match=record.etag))
    assert anyio.run(_get, world, "k") == b"v2"


def test_overwrite_and_delete_remove_the_old_blobs_once_their_delay_has_passed(
    world: World,
) -> None:
    anyio.run(_put, world, "k", b"one")
    anyio.run(_put, world, "k", b"two")
    assert world.principal is not None
    anyio.run(world.gateway.delete_object, world.principal, "b", "k")
    with pytest.raises(NoSuchKey):
        anyio.run(_get, world, "k")
    # Reads that found either row may still be streaming its blob.
    assert len(world.backend._blobs) == 2
    assert anyio.run(world.delete_due) == DeferredReport()
    assert len(world.backend._blobs) == 2

    world.skew = DELETE_DELAY + 1

    assert anyio.run(lambda: world.delete_due(batch=1)).deleted == 2  # batch after batch
    assert len(world.backend._blobs) == 0
    assert anyio.run(world.catalog.due_deletions, world.clock() + 1e9) == []


def test_a_read_in_progress_outlasts_the_delay_and_its_blob_goes_once_it_is_done(
    world: World,
) -> None:
    old = os.urandom(300_000)  # streamed (above verify_whole_below), not verified whole first

    async def scenario() -> None:
        assert world.principal is not None
        await _put(world, "k", old)
        read = await world.gateway.get_object(world.principal, "b", "k")
        assert not read.verified
        received = [await anext(read.body)]
        await _put(world, "k", b"new")
        world.skew = DELETE_DELAY + 1

        assert (await world.delete_due()).leased == 1
        assert len(world.backend._blobs) == 2

        received.extend([chunk async for chunk in read.body])
        assert b"".join(received) == old
        world.skew += 2
        assert (await world.delete_due()).deleted == 1
        assert len(world.backend._blobs) == 1
        assert await _get(world, "k") == b"new"

    anyio.run(scenario)


def test_a_deletion_cut_between_the_blob_and_its_record_is_completed_by_the_next_pass(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after ``kill -9`` between the two steps: the blob is gone, its record is not."""
    anyio.run(_put, world, "k", b"one")
    anyio.run(_put, world, "k", b"two")
    world.skew = DELETE_DELAY + 1

    async def crash(*_args: object) -> None:
        raise ServiceUnavailable()

    with monkeypatch.context() as patch:
        patch.setattr(world.catalog, "finish_deletions", crash)
        with pytest.raises(ServiceUnavailable):
            anyio.run(world.delete_due)
    assert len(world.backend._blobs) == 1
    assert len(anyio.run(world.catalog.due_deletions, world.clock())) == 1

    assert anyio.run(world.delete_due).deleted == 1  # deleting a missing blob is no error

    assert anyio.run(world.catalog.due_deletions, world.clock() + 1e9) == []
    assert anyio.run(_get, world, "k") == b"two"


def test_the_background_deleter_outlives_a_failed_pass_and_deletes_due_blobs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blindstore.runtime import delete_deferred_blobs

    anyio.run(_put, world, "k", b"one")
    anyio.run(_put, world, "k", b"two")
    world.skew = DELETE_DELAY + 1
    real = world.catalog.due_deletions
    calls = 0

    async def flaky(now: float, *, limit: int = 500) -> list[DeferredDelete]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug, or a foreign exception nobody translated")
        return await real(now, limit=limit)

    monkeypatch.setattr(world.catalog, "due_deletions", flaky)

    async def scenario() -> None:
        async with delete_deferred_blobs(world.gateway, 0.5):  # a pass every 0.05 s
            with anyio.fail_after(10):
                while len(world.backend._blobs) > 1:
                    await anyio.sleep(0.02)

    anyio.run(scenario)
    assert calls >= 2
    assert anyio.run(_get, world, "k") == b"two"


def test_a_body_closed_or_dropped_unread_releases_its_lease(world: World) -> None:
    anyio.run(_put, world, "a", os.urandom(200_000))
    anyio.run(_put, world, "b", os.urandom(200_000))

    async def scenario() -> None:
        assert world.principal is not None
        closed = await world.gateway.get_object(world.principal, "b", "a")
        dropped = await world.gateway.get_object(world.principal, "b", "b")
        assert len(world.gateway.leases) == 2
        await closed.body.aclose()  # type: ignore[attr-defined]
        del dropped
        assert len(world.gateway.leases) == 0

    anyio.run(scenario)


def test_an_edited_catalog_row_fails_the_row_mac(world: World) -> None:
    anyio.run(_put, world, "k", b"secret")
    record = anyio.run(world.catalog.get_object, "b", "k")
    assert record is not None
    anyio.run(world.catalog.put_object, replace(record, user_metadata={"x": "forged"}))
    with pytest.raises(IntegrityError):
        anyio.run(_get, world, "k")


def test_failed_digest_stores_nothing(world: World) -> None:
    from blindstore.errors import BadDigest

    assert world.principal is not None
    check = VerifiedBody(BodyVerifier(content_md5=b"\0" * 16))
    with pytest.raises(BadDigest):
        anyio.run(
            lambda: world.gateway.put_object(
                world.principal,
                "b",
                "k",
                _chunks(b"data"),
                check,
                WriteMeta(),  # type: ignore[arg-type]
            )
        )
    assert world.backend._blobs == {}
    assert anyio.run(world.catalog.get_object, "b", "k") is None
