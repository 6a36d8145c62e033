"""Leases on the blobs a read in this process is streaming.

An overwrite or DELETE does not delete the blobs it replaced: the catalog records them, due after
``storage.delete_delay_seconds`` (that delay covers reads in other processes). A read here holds
a lease on its row's blobs until its body is finished, closed or dropped, and the deleter of this
process postpones a leased blob: a read of any length is never cut by its own gateway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

from blindstore.catalog.base import ObjectRecord

BlobRef = tuple[str, str]  # (container, blob)


class BlobLeases:
    """How many reads of this process hold each blob."""

    def __init__(self) -> None:
        self._held: Counter[BlobRef] = Counter()

    def hold(self, record: ObjectRecord) -> Lease:
        """A lease on every blob of ``record``; release it when the read is over."""
        blobs = tuple((record.container, part.blob) for part in record.parts)
        self._held.update(blobs)
        return Lease(self, blobs)

    def held(self, container: str, blob: str) -> bool:
        return self._held[(container, blob)] > 0

    def __len__(self) -> int:
        """How many distinct blobs are held."""
        return len(self._held)

    def _release(self, blobs: tuple[BlobRef, ...]) -> None:
        self._held.subtract(blobs)
        for ref in blobs:
            if self._held[ref] <= 0:
                del self._held[ref]


class Lease:
    """Held blobs; ``release`` is idempotent."""

    __slots__ = ("_blobs", "_leases")

    def __init__(self, leases: BlobLeases, blobs: tuple[BlobRef, ...]) -> None:
        self._leases: BlobLeases | None = leases
        self._blobs = blobs

    def release(self) -> None:
        if self._leases is not None:
            self._leases._release(self._blobs)
            self._leases = None


class LeasedBody:
    """A body stream that releases its lease when it ends, fails, is closed or is dropped.

    A class rather than an async generator: a generator never started runs no ``finally`` when
    closed, and a response abandoned before its first byte would keep its lease for ever.
    """

    def __init__(self, body: AsyncIterator[bytes], lease: Lease) -> None:
        self._body = body
        self._lease = lease

    def __aiter__(self) -> LeasedBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self._body)
        except BaseException:
            # The end of the body (StopAsyncIteration), an error, or a cancellation.
            self._lease.release()
            raise

    async def aclose(self) -> None:
        self._lease.release()
        aclose = getattr(self._body, "aclose", None)
        if aclose is not None:
            await aclose()

    def __del__(self) -> None:
        self._lease.release()
