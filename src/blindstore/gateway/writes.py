"""Writes: placement, data keys, encrypt-while-streaming to the targets, the catalog commit.

Order of effects: data key → encrypt while streaming to the backends → verify digests →
catalog commit (the commit point, which also records the replaced row's blobs for deferred
deletion) → forget the replaced row's DEK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import anyio
import structlog

from blindstore import crypto
from blindstore.audit import facts as audit_facts
from blindstore.audit.events import AuditEvent
from blindstore.backends.base import Backend
from blindstore.backends.ids import new_blob_id
from blindstore.catalog.base import ObjectRecord, StoredPart, SubjectKey, Tenant
from blindstore.errors import BackendUnavailable, IntegrityError
from blindstore.fanout import fan_out
from blindstore.gateway.base import GatewayBase
from blindstore.gateway.records import BodyCheck, Principal, WriteMeta, canonical_row
from blindstore.gateway.streams import PARALLEL_MIN, blocks, digest_and_seal, prefetched
from blindstore.keys.base import DataKey
from blindstore.policy.model import ObjectFacts
from blindstore.provenance import check_required
from blindstore.subjects import subject_digest, subject_key_name

log = structlog.get_logger("blindstore.gateway")


class Writes(GatewayBase):
    """The write path of ``Gateway``; multipart parts reuse ``_write_segment``."""

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
        digest = await subject_digest(tenant.tenant_id, subject, self.keyed_subject)
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
        record = self._authenticated(record, dek)
        event = audit_facts.write_event(record)
        try:
            replaced = await self.catalog.put_object(
                record, if_match=if_match, if_none_match=if_none_match, audit=event
            )
        except BaseException:
            await self._discard(record)
            raise
        await self._committed(record, dek, replaced, event)
        return record

    @staticmethod
    def _authenticated(record: ObjectRecord, dek: bytes) -> ObjectRecord:
        """The row with its MAC (keyed from the DEK), ready to commit."""
        return replace(record, row_mac=crypto.row_mac(dek, record.object_id, canonical_row(record)))

    async def _committed(
        self,
        record: ObjectRecord,
        dek: bytes,
        replaced: ObjectRecord | None,
        event: AuditEvent | None,
    ) -> None:
        """After an object's row (and its audit record, ``event``) committed: count the record
        towards the next checkpoint, forget the DEK of what it replaced (its blobs wait for the
        deferred deleter), keep its DEK for the next read."""
        if event is not None:
            audit_facts.recorded()
            if self.audit is not None:
                self.audit.committed_elsewhere(event)
        if replaced is not None:
            self._retired(replaced)
        # A read soon after a write (very common) then needs no Vault round trip; bucket-key
        # mode also counts the size (unknown for a multipart object when its DEK was issued).
        self.keys.remember(
            record.key_name,
            record.tenant_id,
            record.object_id,
            record.wrapped_dek,
            dek,
            size=record.size,
        )

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
            async for block in prefetched(blocks(body, buffer_limit), buffer_limit):
                size += len(block)
                if len(block) >= PARALLEL_MIN:
                    # MD5 (the ETag, the slowest hash) in one worker thread, the other digests
                    # and AES-GCM in another: both release the GIL on large buffers, so a large
                    # PUT uses both cores.
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(anyio.to_thread.run_sync, check.update_md5, block)
                        out = await anyio.to_thread.run_sync(digest_and_seal, check, sealer, block)
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
