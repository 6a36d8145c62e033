"""Transit against a real OpenBao dev server: the key wrapper contract, the pool, the cache,
micro-batching, outages, and the dev-server manager itself."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
import stamina

from blindstore.devtools.openbao import OpenBaoError, OpenBaoServer, start_openbao
from blindstore.errors import KeyServiceError, KeyServiceUnavailable
from blindstore.keys.base import DataKey, WrappedDek
from blindstore.keys.service import KeyService
from blindstore.keys.transit import TransitKeyWrapper
from tests.unit.keys.contract import BatchKeyWrapperContract, KeyWrapperContract, Rotate
from tests.unit.keys.fakes import ManualClock

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TENANT = bytes(range(16))


@pytest.fixture(autouse=True)
def _no_retry_waits() -> Iterator[None]:
    # Retries still happen (2 attempts) but without backoff sleeps.
    with stamina.set_testing(True, attempts=2):
        yield


def _transit(server: OpenBaoServer, **settings: float) -> TransitKeyWrapper:
    return TransitKeyWrapper(url=server.addr, token=server.token, **settings)  # type: ignore[arg-type]


def _admin_rotate(server: OpenBaoServer) -> Rotate:
    def rotate(key_name: str) -> None:
        server.request("POST", f"transit/keys/{key_name}/rotate")

    return rotate


class TestTransitKeyWrapper(BatchKeyWrapperContract):
    @pytest.fixture
    async def wrapper(self, openbao: OpenBaoServer) -> AsyncIterator[TransitKeyWrapper]:
        wrapper = _transit(openbao)
        yield wrapper
        await wrapper.close()

    @pytest.fixture
    async def key_name(self, wrapper: TransitKeyWrapper, transit_key_name: str) -> str:
        await wrapper.create_key(transit_key_name)
        return transit_key_name

    @pytest.fixture
    def rotate(self, openbao: OpenBaoServer) -> Rotate:
        return _admin_rotate(openbao)


class TestKeyServiceOverTransit(KeyWrapperContract):
    @pytest.fixture
    async def wrapper(self, openbao: OpenBaoServer) -> AsyncIterator[KeyService]:
        async with KeyService(_transit(openbao), pool_size=16) as service:
            yield service

    @pytest.fixture
    async def key_name(self, wrapper: KeyService, transit_key_name: str) -> str:
        await wrapper.create_key(transit_key_name)
        return transit_key_name

    @pytest.fixture
    def rotate(self, openbao: OpenBaoServer, wrapper: KeyService) -> Rotate:
        admin_rotate = _admin_rotate(openbao)

        def rotate(key_name: str) -> None:
            admin_rotate(key_name)
            wrapper.pool.clear()

        return rotate


@pytest.fixture
async def transit(openbao: OpenBaoServer) -> AsyncIterator[TransitKeyWrapper]:
    wrapper = _transit(openbao)
    yield wrapper
    await wrapper.close()


async def test_created_keys_are_derived_aes_gcm_and_never_leave_openbao(
    openbao: OpenBaoServer, transit: TransitKeyWrapper, transit_key_name: str
) -> None:
    await transit.create_key(transit_key_name)
    config = openbao.request("GET", f"transit/keys/{transit_key_name}")["data"]
    assert isinstance(config, dict)
    assert config["type"] == "aes256-gcm96"
    assert config["derived"] is True
    assert config["exportable"] is False
    assert config["allow_plaintext_backup"] is False


async def test_an_existing_key_with_unsafe_settings_is_refused(
    openbao: OpenBaoServer, transit: TransitKeyWrapper, transit_key_name: str
) -> None:
    openbao.request("POST", f"transit/keys/{transit_key_name}", {"derived": False})
    with pytest.raises(KeyServiceError, match="unsafe settings: derived"):
        await transit.create_key(transit_key_name)


async def test_a_token_without_permission_is_refused_not_unavailable(
    openbao: OpenBaoServer, transit: TransitKeyWrapper, transit_key_name: str
) -> None:
    await transit.create_key(transit_key_name)
    intruder = TransitKeyWrapper(url=openbao.addr, token="not-a-token")
    with pytest.raises(KeyServiceError, match="permission denied"):
        await intruder.new_data_key(transit_key_name, TENANT)
    await intruder.close()
    assert intruder.vault_calls == 1  # a refusal is not retried


async def test_wraps_use_context_and_never_associated_data(
    openbao: OpenBaoServer, transit: TransitKeyWrapper, transit_key_name: str
) -> None:
    await transit.create_key(transit_key_name)
    await transit.wrap_batch(transit_key_name, TENANT, 2)
    assert openbao.audit_log_path is not None
    requests = [
        entry["request"]
        for entry in map(json.loads, openbao.audit_log_path.read_text().splitlines())
        if entry["type"] == "request"
        and entry["request"].get("path") == f"transit/encrypt/{transit_key_name}"
    ]
    assert len(requests) == 1  # the audit device saw the batch call
    items = requests[0]["data"]["batch_input"]
    assert len(items) == 2
    assert all(set(item) == {"plaintext", "context"} for item in items)


async def test_batches_beyond_openbaos_json_limits_are_split_into_several_calls(
    transit: TransitKeyWrapper, transit_key_name: str
) -> None:
    await transit.create_key(transit_key_name)
    before = transit.vault_calls
    keys = await transit.wrap_batch(transit_key_name, TENANT, 600)  # 2400 JSON strings
    assert transit.vault_calls - before == 3
    items = [WrappedDek(TENANT, k.object_id, k.wrapped) for k in keys]
    assert await transit.unwrap_batch(transit_key_name, items) == [k.dek for k in keys]
    assert transit.vault_calls - before == 6


async def test_a_pool_never_repeats_deks_or_object_ids_across_10k_concurrent_takes(
    openbao: OpenBaoServer, transit_key_name: str
) -> None:
    service = KeyService(_transit(openbao), pool_size=64)
    async with service:
        await service.create_key(transit_key_name)
        taken: list[DataKey] = []

        async def worker() -> None:
            for _ in range(100):
                taken.append(await service.new_data_key(transit_key_name, TENANT))
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for _ in range(100):
                tg.start_soon(worker)
        assert len(taken) == 10_000
        assert len({k.object_id for k in taken}) == 10_000
        assert len({k.dek for k in taken}) == 10_000
        assert len({k.wrapped for k in taken}) == 10_000
        sample = taken[::997]
        for key in sample:
            dek = await service.unwrap(transit_key_name, TENANT, key.object_id, key.wrapped)
            assert dek == key.dek
        # Refills top up to 64 from below the low-water mark (16): ≥ 48 keys per round trip.
        assert service.stats()["pool_refills"] <= 10_000 // 48 + 2


async def test_a_thousand_data_keys_cost_sixteen_round_trips_with_a_pool_of_64(
    openbao: OpenBaoServer, transit_key_name: str
) -> None:
    service = KeyService(_transit(openbao), pool_size=64)
    async with service:
        await service.create_key(transit_key_name)
        before = service.vault_calls
        for _ in range(1000):
            await service.new_data_key(transit_key_name, TENANT)
        await anyio.wait_all_tasks_blocked()
        assert service.vault_calls - before == 16  # ceil(1000 / 64), topped up to 1024


async def test_fifty_concurrent_unwraps_take_one_round_trip(
    openbao: OpenBaoServer, transit_key_name: str
) -> None:
    transit = _transit(openbao)
    await transit.create_key(transit_key_name)
    keys = await transit.wrap_batch(transit_key_name, TENANT, 50)
    service = KeyService(transit, batch_window=0.01)
    before = service.vault_calls
    deks: list[bytes] = []

    async def unwrap(key: DataKey) -> None:
        deks.append(await service.unwrap(transit_key_name, TENANT, key.object_id, key.wrapped))

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(unwrap, key)
    assert sorted(deks) == sorted(k.dek for k in keys)
    assert service.vault_calls - before == 1
    await service.close()


async def test_the_cache_bounds_hold_against_real_transit(
    openbao: OpenBaoServer, transit_key_name: str
) -> None:
    clock = ManualClock()
    transit = _transit(openbao)
    await transit.create_key(transit_key_name)
    keys = await transit.wrap_batch(transit_key_name, TENANT, 3)
    service = KeyService(transit, cache_ttl=10.0, cache_max_entries=2, batch_window=0, clock=clock)

    async def unwrap(key: DataKey) -> int:
        before = service.vault_calls
        assert await service.unwrap(transit_key_name, TENANT, key.object_id, key.wrapped) == key.dek
        return service.vault_calls - before

    assert [await unwrap(k) for k in keys] == [1, 1, 1]
    assert await unwrap(keys[2]) == 0
    assert await unwrap(keys[0]) == 1  # evicted: two entries at most
    service.forget(TENANT, keys[0].object_id)
    assert await unwrap(keys[0]) == 1
    clock.advance(10.0)
    assert await unwrap(keys[0]) == 1  # expired
    await service.close()


async def test_the_pool_serves_while_openbao_is_stopped_then_fails_closed(
    disposable_openbao: OpenBaoServer, transit_key_name: str
) -> None:
    service = KeyService(_transit(disposable_openbao, connect_timeout=0.5), pool_size=8)
    async with service:
        await service.create_key(transit_key_name)
        first = await service.new_data_key(transit_key_name, TENANT)
        await anyio.wait_all_tasks_blocked()
        disposable_openbao.stop()
        served = [await service.new_data_key(transit_key_name, TENANT) for _ in range(7)]
        assert len({k.object_id for k in [first, *served]}) == 8
        with pytest.raises(KeyServiceUnavailable):
            await service.new_data_key(transit_key_name, TENANT)


async def test_unwrap_with_openbao_stopped_is_served_from_cache_until_the_ttl(
    disposable_openbao: OpenBaoServer, transit_key_name: str
) -> None:
    clock = ManualClock()
    transit = _transit(disposable_openbao, connect_timeout=0.5)
    service = KeyService(transit, cache_ttl=60.0, batch_window=0, clock=clock)
    await service.create_key(transit_key_name)
    cached, uncached = await transit.wrap_batch(transit_key_name, TENANT, 2)
    await service.unwrap(transit_key_name, TENANT, cached.object_id, cached.wrapped)
    disposable_openbao.stop()

    with pytest.raises(KeyServiceUnavailable):
        await service.unwrap(transit_key_name, TENANT, uncached.object_id, uncached.wrapped)
    clock.advance(59.0)
    dek = await service.unwrap(transit_key_name, TENANT, cached.object_id, cached.wrapped)
    assert dek == cached.dek
    clock.advance(1.0)
    with pytest.raises(KeyServiceUnavailable):
        await service.unwrap(transit_key_name, TENANT, cached.object_id, cached.wrapped)
    await service.close()


async def test_unwrap_latency_cold_versus_cached(
    openbao: OpenBaoServer, transit_key_name: str
) -> None:
    transit = _transit(openbao)
    await transit.create_key(transit_key_name)
    keys = await transit.wrap_batch(transit_key_name, TENANT, 200)
    service = KeyService(transit, batch_window=0)
    started = time.perf_counter()
    for key in keys:
        await service.unwrap(transit_key_name, TENANT, key.object_id, key.wrapped)
    cold = (time.perf_counter() - started) / len(keys)
    started = time.perf_counter()
    for key in keys:
        await service.unwrap(transit_key_name, TENANT, key.object_id, key.wrapped)
    cached = (time.perf_counter() - started) / len(keys)
    await service.close()
    assert cached * 20 < cold  # a dict lookup against an HTTP round trip


def test_stop_ends_the_server_and_frees_its_port(disposable_openbao: OpenBaoServer) -> None:
    port = int(disposable_openbao.addr.rsplit(":", 1)[1])
    disposable_openbao.stop()
    assert not disposable_openbao.running
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    disposable_openbao.stop()  # idempotent


def test_a_server_that_cannot_start_reports_its_output(openbao: OpenBaoServer) -> None:
    taken_port = int(openbao.addr.rsplit(":", 1)[1])
    with pytest.raises(OpenBaoError, match="address already in use"):
        start_openbao(port=taken_port, ready_timeout=10)


def test_a_server_that_exits_at_once_is_reported() -> None:
    with pytest.raises(OpenBaoError, match="exited with status"):
        start_openbao(binary="/bin/false", ready_timeout=10)


def test_a_temporary_workdir_is_removed_and_no_token_is_stored_at_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with start_openbao() as server:
        workdir = server.workdir
        assert server.log_path.is_file()
    assert not workdir.exists()
    assert not (tmp_path / ".vault-token").exists()
