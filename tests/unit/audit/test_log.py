"""The audit sink: group commit, failures reach every caller, checkpoints and their back-off."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from blindstore.audit.chain import AuditRecord, Checkpoint, SigningKey, chain, verify
from blindstore.audit.events import AuditEvent
from blindstore.audit.log import CatalogAuditLog, Witness
from blindstore.catalog.sql import SqlCatalog
from blindstore.errors import KeyServiceError, ServiceUnavailable

KEY = Ed25519PrivateKey.generate()
PINNED = SigningKey("hgw-audit", {1: KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)})

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
        return f"vault:v1:{base64.b64encode(KEY.sign(message)).decode()}", 1


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


# ---------------------------------------------------------------------------- vouching


def rewrite_tail(path: Path, from_seq: int, principal: str = "someone-else") -> None:
    """An insider's consistent rewrite: edit the records from ``from_seq`` on and recompute every
    hash after them, as anyone with write access to the catalog can."""
    db = sqlite3.connect(path, isolation_level=None)
    (prev,) = db.execute("SELECT hash FROM audit_log WHERE seq = ?", (from_seq - 1,)).fetchone()
    rows = db.execute(
        "SELECT seq, time, request_id, operation, result FROM audit_log WHERE seq >= ? "
        "ORDER BY seq",
        (from_seq,),
    ).fetchall()
    events = [
        AuditEvent(time=t, request_id=r, principal=principal, operation=o, result=res)
        for _, t, r, o, res in rows
    ]
    for record in chain(events, after_seq=from_seq - 1, prev_hash=bytes(prev)):
        db.execute(
            "UPDATE audit_log SET principal = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (principal, record.prev_hash, record.hash, record.seq),
        )
    db.close()


async def verify_all(catalog: SqlCatalog) -> list[tuple[int, str]]:
    problems = verify(await catalog.audit_records(), await catalog.audit_checkpoints(), PINNED)
    return [(p.seq, p.kind) for p in problems]


async def test_successive_checkpoints_are_chained_and_verify(tmp_path: Path) -> None:
    catalog = SqlCatalog(f"sqlite:///{tmp_path / 'c.db'}")
    async with CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as sink:
        for n in range(3):
            await sink.append(event(n))
        first = await sink.checkpoint()
        await sink.append(event(3))
        sink.committed_elsewhere(event(4))  # a write's record, committed with its row
        await catalog.append_audit([event(4)])
        second = await sink.checkpoint()
    assert first is not None
    assert second is not None
    assert (first.kind, second.kind) == ("checkpoint", "checkpoint")
    assert (second.prev_seq, second.from_seq) == (first.seq, first.seq + 1)
    assert await verify_all(catalog) == []
    await catalog.close()


async def test_a_tail_rewritten_before_the_next_checkpoint_is_not_endorsed(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    catalog = SqlCatalog(f"sqlite:///{path}")
    async with CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as sink:
        for n in range(3):
            await sink.append(event(n))
        assert await sink.checkpoint() is not None
        for n in range(3, 6):
            await sink.append(event(n))
        rewrite_tail(path, 5)  # hashes consistent: the chain alone no longer shows it

        signed = await sink.checkpoint()
        assert signed is not None
        assert (signed.kind, signed.from_seq, signed.seq) == ("discontinuity", 4, 6)
        assert sink.stats.discontinuities == 1
        # Re-anchored: later records are vouched for again.
        await sink.append(event(7))
        after = await sink.checkpoint()
        assert after is not None
        assert after.kind == "checkpoint"
    assert await verify_all(catalog) == [(4, "discontinuity")]
    await catalog.close()


async def test_a_changed_write_record_is_not_endorsed(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    catalog = SqlCatalog(f"sqlite:///{path}")
    async with CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as sink:
        await sink.append(event(0))
        assert await sink.checkpoint() is not None
        await catalog.append_audit([event(1)])  # committed with a write's row
        sink.committed_elsewhere(event(1))
        rewrite_tail(path, 2)
        signed = await sink.checkpoint()
    assert signed is not None
    assert signed.kind == "discontinuity"
    await catalog.close()


async def test_a_write_record_claimed_just_after_a_checkpoint_is_not_a_discontinuity() -> None:
    catalog = SqlCatalog("sqlite://")
    async with CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as sink:
        await catalog.append_audit([event(1)])  # committed before the checkpoint...
        assert await sink.checkpoint() is not None
        sink.committed_elsewhere(event(1))  # ...claimed after it
        await sink.append(event(2))
        signed = await sink.checkpoint()
    assert signed is not None
    assert signed.kind == "checkpoint"
    await catalog.close()


async def test_a_deleted_trusted_checkpoint_makes_the_next_one_a_discontinuity(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    catalog = SqlCatalog(f"sqlite:///{path}")
    async with CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as sink:
        await sink.append(event(0))
        first = await sink.checkpoint()
        await sink.append(event(1))
        second = await sink.checkpoint()
        assert first is not None
        assert second is not None
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("DELETE FROM audit_checkpoints WHERE seq = ?", (second.seq,))
        db.close()
        await sink.append(event(2))
        third = await sink.checkpoint()
    assert third is not None
    assert third.kind == "discontinuity"
    assert await verify_all(catalog) == [(3, "discontinuity")]
    await catalog.close()


async def test_a_gateway_started_after_a_checkpoint_chains_to_it(tmp_path: Path) -> None:
    catalog = SqlCatalog(f"sqlite:///{tmp_path / 'c.db'}")
    async with CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as sink:
        await sink.append(event(0))
    async with CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as sink:
        await sink.append(event(1))
    checkpoints = await catalog.audit_checkpoints()
    assert [(c.seq, c.kind, c.prev_seq) for c in checkpoints] == [
        (1, "checkpoint", 0),
        (2, "checkpoint", 1),
    ]
    assert await verify_all(catalog) == []
    await catalog.close()


async def test_a_checkpoint_lost_to_another_gateway_is_retried_chained_to_the_winner(
    tmp_path: Path,
) -> None:
    catalog = SqlCatalog(f"sqlite:///{tmp_path / 'c.db'}")
    async with (
        CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as one,
        CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as two,
    ):
        await one.append(event(0))
        await two.append(event(1))
        assert await one.checkpoint() is not None
        await two.append(event(2))
        assert await two.checkpoint() is not None
    checkpoints = await catalog.audit_checkpoints()
    assert [c.seq for c in checkpoints] == sorted({c.seq for c in checkpoints})
    assert all(c.kind == "checkpoint" for c in checkpoints)
    assert await verify_all(catalog) == []
    await catalog.close()


class FlakyCatalog(SqlCatalog):
    """A catalog that cannot be reached when the sink starts."""

    down = True

    async def latest_audit_checkpoint(self) -> Checkpoint | None:
        if self.down:
            raise ServiceUnavailable()
        return await super().latest_audit_checkpoint()


async def test_a_catalog_unreachable_at_start_defers_the_trusted_checkpoint() -> None:
    catalog = FlakyCatalog("sqlite://")
    catalog.down = False
    async with CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as sink:
        await sink.append(event(0))
    catalog.down = True
    async with CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as sink:
        catalog.down = False
        await sink.append(event(1))
        signed = await sink.checkpoint()
    assert signed is not None
    assert (signed.kind, signed.prev_seq, signed.from_seq) == ("checkpoint", 1, 2)
    assert await verify_all(catalog) == []
    await catalog.close()


async def test_a_record_claimed_just_after_the_checkpoint_covering_it_is_not_a_discontinuity() -> (
    None
):
    # The append commits, a checkpoint reads the head (signing that record), and only then does
    # the append return and the sink claim the record: it is below the next segment.
    catalog = SqlCatalog("sqlite://")
    async with CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as sink:
        real = catalog.append_audit

        async def append_then_checkpoint(events: Sequence[AuditEvent]) -> list[AuditRecord]:
            records = await real(events)
            assert await sink.checkpoint() is not None
            return records

        catalog.append_audit = append_then_checkpoint  # type: ignore[method-assign]
        await sink.append(event(1))
        catalog.append_audit = real  # type: ignore[method-assign]
        await sink.append(event(2))
        signed = await sink.checkpoint()
    assert signed is not None
    assert signed.kind == "checkpoint"
    await catalog.close()


async def test_two_gateways_appending_and_signing_concurrently_raise_no_alarm(
    tmp_path: Path,
) -> None:
    catalog = SqlCatalog(f"sqlite:///{tmp_path / 'c.db'}")
    async with (
        CatalogAuditLog(catalog, signer=Signer(), checkpoint_every=4) as one,
        CatalogAuditLog(catalog, signer=Signer(), checkpoint_every=5) as two,
    ):

        async def traffic(sink: CatalogAuditLog, base: int) -> None:
            for n in range(base, base + 40):
                if n % 3:
                    await sink.append(event(n))
                else:  # a write's record, committed with its row
                    await catalog.append_audit([event(n)])
                    sink.committed_elsewhere(event(n))

        async with anyio.create_task_group() as tg:
            for sink, base in ((one, 0), (two, 100), (one, 200), (two, 300)):
                tg.start_soon(traffic, sink, base)
    checkpoints = await catalog.audit_checkpoints()
    assert len(checkpoints) > 5
    assert {c.kind for c in checkpoints} == {"checkpoint"}
    assert await verify_all(catalog) == []
    await catalog.close()


async def test_past_its_bound_the_signer_no_longer_vouches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Witness, "LIMIT", 3)
    catalog = SqlCatalog("sqlite://")
    async with CatalogAuditLog(catalog, signer=Signer(), checkpoint_seconds=3600) as sink:
        for n in range(5):
            await sink.append(event(n))
        signed = await sink.checkpoint()
        assert signed is not None
        assert signed.kind == "discontinuity"
        await sink.append(event(9))
        after = await sink.checkpoint()
    assert after is not None
    assert after.kind == "checkpoint"
    await catalog.close()
