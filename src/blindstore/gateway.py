"""The orchestrator: the only module that sequences I/O.

It takes the protocols (Catalog, KeyWrapper, Backend) in its constructor and never imports a
concrete implementation. Order of effects on a write: data key → encrypt while streaming to the
backend → verify digests → catalog commit (the commit point) → delete what was replaced.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import anyio
import structlog

from blindstore import crypto
from blindstore.audit import facts as audit_facts
from blindstore.audit.events import AuditSink
from blindstore.backends.base import Backend
from blindstore.backends.ids import new_blob_id
from blindstore.catalog.base import (
    AccessKey,
    Bucket,
    Catalog,
    ListPage,
    ObjectRecord,
    StoredPart,
    SubjectKey,
    Tenant,
    Upload,
    UploadPage,
    UploadPart,
)
from blindstore.errors import (
    AccessDenied,
    BackendUnavailable,
    BlindstoreError,
    BlobNotFound,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    EntityTooSmall,
    IntegrityError,
    InvalidArgument,
    InvalidPart,
    InvalidPartNumber,
    InvalidPartOrder,
    InvalidRequest,
    KeyShredded,
    MalformedXML,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
)
from blindstore.fanout import fan_out
from blindstore.keys.base import DataKey, KeyWrapper
from blindstore.policy.model import ObjectFacts, Placement, Policy
from blindstore.provenance import Provenance, check_required
from blindstore.s3.conditions import Conditions, check_copy_source, check_read
from blindstore.subjects import is_subject_key, subject_digest, subject_key_name

log = structlog.get_logger("blindstore.gateway")

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000
_NO_CONDITIONS = Conditions()
#: Blocks at least this large are hashed and encrypted in parallel worker threads.
_PARALLEL_MIN = 256 * 1024
#: Read errors after which the next replica is tried (when no plaintext byte was released yet).
_FAILOVER = (BackendUnavailable, BlobNotFound, IntegrityError)


class BodyCheck(Protocol):
    """Digests of an incoming plaintext body, fed once per byte, verified at the end."""

    def update(self, data: bytes) -> None: ...

    def update_md5(self, data: bytes) -> None:
        """The MD5 part of ``update``; runs concurrently with ``update_others``."""
        ...

    def update_others(self, data: bytes) -> None:
        """The rest of ``update``: ``update_md5`` + ``update_others`` == ``update``."""
        ...

    def verify(self) -> None:
        """Raise BadDigest/XAmzContentSHA256Mismatch/... if any declared digest differs."""
        ...

    def md5_hex(self) -> str: ...

    def checksums(self) -> dict[str, str]:
        """Checksums the client declared (algorithm → base64), to return on request."""
        ...


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the access key and the tenant it belongs to."""

    access_key_id: str
    tenant: Tenant


@dataclass(frozen=True, slots=True)
class WriteMeta:
    """What a client sets on an object besides its bytes."""

    headers: dict[str, str] = field(default_factory=dict)
    user_metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: The data subject (``x-blindstore-data-subject``): the object is wrapped under its key.
    subject: str | None = field(default=None, repr=False)
    #: A data subject's key name, inherited by a copy of one of its objects.
    subject_key: str | None = None
    #: Origin system, consent reference, legal basis and retention date (``x-blindstore-*``).
    provenance: Provenance = field(default_factory=Provenance)


@dataclass(frozen=True, slots=True)
class ObjectRead:
    """A GET result: the row, the byte range served (inclusive) and the verified body."""

    record: ObjectRecord
    start: int
    end: int
    partial: bool
    body: AsyncIterator[bytes]
    #: True when every byte of the body was verified before this object was returned.
    verified: bool


def _canonical_row(record: ObjectRecord, legacy_backend: str | None = None) -> bytes:
    """The row fields the row MAC covers.

    Excluded on purpose: the wrapped DEK and key version (a rewrap changes them; the Vault
    context already binds the wrapped DEK to tenant + object), tags (mutable without the DEK),
    and the replica lists ``backends``/``repairs``: a replica holds the same self-authenticating
    ciphertext, a row pointed at another backend can only be served bytes that verify under
    this object's keys, and repairs and moves must not need the DEK.
    """
    doc = {
        "bucket": record.bucket,
        "key": record.key,
        "tenant": record.tenant_id.hex(),
        "object": record.object_id.hex(),
        "container": record.container,
        "parts": [[p.part_number, p.blob, p.size, p.stored_size, p.etag] for p in record.parts],
        "size": record.size,
        "etag": record.etag,
        "last_modified": record.last_modified,
        "headers": record.headers,
        "meta": record.user_metadata,
        "checksums": record.checksums,
        "key_name": record.key_name,
    }
    # Provenance and retention (catalog revision 0005) are covered only when present, so that
    # every row MACed before them still verifies.
    if record.provenance:
        doc["provenance"] = record.provenance
    if record.retention_until is not None:
        doc["retention_until"] = record.retention_until
    if legacy_backend is not None:
        # Rows MACed before catalog revision 0002 also covered their one backend's name.
        doc["backend"] = legacy_backend
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def multipart_etag(part_md5s: list[str]) -> str:
    joined = b"".join(bytes.fromhex(m) for m in part_md5s)
    return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(part_md5s)}"


class Gateway:
    def __init__(
        self,
        catalog: Catalog,
        keys: KeyWrapper,
        backends: Mapping[str, Backend],
        *,
        default_backend: str,
        verify_whole_below: int = 4 * 1024 * 1024,
        io_buffer_bytes: int = 1024 * 1024,
        clock: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = secrets.token_bytes,
        bucket_cache_seconds: float = 1.0,
        placement: Callable[[ObjectFacts], Placement] | None = None,
    ) -> None:
        self.catalog = catalog
        self.keys = keys
        self.backends = dict(backends)
        self.default_backend = default_backend
        #: Where an object goes; None: the default backend alone, quorum 1.
        self.placement = placement
        #: Re-reads the placement policy (set by the composition root when there is one).
        self.reload_placement: Callable[[], bool] | None = None
        #: The placement policy in force (for the admin plane's explain), if any.
        self.current_policy: Callable[[], Policy | None] = lambda: None
        self.verify_whole_below = verify_whole_below
        self.io_buffer_bytes = io_buffer_bytes
        self.clock = clock
        self.rng = rng
        self._bucket_cache: dict[str, tuple[Bucket, float]] = {}
        #: Where audit records go (``blindstore.audit``); None: not audited (unit tests).
        self.audit: AuditSink | None = None
        #: Keys of crypto-shredded tenants and subjects (``refresh_revocations``): reads and
        #: writes under them are refused even while a DEK is still cached.
        self.revoked_keys: frozenset[str] = frozenset()
        self._bucket_cache_seconds = bucket_cache_seconds
        self._mono = time.monotonic

    async def close(self) -> None:
        await self.keys.close()
        for backend in self.backends.values():
            await backend.close()
        await self.catalog.close()

    # ------------------------------------------------------------------ identity

    async def lookup_access_key(self, access_key_id: str) -> tuple[AccessKey, Tenant] | None:
        key = await self.catalog.get_access_key(access_key_id)
        if key is None:
            return None
        tenant = await self.catalog.get_tenant(key.tenant_id)
        if tenant is None:
            return None
        return key, tenant

    async def refresh_revocations(self) -> None:
        """Re-read which keys were crypto-shredded (by ``blindstore keys shred``, any process)."""
        self.revoked_keys = await self.catalog.revoked_key_names()

    def check_not_revoked(self, key_name: str) -> None:
        """``KeyShredded`` if ``key_name`` was crypto-shredded."""
        if key_name in self.revoked_keys:
            scope = "data subject" if is_subject_key(key_name) else "tenant"
            raise KeyShredded(
                f"The {scope} key of this data was destroyed (crypto-shredding); "
                "it can never be read or written again."
            )

    # ------------------------------------------------------------------ buckets

    async def _bucket(self, name: str) -> Bucket | None:
        cached = self._bucket_cache.get(name)
        now = self._mono()
        if cached is not None and cached[1] > now:
            return cached[0]
        bucket = await self.catalog.get_bucket(name)
        if bucket is not None:
            self._bucket_cache[name] = (bucket, now + self._bucket_cache_seconds)
        return bucket

    async def owned_bucket(self, principal: Principal, name: str) -> Bucket:
        """The bucket if the caller's tenant owns it; AccessDenied if another tenant does."""
        bucket = await self._bucket(name)
        if bucket is None:
            raise NoSuchBucket(BucketName=name)
        if bucket.tenant_id != principal.tenant.tenant_id:
            raise AccessDenied()
        return bucket

    async def create_bucket(self, principal: Principal, name: str, region: str) -> None:
        bucket = Bucket(
            name=name, tenant_id=principal.tenant.tenant_id, created=self.clock(), region=region
        )
        try:
            await self.catalog.create_bucket(bucket)
        except BucketAlreadyExists:
            existing = await self.catalog.get_bucket(name)
            if existing is not None and existing.tenant_id == principal.tenant.tenant_id:
                raise BucketAlreadyOwnedByYou(BucketName=name) from None
            raise BucketAlreadyExists(BucketName=name) from None

    async def delete_bucket(self, principal: Principal, name: str) -> None:
        await self.owned_bucket(principal, name)
        parts = await self.catalog.delete_bucket(name)
        self._bucket_cache.pop(name, None)
        for part in parts:
            await self._delete_copies(part.backends, principal.tenant.container, part.blob)

    async def list_buckets(self, principal: Principal) -> list[Bucket]:
        return await self.catalog.list_buckets(principal.tenant.tenant_id)

    # ------------------------------------------------------------------ writes

    async def put_object(
        self,
        principal: Principal,
        bucket_name: str,
        key: str,
        body: AsyncIterator[bytes],
        check: BodyCheck,
        meta: WriteMeta,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        size: int | None = None,
    ) -> ObjectRecord:
        """Store an object on its placement's targets; ``size`` (if known) informs the policy."""
        await self.owned_bucket(principal, bucket_name)
        tenant = principal.tenant
        targets, quorum = self._place(principal, bucket_name, key, meta, size)
        datakey = await self._new_data_key(tenant, meta, bucket_name, size)
        part, stored, failed = await self._write_segment(
            targets, quorum, tenant, datakey.object_id, datakey.dek, 0, body, check
        )
        record = ObjectRecord(
            bucket=bucket_name,
            key=key,
            tenant_id=tenant.tenant_id,
            object_id=datakey.object_id,
            backends=stored,
            repairs=failed,
            container=tenant.container,
            parts=(part,),
            size=part.size,
            etag=part.etag,
            last_modified=self._now_ms(),
            wrapped_dek=datakey.wrapped,
            key_name=datakey.key_name,
            key_version=datakey.key_version,
            headers=meta.headers,
            user_metadata=meta.user_metadata,
            checksums=check.checksums(),
            tags=meta.tags,
            provenance=dict(meta.provenance.fields),
            retention_until=meta.provenance.retention_until,
        )
        return await self._commit(record, datakey.dek, if_match, if_none_match)

    async def _new_data_key(
        self, tenant: Tenant, meta: WriteMeta, bucket: str, size: int | None
    ) -> DataKey:
        """A DEK under the tenant's key (``bucket`` and ``size`` serve bucket-key mode), or
        under the data subject's key if there is one."""
        key_name = meta.subject_key
        if key_name is None and meta.subject is not None:
            key_name = await self._subject_key(tenant, meta.subject)
        if key_name is None:
            return await self.keys.new_data_key(
                tenant.key_name, tenant.tenant_id, bucket=bucket, size=size
            )
        self.check_not_revoked(key_name)
        # A subject key wraps few objects: no pool. Transit creates it on first use (upsert).
        return await self.keys.new_data_key(key_name, tenant.tenant_id, pooled=False)

    async def _subject_key(self, tenant: Tenant, subject: str) -> str:
        """The live key of a data subject, recorded on first use."""
        digest = subject_digest(tenant.tenant_id, subject)
        found = await self.catalog.get_subject_key(tenant.tenant_id, digest)
        if found is not None:
            return found.key_name
        prefix = tenant.key_name.removesuffix(f"t-{tenant.tenant_id.hex()}")
        created = await self.catalog.add_subject_key(
            SubjectKey(
                key_name=subject_key_name(prefix, tenant.tenant_id, self.rng),
                tenant_id=tenant.tenant_id,
                subject_digest=digest,
                created=self.clock(),
            )
        )
        return created.key_name

    async def _commit(
        self, record: ObjectRecord, dek: bytes, if_match: str | None, if_none_match: bool
    ) -> ObjectRecord:
        record = replace(
            record, row_mac=crypto.row_mac(dek, record.object_id, _canonical_row(record))
        )
        try:
            replaced = await self.catalog.put_object(
                record, if_match=if_match, if_none_match=if_none_match
            )
        except BaseException:
            await self._discard(record)
            raise
        audit_facts.note(record)
        if replaced is not None:
            await self._discard(replaced)
        # A read soon after a write (very common) then needs no Vault round trip.
        self.keys.remember(
            record.key_name,
            record.tenant_id,
            record.object_id,
            record.wrapped_dek,
            dek,
            size=record.size,
        )
        return record

    def _place(
        self,
        principal: Principal,
        bucket_name: str,
        key: str,
        meta: WriteMeta,
        size: int | None,
    ) -> tuple[list[Backend], int]:
        """The backends an object goes to (in preference order) and its write quorum."""
        if self.placement is None:
            return [self.backends[self.default_backend]], 1
        facts = ObjectFacts(
            tenant=principal.tenant.name,
            bucket=bucket_name,
            key=key,
            tags=meta.tags,
            classification=meta.user_metadata.get("classification"),
            size=size,
            content_type=meta.headers.get("content-type"),
        )
        placement = self.placement(facts)
        # Before any key or blob exists: a refused write stores nothing.
        check_required(placement.require, meta.provenance, placement.rule)
        missing = [name for name in placement.targets if name not in self.backends]
        if missing:
            # A policy reloaded with a backend this process never built: fail closed.
            log.error("placement_backend_unknown", rule=placement.rule, backends=missing)
            raise BackendUnavailable(f"placement names unknown backends {missing}")
        return [self.backends[name] for name in placement.targets], placement.quorum

    async def _write_segment(
        self,
        targets: Sequence[Backend],
        quorum: int,
        tenant: Tenant,
        object_id: bytes,
        dek: bytes,
        part_number: int,
        body: AsyncIterator[bytes],
        check: BodyCheck,
    ) -> tuple[StoredPart, tuple[str, ...], tuple[str, ...]]:
        """Encrypt ``body`` as one segment into a new blob on every target; verify digests
        before it lands. Returns the part, the targets that stored it and those that failed;
        BackendUnavailable (nothing stored) when fewer than ``quorum`` stored it."""
        sealer = crypto.SegmentSealer(dek, tenant.tenant_id, object_id, part_number, rng=self.rng)
        size = 0
        buffer_limit = self.io_buffer_bytes

        async def ciphertext() -> AsyncIterator[bytes]:
            nonlocal size
            head = sealer.prefix()
            async for block in _prefetched(_blocks(body, buffer_limit), buffer_limit):
                size += len(block)
                if len(block) >= _PARALLEL_MIN:
                    # MD5 (the ETag, the slowest hash) in one worker thread, the other digests
                    # and AES-GCM in another: both release the GIL on large buffers, so a large
                    # PUT uses both cores.
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(anyio.to_thread.run_sync, check.update_md5, block)
                        out = await anyio.to_thread.run_sync(_digest_and_seal, check, sealer, block)
                else:
                    check.update(block)
                    out = sealer.update(block)
                if head:
                    out, head = head + out, b""
                if out:
                    yield out
            # Digests are verified before the last bytes are handed over, so a mismatch makes
            # the backend discard the blob: nothing is stored.
            check.verify()
            yield head + sealer.finalize()

        blob = new_blob_id(self.rng)
        if len(targets) == 1:
            # One target: its own error is the answer (no fan-out machinery on the common path).
            sizes = {targets[0].name: await targets[0].put(tenant.container, blob, ciphertext())}
        else:
            sizes = (await fan_out(targets, tenant.container, blob, ciphertext())).sizes
        expected = crypto.segment_size(size)
        stored: list[str] = []
        for backend in targets:
            if backend.name not in sizes:
                continue
            if sizes[backend.name] == expected:
                stored.append(backend.name)
            else:  # a backend that lost bytes must not be recorded as a replica
                log.warning("replica_size_mismatch", backend=backend.name)
                await self._delete_blob(backend, tenant.container, blob)
        if len(stored) < quorum:
            await self._delete_copies(stored, tenant.container, blob)
            if len(targets) == 1:
                raise IntegrityError("stored size differs from the segment size")
            log.error("write_quorum_not_met", stored=len(stored), quorum=quorum)
            raise BackendUnavailable("write quorum not met")
        failed = tuple(b.name for b in targets if b.name not in stored)
        part = StoredPart(
            part_number=part_number,
            blob=blob,
            size=size,
            stored_size=expected,
            etag=check.md5_hex(),
        )
        return part, tuple(stored), failed

    async def _discard(self, record: ObjectRecord) -> None:
        """Delete the blobs of a row that no longer exists (or never was committed)."""
        self.keys.forget(record.tenant_id, record.object_id)
        # Repair targets too: an interrupted repair may have copied some parts there.
        names = (*record.backends, *record.repairs)
        for part in record.parts:
            await self._delete_copies(names, record.container, part.blob)

    async def _delete_copies(self, names: Sequence[str], container: str, blob: str) -> None:
        """Delete ``blob`` from each named backend this gateway knows."""
        for name in names:
            backend = self.backends.get(name)
            if backend is not None:
                await self._delete_blob(backend, container, blob)

    async def _delete_blob(self, backend: Backend, container: str, blob: str) -> None:
        # Best effort: a blob left behind is an orphan that `blindstore gc` removes.
        try:
            await backend.delete(container, blob)
        except BlindstoreError as exc:
            log.warning("blob_delete_failed", backend=backend.name, error=type(exc).__name__)

    def _now_ms(self) -> float:
        return round(self.clock(), 3)

    # ------------------------------------------------------------------ reads

    async def head_object(self, principal: Principal, bucket_name: str, key: str) -> ObjectRecord:
        await self.owned_bucket(principal, bucket_name)
        record = await self.catalog.get_object(bucket_name, key)
        if record is None:
            raise NoSuchKey(Key=key)
        audit_facts.note(record)
        return record

    async def _open_record(self, record: ObjectRecord) -> bytes:
        """Unwrap the DEK and authenticate the catalog row with it."""
        self.check_not_revoked(record.key_name)
        dek = await self.keys.unwrap(
            record.key_name, record.tenant_id, record.object_id, record.wrapped_dek
        )
        try:
            crypto.verify_row_mac(dek, record.object_id, _canonical_row(record), record.row_mac)
        except IntegrityError:
            # A row written before revision 0002: its MAC covered the one backend it was on,
            # which the migration kept in its replica list.
            for name in record.backends:
                legacy = _canonical_row(record, legacy_backend=name)
                try:
                    crypto.verify_row_mac(dek, record.object_id, legacy, record.row_mac)
                except IntegrityError:
                    continue
                return dek
            raise
        return dek

    async def get_object(
        self,
        principal: Principal,
        bucket_name: str,
        key: str,
        *,
        conditions: Conditions = _NO_CONDITIONS,
        byte_range: tuple[int, int] | None = None,
        part_number: int | None = None,
        range_parser: Callable[[int], tuple[int, int] | None] | None = None,
        head: bool = False,
    ) -> ObjectRead:
        """Read an object (or a range, or one part) as verified plaintext.

        ``range_parser`` maps the object size to an inclusive range (or None for all of it);
        it is called once the size is known.
        """
        record = await self.head_object(principal, bucket_name, key)
        check_read(conditions, record.etag, record.last_modified)
        start, end, partial = 0, record.size - 1, False
        if part_number is not None:
            start, end = self._part_range(record, part_number)
            partial = len(record.parts) > 1 or record.parts[0].part_number != 0
        elif range_parser is not None:
            parsed = range_parser(record.size)
            if parsed is not None:
                start, end = parsed
                partial = True
        elif byte_range is not None:
            start, end = byte_range
            partial = True
        if head:
            return ObjectRead(record, start, end, partial, _empty(), verified=False)
        dek = await self._open_record(record)
        if not partial and len(record.parts) == 1 and record.size <= self.verify_whole_below:
            data = await self._from_any_replica(
                record, lambda backend: self._open_small(backend, record, dek)
            )
            return ObjectRead(record, start, end, partial, _once(data), verified=True)
        body = self._plaintext(record, dek, start, end)
        if end - start + 1 <= self.verify_whole_below:
            data = b"".join([chunk async for chunk in body])
            return ObjectRead(record, start, end, partial, _once(data), verified=True)
        return ObjectRead(record, start, end, partial, body, verified=False)

    def _replicas(self, record: ObjectRecord) -> list[Backend]:
        """The backends holding ``record``, in read-preference order (unknown names skipped)."""
        replicas = [self.backends[name] for name in record.backends if name in self.backends]
        if not replicas:
            raise IntegrityError(f"no known backend among {record.backends!r}")
        return replicas

    async def _from_any_replica(
        self, record: ObjectRecord, attempt: Callable[[Backend], Awaitable[bytes]]
    ) -> bytes:
        """``attempt`` on each replica in turn until one succeeds; the last error otherwise.

        Safe because ``attempt`` verifies everything before returning: nothing has reached the
        client when a replica fails.
        """
        replicas = self._replicas(record)
        for backend in replicas[:-1]:
            try:
                return await attempt(backend)
            except _FAILOVER as exc:
                _log_failover(backend, exc)
        return await attempt(replicas[-1])

    async def _open_small(self, backend: Backend, record: ObjectRecord, dek: bytes) -> bytes:
        """A small single-segment object, fetched and verified in one piece (the fast path)."""
        part = record.parts[0]
        # One byte past the end, so that appended bytes are seen and refused.
        stream = backend.get(record.container, part.blob, 0, part.stored_size + 1)
        blob = b"".join([chunk async for chunk in stream])
        return crypto.open_segment(
            dek,
            record.tenant_id,
            record.object_id,
            part.part_number,
            blob,
            plaintext_size=part.size,
        )

    @staticmethod
    def _part_range(record: ObjectRecord, part_number: int) -> tuple[int, int]:
        if part_number < 1 or part_number > MAX_PARTS:
            raise InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive",
                ArgumentName="partNumber",
            )
        if len(record.parts) == 1 and record.parts[0].part_number == 0:
            if part_number != 1:
                raise InvalidPartNumber(PartNumberRequested=str(part_number), ActualPartCount="1")
            return 0, record.size - 1
        if part_number > len(record.parts):
            raise InvalidPartNumber(
                PartNumberRequested=str(part_number), ActualPartCount=str(len(record.parts))
            )
        start = sum(p.size for p in record.parts[: part_number - 1])
        return start, start + record.parts[part_number - 1].size - 1

    async def _plaintext(
        self, record: ObjectRecord, dek: bytes, start: int, end: int
    ) -> AsyncIterator[bytes]:
        """Yield plaintext [start, end] (inclusive), reading and verifying covering chunks only.

        Each part is read from the first replica that yields its first verified bytes: a
        replica failing before then is skipped; one failing later aborts the read (bytes were
        already released).
        """
        replicas = self._replicas(record)
        offset = 0
        for part in record.parts:
            part_start, offset = offset, offset + part.size
            if record.size == 0:
                # An empty object still has a segment: open it so a forged one is refused.
                async for chunk in self._part_from_replicas(replicas, record, part, dek, 0, -1):
                    yield chunk
                return
            if part.size == 0 or offset - 1 < start or part_start > end:
                continue
            lo = max(start, part_start) - part_start
            hi = min(end, offset - 1) - part_start
            async for chunk in self._part_from_replicas(replicas, record, part, dek, lo, hi):
                yield chunk

    async def _part_from_replicas(
        self,
        replicas: list[Backend],
        record: ObjectRecord,
        part: StoredPart,
        dek: bytes,
        lo: int,
        hi: int,
    ) -> AsyncIterator[bytes]:
        """``_read_part`` from the first replica that yields its first bytes (or ends cleanly)."""
        for index, backend in enumerate(replicas):
            stream = self._read_part(backend, record, part, dek, lo, hi)
            try:
                first = await anext(stream, None)
            except _FAILOVER as exc:
                if index == len(replicas) - 1:
                    raise
                _log_failover(backend, exc)
                continue
            if first is None:
                return
            yield first
            async for chunk in stream:
                yield chunk
            return

    async def _read_part(
        self,
        backend: Backend,
        record: ObjectRecord,
        part: StoredPart,
        dek: bytes,
        lo: int,
        hi: int,
    ) -> AsyncIterator[bytes]:
        """Plaintext bytes [lo, hi] of one segment, verified chunk by chunk before release.

        ``hi = -1`` reads an empty segment. Reads that reach the final chunk fetch to the end of
        the blob, so trailing bytes appended by a backend are seen and refused.
        """
        if part.stored_size != crypto.segment_size(part.size):
            raise IntegrityError("manifest sizes disagree")
        ids = (dek, record.tenant_id, record.object_id, part.part_number)
        if part.size == 0 or (lo == 0 and hi == part.size - 1):
            stream = crypto.segment_reader(*ids, plaintext_size=part.size)
            # One byte past the end: a backend holding appended bytes is caught, and the read
            # stays bounded (small reads can then be served without a thread hop).
            fetch = backend.get(record.container, part.blob, 0, part.stored_size + 1)
            skip = 0
        else:
            span = crypto.chunk_span(part.size, lo, hi)
            reaches_final = span.last_chunk == part.size // crypto.CHUNK
            fetch_end = part.stored_size + 1 if reaches_final else span.ct_end
            if span.first_chunk == 0:
                fetch = backend.get(record.container, part.blob, 0, fetch_end)
                prefix, fetch = await _take(fetch, crypto.PREFIX_SIZE)
            else:
                head = backend.get(record.container, part.blob, 0, crypto.PREFIX_SIZE)
                prefix, _ = await _take(head, crypto.PREFIX_SIZE)
                fetch = backend.get(record.container, part.blob, span.ct_start, fetch_end)
            opener = crypto.SegmentOpener(*ids, plaintext_size=part.size, prefix=prefix)
            stream = opener.stream(span.first_chunk, span.last_chunk)
            skip = lo - span.first_chunk * crypto.CHUNK
        remaining = hi - lo + 1
        # The bytes that complete the window are held back until the stream has ended cleanly:
        # a blob with bytes appended, or cut just before an empty final chunk, must not reach
        # the client whole (Content-Length satisfied) before the damage is seen.
        held: list[bytes] = []
        async for data in fetch:
            # Large pieces decrypt in a worker thread (AES-GCM releases the GIL), so the event
            # loop keeps sending the previous piece meanwhile.
            if len(data) >= _PARALLEL_MIN:
                plain = await anyio.to_thread.run_sync(stream.feed, data)
            else:
                plain = stream.feed(data)
            if plain:
                out, skip, remaining = _window(plain, skip, remaining)
                if remaining == 0:
                    held.append(out)
                elif out:
                    yield out
        out, skip, remaining = _window(stream.finish(), skip, remaining)
        if remaining > 0:
            raise IntegrityError("segment shorter than the manifest")
        held.append(out)
        tail = b"".join(held)
        if tail:
            yield tail

    # ------------------------------------------------------------------ delete, tags, list

    async def delete_object(self, principal: Principal, bucket_name: str, key: str) -> None:
        await self.owned_bucket(principal, bucket_name)
        removed = await self.catalog.delete_object(bucket_name, key)
        if removed is not None:
            audit_facts.note(removed)
            await self._discard(removed)

    async def delete_object_version(
        self, bucket_name: str, key: str, object_id: bytes
    ) -> ObjectRecord | None:
        """Delete an object as DELETE does, but only while its row still holds ``object_id``.

        For jobs that act on a row they read earlier (``blindstore retention enforce``): an
        object overwritten meanwhile is a new version that is left alone (None is returned).
        """
        removed = await self.catalog.delete_object_version(bucket_name, key, object_id)
        if removed is not None:
            await self._discard(removed)
        return removed

    async def get_tags(self, principal: Principal, bucket_name: str, key: str) -> dict[str, str]:
        return (await self.head_object(principal, bucket_name, key)).tags

    async def put_tags(
        self, principal: Principal, bucket_name: str, key: str, tags: dict[str, str]
    ) -> None:
        await self.owned_bucket(principal, bucket_name)
        await self.catalog.set_tags(bucket_name, key, tags)

    async def list_objects(
        self,
        principal: Principal,
        bucket_name: str,
        *,
        prefix: str,
        delimiter: str,
        start_after: str,
        max_keys: int,
    ) -> ListPage:
        await self.owned_bucket(principal, bucket_name)
        return await self.catalog.list_objects(
            bucket_name,
            prefix=prefix,
            delimiter=delimiter,
            start_after=start_after,
            max_keys=max_keys,
        )

    # ------------------------------------------------------------------ copy

    async def copy_object(
        self,
        principal: Principal,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        check: BodyCheck,
        *,
        source_conditions: Conditions,
        meta: WriteMeta | None,
        tags: dict[str, str] | None,
        subject: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectRecord:
        """Copy by decrypting the source and re-encrypting under a fresh DEK.

        ``meta`` None means COPY (keep the source's metadata), ``tags`` None keeps the source's.
        """
        await self.owned_bucket(principal, dst_bucket)
        source = await self.head_object(principal, src_bucket, src_key)
        check_copy_source(source_conditions, source.etag, source.last_modified)
        if meta is None and src_bucket == dst_bucket and src_key == dst_key:
            raise InvalidRequest(
                "This copy request is illegal because it is trying to copy an object to itself "
                "without changing the object's metadata, storage class, website redirect location "
                "or encryption attributes."
            )
        dek = await self._open_record(source)
        body = self._plaintext(source, dek, 0, source.size - 1)
        chosen = meta or WriteMeta(
            headers=source.headers,
            user_metadata=source.user_metadata,
            provenance=Provenance(source.provenance, source.retention_until),
        )
        chosen = replace(chosen, tags=source.tags if tags is None else tags)
        if subject is not None:
            chosen = replace(chosen, subject=subject, subject_key=None)
        elif source.key_name != principal.tenant.key_name:
            # A copy of a data subject's object stays under that subject's key.
            chosen = replace(chosen, subject_key=source.key_name)
        return await self.put_object(
            principal,
            dst_bucket,
            dst_key,
            body,
            check,
            chosen,
            if_match=if_match,
            if_none_match=if_none_match,
            size=source.size,
        )

    # ------------------------------------------------------------------ multipart

    async def create_upload(
        self,
        principal: Principal,
        bucket_name: str,
        key: str,
        meta: WriteMeta,
        checksum_algorithm: str | None = None,
    ) -> Upload:
        await self.owned_bucket(principal, bucket_name)
        tenant = principal.tenant
        # Placed now, size unknown: every part goes to the same targets.
        targets, quorum = self._place(principal, bucket_name, key, meta, None)
        datakey = await self._new_data_key(tenant, meta, bucket_name, None)
        upload = Upload(
            upload_id=base64.urlsafe_b64encode(self.rng(24)).decode().rstrip("="),
            bucket=bucket_name,
            key=key,
            tenant_id=tenant.tenant_id,
            object_id=datakey.object_id,
            backends=tuple(backend.name for backend in targets),
            container=tenant.container,
            wrapped_dek=datakey.wrapped,
            key_name=datakey.key_name,
            key_version=datakey.key_version,
            initiated=self._now_ms(),
            headers=meta.headers,
            user_metadata=meta.user_metadata,
            tags=meta.tags,
            checksum_algorithm=checksum_algorithm,
            quorum=quorum,
            provenance=dict(meta.provenance.fields),
            retention_until=meta.provenance.retention_until,
        )
        await self.catalog.create_upload(upload)
        audit_facts.note(upload)
        return upload

    async def _upload(
        self, principal: Principal, bucket_name: str, key: str, upload_id: str
    ) -> Upload:
        await self.owned_bucket(principal, bucket_name)
        upload = await self.catalog.get_upload(upload_id)
        if upload is None or upload.bucket != bucket_name or upload.key != key:
            raise NoSuchUpload(UploadId=upload_id)
        audit_facts.note(upload)
        return upload

    async def upload_part(
        self,
        principal: Principal,
        bucket_name: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterator[bytes],
        check: BodyCheck,
    ) -> UploadPart:
        if not 1 <= part_number <= MAX_PARTS:
            raise InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive",
                ArgumentName="partNumber",
            )
        upload = await self._upload(principal, bucket_name, key, upload_id)
        self.check_not_revoked(upload.key_name)
        dek = await self.keys.unwrap(
            upload.key_name, upload.tenant_id, upload.object_id, upload.wrapped_dek
        )
        targets = self._upload_targets(upload)
        stored, landed, _failed = await self._write_segment(
            targets,
            upload.quorum,
            principal.tenant,
            upload.object_id,
            dek,
            part_number,
            body,
            check,
        )
        part = UploadPart(
            upload_id=upload_id,
            part_number=part_number,
            blob=stored.blob,
            size=stored.size,
            stored_size=stored.stored_size,
            etag=stored.etag,
            last_modified=self._now_ms(),
            checksums=check.checksums(),
            backends=landed,
        )
        try:
            replaced = await self.catalog.put_part(part)
        except BaseException:
            await self._delete_copies(landed, upload.container, part.blob)
            raise
        if replaced is not None:
            await self._delete_copies(replaced.backends, upload.container, replaced.blob)
        return part

    def _upload_targets(self, upload: Upload) -> list[Backend]:
        missing = [name for name in upload.backends if name not in self.backends]
        if missing:
            log.error("upload_backend_unknown", backends=missing)
            raise BackendUnavailable(f"upload targets unknown backends {missing}")
        return [self.backends[name] for name in upload.backends]

    async def complete_upload(
        self,
        principal: Principal,
        bucket_name: str,
        key: str,
        upload_id: str,
        requested: list[tuple[int, str]],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectRecord:
        upload = await self._upload(principal, bucket_name, key, upload_id)
        if not requested:
            raise MalformedXML()
        numbers = [n for n, _ in requested]
        if any(b <= a for a, b in itertools.pairwise(numbers)):
            raise InvalidPartOrder()
        known: dict[int, UploadPart] = {}
        marker = 0
        while True:
            page, truncated = await self.catalog.list_parts(upload_id, part_number_marker=marker)
            known.update((p.part_number, p) for p in page)
            if not truncated or not page:
                break
            marker = page[-1].part_number
        chosen: list[UploadPart] = []
        for number, etag in requested:
            part = known.get(number)
            if part is None or part.etag != etag.strip('"'):
                raise InvalidPart(PartNumber=str(number), ETag=etag)
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < MIN_PART_SIZE:
                raise EntityTooSmall(
                    ProposedSize=str(part.size),
                    MinSizeAllowed=str(MIN_PART_SIZE),
                    PartNumber=str(part.part_number),
                    ETag=part.etag,
                )
        # The object's replicas are the targets holding every chosen part; the others get
        # the missing parts from ``blindstore repair``.
        complete = tuple(n for n in upload.backends if all(n in p.backends for p in chosen))
        short = [p.part_number for p in chosen if len(p.backends) < upload.quorum]
        if short or not complete:
            log.error("multipart_quorum_not_met", parts=short, complete=len(complete))
            raise BackendUnavailable("no backend holds every part: upload the parts again")
        self.check_not_revoked(upload.key_name)
        dek = await self.keys.unwrap(
            upload.key_name, upload.tenant_id, upload.object_id, upload.wrapped_dek
        )
        record = ObjectRecord(
            bucket=bucket_name,
            key=key,
            tenant_id=upload.tenant_id,
            object_id=upload.object_id,
            backends=complete,
            repairs=tuple(n for n in upload.backends if n not in complete),
            container=upload.container,
            parts=tuple(
                StoredPart(
                    part_number=p.part_number,
                    blob=p.blob,
                    size=p.size,
                    stored_size=p.stored_size,
                    etag=p.etag,
                )
                for p in chosen
            ),
            size=sum(p.size for p in chosen),
            etag=multipart_etag([p.etag for p in chosen]),
            last_modified=self._now_ms(),
            wrapped_dek=upload.wrapped_dek,
            key_name=upload.key_name,
            key_version=upload.key_version,
            headers=upload.headers,
            user_metadata=upload.user_metadata,
            tags=upload.tags,
            provenance=upload.provenance,
            retention_until=upload.retention_until,
        )
        record = replace(
            record, row_mac=crypto.row_mac(dek, record.object_id, _canonical_row(record))
        )
        replaced, unused = await self.catalog.complete_upload(
            upload_id, record, if_match=if_match, if_none_match=if_none_match
        )
        audit_facts.note(record)
        for part in unused:
            await self._delete_copies(part.backends, upload.container, part.blob)
        if replaced is not None:
            await self._discard(replaced)
        # As after a PUT; bucket-key mode also counts the size, unknown when the DEK was issued.
        self.keys.remember(
            record.key_name,
            record.tenant_id,
            record.object_id,
            record.wrapped_dek,
            dek,
            size=record.size,
        )
        return record

    async def abort_upload(
        self, principal: Principal, bucket_name: str, key: str, upload_id: str
    ) -> None:
        upload = await self._upload(principal, bucket_name, key, upload_id)
        parts = await self.catalog.abort_upload(upload_id)
        for part in parts:
            await self._delete_copies(part.backends, upload.container, part.blob)
        self.keys.forget(upload.tenant_id, upload.object_id)

    async def list_parts(
        self,
        principal: Principal,
        bucket_name: str,
        key: str,
        upload_id: str,
        *,
        part_number_marker: int,
        max_parts: int,
    ) -> tuple[Upload, list[UploadPart], bool]:
        upload = await self._upload(principal, bucket_name, key, upload_id)
        parts, truncated = await self.catalog.list_parts(
            upload_id, part_number_marker=part_number_marker, max_parts=max_parts
        )
        return upload, parts, truncated

    async def list_uploads(
        self,
        principal: Principal,
        bucket_name: str,
        *,
        prefix: str,
        key_marker: str,
        upload_id_marker: str,
        max_uploads: int,
    ) -> UploadPage:
        await self.owned_bucket(principal, bucket_name)
        return await self.catalog.list_uploads(
            bucket_name,
            prefix=prefix,
            key_marker=key_marker,
            upload_id_marker=upload_id_marker,
            max_uploads=max_uploads,
        )


def _log_failover(backend: Backend, exc: BaseException) -> None:
    log.warning("replica_read_failed", backend=backend.name, error=type(exc).__name__)


def _window(plain: bytes, skip: int, remaining: int) -> tuple[bytes, int, int]:
    """Cut the requested window out of a run of verified plaintext."""
    if skip:
        cut = min(skip, len(plain))
        plain = plain[cut:]
        skip -= cut
    out = plain[:remaining]
    return out, skip, remaining - len(out)


async def _prefetched(blocks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Yield blocks while the next one is already being received.

    Without it, the socket is read only between blocks (uvicorn stops reading once 64 KiB are
    buffered), so receiving and hashing/encrypting never overlap. A short first block is the
    whole body: no task is started for small objects.
    """
    first = await anext(blocks, None)
    if first is None:
        return
    if len(first) < size:
        yield first
        return
    pending = asyncio.ensure_future(anext(blocks, None))
    try:
        yield first
        while (block := await pending) is not None:
            pending = asyncio.ensure_future(anext(blocks, None))
            yield block
    finally:
        if not pending.done():
            pending.cancel()
        elif not pending.cancelled():
            pending.exception()  # retrieved: the caller already has its own error


def _digest_and_seal(check: BodyCheck, sealer: crypto.SegmentSealer, block: bytes) -> bytes:
    check.update_others(block)
    return sealer.update(block)


async def _blocks(body: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup a body into blocks of at least ``size`` bytes (the last may be shorter)."""
    pending: list[bytes] = []
    pending_len = 0
    async for data in body:
        pending.append(data)
        pending_len += len(data)
        if pending_len >= size:
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending, pending_len = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else b"".join(pending)


async def _take(stream: AsyncIterator[bytes], n: int) -> tuple[bytes, AsyncIterator[bytes]]:
    """The first ``n`` bytes of a stream, and the stream of everything after them."""
    buf = bytearray()
    async for data in stream:
        buf += data
        if len(buf) >= n:
            break
    if len(buf) < n:
        raise IntegrityError("blob shorter than its header")
    rest = bytes(buf[n:])

    async def remainder() -> AsyncIterator[bytes]:
        if rest:
            yield rest
        async for data in stream:
            yield data

    return bytes(buf[:n]), remainder()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _empty() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk
