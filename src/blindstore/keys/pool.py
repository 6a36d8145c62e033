"""A pool of pre-wrapped, single-use data keys per (Transit key, tenant): PUTs skip the Vault RTT.

Each refill is ONE ``wrap_batch`` call that tops the pool up to ``size`` fresh
``(object id, DEK, wrapped DEK)`` entries (SECURITY-NOTES §2.5-1). Every wrap still reaches Vault
and its audit log, one object per DEK; the gateway only ever holds DEKs. Entries are handed out
once (``popleft``), expire ``ttl`` seconds after they were wrapped, and are dropped on close.

Refills run in the background (when a task group is attached) as soon as the pool falls below
``low_water``; at most one refill per pool is in flight and callers that find the pool empty wait
for it together. Without a task group, the caller that finds the pool empty runs the refill.

A refill carries the key-access justification (``keys.justification``) of the request that
triggered it, marked ``(pool refill)``, in the background as in the foreground: the wraps it makes
are on that request's account in the audit log, though other requests will use most of them.

Availability choice: while Vault is down a non-empty pool keeps serving PUTs; an empty one raises
``KeyServiceUnavailable`` (fail closed, nothing written). After a failed refill, the pool waits
``refill_backoff`` seconds before calling Vault again and meanwhile fails fast with that error,
so an outage costs neither Vault nor the clients a storm of doomed calls.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from blindstore.errors import KeyServiceUnavailable
from blindstore.keys import justification
from blindstore.keys._errors import copy_error
from blindstore.keys.base import BatchKeyWrapper, DataKey
from blindstore.keys.justification import Justification


@dataclass(slots=True)
class PoolStats:
    """Counters for metrics."""

    #: Batch wrap calls made by the pool (one Vault round trip each, before retries).
    refills: int = 0
    failed_refills: int = 0
    items_wrapped: int = 0
    #: Keys handed out straight from the pool / callers that had to wait for a refill.
    hits: int = 0
    misses: int = 0
    #: Entries dropped unused because their ttl ran out.
    expired: int = 0


@dataclass(eq=False, slots=True)
class _Refill:
    #: Captured from the request that triggered the refill, when it triggered it.
    why: tuple[Justification, ...] = field(
        default_factory=lambda: tuple(j.as_refill() for j in justification.current())
    )
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None


@dataclass(eq=False, slots=True)
class _Slot:
    #: (expires_at, key), in wrap order, hence in expiry order.
    entries: deque[tuple[float, DataKey]] = field(default_factory=deque)
    refill: _Refill | None = None
    #: The last refill failed: no new refill before ``retry_at``; waiters get ``error``.
    retry_at: float = 0.0
    error: BaseException | None = None


class PrewrappedPool:
    """Single-use pre-wrapped DEKs per ``(key_name, tenant_id)``, refilled by batch calls."""

    def __init__(
        self,
        wrapper: BatchKeyWrapper,
        *,
        size: int = 64,
        low_water: int | None = None,
        ttl: float = 300.0,
        refill_backoff: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        if ttl <= 0:
            raise ValueError("pool ttl must be positive")
        self._wrapper = wrapper
        self._size = size
        self._low_water = max(1, size // 4) if low_water is None else low_water
        if not 0 <= self._low_water <= size:
            raise ValueError("low_water must be between 0 and size")
        self._ttl = ttl
        self._refill_backoff = refill_backoff
        self._clock = clock
        self._slots: dict[tuple[str, bytes], _Slot] = {}
        self._task_group: TaskGroup | None = None
        self.stats = PoolStats()

    def attach(self, task_group: TaskGroup | None) -> None:
        """Run refills in ``task_group`` from now on (``None``: in the caller that needs them)."""
        self._task_group = task_group

    def available(self, key_name: str, tenant_id: bytes) -> int:
        """Unexpired entries currently held for this pool."""
        slot = self._slots.get((key_name, tenant_id))
        if slot is None:
            return 0
        now = self._clock()
        return sum(1 for expires_at, _ in slot.entries if expires_at > now)

    async def fill(self, key_name: str, tenant_id: bytes) -> None:
        """Top the pool up now (warm-up, e.g. at startup); raises if the refill fails."""
        await self._wait_for_refill(key_name, tenant_id, self._slot(key_name, tenant_id))

    async def new_data_key(self, key_name: str, tenant_id: bytes) -> DataKey:
        """A never-handed-out DEK for a new object, from the pool or from the next refill."""
        if len(tenant_id) != 16:
            raise ValueError("tenant_id is 16 bytes")
        slot = self._slot(key_name, tenant_id)
        key = self._take(slot)
        if key is not None:
            self.stats.hits += 1
        else:
            self.stats.misses += 1
            while key is None:
                await self._wait_for_refill(key_name, tenant_id, slot)
                # Waiters beyond ``size`` may find it drained already: they wait for the next.
                key = self._take(slot)
        if (
            len(slot.entries) < self._low_water
            and slot.refill is None
            and self._task_group is not None
            and self._clock() >= slot.retry_at
        ):
            slot.refill = _Refill()
            self._task_group.start_soon(self._refill, key_name, tenant_id, slot, slot.refill)
        return key

    def clear(self) -> None:
        """Drop every pooled DEK (on shutdown: they never outlive the process)."""
        for slot in self._slots.values():
            slot.entries.clear()
        self._slots.clear()

    def _slot(self, key_name: str, tenant_id: bytes) -> _Slot:
        slot = self._slots.get((key_name, tenant_id))
        if slot is None:
            slot = self._slots[key_name, tenant_id] = _Slot()
        return slot

    def _take(self, slot: _Slot) -> DataKey | None:
        self._drop_expired(slot)
        return slot.entries.popleft()[1] if slot.entries else None

    def _drop_expired(self, slot: _Slot) -> None:
        now = self._clock()
        entries = slot.entries
        while entries and entries[0][0] <= now:
            entries.popleft()
            self.stats.expired += 1

    async def _wait_for_refill(self, key_name: str, tenant_id: bytes, slot: _Slot) -> None:
        refill = slot.refill
        if refill is None:
            if slot.error is not None and self._clock() < slot.retry_at:
                raise copy_error(slot.error) from slot.error
            refill = slot.refill = _Refill()
            if self._task_group is not None:
                self._task_group.start_soon(self._refill, key_name, tenant_id, slot, refill)
            else:
                # Shielded: other callers wait on this refill, so one caller's cancellation
                # must not abort it. Transit's timeouts bound how long the shield can hold.
                with anyio.CancelScope(shield=True):
                    await self._refill(key_name, tenant_id, slot, refill)
        await refill.done.wait()
        if refill.error is not None:
            raise copy_error(refill.error) from refill.error

    async def _refill(self, key_name: str, tenant_id: bytes, slot: _Slot, refill: _Refill) -> None:
        finished = False
        try:
            # Sized when it runs, not when it was asked for: takes in between are covered too.
            self._drop_expired(slot)
            count = self._size - len(slot.entries)
            if count > 0:
                self.stats.refills += 1
                with justification.justified(*refill.why):
                    keys = await self._wrapper.wrap_batch(key_name, tenant_id, count)
                expires_at = self._clock() + self._ttl
                slot.entries.extend((expires_at, key) for key in keys)
                self.stats.items_wrapped += len(keys)
            slot.error = None
            finished = True
        except Exception as exc:
            # Kept for the waiters rather than raised: a background failure must not tear
            # down the task group, and a non-empty pool goes on serving.
            refill.error = slot.error = exc
            slot.retry_at = self._clock() + self._refill_backoff
            self.stats.failed_refills += 1
            finished = True
        finally:
            if not finished:  # cancelled (shutdown): waiters must not hang
                refill.error = KeyServiceUnavailable("key service refill was cancelled")
            if slot.refill is refill:
                slot.refill = None
            refill.done.set()
