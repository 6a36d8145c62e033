"""The catalog's key-lifecycle queries: data-subject keys, crypto-shredding records, rewrap.

A mixin of ``SqlCatalog`` (kept apart because these serve administrative jobs, not the S3 hot
path). Each method makes one hop to a worker thread through ``_read``/``_write``, which
``SqlCatalog`` provides.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, delete, exists, func, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql.expression import ColumnElement

from blindstore.catalog.base import (
    KeyUsage,
    ObjectRecord,
    Shred,
    SubjectKey,
    Upload,
    WrappedRef,
    WrappedTable,
)
from blindstore.catalog.records import object_from_row, upload_from_row
from blindstore.catalog.schema import (
    bucket_keys,
    buckets,
    objects,
    shreds,
    subject_keys,
    tenants,
    upload_parts,
    uploads,
)
from blindstore.errors import InvalidRequest

T = TypeVar("T")


class KeyLifecycleQueries:
    """Key-lifecycle methods of the ``Catalog`` protocol (see ``catalog.base``)."""

    async def _read(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, work: Callable[[Connection], T]) -> T:
        raise NotImplementedError

    def _retire(self, conn: Connection, record: ObjectRecord) -> None:
        raise NotImplementedError

    # -- data-subject keys -------------------------------------------------------------------

    async def get_subject_key(self, tenant_id: bytes, subject_digest: bytes) -> SubjectKey | None:
        def work(conn: Connection) -> SubjectKey | None:
            row = conn.execute(_live_subject(tenant_id, subject_digest)).first()
            return None if row is None else SubjectKey(*row)

        return await self._read(work)

    async def add_subject_key(self, key: SubjectKey) -> SubjectKey:
        def work(conn: Connection) -> SubjectKey:
            existing = conn.execute(_live_subject(key.tenant_id, key.subject_digest)).first()
            if existing is not None:
                return SubjectKey(*existing)
            try:
                with conn.begin_nested():
                    conn.execute(subject_keys.insert(), _subject_values(key))
            except sa_exc.IntegrityError:
                # Another gateway recorded a key for this subject first: use that one.
                row = conn.execute(_live_subject(key.tenant_id, key.subject_digest)).first()
                if row is None:
                    raise
                return SubjectKey(*row)
            return key

        return await self._write(work)

    async def list_subject_keys(self, tenant_id: bytes) -> list[SubjectKey]:
        def work(conn: Connection) -> list[SubjectKey]:
            rows = conn.execute(
                select(subject_keys)
                .where(subject_keys.c.tenant_id == tenant_id)
                .order_by(subject_keys.c.created, subject_keys.c.key_name)
            )
            return [SubjectKey(*row) for row in rows]

        return await self._read(work)

    async def unkeyed_subject_keys(self, *, limit: int = 200) -> list[SubjectKey]:
        """Subject keys whose digest is still the unkeyed SHA-256 one, at most ``limit``."""

        def work(conn: Connection) -> list[SubjectKey]:
            rows = conn.execute(
                select(subject_keys)
                .where(subject_keys.c.digest_keyed.is_(False))
                .order_by(subject_keys.c.key_name)
                .limit(limit)
            )
            return [SubjectKey(*row) for row in rows]

        return await self._read(work)

    async def set_keyed_subject_digest(self, key_name: str, unkeyed: bytes, keyed: bytes) -> bool:
        """Replace a key's unkeyed digest by its keyed one, if it still holds ``unkeyed``."""

        def work(conn: Connection) -> bool:
            changed = conn.execute(
                update(subject_keys)
                .where(
                    subject_keys.c.key_name == key_name,
                    subject_keys.c.subject_digest == unkeyed,
                    subject_keys.c.digest_keyed.is_(False),
                )
                .values(subject_digest=keyed, digest_keyed=True)
            ).rowcount
            return bool(changed)

        return await self._write(work)

    # -- crypto-shredding --------------------------------------------------------------------

    async def record_shred(self, shred: Shred) -> None:
        def work(conn: Connection) -> None:
            conn.execute(shreds.insert(), _shred_values(shred))
            _mark(conn, shred, shred.requested)

        await self._write(work)

    async def cancel_shred(self, shred_id: str) -> None:
        def work(conn: Connection) -> None:
            row = conn.execute(select(shreds).where(shreds.c.shred_id == shred_id)).first()
            if row is None:
                return
            shred = _shred_from_row(row)
            if shred.destroyed is not None:
                raise InvalidRequest("the keys of this shredding request are already destroyed")
            conn.execute(delete(shreds).where(shreds.c.shred_id == shred_id))
            _mark(conn, shred, None)

        await self._write(work)

    async def finish_shred(self, shred_id: str, destroyed: float, certificate: str) -> None:
        def work(conn: Connection) -> None:
            conn.execute(
                update(shreds)
                .where(shreds.c.shred_id == shred_id)
                .values(destroyed=destroyed, certificate=certificate)
            )

        await self._write(work)

    async def list_shreds(self) -> list[Shred]:
        def work(conn: Connection) -> list[Shred]:
            rows = conn.execute(select(shreds).order_by(shreds.c.requested, shreds.c.shred_id))
            return [_shred_from_row(row) for row in rows]

        return await self._read(work)

    async def revoked_key_names(self) -> frozenset[str]:
        def work(conn: Connection) -> frozenset[str]:
            names: set[str] = set()
            for (key_names,) in conn.execute(select(shreds.c.key_names)):
                names.update(json.loads(key_names))
            return frozenset(names)

        return await self._read(work)

    async def key_usage(self, key_names: Sequence[str]) -> KeyUsage:
        def work(conn: Connection) -> KeyUsage:
            count, total = conn.execute(
                select(func.count(), func.coalesce(func.sum(objects.c.size), 0)).where(
                    objects.c.key_name.in_(list(key_names))
                )
            ).one()
            pending = conn.execute(
                select(func.count()).where(uploads.c.key_name.in_(list(key_names)))
            ).scalar_one()
            return KeyUsage(objects=int(count), bytes=int(total), uploads=int(pending))

        return await self._read(work)

    # -- rewrap ------------------------------------------------------------------------------

    async def wrapped_below(
        self,
        table: WrappedTable,
        key_name: str,
        version: int,
        *,
        after: tuple[str, str] = ("", ""),
        limit: int = 200,
    ) -> list[WrappedRef]:
        def work(conn: Connection) -> list[WrappedRef]:
            if table == "objects":
                first, second = after
                rows = conn.execute(
                    select(
                        objects.c.bucket,
                        objects.c.key,
                        objects.c.tenant_id,
                        objects.c.object_id,
                        objects.c.wrapped_dek,
                        objects.c.key_version,
                    )
                    .where(
                        objects.c.key_name == key_name,
                        objects.c.key_version < version,
                        _transit_wrapped(objects),
                        or_(
                            objects.c.bucket > first,
                            and_(objects.c.bucket == first, objects.c.key > second),
                        ),
                    )
                    .order_by(objects.c.bucket, objects.c.key)
                    .limit(limit)
                )
                return [
                    WrappedRef("objects", (bucket, key), tenant, obj, wrapped, kv)
                    for bucket, key, tenant, obj, wrapped, kv in rows
                ]
            upload_rows = conn.execute(
                select(
                    uploads.c.upload_id,
                    uploads.c.tenant_id,
                    uploads.c.object_id,
                    uploads.c.wrapped_dek,
                    uploads.c.key_version,
                )
                .where(
                    uploads.c.key_name == key_name,
                    uploads.c.key_version < version,
                    _transit_wrapped(uploads),
                    uploads.c.upload_id > after[0],
                )
                .order_by(uploads.c.upload_id)
                .limit(limit)
            )
            return [
                WrappedRef("uploads", (upload_id, ""), tenant, obj, wrapped, kv)
                for upload_id, tenant, obj, wrapped, kv in upload_rows
            ]

        return await self._read(work)

    async def count_wrapped_below(self, key_name: str, version: int) -> int:
        def work(conn: Connection) -> int:
            total = 0
            for table in (objects, uploads):
                total += conn.execute(
                    select(func.count()).where(
                        table.c.key_name == key_name,
                        table.c.key_version < version,
                        _transit_wrapped(table),
                    )
                ).scalar_one()
            return total

        return await self._read(work)

    async def replace_wrapped(self, changes: Sequence[tuple[WrappedRef, str, int]]) -> int:
        def work(conn: Connection) -> int:
            stored = 0
            for ref, wrapped, version in changes:
                if ref.table == "objects":
                    bucket, key = ref.locator
                    where: Any = and_(objects.c.bucket == bucket, objects.c.key == key)
                    table = objects
                else:
                    where = uploads.c.upload_id == ref.locator[0]
                    table = uploads
                stored += conn.execute(
                    update(table)
                    .where(
                        where,
                        table.c.object_id == ref.object_id,
                        table.c.wrapped_dek == ref.wrapped,
                    )
                    .values(wrapped_dek=wrapped, key_version=version)
                ).rowcount
            return stored

        return await self._write(work)

    # -- purges after shredding --------------------------------------------------------------

    async def objects_with_keys(
        self, key_names: Sequence[str], *, after: tuple[str, str] = ("", ""), limit: int = 200
    ) -> list[ObjectRecord]:
        def work(conn: Connection) -> list[ObjectRecord]:
            first, second = after
            rows = conn.execute(
                select(objects)
                .where(
                    objects.c.key_name.in_(list(key_names)),
                    or_(
                        objects.c.bucket > first,
                        and_(objects.c.bucket == first, objects.c.key > second),
                    ),
                )
                .order_by(objects.c.bucket, objects.c.key)
                .limit(limit)
            )
            return [object_from_row(row) for row in rows]

        return await self._read(work)

    async def uploads_with_keys(self, key_names: Sequence[str]) -> list[Upload]:
        def work(conn: Connection) -> list[Upload]:
            rows = conn.execute(
                select(uploads)
                .where(uploads.c.key_name.in_(list(key_names)))
                .order_by(uploads.c.upload_id)
            )
            return [upload_from_row(row) for row in rows]

        return await self._read(work)

    async def delete_object_version(
        self, bucket: str, key: str, object_id: bytes
    ) -> ObjectRecord | None:
        def work(conn: Connection) -> ObjectRecord | None:
            row = conn.execute(
                delete(objects)
                .where(
                    objects.c.bucket == bucket,
                    objects.c.key == key,
                    objects.c.object_id == object_id,
                )
                .returning(*objects.c)
            ).first()
            if row is None:
                return None
            removed = object_from_row(row)
            self._retire(conn, removed)
            return removed

        return await self._write(work)

    async def purge_tenant(self, tenant_id: bytes) -> KeyUsage:
        def work(conn: Connection) -> KeyUsage:
            names = select(buckets.c.name).where(buckets.c.tenant_id == tenant_id)
            count, total = conn.execute(
                select(func.count(), func.coalesce(func.sum(objects.c.size), 0)).where(
                    objects.c.tenant_id == tenant_id
                )
            ).one()
            upload_ids = select(uploads.c.upload_id).where(uploads.c.tenant_id == tenant_id)
            conn.execute(delete(upload_parts).where(upload_parts.c.upload_id.in_(upload_ids)))
            pending = conn.execute(delete(uploads).where(uploads.c.tenant_id == tenant_id))
            conn.execute(delete(objects).where(objects.c.bucket.in_(names)))
            conn.execute(delete(objects).where(objects.c.tenant_id == tenant_id))
            conn.execute(delete(buckets).where(buckets.c.tenant_id == tenant_id))
            conn.execute(delete(bucket_keys).where(bucket_keys.c.tenant_id == tenant_id))
            return KeyUsage(objects=int(count), bytes=int(total), uploads=pending.rowcount)

        return await self._write(work)


def _transit_wrapped(table: Any) -> Any:
    """Rows whose DEK Transit wrapped (``vault:vN:``); bucket-key mode's ``bk1:`` DEKs are
    wrapped by a bucket key, whose own row in ``bucket_keys`` is what a rewrap moves."""
    return table.c.wrapped_dek.startswith("vault:", autoescape=True)


def _live_subject(tenant_id: bytes, subject_digest: bytes) -> Any:
    return select(subject_keys).where(
        subject_keys.c.tenant_id == tenant_id,
        subject_keys.c.subject_digest == subject_digest,
        subject_keys.c.shredded.is_(None),
    )


def _subject_values(key: SubjectKey) -> dict[str, Any]:
    return {
        "key_name": key.key_name,
        "tenant_id": key.tenant_id,
        "subject_digest": key.subject_digest,
        "created": key.created,
        "shredded": key.shredded,
        "digest_keyed": key.digest_keyed,
    }


def _shred_values(shred: Shred) -> dict[str, Any]:
    return {
        "shred_id": shred.shred_id,
        "scope": shred.scope,
        "tenant_id": shred.tenant_id,
        "key_names": json.dumps(list(shred.key_names)),
        "requested": shred.requested,
        "destroy_after": shred.destroy_after,
        "destroyed": shred.destroyed,
        "operator": shred.operator,
        "certificate": shred.certificate,
    }


def _shred_from_row(row: Sequence[Any]) -> Shred:
    shred_id, scope, tenant_id, key_names, requested, destroy_after, destroyed, operator, cert = row
    return Shred(
        shred_id=shred_id,
        scope=scope,
        tenant_id=tenant_id,
        key_names=tuple(json.loads(key_names)),
        requested=requested,
        destroy_after=destroy_after,
        operator=operator,
        destroyed=destroyed,
        certificate=cert,
    )


def _mark(conn: Connection, shred: Shred, when: float | None) -> None:
    """Set (or clear, with None) the shredded marks a request puts on its tenant or keys."""
    if shred.scope == "tenant":
        conn.execute(
            update(tenants).where(tenants.c.tenant_id == shred.tenant_id).values(shredded=when)
        )
    marked: ColumnElement[bool] = subject_keys.c.key_name.in_(list(shred.key_names))
    if when is None:
        # A subject written to during the grace period got a new live key: the restored one
        # stays retired (one live key per subject; its data reads again, as only shredding
        # records revoke), and a later shred of the subject covers both (``new_subject_shred``).
        live = subject_keys.alias("live")
        marked = and_(
            marked,
            ~exists().where(
                live.c.tenant_id == subject_keys.c.tenant_id,
                live.c.subject_digest == subject_keys.c.subject_digest,
                live.c.shredded.is_(None),
            ),
        )
    conn.execute(update(subject_keys).where(marked).values(shredded=when))
