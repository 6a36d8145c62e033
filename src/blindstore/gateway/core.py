"""The orchestrator, composed: ``Gateway`` = writes + reads + multipart, with copy, delete,
tags and listing (which use several of them).
"""

from __future__ import annotations

from dataclasses import replace

from blindstore.audit import facts as audit_facts
from blindstore.catalog.base import ListPage, ObjectRecord
from blindstore.errors import InvalidRequest
from blindstore.gateway.leases import LeasedBody
from blindstore.gateway.multipart import Multipart
from blindstore.gateway.reads import Reads
from blindstore.gateway.records import BodyCheck, Principal, WriteMeta
from blindstore.provenance import Provenance
from blindstore.s3.conditions import Conditions, check_copy_source


class Gateway(Multipart, Reads):
    """The only object that sequences I/O; see the package docstring."""

    async def delete_object(self, principal: Principal, bucket_name: str, key: str) -> None:
        await self.owned_bucket(principal, bucket_name)
        removed = await self.catalog.delete_object(
            bucket_name, key, tenant_id=principal.tenant.tenant_id
        )
        if removed is not None:
            audit_facts.note_deleted(removed)
            self._retired(removed)

    async def delete_object_version(
        self, bucket_name: str, key: str, object_id: bytes
    ) -> ObjectRecord | None:
        """Delete an object as DELETE does, but only while its row still holds ``object_id``.

        For jobs that act on a row they read earlier (``blindstore retention enforce``): an
        object overwritten meanwhile is a new version that is left alone (None is returned).
        """
        removed = await self.catalog.delete_object_version(bucket_name, key, object_id)
        if removed is not None:
            self._retired(removed)
        return removed

    async def get_tags(self, principal: Principal, bucket_name: str, key: str) -> dict[str, str]:
        # Tags are outside the row MAC, but answering proves the object exists and is readable:
        # same checks as HEAD (revocation, then the MAC).
        return (await self.head_object(principal, bucket_name, key)).tags

    async def put_tags(
        self, principal: Principal, bucket_name: str, key: str, tags: dict[str, str]
    ) -> None:
        # No DEK needed (tags are outside the row MAC), but a shredded object is not written.
        record = await self._lookup(principal, bucket_name, key)
        self.check_not_revoked(record.key_name)
        await self.catalog.set_tags(bucket_name, key, tags, tenant_id=principal.tenant.tenant_id)

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
            tenant_id=principal.tenant.tenant_id,
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
        source = await self._lookup(principal, src_bucket, src_key)
        # The source's blobs are leased while they are copied, as for a GET.
        lease = self.leases.hold(source)
        try:
            # Revocation and the row MAC before the copy-source conditions reveal anything.
            dek = await self._open_record(source)
            check_copy_source(source_conditions, source.etag, source.last_modified)
            if meta is None and src_bucket == dst_bucket and src_key == dst_key:
                raise InvalidRequest(
                    "This copy request is illegal because it is trying to copy an object to "
                    "itself without changing the object's metadata, storage class, website "
                    "redirect location or encryption attributes."
                )
        except BaseException:
            lease.release()
            raise
        body = LeasedBody(self._plaintext(source, dek, 0, source.size - 1), lease)
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
