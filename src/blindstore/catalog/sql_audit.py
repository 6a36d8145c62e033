"""The catalog's audit-trail queries: append to the hash chain, page, filter, checkpoints, and
the object marks ``audit verify`` cross-checks against the write records.

A mixin of ``SqlCatalog``. Appends are serialised so that the chain can never fork: on SQLite
every write transaction starts with ``BEGIN IMMEDIATE`` (one writer at a time); on PostgreSQL an
append first takes a transaction-level advisory lock, so two gateways on one database append one
after the other, each reading the head the other committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from sqlalchemy import Connection, and_, func, or_, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql.expression import ColumnElement

from blindstore.audit.chain import AuditRecord, Checkpoint, chain, encode_detail
from blindstore.audit.events import AuditEvent, AuditFilter
from blindstore.audit.rollback import ObjectMark
from blindstore.catalog.schema import audit_checkpoints, audit_log, objects

T = TypeVar("T")

#: The PostgreSQL advisory lock key that serialises appends ("bsaudit" in ASCII).
AUDIT_LOCK_KEY: Final = 0x62736175646974
#: Operations that count as an access to an object's data or metadata (``last_access``).
_ACCESS_OPERATIONS: Final = ("GetObject", "HeadObject")
_MAX_PAGE: Final = 10_000


class AuditQueries:
    """Audit methods of the ``Catalog`` protocol (see ``catalog.base``)."""

    async def _read(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def append_audit(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        batch = list(events)
        if not batch:
            return []
        return await self._write(lambda conn: append_events(conn, batch))

    async def audit_records(self, *, after_seq: int = 0, limit: int = 1000) -> list[AuditRecord]:
        def work(conn: Connection) -> list[AuditRecord]:
            rows = conn.execute(
                select(audit_log)
                .where(audit_log.c.seq > after_seq)
                .order_by(audit_log.c.seq)
                .limit(_page(limit))
            )
            return [_record(row) for row in rows]

        return await self._read(work)

    async def query_audit(
        self,
        selection: AuditFilter,
        *,
        limit: int = 100,
        newest_first: bool = True,
        cursor: int | None = None,
    ) -> list[AuditRecord]:
        conditions = _conditions(selection)
        if cursor is not None:
            conditions.append(
                audit_log.c.seq < cursor if newest_first else audit_log.c.seq > cursor
            )
        order = audit_log.c.seq.desc() if newest_first else audit_log.c.seq

        def work(conn: Connection) -> list[AuditRecord]:
            rows = conn.execute(
                select(audit_log).where(*conditions).order_by(order).limit(_page(limit))
            )
            return [_record(row) for row in rows]

        return await self._read(work)

    async def audit_head(self) -> tuple[int, bytes] | None:
        def work(conn: Connection) -> tuple[int, bytes] | None:
            row = conn.execute(
                select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
            ).first()
            return None if row is None else (int(row[0]), bytes(row[1]))

        return await self._read(work)

    async def last_access(self, object_id: bytes) -> float | None:
        def work(conn: Connection) -> float | None:
            value = conn.execute(
                select(func.max(audit_log.c.time)).where(
                    audit_log.c.object_id == object_id,
                    audit_log.c.operation.in_(_ACCESS_OPERATIONS),
                    audit_log.c.result.in_(("200", "206")),
                )
            ).scalar_one()
            return None if value is None else float(value)

        return await self._read(work)

    async def add_audit_checkpoint(self, checkpoint: Checkpoint) -> bool:
        def work(conn: Connection) -> bool:
            if conn.dialect.name == "postgresql":
                # Serialised with appends and other gateways' checkpoints: compare-and-set.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
            latest = conn.execute(
                select(audit_checkpoints.c.seq).order_by(audit_checkpoints.c.seq.desc()).limit(1)
            ).scalar()
            if latest is not None and latest >= checkpoint.seq:
                return False  # another gateway signed this far first
            if checkpoint.chained and (latest or 0) != checkpoint.prev_seq:
                return False  # chained to a checkpoint that is no longer the latest
            try:
                with conn.begin_nested():
                    conn.execute(audit_checkpoints.insert(), _checkpoint_values(checkpoint))
            except sa_exc.IntegrityError:
                return False
            return True

        return await self._write(work)

    async def audit_checkpoints(self, *, since_seq: int = 0) -> list[Checkpoint]:
        def work(conn: Connection) -> list[Checkpoint]:
            rows = conn.execute(
                select(audit_checkpoints)
                .where(audit_checkpoints.c.seq >= since_seq)
                .order_by(audit_checkpoints.c.seq)
            )
            return [_checkpoint(row) for row in rows]

        return await self._read(work)

    async def latest_audit_checkpoint(self) -> Checkpoint | None:
        def work(conn: Connection) -> Checkpoint | None:
            row = conn.execute(
                select(audit_checkpoints).order_by(audit_checkpoints.c.seq.desc()).limit(1)
            ).first()
            return None if row is None else _checkpoint(row)

        return await self._read(work)

    async def object_marks(
        self, *, after: tuple[str, str] = ("", ""), limit: int = 1000
    ) -> list[ObjectMark]:
        def work(conn: Connection) -> list[ObjectMark]:
            first, second = after
            c = objects.c
            rows = conn.execute(
                select(c.bucket, c.key, c.object_id, c.row_mac)
                .where(or_(c.bucket > first, and_(c.bucket == first, c.key > second)))
                .order_by(c.bucket, c.key)
                .limit(_page(limit))
            )
            return [
                ObjectMark(row.bucket, row.key, bytes(row.object_id), bytes(row.row_mac))
                for row in rows
            ]

        return await self._read(work)


def _checkpoint_values(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "time": checkpoint.time,
        "key_name": checkpoint.key_name,
        "key_version": checkpoint.key_version,
        "signature": checkpoint.signature,
        "prev_seq": checkpoint.prev_seq,
        "prev_digest": checkpoint.prev_digest,
        "kind": checkpoint.kind,
        "from_seq": checkpoint.from_seq,
    }


def _checkpoint(row: Any) -> Checkpoint:
    """A checkpoint exactly as stored (an unknown kind is kept for verify to refuse)."""
    return Checkpoint(
        seq=int(row.seq),
        hash=bytes(row.hash),
        time=float(row.time),
        key_name=row.key_name,
        key_version=int(row.key_version),
        signature=row.signature,
        prev_seq=None if row.prev_seq is None else int(row.prev_seq),
        prev_digest=None if row.prev_digest is None else bytes(row.prev_digest),
        kind=row.kind,
        from_seq=None if row.from_seq is None else int(row.from_seq),
    )


def _page(limit: int) -> int:
    return max(1, min(limit, _MAX_PAGE))


def _conditions(selection: AuditFilter) -> list[ColumnElement[bool]]:
    c = audit_log.c
    conditions: list[ColumnElement[bool]] = []
    if selection.object_id is not None:
        conditions.append(c.object_id == selection.object_id)
    if selection.bucket is not None:
        conditions.append(c.bucket == selection.bucket)
    if selection.key is not None:
        conditions.append(c.key == selection.key)
    if selection.principal is not None:
        conditions.append(c.principal == selection.principal)
    if selection.tenant_id is not None:
        conditions.append(c.tenant_id == selection.tenant_id)
    if selection.operation is not None:
        conditions.append(c.operation == selection.operation)
    if selection.since is not None:
        conditions.append(c.time >= selection.since)
    if selection.until is not None:
        conditions.append(c.time < selection.until)
    return conditions


def _values(record: AuditRecord) -> dict[str, Any]:
    event = record.event
    return {
        "seq": record.seq,
        "time": event.time,
        "request_id": event.request_id,
        "principal": event.principal,
        "tenant_id": event.tenant_id,
        "operation": event.operation,
        "bucket": event.bucket,
        "key": event.key,
        "object_id": event.object_id,
        "version": event.version,
        "backends": json.dumps(list(event.backends)),
        "key_name": event.key_name,
        "key_version": event.key_version,
        "result": event.result,
        "bytes": event.bytes,
        "source": event.source,
        "detail": encode_detail(event.detail),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


def _record(row: Any) -> AuditRecord:
    """A record exactly as stored (verification must see what is there, not a cleaned copy)."""
    return AuditRecord(
        seq=int(row.seq),
        event=AuditEvent(
            time=float(row.time),
            request_id=row.request_id,
            principal=row.principal,
            operation=row.operation,
            result=row.result,
            tenant_id=None if row.tenant_id is None else bytes(row.tenant_id),
            bucket=row.bucket,
            key=row.key,
            object_id=None if row.object_id is None else bytes(row.object_id),
            version=row.version,
            backends=tuple(_json_list(row.backends)),
            key_name=row.key_name,
            key_version=None if row.key_version is None else int(row.key_version),
            bytes=int(row.bytes),
            source=row.source,
            detail=_json_object(row.detail),
        ),
        prev_hash=bytes(row.prev_hash),
        hash=bytes(row.hash),
    )


def _json_list(raw: str) -> list[str]:
    # A row edited into invalid JSON still loads (its hash will not match): never crash verify.
    try:
        value = json.loads(raw)
    except ValueError:
        return [raw]
    return [str(v) for v in value] if isinstance(value, list) else [raw]


def _json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {"<unreadable>": raw}
    return value if isinstance(value, dict) else {"<unreadable>": raw}


def append_events(conn: Connection, events: Sequence[AuditEvent]) -> list[AuditRecord]:
    """Chain ``events`` after the log's head and insert them, inside the caller's write
    transaction (an object's row and its record commit together)."""
    if conn.dialect.name == "postgresql":
        # Taken last in every transaction that holds it: no lock-order cycle with row locks.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
    head = conn.execute(
        select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    batch = list(events)
    records = chain(batch, after_seq=head[0], prev_hash=head[1]) if head else chain(batch)
    if records:
        conn.execute(audit_log.insert(), [_values(r) for r in records])
    return records
