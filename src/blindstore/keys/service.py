"""The ``KeyWrapper`` the gateway uses: a batch key service (Transit) + DEK pool + unwrap cache.

    new_data_key ─► PrewrappedPool ─(one batch encrypt per refill)─► Transit
    unwrap ─► UnwrapCache ─(miss)─► UnwrapBatcher ─(one batch decrypt per window)─► Transit

Vault calls stay ≥ 1 per object (each DEK is wrapped and unwrapped by Transit itself, so per-object
audit and shredding hold); the gateway holds DEKs only, never a key that opens many objects.
``pool_size=0`` wraps each DEK in its own Transit call (no pool); ``cache_ttl=0`` caches nothing.

The exception is the opt-in bucket-key mode (``keys.bucketkeys``, a weaker model): with a
``bucket_key_store`` and an enabled ``bucket_key_policy``, new objects of the chosen buckets get
DEKs wrapped locally (``bk1:``) under a bucket key that Transit wraps once. ``bk1:`` DEKs are
readable whenever a store is given, whether the mode is enabled for new writes or not.

Use it as ``async with KeyService(...) as keys:`` in the server lifespan: that runs the pool's
background refills and the cache's expiry sweep. Without it, everything still works; refills
then happen when a pool runs empty, in the request that finds it empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict
from types import TracebackType
from typing import Any

import anyio

from blindstore.background import start_background
from blindstore.errors import KeyServiceError
from blindstore.keys.base import BatchKeyWrapper, DataKey
from blindstore.keys.batching import UnwrapBatcher
from blindstore.keys.bucketkeys import (
    BucketKeyPolicy,
    BucketKeys,
    BucketKeyStore,
    is_bucket_wrapped,
)
from blindstore.keys.cache import MAX_TTL, UnwrapCache
from blindstore.keys.pool import PrewrappedPool


class KeyService:
    """Pooled wraps, cached and micro-batched unwraps over ``wrapper``; a ``KeyWrapper``."""

    def __init__(
        self,
        wrapper: BatchKeyWrapper,
        *,
        pool_size: int = 64,
        pool_low_water: int | None = None,
        pool_ttl: float = 300.0,
        cache_ttl: float = MAX_TTL,
        cache_max_entries: int = 10_000,
        batch_window: float = 0.002,
        max_batch: int = 64,
        sweep_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        bucket_key_store: BucketKeyStore | None = None,
        bucket_key_policy: BucketKeyPolicy | None = None,
    ) -> None:
        self.wrapper = wrapper
        if pool_size < 0:
            raise ValueError("pool size must not be negative")
        #: None when ``pool_size`` is 0: every new DEK is then its own Transit call.
        self.pool = (
            PrewrappedPool(
                wrapper, size=pool_size, low_water=pool_low_water, ttl=pool_ttl, clock=clock
            )
            if pool_size > 0
            else None
        )
        self.cache = UnwrapCache(ttl=cache_ttl, max_entries=cache_max_entries, clock=clock)
        self.batcher = UnwrapBatcher(wrapper, window=batch_window, max_batch=max_batch)
        #: None without a store: ``bk1:`` DEKs then fail to unwrap (closed).
        self.bucket_keys = (
            BucketKeys(
                bucket_key_store,
                bucket_key_policy or BucketKeyPolicy(),
                wrap=self._wrap_one,
                unwrap=self.batcher.unwrap,
                clock=clock,
            )
            if bucket_key_store is not None
            else None
        )
        self._sweep_interval = sweep_interval
        self._background: AsyncExitStack | None = None
        self._closed = False

    @property
    def vault_calls(self) -> int:
        """Round trips to the key service so far, wraps and unwraps, retries included."""
        return self.wrapper.vault_calls

    def stats(self) -> dict[str, int]:
        """Every counter, flat, for metrics (``vault_calls``, ``pool_hits``, ``cache_hits``...)."""
        counters = {"vault_calls": self.vault_calls, "cache_entries": len(self.cache)}
        groups: list[tuple[str, Any]] = [
            ("cache", self.cache.stats),
            ("unwrap_batch", self.batcher.stats),
        ]
        if self.pool is not None:
            groups.append(("pool", self.pool.stats))
        if self.bucket_keys is not None:
            counters["bucket_keys_held"] = len(self.bucket_keys)
            groups.append(("bucket_keys", self.bucket_keys.stats))
        for prefix, group in groups:
            counters.update({f"{prefix}_{name}": value for name, value in asdict(group).items()})
        return counters

    async def __aenter__(self) -> KeyService:
        stack = AsyncExitStack()
        task_group = await start_background(stack, self._sweep_cache)
        if self.pool is not None:
            stack.callback(self.pool.attach, None)
            self.pool.attach(task_group)
        self._background = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        background, self._background = self._background, None
        try:
            if background is not None:
                # Stop the background tasks without handing them the caller's exception: a
                # task group would wrap it in an ExceptionGroup, hiding an S3 or CLI error.
                await background.aclose()
        finally:
            await self.close()

    async def create_key(self, key_name: str) -> None:
        """Create a tenant key (idempotent); administrative."""
        await self.wrapper.create_key(key_name)

    async def new_data_key(
        self,
        key_name: str,
        tenant_id: bytes,
        *,
        bucket: str | None = None,
        size: int | None = None,
        pooled: bool = True,
    ) -> DataKey:
        """A single-use pre-wrapped DEK; ``KeyServiceUnavailable`` if Vault is down and the
        pool is empty. In bucket-key mode (for ``bucket``): a DEK wrapped under its bucket key.
        ``pooled=False`` (data-subject keys) wraps one now, in one Transit call.
        """
        if not pooled:
            return await self._wrap_one(key_name, tenant_id)
        bucket_keys = self.bucket_keys
        if bucket_keys is not None and bucket_keys.policy.applies(key_name, bucket):
            assert bucket is not None
            return await bucket_keys.new_data_key(key_name, tenant_id, bucket, size)
        if self.pool is None:
            return await self._wrap_one(key_name, tenant_id)
        return await self.pool.new_data_key(key_name, tenant_id)

    async def unwrap(
        self, key_name: str, tenant_id: bytes, object_id: bytes, wrapped: str
    ) -> bytes:
        """The object's DEK: from the cache if unwrapped within the ttl, else from Transit.

        A ``bk1:`` DEK is opened locally under its bucket key (one Transit call per bucket key,
        not per object), bypassing the per-object cache.
        """
        if is_bucket_wrapped(wrapped):
            if self.bucket_keys is None:
                raise KeyServiceError("bucket-key wrapped DEK, but no bucket key store")
            return await self.bucket_keys.unwrap(key_name, tenant_id, object_id, wrapped)
        dek = self.cache.get(key_name, tenant_id, object_id, wrapped)
        if dek is None:
            epoch = self.cache.epoch
            dek = await self.batcher.unwrap(key_name, tenant_id, object_id, wrapped)
            self.cache.put(key_name, tenant_id, object_id, wrapped, dek, epoch=epoch)
        return dek

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
        """Cache the DEK of an object just written: the same ttl as an unwrapped one.

        A ``bk1:`` DEK is not cached (its bucket key is); its object's ``size`` is counted
        against the bucket key's byte bound if it was unknown when the DEK was issued.
        """
        if is_bucket_wrapped(wrapped):
            if self.bucket_keys is not None and size is not None:
                self.bucket_keys.charge(tenant_id, object_id, wrapped, size)
            return
        self.cache.put(key_name, tenant_id, object_id, wrapped, dek)

    def forget(self, tenant_id: bytes, object_id: bytes) -> None:
        """Drop the object's cached DEK (delete, overwrite, shred)."""
        self.cache.forget(tenant_id, object_id)

    async def close(self) -> None:
        """Drop every pooled and cached DEK and close the key service client (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.pool is not None:
            self.pool.clear()
        self.cache.clear()
        if self.bucket_keys is not None:
            self.bucket_keys.clear()
        await self.wrapper.close()

    async def _wrap_one(self, key_name: str, tenant_id: bytes) -> DataKey:
        """One DEK wrapped by its own Transit call (no pool; and every new bucket key)."""
        return (await self.wrapper.wrap_batch(key_name, tenant_id, 1))[0]

    async def _sweep_cache(self) -> None:
        while True:
            await anyio.sleep(self._sweep_interval)
            self.cache.purge_expired()
            if self.bucket_keys is not None:
                self.bucket_keys.purge_expired()
