"""The Backend contract: behaviours every ``Backend`` implementation must show.

A test module subclasses ``BackendContract`` and provides two fixtures: ``backend`` (a fresh,
empty backend) and ``artifacts`` (a callable listing everything the backend physically holds,
temporary files included, so that "nothing is left behind" can be checked). Backends that stream
to real storage also subclass ``StreamingBackendContract`` (bounded memory).
"""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import anyio
import anyio.lowlevel
import pytest

from blindstore.backends.base import Backend, BlobInfo
from blindstore.backends.ids import new_blob_id
from blindstore.errors import BlindstoreError, BlobNotFound

CONTAINER = "bs-contract-tests"
OTHER_CONTAINER = "bs-contract-other"

#: Everything the backend physically holds, temporary files included, as sorted names.
Artifacts = Callable[[], Awaitable[list[str]]]


def blob_id(n: int) -> str:
    """A deterministic, valid blob id."""
    return new_blob_id(lambda size: n.to_bytes(size, "big"))


async def chunked(*chunks: bytes) -> AsyncIterator[bytes]:
    """An async iterator over ``chunks``, yielding control between them."""
    for chunk in chunks:
        await anyio.lowlevel.checkpoint()
        yield chunk


async def failing_after(chunks: Iterable[bytes], error: Exception) -> AsyncIterator[bytes]:
    """Yield ``chunks`` then raise ``error``, as a client that disconnects midway."""
    for chunk in chunks:
        await anyio.lowlevel.checkpoint()
        yield chunk
    raise error


async def read_all(
    backend: Backend,
    blob: str,
    start: int = 0,
    end: int | None = None,
    *,
    container: str = CONTAINER,
) -> bytes:
    return b"".join([chunk async for chunk in backend.get(container, blob, start, end)])


async def listing(backend: Backend, container: str = CONTAINER) -> list[BlobInfo]:
    return [info async for info in backend.list(container)]


@pytest.mark.anyio
class BackendContract:
    """Run against every Backend through the ``backend`` and ``artifacts`` fixtures."""

    async def test_backend_satisfies_the_protocol(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert isinstance(backend.name, str)
        assert backend.name

    async def test_put_then_get_returns_the_same_bytes(self, backend: Backend) -> None:
        stored = await backend.put(CONTAINER, blob_id(1), chunked(b"cipher", b"", b"text"))

        assert stored == 10
        assert await read_all(backend, blob_id(1)) == b"ciphertext"

    async def test_empty_blob_round_trips(self, backend: Backend) -> None:
        assert await backend.put(CONTAINER, blob_id(1), chunked()) == 0

        assert await read_all(backend, blob_id(1)) == b""
        assert await backend.size(CONTAINER, blob_id(1)) == 0

    async def test_many_small_chunks_are_stored_in_order(self, backend: Backend) -> None:
        chunks = [bytes([i % 256]) * 10 for i in range(1000)]

        assert await backend.put(CONTAINER, blob_id(1), chunked(*chunks)) == 10_000
        assert await read_all(backend, blob_id(1)) == b"".join(chunks)

    @pytest.mark.parametrize(
        ("start", "end", "expected"),
        [
            (0, None, b"0123456789"),
            (3, None, b"3456789"),
            (3, 7, b"3456"),
            (0, 1, b"0"),
            (9, 10, b"9"),
            (5, 5, b""),
            (4, 100, b"456789"),
            (10, None, b""),
            (10, 20, b""),
            (15, None, b""),
        ],
    )
    async def test_get_returns_the_requested_range_clipped_to_the_blob(
        self, backend: Backend, start: int, end: int | None, expected: bytes
    ) -> None:
        await backend.put(CONTAINER, blob_id(1), chunked(b"01234", b"56789"))

        assert await read_all(backend, blob_id(1), start, end) == expected

    async def test_ranges_of_a_large_blob_cross_read_boundaries(self, backend: Backend) -> None:
        data = bytes(range(256)) * 16384  # 4 MiB, more than any read size
        await backend.put(CONTAINER, blob_id(1), chunked(data[: 1 << 21], data[1 << 21 :]))

        for start, end in [(0, None), (1, (1 << 20) + 7), ((1 << 20) - 3, 3 << 20), (4000, 4100)]:
            assert await read_all(backend, blob_id(1), start, end) == data[start:end]

    async def test_get_of_a_missing_blob_raises_blob_not_found(self, backend: Backend) -> None:
        with pytest.raises(BlobNotFound):
            await read_all(backend, blob_id(1))

    async def test_size_of_a_stored_blob(self, backend: Backend) -> None:
        await backend.put(CONTAINER, blob_id(1), chunked(b"x" * 1234))

        assert await backend.size(CONTAINER, blob_id(1)) == 1234

    async def test_size_of_a_missing_blob_raises_blob_not_found(self, backend: Backend) -> None:
        with pytest.raises(BlobNotFound):
            await backend.size(CONTAINER, blob_id(1))

    async def test_overwrite_replaces_the_whole_blob(self, backend: Backend) -> None:
        await backend.put(CONTAINER, blob_id(1), chunked(b"first version, longer"))
        await backend.put(CONTAINER, blob_id(1), chunked(b"second"))

        assert await read_all(backend, blob_id(1)) == b"second"
        assert await backend.size(CONTAINER, blob_id(1)) == 6

    async def test_blobs_are_scoped_by_container(self, backend: Backend) -> None:
        await backend.put(CONTAINER, blob_id(1), chunked(b"mine"))

        with pytest.raises(BlobNotFound):
            await backend.size(OTHER_CONTAINER, blob_id(1))
        assert await listing(backend, OTHER_CONTAINER) == []

    async def test_delete_removes_the_blob(self, backend: Backend, artifacts: Artifacts) -> None:
        await backend.put(CONTAINER, blob_id(1), chunked(b"data"))

        await backend.delete(CONTAINER, blob_id(1))

        with pytest.raises(BlobNotFound):
            await backend.size(CONTAINER, blob_id(1))
        assert await artifacts() == []

    async def test_delete_is_idempotent(self, backend: Backend) -> None:
        await backend.delete(CONTAINER, blob_id(1))
        await backend.put(CONTAINER, blob_id(1), chunked(b"data"))
        await backend.delete(CONTAINER, blob_id(1))
        await backend.delete(CONTAINER, blob_id(1))

        assert await listing(backend) == []

    async def test_failed_put_leaves_no_blob_and_no_temporary_file(
        self, backend: Backend, artifacts: Artifacts
    ) -> None:
        # 3 MiB before the failure: past any write buffer, so a temporary file exists by then.
        chunks = [b"\x01" * 65536] * 48
        with pytest.raises(ConnectionResetError):
            await backend.put(CONTAINER, blob_id(1), failing_after(chunks, ConnectionResetError()))

        with pytest.raises(BlobNotFound):
            await backend.size(CONTAINER, blob_id(1))
        assert await listing(backend) == []
        assert await artifacts() == []

    async def test_failed_small_put_leaves_nothing(
        self, backend: Backend, artifacts: Artifacts
    ) -> None:
        with pytest.raises(ConnectionResetError):
            await backend.put(
                CONTAINER, blob_id(1), failing_after([b"abc"], ConnectionResetError())
            )

        assert await artifacts() == []

    async def test_failed_overwrite_keeps_the_previous_blob(self, backend: Backend) -> None:
        await backend.put(CONTAINER, blob_id(1), chunked(b"committed"))

        with pytest.raises(ConnectionResetError):
            await backend.put(
                CONTAINER,
                blob_id(1),
                failing_after([b"\x02" * 65536] * 48, ConnectionResetError()),
            )

        assert await read_all(backend, blob_id(1)) == b"committed"

    async def test_cancelled_put_leaves_nothing(
        self, backend: Backend, artifacts: Artifacts
    ) -> None:
        started = anyio.Event()

        async def endless() -> AsyncIterator[bytes]:
            for _ in range(40):  # 2.5 MiB: a temporary file is open
                await anyio.lowlevel.checkpoint()
                yield b"\x03" * 65536
            started.set()
            await anyio.sleep_forever()
            yield b""  # pragma: no cover - never reached

        async with anyio.create_task_group() as tg:
            tg.start_soon(backend.put, CONTAINER, blob_id(1), endless())
            await started.wait()
            tg.cancel_scope.cancel()

        with pytest.raises(BlobNotFound):
            await backend.size(CONTAINER, blob_id(1))
        assert await artifacts() == []

    async def test_blob_is_invisible_until_its_put_completes(self, backend: Backend) -> None:
        halfway = anyio.Event()
        resume = anyio.Event()

        async def paused() -> AsyncIterator[bytes]:
            yield b"\x04" * (3 << 20)
            halfway.set()
            await resume.wait()
            yield b"end"

        async with anyio.create_task_group() as tg:
            tg.start_soon(backend.put, CONTAINER, blob_id(1), paused())
            await halfway.wait()
            assert await listing(backend) == []
            with pytest.raises(BlobNotFound):
                await backend.size(CONTAINER, blob_id(1))
            resume.set()

        assert await backend.size(CONTAINER, blob_id(1)) == (3 << 20) + 3

    async def test_list_returns_every_complete_blob_with_size_and_time(
        self, backend: Backend
    ) -> None:
        blobs = sorted(blob_id(n) for n in (5, 1, 300, 70000))
        for n, blob in enumerate(blobs):
            await backend.put(CONTAINER, blob, chunked(b"z" * n))
        await backend.put(OTHER_CONTAINER, blob_id(9), chunked(b"elsewhere"))

        found = await listing(backend)

        assert [(info.container, info.blob, info.size) for info in found] == [
            (CONTAINER, blob, n) for n, blob in enumerate(blobs)
        ]
        assert all(info.modified > 0 for info in found)

    async def test_list_of_an_unknown_container_is_empty(self, backend: Backend) -> None:
        assert await listing(backend, "bs-never-used") == []

    async def test_concurrent_writers_to_one_blob_leave_one_complete_version(
        self, backend: Backend
    ) -> None:
        first = [b"A" * 65536] * 40
        second = [b"B" * 65536] * 24

        async with anyio.create_task_group() as tg:
            tg.start_soon(backend.put, CONTAINER, blob_id(1), chunked(*first))
            tg.start_soon(backend.put, CONTAINER, blob_id(1), chunked(*second))

        assert await read_all(backend, blob_id(1)) in (b"".join(first), b"".join(second))
        assert [info.blob for info in await listing(backend)] == [blob_id(1)]

    @pytest.mark.parametrize(
        ("container", "blob"),
        [
            ("..", "00/aaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("bs-ok", "../../../etc/passwd"),
            ("bs-ok", "00/../../aaaaaaaaaaaaaaaa"),
            ("bs-ok", "/etc/aaaaaaaaaaaaaaaaaaaaaa"),
            ("bs-ok", "00/AAAAAAAAAAAAAAAAAAAAAAAA"),
            ("bs-ok", "00/aaaaaaaaaaaaaaaaaaaaaaaa\n"),
            ("bs-ok", "00/a"),
            ("bs-ok", "aaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("bs-ok", ".tmp-/aaaaaaaaaaaaaaaaaaaa"),
            ("Bucket", "00/aaaaaaaaaaaaaaaaaaaaaaaa"),
            ("a/b", "00/aaaaaaaaaaaaaaaaaaaaaaaa"),
            ("x", "00/aaaaaaaaaaaaaaaaaaaaaaaa"),
        ],
    )
    async def test_invalid_names_never_reach_storage(
        self, backend: Backend, artifacts: Artifacts, container: str, blob: str
    ) -> None:
        with pytest.raises(BlindstoreError, match="Invalid"):
            await backend.put(container, blob, chunked(b"x"))
        with pytest.raises(BlindstoreError, match="Invalid"):
            await read_all(backend, blob, container=container)
        with pytest.raises(BlindstoreError, match="Invalid"):
            await backend.size(container, blob)
        with pytest.raises(BlindstoreError, match="Invalid"):
            await backend.delete(container, blob)
        assert await artifacts() == []


@pytest.mark.anyio
class StreamingBackendContract:
    """For backends that stream to storage: memory stays bounded whatever the blob size."""

    async def test_large_streamed_put_and_get_hold_bounded_memory(self, backend: Backend) -> None:
        chunk = bytes(range(256)) * 256  # 64 KiB, the same object every time: no allocation
        count = 1024  # 64 MiB

        async def stream() -> AsyncIterator[bytes]:
            for _ in range(count):
                yield chunk

        expected = hashlib.sha256()
        for _ in range(count):
            expected.update(chunk)

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

        assert stored == count * len(chunk)
        assert digest.digest() == expected.digest()
        assert put_peak < 8 << 20
        assert get_peak < 8 << 20
