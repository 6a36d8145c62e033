"""The Backend protocol: opaque ciphertext blobs, nothing else.

A backend never sees an object name, a content type or user metadata. The gateway chooses both the
``container`` (one per tenant, random name) and the ``blob`` id (``<2 hex shard>/<base32 id>``).
Errors: ``BlobNotFound`` for a missing blob, ``BackendUnavailable`` when the store cannot be
reached; every foreign exception is translated inside the backend module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class BlobInfo:
    container: str
    blob: str
    size: int
    #: Seconds since the epoch when the blob was last written (for orphan GC grace periods).
    modified: float


@runtime_checkable
class Backend(Protocol):
    """Stores opaque ciphertext blobs under gateway-chosen names."""

    name: str

    async def put(self, container: str, blob: str, chunks: AsyncIterator[bytes]) -> int:
        """Store ``chunks`` as one blob, atomically; return the number of bytes stored.

        The blob becomes visible only once complete: if ``chunks`` raises or the write fails, no
        blob (and no partial file) remains. Overwriting an existing blob id is allowed.
        """
        ...

    def get(
        self, container: str, blob: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` of the blob (``end=None``: to the end).

        Raises ``BlobNotFound`` (on first iteration) if the blob does not exist. Yields fewer bytes
        than asked if the blob is shorter; the caller checks lengths.
        """
        ...

    async def size(self, container: str, blob: str) -> int:
        """Size in bytes of a stored blob; ``BlobNotFound`` if absent."""
        ...

    async def delete(self, container: str, blob: str) -> None:
        """Remove a blob. Idempotent: deleting a missing blob is not an error."""
        ...

    def list(self, container: str) -> AsyncIterator[BlobInfo]:
        """Every complete blob in ``container`` (in-flight temporary files excluded)."""
        ...

    async def close(self) -> None:
        """Release connections and thread pools."""
        ...
