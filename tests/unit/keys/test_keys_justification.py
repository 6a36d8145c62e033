"""Key-access justification: rendering, and propagation through the batcher and the DEK pool."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from blindstore.keys import justification
from blindstore.keys.batching import UnwrapBatcher
from blindstore.keys.justification import Justification, header_value, justified
from blindstore.keys.pool import PrewrappedPool
from blindstore.keys.transit import TransitKeyWrapper
from tests.unit.keys.fakes import ManualClock, OutageKeyWrapper

pytestmark = pytest.mark.anyio

KEY = "hgw-t-why"
TENANT = bytes(16)


def _why(request: str, *, op: str = "GetObject", tenant: str = "demo") -> Justification:
    return Justification(tenant=tenant, principal="BSAKID", op=op, request=request)


def test_a_justification_names_tenant_principal_operation_and_request() -> None:
    assert header_value((_why("R1"),)) == "tenant=demo principal=BSAKID op=GetObject request=R1"


def test_several_justifications_are_joined_and_a_refill_is_marked() -> None:
    value = header_value((_why("R1"), _why("R2", op="PutObject").as_refill()))
    assert value == (
        "tenant=demo principal=BSAKID op=GetObject request=R1, "
        "tenant=demo principal=BSAKID op=PutObject request=R2 (pool refill)"
    )


def test_no_justification_sends_no_header() -> None:
    assert header_value(justification.current()) is None


def test_the_header_is_ascii_without_separators_and_fields_are_capped() -> None:
    value = header_value((Justification("clinique é, a=b", "x" * 500, "op"),))
    assert value is not None
    assert value.isascii()
    assert value.startswith("tenant=clinique____a_b principal=" + "x" * 64 + " op=op")


def test_a_huge_union_is_cut_with_a_count_of_the_rest() -> None:
    value = header_value(tuple(_why(f"R{i:04}") for i in range(500)))
    assert value is not None
    assert len(value) <= justification.MAX_HEADER_CHARS
    shown = value.count("request=")
    assert value.endswith(f"(+{500 - shown} more)")


def test_justified_blocks_nest_and_restore() -> None:
    with justified(_why("outer")):
        with justified(_why("inner"), _why("inner")):
            assert justification.current() == (_why("inner"),)
        assert justification.current() == (_why("outer"),)
    assert justification.current() == ()


async def _vault_with_keys(count: int) -> tuple[OutageKeyWrapper, list[Any]]:
    vault = OutageKeyWrapper()
    await vault.create_key(KEY)
    return vault, await vault.inner.wrap_batch(KEY, TENANT, count)


async def test_a_batched_unwrap_carries_the_justification_of_every_member() -> None:
    vault, keys = await _vault_with_keys(3)
    batcher = UnwrapBatcher(vault, window=0.05)

    async def get(index: int) -> None:
        with justified(_why(f"R{index}")):
            await batcher.unwrap(KEY, TENANT, keys[index].object_id, keys[index].wrapped)

    async with anyio.create_task_group() as tg:
        for index in range(3):
            tg.start_soon(get, index)
    assert vault.batch_sizes == [3]
    assert vault.justifications == [(_why("R0"), _why("R1"), _why("R2"))]


async def test_a_request_sharing_an_identical_unwrap_is_named_too() -> None:
    vault, (key,) = await _vault_with_keys(1)
    batcher = UnwrapBatcher(vault, window=0.05)

    async def get(request: str) -> None:
        with justified(_why(request)):
            await batcher.unwrap(KEY, TENANT, key.object_id, key.wrapped)

    async with anyio.create_task_group() as tg:
        tg.start_soon(get, "first")
        tg.start_soon(get, "second")
    assert vault.batch_sizes == [1]
    assert vault.justifications == [(_why("first"), _why("second"))]


async def test_a_refill_run_by_the_request_that_found_the_pool_empty_is_marked() -> None:
    vault, _ = await _vault_with_keys(1)
    pool = PrewrappedPool(vault, size=4, clock=ManualClock())
    with justified(_why("P1", op="PutObject")):
        await pool.new_data_key(KEY, TENANT)
    assert vault.justifications[-1] == (_why("P1", op="PutObject").as_refill(),)


async def test_a_background_refill_carries_the_request_that_triggered_it() -> None:
    vault, _ = await _vault_with_keys(1)
    pool = PrewrappedPool(vault, size=4, low_water=2, clock=ManualClock())
    async with anyio.create_task_group() as tg:
        pool.attach(tg)
        with justified(_why("P1", op="PutObject")):
            await pool.new_data_key(KEY, TENANT)  # empty: fills, leaves 3
        await anyio.wait_all_tasks_blocked()
        with justified(_why("P2", op="PutObject")):
            await pool.new_data_key(KEY, TENANT)  # leaves 2: no refill yet
        with justified(_why("P3", op="PutObject")):
            await pool.new_data_key(KEY, TENANT)  # leaves 1 < 2: background refill
        # The refill task runs outside P3's block, after it has been left.
        await anyio.wait_all_tasks_blocked()
        pool.attach(None)
    assert vault.justifications == [
        (_why("P1", op="PutObject").as_refill(),),
        (_why("P3", op="PutObject").as_refill(),),
    ]


class _RecordingAdapter:
    """The part of hvac's adapter the Transit client uses, answering one wrapped DEK."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str] | None] = []

    def request(self, method: str, url: str, headers: Any = None, **_: Any) -> Any:
        self.headers.append(None if headers is None else dict(headers))
        return {"data": {"batch_results": [{"ciphertext": "vault:v1:" + "A" * 64}]}}

    def close(self) -> None:
        pass


class _Client:
    def __init__(self) -> None:
        self.adapter = _RecordingAdapter()


async def test_transit_sends_the_justification_header_only_when_there_is_one() -> None:
    client = _Client()
    wrapper = TransitKeyWrapper(lambda: client)
    await wrapper.new_data_key(KEY, TENANT)
    with justified(_why("R9", op="PutObject").as_refill()):
        await wrapper.new_data_key(KEY, TENANT)
    assert client.adapter.headers == [
        None,
        {
            "X-Blindstore-Justification": (
                "tenant=demo principal=BSAKID op=PutObject request=R9 (pool refill)"
            )
        },
    ]
