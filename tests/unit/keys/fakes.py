"""Test doubles with state (no mocks): a manual clock and a key service that can go down."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel

from blindstore.errors import KeyServiceError, KeyServiceUnavailable
from blindstore.keys import justification
from blindstore.keys.base import DataKey, WrappedDek
from blindstore.keys.bucketkeys import StoredBucketKey
from blindstore.keys.justification import Justification
from blindstore.keys.memory import InMemoryKeyWrapper


class ManualClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class OutageKeyWrapper:
    """An ``InMemoryKeyWrapper`` that can be taken down, and whose calls can be held open.

    ``down = True`` makes every call fail like an unreachable Vault; ``hold()`` makes calls wait
    until ``release()``; ``attempts`` counts calls, failed ones included; ``justifications``
    holds, per call, the key-access justifications in effect (what Transit would be sent).
    """

    def __init__(self, inner: InMemoryKeyWrapper | None = None) -> None:
        self.inner = inner or InMemoryKeyWrapper()
        self.down = False
        self.attempts = 0
        self.batch_sizes: list[int] = []
        self.justifications: list[tuple[Justification, ...]] = []
        self._gate: anyio.Event | None = None

    @property
    def vault_calls(self) -> int:
        return self.attempts

    def hold(self) -> None:
        self._gate = anyio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    async def create_key(self, key_name: str) -> None:
        await self.inner.create_key(key_name)

    async def wrap_batch(self, key_name: str, tenant_id: bytes, count: int) -> list[DataKey]:
        await self._call(count)
        return await self.inner.wrap_batch(key_name, tenant_id, count)

    async def unwrap_batch(
        self, key_name: str, items: Sequence[WrappedDek]
    ) -> list[bytes | KeyServiceError]:
        await self._call(len(items))
        return await self.inner.unwrap_batch(key_name, items)

    async def new_data_key(
        self,
        key_name: str,
        tenant_id: bytes,
        *,
        bucket: str | None = None,
        size: int | None = None,
        pooled: bool = True,
    ) -> DataKey:
        return (await self.wrap_batch(key_name, tenant_id, 1))[0]

    async def unwrap(
        self, key_name: str, tenant_id: bytes, object_id: bytes, wrapped: str
    ) -> bytes:
        outcome = (await self.unwrap_batch(key_name, [WrappedDek(tenant_id, object_id, wrapped)]))[
            0
        ]
        if isinstance(outcome, KeyServiceError):
            raise outcome
        return outcome

    def forget(self, tenant_id: bytes, object_id: bytes) -> None:
        self.inner.forget(tenant_id, object_id)

    def remember(
        self,
        key_name: str,
        tenant_id: bytes,
        object_id: bytes,
        wrapped: str,
        dek: bytes,
        *,
        size: int | None = None,
    ) -> None:
        self.inner.remember(key_name, tenant_id, object_id, wrapped, dek)

    async def close(self) -> None:
        await self.inner.close()

    async def _call(self, size: int) -> None:
        self.attempts += 1
        self.batch_sizes.append(size)
        self.justifications.append(justification.current())
        if self._gate is not None:
            await self._gate.wait()
        if self.down:
            raise KeyServiceUnavailable("key service unreachable: ConnectionError")


class MemoryBucketKeyStore:
    """A ``BucketKeyStore`` in a dict; ``rows`` is open to tests that tamper with it."""

    def __init__(self) -> None:
        self.rows: dict[bytes, StoredBucketKey] = {}
        self.loads = 0

    async def save(self, key: StoredBucketKey) -> None:
        await anyio.lowlevel.checkpoint()
        assert key.bucket_key_id not in self.rows
        self.rows[key.bucket_key_id] = key

    async def load(self, bucket_key_id: bytes) -> StoredBucketKey | None:
        self.loads += 1
        await anyio.lowlevel.checkpoint()
        return self.rows.get(bucket_key_id)
