"""The catalog's administrative queries: tenants and access keys, page by page, revocation, and
the sealing of secrets stored in clear before revision 0008.

A mixin of ``SqlCatalog`` (kept apart because they serve the admin plane, not the S3 hot path).
Each method makes one hop to a worker thread through ``_read``/``_write``, which ``SqlCatalog``
provides. Listings page by keyset (names or ids strictly after a marker), never by offset, so a
page is one index range scan however many tenants or keys there are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, delete, select, update

from blindstore.catalog.base import AccessKey, AccessKeyInfo, Tenant
from blindstore.catalog.records import access_key_from_row, tenant_from_row
from blindstore.catalog.schema import access_keys, tenants

T = TypeVar("T")


class AdminQueries:
    """Admin-plane methods of the ``Catalog`` protocol (see ``catalog.base``)."""

    async def _read(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def list_tenants_page(self, *, after: str = "", limit: int = 100) -> list[Tenant]:
        def work(conn: Connection) -> list[Tenant]:
            rows = conn.execute(
                select(tenants).where(tenants.c.name > after).order_by(tenants.c.name).limit(limit)
            )
            return [tenant_from_row(row) for row in rows]

        return await self._read(work)

    async def list_access_keys(
        self, tenant_id: bytes, *, after: str = "", limit: int = 100
    ) -> list[AccessKeyInfo]:
        def work(conn: Connection) -> list[AccessKeyInfo]:
            # The secret column is not even read: a listing cannot leak it.
            rows = conn.execute(
                select(access_keys.c.access_key_id, access_keys.c.tenant_id, access_keys.c.created)
                .where(access_keys.c.tenant_id == tenant_id, access_keys.c.access_key_id > after)
                .order_by(access_keys.c.access_key_id)
                .limit(limit)
            )
            return [AccessKeyInfo(akid, tenant, created) for akid, tenant, created in rows]

        return await self._read(work)

    async def delete_access_key(self, access_key_id: str) -> AccessKeyInfo | None:
        def work(conn: Connection) -> AccessKeyInfo | None:
            row = conn.execute(
                delete(access_keys)
                .where(access_keys.c.access_key_id == access_key_id)
                .returning(
                    access_keys.c.access_key_id, access_keys.c.tenant_id, access_keys.c.created
                )
            ).first()
            return None if row is None else AccessKeyInfo(*row)

        return await self._write(work)

    async def access_keys_in_clear(self) -> list[AccessKey]:
        def work(conn: Connection) -> list[AccessKey]:
            rows = conn.execute(
                select(access_keys)
                .where(access_keys.c.secret_key.is_not(None), access_keys.c.secret_key != "")
                .order_by(access_keys.c.access_key_id)
            )
            return [access_key_from_row(row) for row in rows]

        return await self._read(work)

    async def seal_access_key(self, access_key_id: str, sealed_secret: str) -> bool:
        def work(conn: Connection) -> bool:
            result = conn.execute(
                update(access_keys)
                .where(access_keys.c.access_key_id == access_key_id)
                .values(sealed_secret=sealed_secret, secret_key=None)
            )
            return bool(result.rowcount)

        sealed = await self._write(work)

        def truncate_journal(conn: Connection) -> None:
            # The write-ahead log still holds the page images with the clear secret: copy it into
            # the database (where secure_delete overwrote the value) and empty it.
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

        await self._read(truncate_journal)
        return sealed
