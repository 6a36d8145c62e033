"""Micro-batched unwraps: concurrent requests under one key become one batch call."""

from __future__ import annotations

import anyio
import pytest

from blindstore.errors import BlindstoreError, KeyServiceError, KeyServiceUnavailable
from blindstore.keys.base import DataKey
from blindstore.keys.batching import UnwrapBatcher
from tests.unit.keys.fakes import OutageKeyWrapper

pytestmark = pytest.mark.anyio

KEY = "hgw-t-batch"
TENANT = bytes(16)


async def _vault_with_keys(
    count: int, key_name: str = KEY
) -> tuple[OutageKeyWrapper, list[DataKey]]:
    vault = OutageKeyWrapper()
    await vault.create_key(key_name)
    keys = await vault.inner.wrap_batch(key_name, TENANT, count)
    return vault, keys


async def _unwrap_all(
    batcher: UnwrapBatcher, requests: list[tuple[str, DataKey]]
) -> list[bytes | BaseException]:
    outcomes: list[bytes | BaseException] = [b""] * len(requests)

    async def one(index: int, key_name: str, key: DataKey) -> None:
        try:
            outcomes[index] = await batcher.unwrap(key_name, TENANT, key.object_id, key.wrapped)
        except BlindstoreError as exc:
            outcomes[index] = exc

    async with anyio.create_task_group() as tg:
        for index, (key_name, key) in enumerate(requests):
            tg.start_soon(one, index, key_name, key)
    return outcomes


async def test_fifty_concurrent_unwraps_under_one_key_make_one_call() -> None:
    vault, keys = await _vault_with_keys(50)
    batcher = UnwrapBatcher(vault, window=0.05, max_batch=64)
    outcomes = await _unwrap_all(batcher, [(KEY, k) for k in keys])
    assert outcomes == [k.dek for k in keys]
    assert vault.batch_sizes == [50]
    assert (batcher.stats.calls, batcher.stats.items) == (1, 50)


async def test_an_idle_key_service_gets_a_lone_request_without_waiting_for_the_window() -> None:
    vault, (key,) = await _vault_with_keys(1)
    batcher = UnwrapBatcher(vault, window=60.0)
    with anyio.fail_after(5):
        assert await batcher.unwrap(KEY, TENANT, key.object_id, key.wrapped) == key.dek


async def test_requests_arriving_while_a_call_is_in_flight_are_coalesced() -> None:
    vault, keys = await _vault_with_keys(6)
    batcher = UnwrapBatcher(vault, window=0.05)
    vault.hold()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_unwrap_all, batcher, [(KEY, keys[0])])
        await anyio.wait_all_tasks_blocked()  # the first call is in flight, held open
        tg.start_soon(_unwrap_all, batcher, [(KEY, k) for k in keys[1:]])
        await anyio.sleep(0.1)  # past the window: the second batch is sent, and held too
        vault.release()
    assert vault.batch_sizes == [1, 5]


async def test_a_full_batch_is_sent_without_waiting_for_the_window() -> None:
    vault, keys = await _vault_with_keys(11)
    batcher = UnwrapBatcher(vault, window=60.0, max_batch=10)
    vault.hold()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_unwrap_all, batcher, [(KEY, keys[0])])
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(_unwrap_all, batcher, [(KEY, k) for k in keys[1:]])
            await anyio.wait_all_tasks_blocked()  # sent although the window is a minute
            assert vault.batch_sizes == [1, 10]
            vault.release()


async def test_identical_concurrent_unwraps_share_one_item() -> None:
    vault, (key,) = await _vault_with_keys(1)
    batcher = UnwrapBatcher(vault, window=0.05)
    outcomes = await _unwrap_all(batcher, [(KEY, key)] * 5)
    assert outcomes == [key.dek] * 5
    assert vault.batch_sizes == [1]
    assert batcher.stats.shared == 4


async def test_a_refused_item_fails_alone_in_its_batch() -> None:
    vault, (good, other) = await _vault_with_keys(2)
    moved = DataKey(other.object_id, other.dek, good.wrapped, KEY, 1)
    batcher = UnwrapBatcher(vault, window=0.05)
    outcomes = await _unwrap_all(batcher, [(KEY, good), (KEY, moved), (KEY, other)])
    assert outcomes[0] == good.dek
    assert isinstance(outcomes[1], KeyServiceError)
    assert outcomes[2] == other.dek
    assert vault.batch_sizes == [3]


async def test_an_unreachable_key_service_fails_every_request_of_the_batch() -> None:
    vault, keys = await _vault_with_keys(3)
    vault.down = True
    batcher = UnwrapBatcher(vault, window=0.05)
    outcomes = await _unwrap_all(batcher, [(KEY, k) for k in keys])
    assert all(isinstance(o, KeyServiceUnavailable) for o in outcomes)
    assert len({id(o) for o in outcomes}) == 3  # each caller raised its own exception
    assert vault.attempts == 1


async def test_unwraps_under_different_keys_go_in_different_batches() -> None:
    vault, keys = await _vault_with_keys(2)
    await vault.create_key("hgw-t-other")
    others = await vault.inner.wrap_batch("hgw-t-other", TENANT, 2)
    batcher = UnwrapBatcher(vault, window=0.05)
    requests = [
        (KEY, keys[0]),
        ("hgw-t-other", others[0]),
        (KEY, keys[1]),
        ("hgw-t-other", others[1]),
    ]
    outcomes = await _unwrap_all(batcher, requests)
    assert outcomes == [keys[0].dek, others[0].dek, keys[1].dek, others[1].dek]
    assert vault.batch_sizes == [2, 2]


async def test_a_zero_window_still_sends_each_request() -> None:
    vault, (key,) = await _vault_with_keys(1)
    batcher = UnwrapBatcher(vault, window=0.0)
    assert await batcher.unwrap(KEY, TENANT, key.object_id, key.wrapped) == key.dek


@pytest.mark.parametrize(("window", "max_batch"), [(-0.1, 10), (0.002, 0)])
def test_invalid_batching_settings_are_refused(window: float, max_batch: int) -> None:
    with pytest.raises(ValueError, match="batch"):
        UnwrapBatcher(OutageKeyWrapper(), window=window, max_batch=max_batch)
