"""A short-lived cache of unwrapped DEKs, one entry per object (SECURITY-NOTES §2.5-3).

Imaging viewers issue bursts of ranged GETs on one object; this turns a burst into one unwrap.
An entry is found only for the same ``(tenant, object)`` AND the same key name and
``sha256(wrapped DEK)`` it was stored with, so a row whose wrapped DEK or key changed never reads
a stale DEK, and a confused caller gets no more from the cache than Vault would give it.

Bounds: an entry lives ``ttl`` seconds from its unwrap (hits do not extend it; ``ttl`` ≤ 60 s),
at most ``max_entries`` are kept (least recently used evicted first), ``forget`` drops an object
at once. ``ttl == 0`` or ``max_entries == 0`` disables the cache. Memory ≈ ``max_entries`` × 300 B.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: Upper bound on the ttl: the blast radius of a memory dump is "DEKs read in the last minute".
MAX_TTL = 60.0


@dataclass(slots=True)
class CacheStats:
    """Counters for metrics."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    expirations: int = 0


@dataclass(eq=False, slots=True)
class _Entry:
    key_name: str
    digest: bytes
    dek: bytes
    expires_at: float


class UnwrapCache:
    """Unwrapped DEKs keyed by ``(tenant_id, object_id)``, checked against the wrapped form."""

    def __init__(
        self,
        *,
        ttl: float = MAX_TTL,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= ttl <= MAX_TTL:
            raise ValueError(f"unwrap cache ttl must be within 0..{MAX_TTL:g} s")
        if max_entries < 0:
            raise ValueError("unwrap cache max_entries must not be negative")
        self._ttl = ttl
        self._max_entries = max_entries
        self._enabled = ttl > 0 and max_entries > 0
        self._clock = clock
        self._entries: OrderedDict[tuple[bytes, bytes], _Entry] = OrderedDict()
        self._epoch = 0
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def epoch(self) -> int:
        """Changes on every ``forget``/``clear``; read it before an unwrap, pass it to ``put``."""
        return self._epoch

    def get(self, key_name: str, tenant_id: bytes, object_id: bytes, wrapped: str) -> bytes | None:
        """The cached DEK for exactly this object, key and wrapped form, if still fresh."""
        entry = self._entries.get((tenant_id, object_id))
        if entry is None:
            self.stats.misses += 1
            return None
        if entry.expires_at <= self._clock():
            del self._entries[tenant_id, object_id]
            self.stats.expirations += 1
            self.stats.misses += 1
            return None
        if entry.key_name != key_name or entry.digest != _digest(wrapped):
            self.stats.misses += 1
            return None
        self._entries.move_to_end((tenant_id, object_id))
        self.stats.hits += 1
        return entry.dek

    def put(
        self,
        key_name: str,
        tenant_id: bytes,
        object_id: bytes,
        wrapped: str,
        dek: bytes,
        *,
        epoch: int | None = None,
    ) -> None:
        """Remember a DEK just unwrapped. With ``epoch``, skip it if a ``forget`` ran since:
        an unwrap that raced a delete must not cache the deleted object's DEK again."""
        if not self._enabled or (epoch is not None and epoch != self._epoch):
            return
        now = self._clock()
        entries = self._entries
        entries[tenant_id, object_id] = _Entry(key_name, _digest(wrapped), dek, now + self._ttl)
        entries.move_to_end((tenant_id, object_id))
        # Cheap, incremental expiry: the least recently used entries are the likeliest stale.
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.expires_at > now:
                break
            entries.popitem(last=False)
            self.stats.expirations += 1
        while len(entries) > self._max_entries:
            entries.popitem(last=False)
            self.stats.evictions += 1

    def forget(self, tenant_id: bytes, object_id: bytes) -> None:
        """Drop the object's DEK now (delete, overwrite, shred)."""
        self._epoch += 1
        self._entries.pop((tenant_id, object_id), None)

    def purge_expired(self) -> int:
        """Drop every expired entry (a periodic sweep, so idle DEKs do not linger); the count."""
        now = self._clock()
        stale = [key for key, entry in self._entries.items() if entry.expires_at <= now]
        for key in stale:
            del self._entries[key]
        self.stats.expirations += len(stale)
        return len(stale)

    def clear(self) -> None:
        """Drop everything."""
        self._epoch += 1
        self._entries.clear()


def _digest(wrapped: str) -> bytes:
    return hashlib.sha256(wrapped.encode("ascii", "replace")).digest()
