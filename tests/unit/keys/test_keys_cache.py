"""The unwrapped-DEK cache: exact match on the wrapped form, ttl, size bound, forget."""

from __future__ import annotations

import pytest

from blindstore.keys.cache import UnwrapCache
from tests.unit.keys.fakes import ManualClock

KEY = "hgw-t-cache"
TENANT = bytes(16)
OBJECT = bytes(range(16))
WRAPPED = "vault:v1:AAAA"
DEK = bytes(range(32))


def _object(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_a_cached_dek_is_found_for_the_same_object_key_and_wrapped_form() -> None:
    cache = UnwrapCache(clock=ManualClock())
    assert cache.get(KEY, TENANT, OBJECT, WRAPPED) is None
    cache.put(KEY, TENANT, OBJECT, WRAPPED, DEK)
    assert cache.get(KEY, TENANT, OBJECT, WRAPPED) == DEK
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


@pytest.mark.parametrize(
    ("key_name", "tenant", "obj", "wrapped"),
    [
        ("hgw-t-other", TENANT, OBJECT, WRAPPED),
        (KEY, bytes(range(1, 17)), OBJECT, WRAPPED),
        (KEY, TENANT, _object(7), WRAPPED),
        (KEY, TENANT, OBJECT, "vault:v2:AAAA"),
    ],
)
def test_any_other_key_tenant_object_or_wrapped_form_misses(
    key_name: str, tenant: bytes, obj: bytes, wrapped: str
) -> None:
    cache = UnwrapCache(clock=ManualClock())
    cache.put(KEY, TENANT, OBJECT, WRAPPED, DEK)
    assert cache.get(key_name, tenant, obj, wrapped) is None


def test_entries_expire_at_the_ttl_even_when_read_often() -> None:
    clock = ManualClock()
    cache = UnwrapCache(ttl=60.0, clock=clock)
    cache.put(KEY, TENANT, OBJECT, WRAPPED, DEK)
    for _ in range(59):
        clock.advance(1.0)
        assert cache.get(KEY, TENANT, OBJECT, WRAPPED) == DEK
    clock.advance(1.0)
    assert cache.get(KEY, TENANT, OBJECT, WRAPPED) is None
    assert len(cache) == 0
    assert cache.stats.expirations == 1


def test_the_least_recently_used_entry_is_evicted_beyond_max_entries() -> None:
    cache = UnwrapCache(max_entries=3, clock=ManualClock())
    for n in range(3):
        cache.put(KEY, TENANT, _object(n), WRAPPED, DEK)
    assert cache.get(KEY, TENANT, _object(0), WRAPPED) == DEK  # 1 is now the least recent
    cache.put(KEY, TENANT, _object(3), WRAPPED, DEK)
    assert len(cache) == 3
    assert cache.get(KEY, TENANT, _object(1), WRAPPED) is None
    assert all(cache.get(KEY, TENANT, _object(n), WRAPPED) == DEK for n in (0, 2, 3))
    assert cache.stats.evictions == 1


def test_forget_drops_the_object_at_once() -> None:
    cache = UnwrapCache(clock=ManualClock())
    cache.put(KEY, TENANT, OBJECT, WRAPPED, DEK)
    cache.put(KEY, TENANT, _object(9), WRAPPED, DEK)
    cache.forget(TENANT, OBJECT)
    assert cache.get(KEY, TENANT, OBJECT, WRAPPED) is None
    assert cache.get(KEY, TENANT, _object(9), WRAPPED) == DEK


def test_a_put_started_before_a_forget_is_not_cached() -> None:
    cache = UnwrapCache(clock=ManualClock())
    epoch = cache.epoch  # an unwrap begins...
    cache.forget(TENANT, OBJECT)  # ...the object is deleted meanwhile...
    cache.put(KEY, TENANT, OBJECT, WRAPPED, DEK, epoch=epoch)  # ...the unwrap ends
    assert len(cache) == 0
    cache.put(KEY, TENANT, OBJECT, WRAPPED, DEK, epoch=cache.epoch)
    assert len(cache) == 1


def test_purge_expired_drops_entries_nobody_reads_again() -> None:
    clock = ManualClock()
    cache = UnwrapCache(ttl=10.0, clock=clock)
    cache.put(KEY, TENANT, _object(1), WRAPPED, DEK)
    clock.advance(5.0)
    cache.put(KEY, TENANT, _object(2), WRAPPED, DEK)
    assert cache.get(KEY, TENANT, _object(1), WRAPPED) == DEK  # now the most recent
    clock.advance(5.0)
    assert cache.purge_expired() == 1
    assert len(cache) == 1


def test_a_put_drops_expired_least_recent_entries_on_the_way() -> None:
    clock = ManualClock()
    cache = UnwrapCache(ttl=10.0, clock=clock)
    cache.put(KEY, TENANT, _object(1), WRAPPED, DEK)
    clock.advance(10.0)
    cache.put(KEY, TENANT, _object(2), WRAPPED, DEK)
    assert len(cache) == 1


@pytest.mark.parametrize(("ttl", "max_entries"), [(0.0, 100), (60.0, 0)])
def test_zero_ttl_or_zero_entries_disables_the_cache(ttl: float, max_entries: int) -> None:
    cache = UnwrapCache(ttl=ttl, max_entries=max_entries, clock=ManualClock())
    cache.put(KEY, TENANT, OBJECT, WRAPPED, DEK)
    assert cache.get(KEY, TENANT, OBJECT, WRAPPED) is None


@pytest.mark.parametrize(("ttl", "max_entries"), [(60.5, 10), (-1.0, 10), (10.0, -1)])
def test_a_ttl_beyond_a_minute_or_negative_bounds_are_refused(ttl: float, max_entries: int) -> None:
    with pytest.raises(ValueError, match="unwrap cache"):
        UnwrapCache(ttl=ttl, max_entries=max_entries)
