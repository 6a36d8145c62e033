"""KeyService: pool + cache + micro-batching composed, as the gateway uses it."""

from __future__ import annotations

import anyio
import pytest

from blindstore.errors import KeyServiceError, KeyServiceUnavailable
from blindstore.keys.base import KeyWrapper
from blindstore.keys.service import KeyService
from tests.unit.keys.fakes import ManualClock, OutageKeyWrapper

pytestmark = pytest.mark.anyio

KEY = "hgw-t-service"
TENANT = bytes(16)


async def _service(clock: ManualClock, **settings: float) -> tuple[KeyService, OutageKeyWrapper]:
    vault = OutageKeyWrapper()
    await vault.create_key(KEY)
    return KeyService(vault, clock=clock, batch_window=0.0, **settings), vault  # type: ignore[arg-type]


async def test_a_second_unwrap_within_the_ttl_makes_no_call() -> None:
    service, vault = await _service(ManualClock())
    data_key = await service.new_data_key(KEY, TENANT)
    calls = vault.attempts
    for _ in range(10):
        dek = await service.unwrap(KEY, TENANT, data_key.object_id, data_key.wrapped)
        assert dek == data_key.dek
    assert vault.attempts == calls + 1


async def test_with_the_key_service_down_unwrap_works_from_cache_until_the_ttl() -> None:
    clock = ManualClock()
    service, vault = await _service(clock, cache_ttl=30.0)
    data_key = await service.new_data_key(KEY, TENANT)
    await service.unwrap(KEY, TENANT, data_key.object_id, data_key.wrapped)
    vault.down = True
    clock.advance(29.0)
    assert await service.unwrap(KEY, TENANT, data_key.object_id, data_key.wrapped) == data_key.dek
    clock.advance(1.0)
    with pytest.raises(KeyServiceUnavailable):
        await service.unwrap(KEY, TENANT, data_key.object_id, data_key.wrapped)


async def test_forget_makes_the_next_unwrap_ask_the_key_service() -> None:
    service, vault = await _service(ManualClock())
    data_key = await service.new_data_key(KEY, TENANT)
    await service.unwrap(KEY, TENANT, data_key.object_id, data_key.wrapped)
    service.forget(TENANT, data_key.object_id)
    vault.down = True
    with pytest.raises(KeyServiceUnavailable):
        await service.unwrap(KEY, TENANT, data_key.object_id, data_key.wrapped)


async def test_an_unwrap_that_races_a_forget_leaves_nothing_cached() -> None:
    service, vault = await _service(ManualClock())
    data_key = await service.new_data_key(KEY, TENANT)
    vault.hold()
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.unwrap, KEY, TENANT, data_key.object_id, data_key.wrapped)
        await anyio.wait_all_tasks_blocked()
        service.forget(TENANT, data_key.object_id)
        vault.release()
    assert len(service.cache) == 0


async def test_a_refused_unwrap_is_not_cached() -> None:
    service, _ = await _service(ManualClock())
    data_key = await service.new_data_key(KEY, TENANT)
    with pytest.raises(KeyServiceError):
        await service.unwrap(KEY, bytes(range(16)), data_key.object_id, data_key.wrapped)
    assert len(service.cache) == 0


async def test_running_it_as_a_context_refills_in_the_background_and_closes_on_exit() -> None:
    clock = ManualClock()
    service, vault = await _service(clock, pool_size=8, pool_low_water=4)
    async with service:
        for _ in range(5):
            await service.new_data_key(KEY, TENANT)
        await anyio.wait_all_tasks_blocked()
        assert service.pool.available(KEY, TENANT) == 8
        assert service.stats()["pool_misses"] == 1
    assert service.pool.available(KEY, TENANT) == 0
    with pytest.raises(KeyServiceError):  # the in-memory KEKs were dropped by close()
        await vault.inner.new_data_key(KEY, TENANT)


async def test_stats_expose_every_counter_flat() -> None:
    service, vault = await _service(ManualClock())
    data_key = await service.new_data_key(KEY, TENANT)
    await service.unwrap(KEY, TENANT, data_key.object_id, data_key.wrapped)
    await service.unwrap(KEY, TENANT, data_key.object_id, data_key.wrapped)
    stats = service.stats()
    assert stats["vault_calls"] == service.vault_calls == vault.attempts == 2
    assert stats["pool_refills"] == 1
    assert stats["pool_items_wrapped"] == 64
    assert (stats["pool_hits"], stats["pool_misses"]) == (0, 1)
    assert (stats["cache_hits"], stats["cache_misses"], stats["cache_entries"]) == (1, 1, 1)
    assert (stats["unwrap_batch_calls"], stats["unwrap_batch_items"]) == (1, 1)


async def test_close_is_idempotent() -> None:
    service, _ = await _service(ManualClock())
    await service.close()
    await service.close()


def test_key_service_is_a_key_wrapper() -> None:
    service: KeyWrapper = KeyService(OutageKeyWrapper())
    assert isinstance(service, KeyWrapper)
