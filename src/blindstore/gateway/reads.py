"""Reads: row authentication, ranges and parts, verified plaintext, replica failover."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import structlog

from blindstore import crypto
from blindstore.audit import facts as audit_facts
from blindstore.audit.events import AuditEvent
from blindstore.backends.base import Backend
from blindstore.catalog.base import ObjectRecord, StoredPart
from blindstore.errors import (
    BackendUnavailable,
    BlindstoreError,
    BlobNotFound,
    IntegrityError,
    InvalidArgument,
    InvalidPartNumber,
    NoSuchKey,
)
from blindstore.gateway.base import GatewayBase
from blindstore.gateway.leases import LeasedBody
from blindstore.gateway.records import MAX_PARTS, ObjectRead, Principal, canonical_row
from blindstore.gateway.streams import PARALLEL_MIN, empty, once, take, window
from blindstore.s3.conditions import Conditions, check_read

log = structlog.get_logger("blindstore.gateway")

_NO_CONDITIONS = Conditions()
#: Read errors after which the next replica is tried (when no plaintext byte was released yet).
_FAILOVER = (BackendUnavailable, BlobNotFound, IntegrityError)
#: The audit operation of a replica whose blob failed verification (docs/audit.md).
INTEGRITY_FAILURE = "integrity.failure"


class Reads(GatewayBase):
    """The read path of ``Gateway``."""

    async def head_object(self, principal: Principal, bucket_name: str, key: str) -> ObjectRecord:
        """The caller's object row, authenticated: metadata is revealed only after the
        revocation check and the row MAC (a shredded patient's metadata is refused too)."""
        record = await self._lookup(principal, bucket_name, key)
        await self._open_record(record)
        return record

    async def _lookup(self, principal: Principal, bucket_name: str, key: str) -> ObjectRecord:
        """The object row, if it is the caller's tenant's; not yet authenticated."""
        await self.owned_bucket(principal, bucket_name)
        record = await self.catalog.get_object(bucket_name, key)
        if record is None:
            raise NoSuchKey(Key=key)
        if record.tenant_id != principal.tenant.tenant_id:
            # Either the bucket changed hands since ``owned_bucket`` cached its owner (deleted,
            # then re-created by another tenant, possibly through another gateway: AccessDenied
            # from the catalog now), or the row was edited (it can only be refused).
            await self.owned_bucket(principal, bucket_name, fresh=True)
            raise IntegrityError("object row names another tenant")
        audit_facts.note(record)
        return record

    async def _open_record(self, record: ObjectRecord) -> bytes:
        """Unwrap the DEK and authenticate the catalog row with it."""
        self.check_not_revoked(record.key_name)
        dek = await self.keys.unwrap(
            record.key_name, record.tenant_id, record.object_id, record.wrapped_dek
        )
        try:
            crypto.verify_row_mac(dek, record.object_id, canonical_row(record), record.row_mac)
        except IntegrityError:
            # A row written before revision 0002: its MAC covered the one backend it was on,
            # which the migration kept in its replica list.
            for name in record.backends:
                legacy = canonical_row(record, legacy_backend=name)
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
        record = await self._lookup(principal, bucket_name, key)
        # Held until the body is sent: an overwrite or DELETE committed meanwhile leaves these
        # blobs in place (deferred deletion), and this process's deleter skips them.
        lease = self.leases.hold(record)
        try:
            # Before any answer that reveals metadata (304/412 and HEAD included): refused if
            # shredded, and the row must be authentic.
            dek = await self._open_record(record)
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
                lease.release()
                return ObjectRead(record, start, end, partial, empty(), verified=False)
            body, verified = await self._body(record, dek, start, end, partial)
        except BaseException:
            lease.release()
            raise
        if verified:
            lease.release()
            return ObjectRead(record, start, end, partial, body, verified=True)
        return ObjectRead(record, start, end, partial, LeasedBody(body, lease), verified=False)

    async def _body(
        self, record: ObjectRecord, dek: bytes, start: int, end: int, partial: bool
    ) -> tuple[AsyncIterator[bytes], bool]:
        """The plaintext [start, end] and whether it was verified whole (then in memory)."""
        if not partial and len(record.parts) == 1 and record.size <= self.verify_whole_below:
            data = await self._from_any_replica(
                record, lambda backend: self._open_small(backend, record, dek)
            )
            return once(data), True
        body = self._plaintext(record, dek, start, end)
        if end - start + 1 <= self.verify_whole_below:
            return once(b"".join([chunk async for chunk in body])), True
        return body, False

    def _replicas(self, record: ObjectRecord) -> list[Backend]:
        """The backends holding ``record``, in read-preference order (unknown names skipped).

        A quarantined object is still read: every byte released is verified, so the ranges
        whose chunks verify are served and the others fail, each failure reported again.
        """
        replicas = [self.backends[name] for name in record.backends if name in self.backends]
        if not replicas:
            raise IntegrityError(f"no known backend among {record.backends!r}")
        return replicas

    async def _from_any_replica(
        self, record: ObjectRecord, attempt: Callable[[Backend], Awaitable[bytes]]
    ) -> bytes:
        """``attempt`` on each replica in turn until one succeeds; the last error otherwise.

        Safe because ``attempt`` verifies everything before returning: nothing has reached the
        client when a replica fails. A replica whose blob fails verification is reported
        (``replica_failed``) before the next one is tried.
        """
        replicas = self._replicas(record)
        for index, backend in enumerate(replicas):
            try:
                return await attempt(backend)
            except _FAILOVER as exc:
                if isinstance(exc, IntegrityError):
                    await self.replica_failed(record, backend, record.parts[0].part_number, exc)
                if index == len(replicas) - 1:
                    raise
                _log_failover(backend, exc)
        raise AssertionError("unreachable: the last replica returns or raises")

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
        """``_read_part`` from the first replica that yields its first bytes (or ends cleanly).

        A replica whose blob fails verification is reported (``replica_failed``) and dropped
        from ``replicas``, so the object's later parts skip it too. Once bytes were released a
        failure still cuts the read, after being reported.
        """
        candidates = list(replicas)
        for index, backend in enumerate(candidates):
            stream = self._read_part(backend, record, part, dek, lo, hi)
            try:
                first = await anext(stream, None)
            except _FAILOVER as exc:
                if isinstance(exc, IntegrityError):
                    await self.replica_failed(record, backend, part.part_number, exc)
                    if len(replicas) > 1:
                        replicas.remove(backend)
                if index == len(candidates) - 1:
                    raise
                _log_failover(backend, exc)
                continue
            if first is None:
                return
            yield first
            try:
                async for chunk in stream:
                    yield chunk
            except IntegrityError as exc:
                await self.replica_failed(record, backend, part.part_number, exc)
                raise
            return

    async def unwrap_verified(self, record: ObjectRecord) -> bytes:
        """The DEK of ``record``, its row authenticated with it (``blindstore repair`` checks
        every blob it copies, or lifts a quarantine on, under the object's own keys)."""
        return await self._open_record(record)

    async def replica_failed(
        self, record: ObjectRecord, backend: Backend, part_number: int, exc: IntegrityError
    ) -> None:
        """A replica's blob failed verification: count it, mark the replica bad in the catalog
        (to ``repairs`` while another replica remains, else the object is quarantined) and
        record an ``integrity.failure`` audit event.

        Best effort: the read goes on from another replica (or fails as it would have) even if
        the catalog cannot take the mark or the event; the metric and the log still have it.
        """
        reason = getattr(exc, "reason", None) or str(exc) or "verification failed"
        self.metrics.integrity_failures.labels(backend=backend.name).inc()
        outcome: str
        try:
            outcome = await self.catalog.mark_replica_bad(
                record.bucket, record.key, record.object_id, backend.name, self.clock()
            )
        except BlindstoreError as error:
            outcome = "not_recorded"
            log.error("replica_mark_failed", backend=backend.name, error=type(error).__name__)
        log.error(
            "integrity_failure",
            backend=backend.name,
            object_id=record.object_id.hex(),
            part=part_number,
            reason=reason,
            replica=outcome,
        )
        if self.audit is None:
            return
        event = AuditEvent(
            time=self.clock(),
            request_id="",
            principal="",
            operation=INTEGRITY_FAILURE,
            result=outcome,
            tenant_id=record.tenant_id,
            # Bucket and key stay out: the object id links the event to the request's record.
            object_id=record.object_id,
            version=record.etag,
            backends=(backend.name,),
            key_name=record.key_name,
            key_version=record.key_version,
            detail={"part": part_number, "reason": reason},
        )
        try:
            await self.audit.append(event)
        except BlindstoreError as error:
            log.error("audit.integrity_failure_not_recorded", error=type(error).__name__)

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
                prefix, fetch = await take(fetch, crypto.PREFIX_SIZE)
            else:
                head = backend.get(record.container, part.blob, 0, crypto.PREFIX_SIZE)
                prefix, _ = await take(head, crypto.PREFIX_SIZE)
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
            if len(data) >= PARALLEL_MIN:
                plain = await anyio.to_thread.run_sync(stream.feed, data)
            else:
                plain = stream.feed(data)
            if plain:
                out, skip, remaining = window(plain, skip, remaining)
                if remaining == 0:
                    held.append(out)
                elif out:
                    yield out
        out, skip, remaining = window(stream.finish(), skip, remaining)
        if remaining > 0:
            raise IntegrityError("segment shorter than the manifest")
        held.append(out)
        tail = b"".join(held)
        if tail:
            yield tail


def _log_failover(backend: Backend, exc: BaseException) -> None:
    log.warning("replica_read_failed", backend=backend.name, error=type(exc).__name__)
