"""The catalog's transparency queries: where a tenant's or a bucket's objects are.

A mixin of ``SqlCatalog`` (administrative reads, apart from the S3 hot path). Rows are grouped
by their replica lists as stored (JSON text), which both SQLite and PostgreSQL compare as text:
the number of distinct replica sets is small (a policy has a few rules), so the grouping stays
in SQL and no per-object row crosses to Python.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, func, select

from blindstore.catalog.base import ReplicaUsage
from blindstore.catalog.records import decode_names
from blindstore.catalog.schema import objects

T = TypeVar("T")


class ReportQueries:
    """Transparency methods of the ``Catalog`` protocol (see ``catalog.base``)."""

    async def _read(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def replica_usage(
        self, *, tenant_id: bytes | None = None, bucket: str | None = None
    ) -> list[ReplicaUsage]:
        def work(conn: Connection) -> list[ReplicaUsage]:
            query = select(
                objects.c.backends,
                objects.c.repairs,
                func.count(),
                func.coalesce(func.sum(objects.c.size), 0),
            ).group_by(objects.c.backends, objects.c.repairs)
            if tenant_id is not None:
                query = query.where(objects.c.tenant_id == tenant_id)
            if bucket is not None:
                query = query.where(objects.c.bucket == bucket)
            return [
                ReplicaUsage(decode_names(backends), decode_names(repairs), int(count), int(total))
                for backends, repairs, count, total in conn.execute(query)
            ]

        return await self._read(work)
