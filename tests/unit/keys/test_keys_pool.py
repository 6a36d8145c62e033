"""The pre-wrapped DEK pool: one batch call per refill, single use, expiry, outages."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from blindstore.errors import KeyServiceError, KeyServiceUnavailable
from blindstore.keys.base import DataKey
from blindstore.keys.pool import PrewrappedPool
from tests.unit.keys.fakes import ManualClock, OutageKeyWrapper

pytestmark = pytest.mark.anyio

KEY = "hgw-t-pool"
TENANT = bytes(16)


async def _vault() -> OutageKeyWrapper:
    vault = OutageKeyWrapper()
    await vault.create_key(KEY)
    return vault


async def _take_many(pool: PrewrappedPool, workers: int, each: int) -> list[DataKey]:
    taken: list[DataKey] = []

    async def worker() -> None:
        for _ in range(each):
            taken.append(await pool.new_data_key(KEY, TENANT))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    return taken


async def test_one_call_wraps_a_whole_pool() -> None:
    vault = await _vault()
    pool = PrewrappedPool(vault, size=8, clock=ManualClock())
    keys = [await pool.new_data_key(KEY, TENANT) for _ in range(8)]
    assert vault.batch_sizes == [8]
    assert pool.stats.hits == 7
    assert pool.stats.misses == 1
    assert pool.stats.items_wrapped == 8
    assert len({k.object_id for k in keys}) == 8


async def test_pool_never_hands_out_a_key_twice_under_concurrency() -> None:
    vault = await _vault()
    pool = PrewrappedPool(vault, size=16, clock=ManualClock())
    taken = await _take_many(pool, workers=50, each=20)
    assert len(taken) == 1000
    assert len({k.object_id for k in taken}) == 1000
    assert len({k.dek for k in taken}) == 1000
    assert len({k.wrapped for k in taken}) == 1000
    assert sum(vault.batch_sizes) == pool.stats.items_wrapped >= 1000


async def test_callers_that_find_the_pool_empty_share_one_refill() -> None:
    vault = await _vault()
    pool = PrewrappedPool(vault, size=64, clock=ManualClock())
    vault.hold()
    taken: list[DataKey] = []

    async def take() -> None:
        taken.append(await pool.new_data_key(KEY, TENANT))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(take)
        await anyio.wait_all_tasks_blocked()
        vault.release()
    assert vault.attempts == 1
    assert len({k.object_id for k in taken}) == 10


async def test_callers_beyond_the_pool_size_wait_for_the_next_refill() -> None:
    vault = await _vault()
    pool = PrewrappedPool(vault, size=4, clock=ManualClock())
    taken = await _take_many(pool, workers=10, each=1)
    assert len({k.object_id for k in taken}) == 10
    assert vault.batch_sizes == [4, 4, 4]


async def test_entries_expire_after_the_ttl() -> None:
    clock = ManualClock()
    vault = await _vault()
    pool = PrewrappedPool(vault, size=4, ttl=300.0, clock=clock)
    await pool.new_data_key(KEY, TENANT)
    clock.advance(299.9)
    assert pool.available(KEY, TENANT) == 3
    clock.advance(0.1)
    assert pool.available(KEY, TENANT) == 0
    await pool.new_data_key(KEY, TENANT)
    assert pool.stats.expired == 3
    assert vault.batch_sizes == [4, 4]


async def test_background_refill_tops_the_pool_up_below_the_low_water_mark() -> None:
    vault = await _vault()
    pool = PrewrappedPool(vault, size=8, low_water=4, clock=ManualClock())
    async with anyio.create_task_group() as tg:
        pool.attach(tg)
        for _ in range(4):
            await pool.new_data_key(KEY, TENANT)
        assert vault.batch_sizes == [8]  # 4 left: not below the mark yet
        await pool.new_data_key(KEY, TENANT)
        await anyio.wait_all_tasks_blocked()
        assert vault.batch_sizes == [8, 5]
        assert pool.available(KEY, TENANT) == 8
        assert pool.stats.misses == 1


async def test_a_non_empty_pool_serves_while_the_key_service_is_down() -> None:
    vault = await _vault()
    pool = PrewrappedPool(vault, size=4, clock=ManualClock())
    await pool.fill(KEY, TENANT)
    vault.down = True
    keys = [await pool.new_data_key(KEY, TENANT) for _ in range(4)]
    assert len({k.object_id for k in keys}) == 4
    with pytest.raises(KeyServiceUnavailable):
        await pool.new_data_key(KEY, TENANT)


async def test_after_a_failed_refill_the_pool_fails_fast_until_the_backoff_ends() -> None:
    clock = ManualClock()
    vault = await _vault()
    pool = PrewrappedPool(vault, size=4, refill_backoff=1.0, clock=clock)
    vault.down = True
    with pytest.raises(KeyServiceUnavailable):
        await pool.new_data_key(KEY, TENANT)
    vault.down = False
    with pytest.raises(KeyServiceUnavailable):
        await pool.new_data_key(KEY, TENANT)
    assert vault.attempts == 1
    clock.advance(1.0)
    await pool.new_data_key(KEY, TENANT)
    assert vault.attempts == 2
    assert pool.stats.failed_refills == 1


async def test_a_missing_key_is_a_key_service_error_not_an_outage() -> None:
    pool = PrewrappedPool(await _vault(), size=4, clock=ManualClock())
    with pytest.raises(KeyServiceError) as raised:
        await pool.new_data_key("hgw-t-missing", TENANT)
    assert not isinstance(raised.value, KeyServiceUnavailable)


async def test_a_cancelled_caller_does_not_abort_the_refill_others_wait_for() -> None:
    vault = await _vault()
    pool = PrewrappedPool(vault, size=4, clock=ManualClock())
    vault.hold()
    taken: list[DataKey] = []
    first = anyio.CancelScope()

    async def first_caller() -> None:
        with first:
            taken.append(await pool.new_data_key(KEY, TENANT))

    async def second_caller() -> None:
        taken.append(await pool.new_data_key(KEY, TENANT))

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_caller)  # runs the refill, held open by the vault
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(second_caller)  # waits for that same refill
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        await anyio.wait_all_tasks_blocked()
        vault.release()
    assert first.cancelled_caught
    assert vault.attempts == 1
    assert len(taken) == 1
    assert pool.available(KEY, TENANT) == 3


async def test_clear_drops_every_pooled_key() -> None:
    vault = await _vault()
    pool = PrewrappedPool(vault, size=4, clock=ManualClock())
    await pool.fill(KEY, TENANT)
    pool.clear()
    assert pool.available(KEY, TENANT) == 0


@pytest.mark.parametrize(
    "settings", [{"size": 0}, {"ttl": 0.0}, {"size": 4, "low_water": 5}, {"low_water": -1}]
)
def test_invalid_pool_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"pool|low_water"):
        PrewrappedPool(OutageKeyWrapper(), **settings)  # type: ignore[arg-type]


async def test_tenant_ids_must_be_16_bytes() -> None:
    pool = PrewrappedPool(await _vault(), size=4, clock=ManualClock())
    with pytest.raises(ValueError, match="16 bytes"):
        await pool.new_data_key(KEY, b"short")
