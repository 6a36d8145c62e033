"""The audit sink: group commit, failures reach every caller, checkpoints and their back-off."""

from __future__ import annotations

import anyio
import pytest

from blindstore.audit.chain import verify
from blindstore.audit.events import AuditEvent
from blindstore.audit.log import CatalogAuditLog
from blindstore.catalog.sql import SqlCatalog
from blindstore.errors import KeyServiceError, ServiceUnavailable

pytestmark = pytest.mark.anyio


def event(n: int) -> AuditEvent:
    return AuditEvent(
        time=float(n), request_id=f"r{n}", principal="AK", operation="GetObject", result="200"
    )


class Signer:
    key_name = "hgw-audit"

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.calls = 0

    async def sign(self, message: bytes) -> tuple[str, int]:
        self.calls += 1
        if self.fail:
            raise KeyServiceError("refused")
        return "vault:v1:" + "A" * 88, 1


async def test_concurrent_appends_share_transactions_and_keep_one_chain() -> None:
    catalog = SqlCatalog("sqlite://")
    sink = CatalogAuditLog(catalog)
    async with anyio.create_task_group() as tg:
        for n in range(50):
            tg.start_soon(sink.append, event(n))
    records = await catalog.audit_records()
    assert len(records) == 50
    assert verify(records, [], {}) == []
    assert sink.stats.appends < 50
    await catalog.close()


async def test_a_failed_append_fails_every_caller_of_its_batch_and_the_next_one_works() -> None:
    catalog = SqlCatalog("sqlite://")
    sink = CatalogAuditLog(catalog)
    real = catalog.append_audit

    async def broken(events: object) -> object:
        raise ServiceUnavailable()

    catalog.append_audit = broken  # type: ignore[method-assign,assignment]
    failures: list[BaseException] = []

    async def one(n: int) -> None:
        try:
            await sink.append(event(n))
        except ServiceUnavailable as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(one, n)
    assert len(failures) == 5
    catalog.append_audit = real  # type: ignore[method-assign]
    await sink.append(event(9))
    assert [r.event.request_id for r in await catalog.audit_records()] == ["r9"]
    await catalog.close()


async def test_checkpoints_every_n_records_and_at_shutdown() -> None:
    catalog = SqlCatalog("sqlite://")
    signer = Signer()
    async with CatalogAuditLog(catalog, signer=signer, checkpoint_every=3) as sink:
        for n in range(4):
            await sink.append(event(n))
        with anyio.fail_after(5):
            while not await catalog.audit_checkpoints():
                await anyio.sleep(0.01)
        await sink.append(event(10))
    checkpoints = await catalog.audit_checkpoints()
    assert checkpoints[-1].seq == 5  # the shutdown checkpoint covers the tail
    assert checkpoints[0].seq >= 3
    await catalog.close()


async def test_a_failing_signer_is_not_called_for_every_append() -> None:
    catalog = SqlCatalog("sqlite://")
    signer = Signer(fail=True)
    async with CatalogAuditLog(
        catalog, signer=signer, checkpoint_every=2, checkpoint_seconds=60
    ) as sink:
        for n in range(20):
            await sink.append(event(n))
            await anyio.sleep(0)
        await anyio.sleep(0.05)
        assert signer.calls <= 10
    await catalog.close()
