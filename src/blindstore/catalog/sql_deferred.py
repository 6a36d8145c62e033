"""Deferred deletion: the blobs of replaced and deleted rows, kept until a read in flight is done.

A GET looks its row up, then streams the row's blobs; a concurrent overwrite or DELETE that
removed the blobs at its commit would cut that stream (a truncated body, or a 500). So the
transaction that removes a row records its blobs here instead, with the time after which they
may go (``not_before``); the gateway's background task and ``blindstore gc`` delete them then
(blob first, record last: a crash in between only repeats an idempotent delete).

A mixin of ``SqlCatalog``: ``record_retired`` runs inside the caller's transaction, the other
methods make one hop to a worker thread through ``_read``/``_write``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from blindstore.catalog.base import DeferredDelete, ObjectRecord
from blindstore.catalog.schema import deferred_deletes

T = TypeVar("T")

#: Rows fetched at a time by ``deferred_blobs`` (a full scan for ``blindstore gc``).
_SCAN_BATCH = 10_000

_table = deferred_deletes.c
_match = and_(
    _table.backend == bindparam("m_backend"),
    _table.container == bindparam("m_container"),
    _table.blob == bindparam("m_blob"),
)


def record_retired(
    conn: Connection, record: ObjectRecord, not_before: float, *, keep: Collection[str] = ()
) -> None:
    """Record the blobs of ``record`` (a row this transaction removes) on every backend it may
    be on: its replicas and its repair targets (an interrupted repair may have copied parts
    there). ``keep``: blobs the row's successor still uses (never deleted)."""
    rows = [
        {
            "backend": name,
            "container": record.container,
            "blob": part.blob,
            "not_before": not_before,
        }
        for part in record.parts
        if part.blob not in keep
        for name in dict.fromkeys((*record.backends, *record.repairs))
    ]
    if not rows:
        return
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    # Blob ids are random and used once; a second record of one (not expected) keeps the first.
    conn.execute(dialect_insert(deferred_deletes).on_conflict_do_nothing(), rows)


def _from_row(row: Any) -> DeferredDelete:
    return DeferredDelete(row.backend, row.container, row.blob, row.not_before)


def _keys(blobs: Sequence[DeferredDelete]) -> list[dict[str, str]]:
    return [{"m_backend": b.backend, "m_container": b.container, "m_blob": b.blob} for b in blobs]


class DeferredDeleteQueries:
    """Deferred-deletion methods of the ``Catalog`` protocol (see ``catalog.base``)."""

    async def _read(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def _snapshot(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def due_deletions(self, now: float, *, limit: int = 500) -> list[DeferredDelete]:
        """Recorded blobs whose ``not_before`` is at or before ``now``, earliest first."""

        def work(conn: Connection) -> list[DeferredDelete]:
            rows = conn.execute(
                select(deferred_deletes)
                .where(_table.not_before <= now)
                .order_by(_table.not_before, _table.backend, _table.container, _table.blob)
                .limit(limit)
            )
            return [_from_row(row) for row in rows]

        return await self._read(work)

    async def deferred_blobs(self, backend: str) -> set[tuple[str, str]]:
        """Every (container, blob) on ``backend`` recorded for deferred deletion."""

        def work(conn: Connection) -> set[tuple[str, str]]:
            rows = conn.execute(
                select(_table.container, _table.blob)
                .where(_table.backend == backend)
                .execution_options(yield_per=_SCAN_BATCH)
            )
            return {(container, blob) for container, blob in rows}

        return await self._snapshot(work)

    async def postpone_deletions(self, blobs: Sequence[DeferredDelete], until: float) -> None:
        """Move the ``not_before`` of recorded blobs to ``until``."""
        if not blobs:
            return
        statement = update(deferred_deletes).where(_match).values(not_before=until)

        def work(conn: Connection) -> None:
            conn.execute(statement, _keys(blobs))

        await self._write(work)

    async def finish_deletions(self, blobs: Sequence[DeferredDelete]) -> None:
        """Forget recorded blobs; absent ones are ignored."""
        if not blobs:
            return
        statement = delete(deferred_deletes).where(_match)

        def work(conn: Connection) -> None:
            conn.execute(statement, _keys(blobs))

        await self._write(work)


__all__ = ["DeferredDeleteQueries", "record_retired"]
