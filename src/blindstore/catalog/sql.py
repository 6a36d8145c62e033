"""The SQL catalog: SQLite (default, one node) or PostgreSQL (several nodes), on SQLAlchemy Core.

Every public coroutine makes exactly one hop to a worker thread and runs all of its statements
there, in one transaction when it writes. Writes start with ``BEGIN IMMEDIATE`` on SQLite, so
writers are serialised and a conditional write cannot race another; on PostgreSQL the rows a
write depends on are locked (``SELECT ... FOR UPDATE``), and the rare insert that collides with a
concurrent one is retried from the start.

Database errors are translated once, in ``_map_errors``; statements run with hidden parameters so
that no object key (health data) reaches an exception message or a log line.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool
from sqlalchemy.sql.elements import TextClause

from blindstore.audit.events import AuditEvent
from blindstore.catalog import migrate
from blindstore.catalog.base import (
    DELETE_DELAY_SECONDS,
    AccessKey,
    Bucket,
    BucketKey,
    ListPage,
    ObjectRecord,
    ReplicaMark,
    Tenant,
    Upload,
    UploadPage,
    UploadPart,
)
from blindstore.catalog.listing import list_page, successor
from blindstore.catalog.records import (
    access_key_from_row,
    access_key_values,
    bucket_from_row,
    bucket_key_from_row,
    bucket_key_values,
    bucket_values,
    decode_names,
    decode_parts,
    encode_dict,
    encode_names,
    object_from_row,
    object_values,
    part_from_row,
    part_values,
    tenant_from_row,
    tenant_values,
    upload_from_row,
    upload_values,
)
from blindstore.catalog.schema import (
    access_keys,
    bucket_keys,
    buckets,
    objects,
    tenants,
    upload_parts,
    uploads,
)
from blindstore.catalog.sql_admin import AdminQueries
from blindstore.catalog.sql_audit import AuditQueries, append_events
from blindstore.catalog.sql_deferred import DeferredDeleteQueries, record_retired
from blindstore.catalog.sql_keys import KeyLifecycleQueries
from blindstore.catalog.sql_reports import ReportQueries
from blindstore.errors import (
    AccessDenied,
    BlindstoreError,
    BucketAlreadyExists,
    BucketNotEmpty,
    ConditionalRequestConflict,
    IntegrityError,
    InvalidArgument,
    InvalidPart,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
    ServiceUnavailable,
)

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: Attempts of a write that lost an insert race on PostgreSQL before answering 409.
_WRITE_ATTEMPTS: Final = 3
#: Rows fetched at a time by full scans (garbage collection), which stream rather than load.
_SCAN_BATCH: Final = 10_000

# Connection modes: how a worker thread opens its unit of work.
_READ: Final = "read"  # one statement, no transaction
_SNAPSHOT: Final = "snapshot"  # several reads that must agree
_WRITE: Final = "write"  # a serialised read-modify-write transaction

# Foreign key violations: sqlite3.IntegrityError.sqlite_errorcode, PostgreSQL SQLSTATE.
_SQLITE_CONSTRAINT_FOREIGNKEY: Final = 787
_PG_FOREIGN_KEY_VIOLATION: Final = "23503"


class _Retry(Exception):
    """Raised inside a write when a concurrent insert won a race: rerun the transaction."""


class SqlCatalog(
    KeyLifecycleQueries, ReportQueries, AuditQueries, AdminQueries, DeferredDeleteQueries
):
    """The ``Catalog`` on a SQL database.

    ``url`` is a SQLAlchemy URL: ``sqlite:///path/to/catalog.db`` (WAL journal),
    ``sqlite://`` (in memory, for tests) or ``postgresql+psycopg://user@host/db``. The
    constructor connects and applies pending migrations (blocking: call it at startup).
    ``pool_size`` bounds both the connections and the worker threads the catalog uses.
    ``sqlite_busy_timeout``: seconds a SQLite writer waits for the write lock before the
    request fails with ServiceUnavailable.
    ``delete_delay``: seconds the blobs of a replaced or deleted row are kept before they may be
    deleted (``catalog.sql_deferred``), measured on ``clock``.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        sqlite_busy_timeout: float = 5.0,
        delete_delay: float = DELETE_DELAY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._delete_delay = delete_delay
        self._clock = clock
        self._engine, in_memory = _create_engine(url, pool_size, sqlite_busy_timeout)
        self._modes = _connection_modes(self._engine.dialect.name)
        # One in-memory SQLite database is one connection: its users must take turns.
        self._limiter = anyio.CapacityLimiter(1 if in_memory else pool_size)
        # SQLite lets one writer in at a time; queueing writers here instead of in SQLite's
        # busy handler (which sleeps 1-2 ms per retry) keeps commits back to back.
        sqlite = self._engine.dialect.name == "sqlite"
        self._write_limiter = (
            anyio.CapacityLimiter(1) if sqlite and not in_memory else self._limiter
        )
        self._statements = _Statements(self._engine.dialect.name)
        try:
            self._call(_WRITE, migrate.upgrade)
        except BaseException:
            self._engine.dispose()
            raise

    # -- plumbing ---------------------------------------------------------------------------

    async def _run(self, mode: str, work: Callable[[Connection], T]) -> T:
        limiter = self._write_limiter if mode == _WRITE else self._limiter
        return await anyio.to_thread.run_sync(self._call, mode, work, limiter=limiter)

    async def _read(self, work: Callable[[Connection], T]) -> T:
        return await self._run(_READ, work)

    async def _write(self, work: Callable[[Connection], T]) -> T:
        return await self._run(_WRITE, work)

    async def _snapshot(self, work: Callable[[Connection], T]) -> T:
        return await self._run(_SNAPSHOT, work)

    def _retire(
        self, conn: Connection, record: ObjectRecord, *, keep: set[str] | None = None
    ) -> None:
        """Record the blobs of ``record``, removed by this transaction, for deferred deletion."""
        not_before = self._clock() + self._delete_delay
        record_retired(conn, record, not_before, keep=keep or set())

    def _call(self, mode: str, work: Callable[[Connection], T]) -> T:
        options, begin = self._modes[mode]
        with _map_errors(), self._engine.connect() as conn:
            if options:
                conn.execution_options(**options)
            if mode == _READ:
                return work(conn)
            for _attempt in range(_WRITE_ATTEMPTS):
                try:
                    with conn.begin():
                        if begin is not None:
                            conn.execute(begin)
                        return work(conn)
                except _Retry:
                    continue
            raise ConditionalRequestConflict()

    # -- tenants and credentials ------------------------------------------------------------

    async def create_tenant(self, tenant: Tenant) -> None:
        """Add a tenant; InvalidArgument if its id or name is taken."""

        def work(conn: Connection) -> None:
            try:
                conn.execute(tenants.insert(), tenant_values(tenant))
            except sa_exc.IntegrityError as exc:
                raise InvalidArgument("A tenant with this id or name already exists.") from exc

        await self._run(_WRITE, work)

    async def get_tenant(self, tenant_id: bytes) -> Tenant | None:
        """The tenant with this id, or None."""

        def work(conn: Connection) -> Tenant | None:
            row = conn.execute(self._statements.tenant_by_id, {"tenant_id": tenant_id}).first()
            return None if row is None else tenant_from_row(row)

        return await self._run(_READ, work)

    async def get_tenant_by_name(self, name: str) -> Tenant | None:
        """The tenant with this name, or None."""

        def work(conn: Connection) -> Tenant | None:
            row = conn.execute(select(tenants).where(tenants.c.name == name)).first()
            return None if row is None else tenant_from_row(row)

        return await self._run(_READ, work)

    async def ping(self) -> None:
        """One trivial query: the database answers (readiness)."""

        def work(conn: Connection) -> None:
            conn.execute(select(literal(1))).scalar_one()

        await self._run(_READ, work)

    async def list_tenants(self) -> list[Tenant]:
        """Every tenant, by name."""

        def work(conn: Connection) -> list[Tenant]:
            rows = conn.execute(select(tenants).order_by(tenants.c.name))
            return [tenant_from_row(row) for row in rows]

        return await self._run(_READ, work)

    async def add_access_key(self, key: AccessKey) -> None:
        """Add credentials; InvalidArgument if the id is taken or the tenant does not exist."""

        def work(conn: Connection) -> None:
            try:
                conn.execute(access_keys.insert(), access_key_values(key))
            except sa_exc.IntegrityError as exc:
                if _is_foreign_key_violation(exc):
                    raise InvalidArgument("No such tenant.") from exc
                raise InvalidArgument("This access key id already exists.") from exc

        await self._run(_WRITE, work)

    async def get_access_key(self, access_key_id: str) -> AccessKey | None:
        """The credentials with this id, or None."""

        def work(conn: Connection) -> AccessKey | None:
            row = conn.execute(
                self._statements.access_key_by_id, {"access_key_id": access_key_id}
            ).first()
            return None if row is None else access_key_from_row(row)

        return await self._run(_READ, work)

    # -- buckets ----------------------------------------------------------------------------

    async def create_bucket(self, bucket: Bucket) -> None:
        """Add a bucket; BucketAlreadyExists if the name exists, whoever owns it."""

        def work(conn: Connection) -> None:
            try:
                conn.execute(buckets.insert(), bucket_values(bucket))
            except sa_exc.IntegrityError as exc:
                if _is_foreign_key_violation(exc):
                    raise InvalidArgument("No such tenant.") from exc
                raise BucketAlreadyExists(BucketName=bucket.name) from exc

        await self._run(_WRITE, work)

    async def get_bucket(self, name: str) -> Bucket | None:
        """The bucket with this name, or None."""

        def work(conn: Connection) -> Bucket | None:
            row = conn.execute(self._statements.bucket_by_name, {"name": name}).first()
            return None if row is None else bucket_from_row(row)

        return await self._run(_READ, work)

    async def list_buckets(self, tenant_id: bytes) -> list[Bucket]:
        """A tenant's buckets, by name."""

        def work(conn: Connection) -> list[Bucket]:
            query = select(buckets).where(buckets.c.tenant_id == tenant_id).order_by(buckets.c.name)
            return [bucket_from_row(row) for row in conn.execute(query)]

        return await self._run(_READ, work)

    async def delete_bucket(self, name: str) -> list[UploadPart]:
        """Delete an empty bucket and its pending uploads; return the uploads' parts."""

        def work(conn: Connection) -> list[UploadPart]:
            if conn.execute(self._statements.lock_bucket, {"name": name}).first() is None:
                raise NoSuchBucket(BucketName=name)
            holds_objects = select(exists().where(objects.c.bucket == name))
            if conn.execute(holds_objects).scalar():
                raise BucketNotEmpty(BucketName=name)
            bucket_uploads = select(uploads.c.upload_id).where(uploads.c.bucket == name)
            parts = conn.execute(
                delete(upload_parts)
                .where(upload_parts.c.upload_id.in_(bucket_uploads))
                .returning(*upload_parts.c)
            )
            removed = [part_from_row(row) for row in parts]
            conn.execute(delete(uploads).where(uploads.c.bucket == name))
            try:
                conn.execute(delete(buckets).where(buckets.c.name == name))
            except sa_exc.IntegrityError as exc:
                # PostgreSQL: an object committed after our emptiness check.
                raise BucketNotEmpty(BucketName=name) from exc
            removed.sort(key=lambda part: (part.upload_id, part.part_number))
            return removed

        return await self._run(_WRITE, work)

    # -- objects ----------------------------------------------------------------------------

    async def put_object(
        self,
        record: ObjectRecord,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        audit: AuditEvent | None = None,
    ) -> ObjectRecord | None:
        """Commit a row, replacing any with the same (bucket, key); return the replaced row.

        Raises NoSuchBucket, AccessDenied if the bucket is not ``record.tenant_id``'s (checked in
        the transaction), IntegrityError if another row or upload holds the object id, and for
        the conditions PreconditionFailed or NoSuchKey.
        ``audit``: appended to the audit chain in the same transaction.
        """

        def work(conn: Connection) -> ObjectRecord | None:
            replaced = self._write_object(
                record, conn, if_match=if_match, if_none_match=if_none_match
            )
            if audit is not None:
                append_events(conn, [audit])
            return replaced

        return await self._run(_WRITE, work)

    def _write_object(
        self,
        record: ObjectRecord,
        conn: Connection,
        *,
        if_match: str | None,
        if_none_match: bool,
    ) -> ObjectRecord | None:
        # Ownership is checked here, in the commit's transaction, whatever the gateway's bucket
        # cache said: a bucket deleted and re-created by another tenant meanwhile is refused.
        self._require_owner(conn, record.bucket, record.tenant_id, lock=True)
        self._require_unused_object_id(conn, record.object_id, (record.bucket, record.key))
        current = conn.execute(
            self._statements.lock_object, {"bucket": record.bucket, "key": record.key}
        ).first()
        if current is not None and if_none_match:
            raise PreconditionFailed(Condition="If-None-Match")
        if if_match is not None:
            if current is None:
                raise NoSuchKey(Key=record.key)
            if current.etag != if_match:
                raise PreconditionFailed(Condition="If-Match")
        values = object_values(record)
        if current is None:
            try:
                inserted = conn.execute(self._statements.insert_object, values).rowcount
            except sa_exc.IntegrityError as exc:
                if _is_foreign_key_violation(exc):
                    raise NoSuchBucket(BucketName=record.bucket) from exc
                # A concurrent commit took the object id (the unique index caught it).
                raise IntegrityError("object id already in use") from exc
            if inserted == 0:
                # A concurrent writer inserted the key between our read and our insert.
                if if_none_match:
                    raise PreconditionFailed(Condition="If-None-Match")
                raise _Retry
            return None
        values["where_bucket"] = values.pop("bucket")
        values["where_key"] = values.pop("key")
        conn.execute(self._statements.update_object, values)
        replaced = object_from_row(current)
        self._retire(conn, replaced, keep={part.blob for part in record.parts})
        return replaced

    async def get_object(self, bucket: str, key: str) -> ObjectRecord | None:
        """The row for (bucket, key), or None."""

        def work(conn: Connection) -> ObjectRecord | None:
            row = conn.execute(self._statements.object_by_key, {"bucket": bucket, "key": key})
            found = row.first()
            return None if found is None else object_from_row(found)

        return await self._run(_READ, work)

    async def delete_object(
        self, bucket: str, key: str, *, tenant_id: bytes | None = None
    ) -> ObjectRecord | None:
        """Remove a row and return it, or None if there was none.

        With ``tenant_id``: NoSuchBucket, or AccessDenied unless that tenant owns the bucket
        (checked in the transaction); a row of another tenant is left alone (AccessDenied).
        """

        def work(conn: Connection) -> ObjectRecord | None:
            if tenant_id is not None:
                self._require_owner(conn, bucket, tenant_id, lock=True)
                current = conn.execute(
                    self._statements.lock_object, {"bucket": bucket, "key": key}
                ).first()
                if current is not None and current.tenant_id != tenant_id:
                    raise AccessDenied()
            row = conn.execute(
                self._statements.delete_object, {"bucket": bucket, "key": key}
            ).first()
            if row is None:
                return None
            removed = object_from_row(row)
            self._retire(conn, removed)
            return removed

        return await self._run(_WRITE, work)

    async def set_tags(
        self, bucket: str, key: str, tags: dict[str, str], *, tenant_id: bytes | None = None
    ) -> None:
        """Replace an object's tags; NoSuchKey if absent.

        With ``tenant_id``: NoSuchBucket, or AccessDenied unless that tenant owns the bucket
        and the row (checked in the transaction).
        """

        def work(conn: Connection) -> None:
            match = [objects.c.bucket == bucket, objects.c.key == key]
            if tenant_id is not None:
                self._require_owner(conn, bucket, tenant_id, lock=True)
                match.append(objects.c.tenant_id == tenant_id)
            changed = conn.execute(
                update(objects).where(*match).values(tags=encode_dict(tags))
            ).rowcount
            if changed == 0:
                if tenant_id is not None and self._object_exists(conn, bucket, key):
                    raise AccessDenied()
                raise NoSuchKey(Key=key)

        await self._run(_WRITE, work)

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = 1000,
        tenant_id: bytes | None = None,
    ) -> ListPage:
        """One page of keys and common prefixes greater than ``start_after``, in byte order.

        ``next_marker`` is the last entry returned when the page is truncated, else None.
        Raises NoSuchBucket; with ``tenant_id``, AccessDenied unless that tenant owns the bucket
        (in the same snapshot as the page: names never reach a tenant the bucket left).
        """

        def work(conn: Connection) -> ListPage:
            if tenant_id is None:
                self._require_bucket(conn, bucket)
            else:
                self._require_owner(conn, bucket, tenant_id, lock=False)

            def fetch(lower: str, inclusive: bool, upper: str | None, limit: int) -> list[Any]:
                key = objects.c.key
                query = (
                    select(objects)
                    .where(objects.c.bucket == bucket, key >= lower if inclusive else key > lower)
                    .order_by(key)
                    .limit(limit)
                )
                if upper is not None:
                    query = query.where(key < upper)
                return list(conn.execute(query))

            page = list_page(
                fetch,
                _row_key,
                prefix=prefix,
                delimiter=delimiter,
                start_after=start_after,
                max_keys=max_keys,
            )
            return ListPage(
                [object_from_row(row) for row in page.rows],
                page.common_prefixes,
                page.truncated,
                page.next_marker,
            )

        return await self._run(_SNAPSHOT, work)

    # -- multipart --------------------------------------------------------------------------

    async def create_upload(self, upload: Upload) -> None:
        """Record a new multipart upload; NoSuchBucket if the bucket is gone, AccessDenied if
        it is not ``upload.tenant_id``'s, IntegrityError if the object id is in use."""

        def work(conn: Connection) -> None:
            self._require_owner(conn, upload.bucket, upload.tenant_id, lock=True)
            self._require_unused_object_id(conn, upload.object_id, None)
            try:
                conn.execute(uploads.insert(), upload_values(upload))
            except sa_exc.IntegrityError as exc:
                if _is_foreign_key_violation(exc):
                    raise NoSuchBucket(BucketName=upload.bucket) from exc
                raise IntegrityError("object id already in use") from exc

        await self._run(_WRITE, work)

    async def get_upload(self, upload_id: str) -> Upload | None:
        """The pending upload with this id, or None."""

        def work(conn: Connection) -> Upload | None:
            row = conn.execute(self._statements.upload_by_id, {"upload_id": upload_id}).first()
            return None if row is None else upload_from_row(row)

        return await self._run(_READ, work)

    async def put_part(self, part: UploadPart) -> UploadPart | None:
        """Record a part (last write wins); return the replaced one. NoSuchUpload if gone."""

        def work(conn: Connection) -> UploadPart | None:
            where = {"upload_id": part.upload_id, "part_number": part.part_number}
            current = conn.execute(self._statements.lock_part, where).first()
            values = part_values(part)
            if current is None:
                try:
                    inserted = conn.execute(self._statements.insert_part, values).rowcount
                except sa_exc.IntegrityError as exc:
                    raise NoSuchUpload(UploadId=part.upload_id) from exc
                if inserted == 0:
                    raise _Retry
                return None
            values["where_upload_id"] = values.pop("upload_id")
            values["where_part_number"] = values.pop("part_number")
            conn.execute(self._statements.update_part, values)
            return part_from_row(current)

        return await self._run(_WRITE, work)

    async def list_parts(
        self, upload_id: str, *, part_number_marker: int = 0, max_parts: int = 1000
    ) -> tuple[list[UploadPart], bool]:
        """Parts numbered above the marker, in order, and whether more follow. NoSuchUpload."""

        def work(conn: Connection) -> tuple[list[UploadPart], bool]:
            if (
                conn.execute(self._statements.upload_by_id, {"upload_id": upload_id}).first()
                is None
            ):
                raise NoSuchUpload(UploadId=upload_id)
            if max_parts <= 0:
                return [], False
            query = (
                select(upload_parts)
                .where(
                    upload_parts.c.upload_id == upload_id,
                    upload_parts.c.part_number > part_number_marker,
                )
                .order_by(upload_parts.c.part_number)
                .limit(max_parts + 1)
            )
            parts = [part_from_row(row) for row in conn.execute(query)]
            return parts[:max_parts], len(parts) > max_parts

        return await self._run(_SNAPSHOT, work)

    async def list_uploads(
        self,
        bucket: str,
        *,
        prefix: str = "",
        key_marker: str = "",
        upload_id_marker: str = "",
        max_uploads: int = 1000,
        tenant_id: bytes | None = None,
    ) -> UploadPage:
        """Pending uploads by (key, upload id) after the markers, as ListMultipartUploads.

        Without ``upload_id_marker`` the listing starts after every upload of ``key_marker``.
        Raises NoSuchBucket; with ``tenant_id``, AccessDenied unless that tenant owns it.
        """

        def work(conn: Connection) -> UploadPage:
            if tenant_id is None:
                self._require_bucket(conn, bucket)
            else:
                self._require_owner(conn, bucket, tenant_id, lock=False)
            if max_uploads <= 0:
                return UploadPage([], False)
            key = uploads.c.key
            query = select(uploads).where(uploads.c.bucket == bucket)
            if prefix:
                query = query.where(key >= prefix)
                upper = successor(prefix)
                if upper is not None:
                    query = query.where(key < upper)
            if upload_id_marker:
                query = query.where(
                    or_(
                        key > key_marker,
                        and_(key == key_marker, uploads.c.upload_id > upload_id_marker),
                    )
                )
            elif key_marker:
                query = query.where(key > key_marker)
            query = query.order_by(key, uploads.c.upload_id).limit(max_uploads + 1)
            found = [upload_from_row(row) for row in conn.execute(query)]
            return UploadPage(found[:max_uploads], len(found) > max_uploads)

        return await self._run(_SNAPSHOT, work)

    async def complete_upload(
        self,
        upload_id: str,
        record: ObjectRecord,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        audit: AuditEvent | None = None,
    ) -> tuple[ObjectRecord | None, list[UploadPart]]:
        """Remove the upload and its parts and commit ``record`` (and ``audit``, appended to
        the audit chain), in one transaction.

        Returns the replaced row (or None) and the parts ``record`` does not use. Raises
        NoSuchUpload, and PreconditionFailed/NoSuchKey as ``put_object`` (the upload then stays).
        """

        def work(conn: Connection) -> tuple[ObjectRecord | None, list[UploadPart]]:
            upload = conn.execute(self._statements.lock_upload, {"upload_id": upload_id}).first()
            if upload is None:
                raise NoSuchUpload(UploadId=upload_id)
            expected = (upload.bucket, upload.key, upload.tenant_id, upload.object_id)
            if expected != (record.bucket, record.key, record.tenant_id, record.object_id):
                raise IntegrityError("the completed object does not match its upload")
            parts = [
                part_from_row(row)
                for row in conn.execute(self._statements.delete_parts, {"upload_id": upload_id})
            ]
            # A part uploaded again while this completion was verifying replaced the row (and
            # its blob) the completion chose: committing would point the object at a blob that
            # is being deleted. The upload stays; the client completes again.
            current = {part.blob for part in parts}
            if any(stored.blob not in current for stored in record.parts):
                raise InvalidPart()
            conn.execute(self._statements.delete_upload, {"upload_id": upload_id})
            replaced = self._write_object(
                record, conn, if_match=if_match, if_none_match=if_none_match
            )
            used = {stored.blob for stored in record.parts}
            unused = sorted(
                (part for part in parts if part.blob not in used),
                key=lambda part: part.part_number,
            )
            if audit is not None:
                append_events(conn, [audit])
            return replaced, unused

        return await self._run(_WRITE, work)

    async def abort_upload(self, upload_id: str) -> list[UploadPart]:
        """Remove an upload and return its parts; NoSuchUpload if absent."""

        def work(conn: Connection) -> list[UploadPart]:
            parts = [
                part_from_row(row)
                for row in conn.execute(self._statements.delete_parts, {"upload_id": upload_id})
            ]
            removed = conn.execute(self._statements.delete_upload, {"upload_id": upload_id})
            if removed.rowcount == 0:
                raise NoSuchUpload(UploadId=upload_id)
            parts.sort(key=lambda part: part.part_number)
            return parts

        return await self._run(_WRITE, work)

    # -- maintenance ------------------------------------------------------------------------

    async def referenced_blobs(self, backend: str) -> set[tuple[str, str]]:
        """Every (container, blob) on ``backend`` that an object or a pending part points at.

        An object counts on each of its replicas and on each pending repair target (a repair in
        progress may already have copied some parts there); a pending part counts on every
        backend it landed on and on every target of its upload.
        """

        # The JSON lists are prefiltered by the quoted name, then decoded to be exact.
        quoted = encode_names([backend])[1:-1]

        def work(conn: Connection) -> set[tuple[str, str]]:
            referenced: set[tuple[str, str]] = set()
            rows = conn.execute(
                select(objects.c.container, objects.c.parts, objects.c.backends, objects.c.repairs)
                .where(
                    or_(
                        objects.c.backends.contains(quoted, autoescape=True),
                        objects.c.repairs.contains(quoted, autoescape=True),
                    )
                )
                .execution_options(yield_per=_SCAN_BATCH)
            )
            for container, parts, backends, repairs in rows:
                if backend in decode_names(backends) or backend in decode_names(repairs):
                    referenced.update((container, part.blob) for part in decode_parts(parts))
            pending = conn.execute(
                select(
                    uploads.c.container,
                    uploads.c.backends,
                    upload_parts.c.blob,
                    upload_parts.c.backends,
                )
                .join(upload_parts, upload_parts.c.upload_id == uploads.c.upload_id)
                .execution_options(yield_per=_SCAN_BATCH)
            )
            for container, targets, part_blob, landed in pending:
                if backend in decode_names(landed) or backend in decode_names(targets):
                    referenced.add((container, part_blob))
            return referenced

        return await self._run(_SNAPSHOT, work)

    async def objects_to_repair(
        self, *, after: tuple[str, str] = ("", ""), limit: int = 100
    ) -> list[ObjectRecord]:
        """Objects with pending repairs, ordered by (bucket, key), strictly after ``after``."""

        def work(conn: Connection) -> list[ObjectRecord]:
            bucket, key = after
            rows = conn.execute(
                select(objects)
                .where(
                    or_(objects.c.repairs != encode_names(()), objects.c.quarantined.is_not(None)),
                    or_(
                        objects.c.bucket > bucket,
                        and_(objects.c.bucket == bucket, objects.c.key > key),
                    ),
                )
                .order_by(objects.c.bucket, objects.c.key)
                .limit(limit)
            )
            return [object_from_row(row) for row in rows]

        return await self._run(_READ, work)

    async def set_replicas(
        self,
        bucket: str,
        key: str,
        object_id: bytes,
        backends: tuple[str, ...],
        repairs: tuple[str, ...],
    ) -> bool:
        """Replace an object's replica lists if the row still holds ``object_id``."""

        def work(conn: Connection) -> bool:
            changed = conn.execute(
                update(objects)
                .where(
                    objects.c.bucket == bucket,
                    objects.c.key == key,
                    objects.c.object_id == object_id,
                )
                .values(
                    backends=encode_names(backends),
                    repairs=encode_names(repairs),
                    quarantined=None,
                )
            ).rowcount
            return bool(changed)

        return await self._run(_WRITE, work)

    async def mark_replica_bad(
        self, bucket: str, key: str, object_id: bytes, backend: str, when: float
    ) -> ReplicaMark:
        """Move a failed replica to ``repairs``, or quarantine the object (its last replica)."""

        def work(conn: Connection) -> ReplicaMark:
            where = (
                objects.c.bucket == bucket,
                objects.c.key == key,
                objects.c.object_id == object_id,
            )
            # FOR UPDATE: two readers failing on the two replicas at once must not both move
            # theirs away and leave the row with none (SQLite's write lock serialises anyway).
            row = conn.execute(
                select(objects.c.backends, objects.c.repairs, objects.c.quarantined)
                .where(*where)
                .with_for_update()
            ).first()
            if row is None:
                return "unchanged"
            backends, repairs = decode_names(row.backends), decode_names(row.repairs)
            if backend not in backends:
                return "unchanged"
            if len(backends) == 1:
                if row.quarantined is None:
                    # The first failure dates the quarantine; later ones leave it.
                    conn.execute(update(objects).where(*where).values(quarantined=when))
                return "quarantined"
            kept = tuple(name for name in backends if name != backend)
            conn.execute(
                update(objects)
                .where(*where)
                .values(
                    backends=encode_names(kept),
                    repairs=encode_names((*repairs, backend)),
                )
            )
            return "moved_to_repairs"

        return await self._run(_WRITE, work)

    async def expired_objects(
        self,
        before: float,
        *,
        tenant_id: bytes | None = None,
        bucket: str | None = None,
        after: tuple[float, str, str] | None = None,
        limit: int = 200,
    ) -> list[ObjectRecord]:
        """Objects whose retention ended before ``before``, by (retention_until, bucket, key)."""

        def work(conn: Connection) -> list[ObjectRecord]:
            until = objects.c.retention_until
            query = select(objects).where(until.is_not(None), until < before)
            if tenant_id is not None:
                query = query.where(objects.c.tenant_id == tenant_id)
            if bucket is not None:
                query = query.where(objects.c.bucket == bucket)
            if after is not None:
                last_until, last_bucket, last_key = after
                query = query.where(
                    or_(
                        until > last_until,
                        and_(
                            until == last_until,
                            or_(
                                objects.c.bucket > last_bucket,
                                and_(objects.c.bucket == last_bucket, objects.c.key > last_key),
                            ),
                        ),
                    )
                )
            query = query.order_by(until, objects.c.bucket, objects.c.key).limit(limit)
            return [object_from_row(row) for row in conn.execute(query)]

        return await self._run(_READ, work)

    async def close(self) -> None:
        """Close every pooled connection."""
        await anyio.to_thread.run_sync(self._engine.dispose)

    # -- bucket keys ------------------------------------------------------------------------

    async def put_bucket_key(self, key: BucketKey) -> None:
        """Record a new bucket key; InvalidArgument if its id exists."""

        def work(conn: Connection) -> None:
            try:
                conn.execute(bucket_keys.insert(), bucket_key_values(key))
            except sa_exc.IntegrityError as exc:
                raise InvalidArgument("A bucket key with this id already exists.") from exc

        await self._run(_WRITE, work)

    async def get_bucket_key(self, bucket_key_id: bytes) -> BucketKey | None:
        """The bucket key with this id, or None."""

        def work(conn: Connection) -> BucketKey | None:
            row = conn.execute(
                select(bucket_keys).where(bucket_keys.c.bucket_key_id == bucket_key_id)
            ).first()
            return None if row is None else bucket_key_from_row(row)

        return await self._run(_READ, work)

    async def bucket_keys_below(
        self, key_name: str, version: int, *, after: bytes = b"", limit: int = 100
    ) -> list[BucketKey]:
        """Bucket keys under ``key_name`` wrapped by a version below ``version``, by id."""

        def work(conn: Connection) -> list[BucketKey]:
            rows = conn.execute(
                select(bucket_keys)
                .where(
                    bucket_keys.c.key_name == key_name,
                    bucket_keys.c.key_version < version,
                    bucket_keys.c.bucket_key_id > after,
                )
                .order_by(bucket_keys.c.bucket_key_id)
                .limit(limit)
            )
            return [bucket_key_from_row(row) for row in rows]

        return await self._run(_READ, work)

    async def rewrap_bucket_key(
        self, bucket_key_id: bytes, old_wrapped: str, wrapped: str, key_version: int
    ) -> bool:
        """Replace a bucket key's wrapped form if it is still ``old_wrapped``."""

        def work(conn: Connection) -> bool:
            changed = conn.execute(
                update(bucket_keys)
                .where(
                    bucket_keys.c.bucket_key_id == bucket_key_id,
                    bucket_keys.c.wrapped == old_wrapped,
                )
                .values(wrapped=wrapped, key_version=key_version)
            ).rowcount
            return bool(changed)

        return await self._run(_WRITE, work)

    # -- helpers ----------------------------------------------------------------------------

    def _require_bucket(self, conn: Connection, bucket: str) -> None:
        if conn.execute(self._statements.bucket_by_name, {"name": bucket}).first() is None:
            raise NoSuchBucket(BucketName=bucket)

    def _require_owner(
        self, conn: Connection, bucket: str, tenant_id: bytes, *, lock: bool
    ) -> None:
        """NoSuchBucket, or AccessDenied unless ``tenant_id`` owns ``bucket`` now.

        ``lock``: keep the bucket row from being deleted (and re-created by someone else) until
        the caller's transaction ends (PostgreSQL ``FOR SHARE``; SQLite writers are serialised).
        """
        statement = self._statements.share_bucket if lock else self._statements.bucket_by_name
        row = conn.execute(statement, {"name": bucket}).first()
        if row is None:
            raise NoSuchBucket(BucketName=bucket)
        if row.tenant_id != tenant_id:
            raise AccessDenied()

    def _require_unused_object_id(
        self, conn: Connection, object_id: bytes, replacing: tuple[str, str] | None
    ) -> None:
        """IntegrityError if an object row (other than the one at ``replacing``, bucket and key)
        or a pending upload holds ``object_id``: an id names one object version; reusing one
        would let a planted upload or row pass for another object (unique indexes back this)."""
        if replacing is None:
            holder = conn.execute(self._statements.object_id_used, {"object_id": object_id})
        else:
            bucket, key = replacing
            where = {"object_id": object_id, "bucket": bucket, "key": key}
            holder = conn.execute(self._statements.object_id_elsewhere, where)
        if holder.first() is not None:
            raise IntegrityError("object id already used by another object")
        pending = conn.execute(self._statements.object_id_pending, {"object_id": object_id})
        if pending.first() is not None:
            raise IntegrityError("object id already used by a pending upload")

    def _object_exists(self, conn: Connection, bucket: str, key: str) -> bool:
        row = conn.execute(self._statements.object_by_key, {"bucket": bucket, "key": key})
        return row.first() is not None


def _row_key(row: Any) -> str:
    key: str = row.key
    return key


class _Statements:
    """Statements of the hot paths, built once (SQLAlchemy then reuses their compiled form)."""

    def __init__(self, dialect: str) -> None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.tenant_by_id = select(tenants).where(tenants.c.tenant_id == bindparam("tenant_id"))
        self.access_key_by_id = select(access_keys).where(
            access_keys.c.access_key_id == bindparam("access_key_id")
        )
        self.bucket_by_name = select(buckets).where(buckets.c.name == bindparam("name"))
        self.lock_bucket = self.bucket_by_name.with_for_update()
        self.share_bucket = self.bucket_by_name.with_for_update(read=True)

        object_match = and_(
            objects.c.bucket == bindparam("bucket"), objects.c.key == bindparam("key")
        )
        self.object_by_key = select(objects).where(object_match)
        self.lock_object = self.object_by_key.with_for_update()
        self.delete_object = delete(objects).where(object_match).returning(*objects.c)
        # Conflicts are reported through rowcount (0 = a concurrent insert won), not exceptions.
        # SQLAlchemy keeps an INSERT's rowcount only when asked to.
        self.insert_object = (
            insert(objects)
            .on_conflict_do_nothing(index_elements=[objects.c.bucket, objects.c.key])
            .execution_options(preserve_rowcount=True)
        )
        self.update_object = update(objects).where(
            objects.c.bucket == bindparam("where_bucket"), objects.c.key == bindparam("where_key")
        )
        self.object_id_used = select(objects.c.object_id).where(
            objects.c.object_id == bindparam("object_id")
        )
        self.object_id_elsewhere = select(objects.c.object_id).where(
            objects.c.object_id == bindparam("object_id"),
            or_(objects.c.bucket != bindparam("bucket"), objects.c.key != bindparam("key")),
        )
        self.object_id_pending = select(uploads.c.object_id).where(
            uploads.c.object_id == bindparam("object_id")
        )

        self.upload_by_id = select(uploads).where(uploads.c.upload_id == bindparam("upload_id"))
        self.lock_upload = self.upload_by_id.with_for_update()
        self.delete_upload = delete(uploads).where(uploads.c.upload_id == bindparam("upload_id"))
        self.delete_parts = (
            delete(upload_parts)
            .where(upload_parts.c.upload_id == bindparam("upload_id"))
            .returning(*upload_parts.c)
        )
        part_match = and_(
            upload_parts.c.upload_id == bindparam("upload_id"),
            upload_parts.c.part_number == bindparam("part_number"),
        )
        self.lock_part = select(upload_parts).where(part_match).with_for_update()
        self.insert_part = (
            insert(upload_parts)
            .on_conflict_do_nothing(
                index_elements=[upload_parts.c.upload_id, upload_parts.c.part_number]
            )
            .execution_options(preserve_rowcount=True)
        )
        self.update_part = update(upload_parts).where(
            upload_parts.c.upload_id == bindparam("where_upload_id"),
            upload_parts.c.part_number == bindparam("where_part_number"),
        )


def _create_engine(url: str, pool_size: int, busy_timeout: float) -> tuple[Engine, bool]:
    """The engine for ``url`` and whether it is an in-memory SQLite database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(parsed, pool_size=pool_size, max_overflow=0, hide_parameters=True)
        return engine, False
    in_memory = parsed.database in (None, "", ":memory:")
    if in_memory:
        engine = create_engine(
            parsed,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            hide_parameters=True,
        )
    else:
        _create_private_file(str(parsed.database))
        engine = create_engine(parsed, pool_size=pool_size, max_overflow=0, hide_parameters=True)
    event.listen(
        engine,
        "connect",
        partial(_configure_sqlite, wal=not in_memory, busy_timeout_ms=round(busy_timeout * 1000)),
    )
    return engine, in_memory


def _create_private_file(path: str) -> None:
    """Create the database file readable by its owner only: the catalog holds health data.

    SQLite gives the -wal and -shm files it creates the same mode as the database file.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        _log.error("cannot create the catalog database file", exc_info=exc)
        raise ServiceUnavailable() from exc


def _configure_sqlite(
    dbapi_connection: DBAPIConnection,
    _record: ConnectionPoolEntry,
    *,
    wal: bool,
    busy_timeout_ms: int,
) -> None:
    # The sqlite3 module would otherwise open transactions itself, lazily and always DEFERRED;
    # SqlCatalog._call issues BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    if wal:
        cursor.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL loses no committed data on a crash of the process, only possibly the last
    # transactions on a power loss, and saves an fsync per commit.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted rows are overwritten, not just unlinked: a deleted object's wrapped DEK (its only
    # copy) must not linger in free pages of the file (object-level crypto-shredding).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _connection_modes(dialect: str) -> dict[str, tuple[dict[str, Any], TextClause | None]]:
    """Per mode: the execution options of the connection and the statement opening the
    transaction (SQLite only: the driver is in autocommit mode, see _configure_sqlite)."""
    if dialect == "sqlite":
        return {
            _READ: ({}, None),
            _SNAPSHOT: ({}, text("BEGIN DEFERRED")),
            _WRITE: ({}, text("BEGIN IMMEDIATE")),
        }
    return {
        _READ: ({"isolation_level": "AUTOCOMMIT"}, None),
        _SNAPSHOT: ({"isolation_level": "REPEATABLE READ"}, None),
        _WRITE: ({"isolation_level": "READ COMMITTED"}, None),
    }


def _is_foreign_key_violation(exc: sa_exc.IntegrityError) -> bool:
    """Whether the driver reports a missing parent row (rather than a duplicate)."""
    if getattr(exc.orig, "sqlite_errorcode", None) == _SQLITE_CONSTRAINT_FOREIGNKEY:
        return True
    return getattr(exc.orig, "sqlstate", None) == _PG_FOREIGN_KEY_VIOLATION


@contextmanager
def _map_errors() -> Iterator[None]:
    """Translate database errors into the error tree; log the cause, expose nothing."""
    try:
        yield
    except BlindstoreError:
        raise
    except (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        sa_exc.DisconnectionError,
    ) as exc:
        _log.warning("catalog database unavailable", exc_info=exc)
        raise ServiceUnavailable() from exc
    except sa_exc.SQLAlchemyError as exc:
        _log.error("catalog database error", exc_info=exc)
        raise BlindstoreError() from exc


__all__ = ["SqlCatalog"]
