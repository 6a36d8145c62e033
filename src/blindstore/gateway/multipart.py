"""Multipart uploads: create, upload a part, complete (the commit point), abort, list."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator
from dataclasses import replace

import structlog

from blindstore import crypto
from blindstore.audit import facts as audit_facts
from blindstore.backends.base import Backend
from blindstore.catalog.base import ObjectRecord, StoredPart, Upload, UploadPage, UploadPart
from blindstore.errors import (
    BackendUnavailable,
    BlindstoreError,
    EntityTooSmall,
    IntegrityError,
    InvalidArgument,
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    MalformedXML,
    NoSuchUpload,
)
from blindstore.gateway.records import (
    MAX_PARTS,
    MIN_PART_SIZE,
    BodyCheck,
    Principal,
    WriteMeta,
    canonical_part,
    canonical_upload,
    multipart_etag,
)
from blindstore.gateway.writes import Writes

log = structlog.get_logger("blindstore.gateway")


class Multipart(Writes):
    """The multipart operations of ``Gateway``: parts are written as ``put_object`` writes."""

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
        upload = replace(
            upload,
            row_mac=crypto.upload_mac(datakey.dek, upload.object_id, canonical_upload(upload)),
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
        tenant = principal.tenant
        if upload.tenant_id != tenant.tenant_id or upload.container != tenant.container:
            # Either the bucket changed hands since its owner was cached (AccessDenied, from the
            # catalog now), or the row was edited: a bucket's uploads go with it, and creation
            # checks the owner in its transaction.
            await self.owned_bucket(principal, bucket_name, fresh=True)
            raise IntegrityError("upload row names another tenant or container")
        audit_facts.note(upload)
        return upload

    async def _upload_dek(self, upload: Upload) -> bytes:
        """The upload's DEK, once its row is authenticated with it (revocation checked first)."""
        self.check_not_revoked(upload.key_name)
        if not upload.row_mac:
            raise InvalidRequest(
                "This multipart upload was started before the gateway's catalog upgrade "
                "(revision 0007) and cannot be continued or completed: abort it and upload "
                "the object again.",
                UploadId=upload.upload_id,
            )
        dek = await self.keys.unwrap(
            upload.key_name, upload.tenant_id, upload.object_id, upload.wrapped_dek
        )
        crypto.verify_upload_mac(dek, upload.object_id, canonical_upload(upload), upload.row_mac)
        return dek

    @staticmethod
    def _part_is_authentic(upload: Upload, part: UploadPart, dek: bytes) -> bool:
        if not part.row_mac:
            return False
        try:
            crypto.verify_part_mac(
                dek, upload.object_id, canonical_part(upload, part), part.row_mac
            )
        except IntegrityError:
            return False
        return True

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
        dek = await self._upload_dek(upload)
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
        part = replace(
            part, row_mac=crypto.part_mac(dek, upload.object_id, canonical_part(upload, part))
        )
        try:
            replaced = await self.catalog.put_part(part)
        except BaseException:
            await self._delete_copies(landed, upload.container, part.blob)
            raise
        if replaced is not None:
            await self._delete_authentic_parts(upload, [replaced], dek)
        return part

    async def _delete_authentic_parts(
        self, upload: Upload, parts: list[UploadPart], dek: bytes | None
    ) -> None:
        """Delete the blobs of parts whose row MAC verifies; leave the others to ``gc``.

        A part row planted by someone editing the catalog may name a blob of another object:
        deleting it would destroy that object. ``gc`` deletes only blobs no row references.
        """
        for part in parts:
            if dek is not None and self._part_is_authentic(upload, part, dek):
                await self._delete_copies(part.backends, upload.container, part.blob)
            else:
                log.warning("upload_part_blob_left_to_gc", part_number=part.part_number)

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
        dek = await self._upload_dek(upload)
        forged = [p.part_number for p in chosen if not self._part_is_authentic(upload, p, dek)]
        if forged:
            # Nothing is committed: the object row would be built from unauthenticated rows.
            raise IntegrityError(f"upload part MAC mismatch (parts {forged})")
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
        record = self._authenticated(record, dek)
        event = audit_facts.write_event(record)
        replaced, unused = await self.catalog.complete_upload(
            upload_id, record, if_match=if_match, if_none_match=if_none_match, audit=event
        )
        await self._delete_authentic_parts(upload, unused, dek)
        await self._committed(record, dek, replaced, event)
        return record

    async def abort_upload(
        self, principal: Principal, bucket_name: str, key: str, upload_id: str
    ) -> None:
        upload = await self._upload(principal, bucket_name, key, upload_id)
        dek = await self._abort_dek(upload)
        parts = await self.catalog.abort_upload(upload_id)
        await self._delete_authentic_parts(upload, parts, dek)
        self.keys.forget(upload.tenant_id, upload.object_id)

    async def _abort_dek(self, upload: Upload) -> bytes | None:
        """The DEK to authenticate the parts an abort deletes, if it can be had: an abort must
        work without it (Vault down, key shredded, upload from before revision 0007), and then
        leaves the parts' blobs to ``gc``."""
        try:
            return await self._upload_dek(upload)
        except BlindstoreError as exc:
            log.warning("upload_abort_unauthenticated", error=type(exc).__name__)
            return None

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
            tenant_id=principal.tenant.tenant_id,
        )
