"""An in-memory backend: the reference implementation of ``Backend`` and the unit-test fake.

Each instance has its own store. A blob becomes visible only once its chunk iterator is
exhausted, as on the real backends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from blindstore.backends.base import BlobInfo
from blindstore.backends.ids import check_blob, check_container, check_range
from blindstore.errors import BlobNotFound

#: Largest chunk ``get`` yields, as the local backend's reads.
READ_SIZE = 1 << 20


class MemoryBackend:
    """Blobs in a dict, per instance. ``clock`` gives the modification times."""

    def __init__(self, name: str = "memory", *, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._clock = clock
        self._blobs: dict[tuple[str, str], tuple[bytes, float]] = {}

    async def put(self, container: str, blob: str, chunks: AsyncIterator[bytes]) -> int:
        """Store the concatenated chunks once the iterator is exhausted; return their length."""
        check_container(container)
        check_blob(blob)
        data = b"".join([chunk async for chunk in chunks])
        self._blobs[container, blob] = (data, self._clock())
        return len(data)

    async def get(
        self, container: str, blob: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` in chunks of at most ``READ_SIZE``."""
        check_range(start, end)
        data = self._lookup(container, blob)
        stop = len(data) if end is None else min(end, len(data))
        view = memoryview(data)
        for offset in range(start, stop, READ_SIZE):
            yield bytes(view[offset : min(offset + READ_SIZE, stop)])

    async def size(self, container: str, blob: str) -> int:
        """Length of a stored blob; BlobNotFound if absent."""
        return len(self._lookup(container, blob))

    async def delete(self, container: str, blob: str) -> None:
        """Remove a blob if present."""
        check_container(container)
        check_blob(blob)
        self._blobs.pop((container, blob), None)

    async def list(self, container: str) -> AsyncIterator[BlobInfo]:
        """Every blob of ``container``, by id."""
        check_container(container)
        found = sorted(
            (blob, len(data), modified)
            for (owner, blob), (data, modified) in self._blobs.items()
            if owner == container
        )
        for blob, size, modified in found:
            yield BlobInfo(container, blob, size, modified)

    async def close(self) -> None:
        """Nothing to release: the store lives as long as the instance."""

    def _lookup(self, container: str, blob: str) -> bytes:
        check_container(container)
        check_blob(blob)
        try:
            return self._blobs[container, blob][0]
        except KeyError:
            raise BlobNotFound() from None
