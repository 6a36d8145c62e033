"""Catalog contract, tenancy part: ownership is checked inside the write transaction, an object
id names one object, and upload and part rows keep their MACs."""

from __future__ import annotations

import dataclasses

import pytest

from blindstore.catalog.base import Bucket, Catalog
from blindstore.errors import AccessDenied, IntegrityError, NoSuchBucket
from tests.contract import catalog_contract as c


async def _bucket_of_other_tenant(catalog: Catalog, name: str = "theirs") -> None:
    await c.setup_bucket(catalog)
    if await catalog.get_tenant(c.OTHER_TENANT.tenant_id) is None:
        await catalog.create_tenant(c.OTHER_TENANT)
    await catalog.create_bucket(Bucket(name, c.OTHER_TENANT.tenant_id, 1500.0))


@pytest.mark.anyio
class TenancyContract:
    async def test_a_row_is_refused_in_a_bucket_its_tenant_does_not_own(
        self, catalog: Catalog
    ) -> None:
        # The bucket changed hands after the writer's gateway cached its owner.
        await _bucket_of_other_tenant(catalog)
        with pytest.raises(AccessDenied):
            await catalog.put_object(c.make_object("theirs", "planted"))
        with pytest.raises(NoSuchBucket):
            await catalog.put_object(c.make_object("gone", "planted"))
        assert await catalog.get_object("theirs", "planted") is None

    async def test_an_upload_is_refused_in_a_bucket_its_tenant_does_not_own(
        self, catalog: Catalog
    ) -> None:
        await _bucket_of_other_tenant(catalog)
        with pytest.raises(AccessDenied):
            await catalog.create_upload(c.make_upload("theirs", "big", "u1"))
        assert await catalog.get_upload("u1") is None

    async def test_an_object_id_already_used_by_another_row_is_refused(
        self, catalog: Catalog
    ) -> None:
        await c.setup_bucket(catalog)
        first = c.make_object("photos", "a")
        await catalog.put_object(first)
        clone = dataclasses.replace(c.make_object("photos", "b"), object_id=first.object_id)
        with pytest.raises(IntegrityError):
            await catalog.put_object(clone)
        with pytest.raises(IntegrityError):
            await catalog.create_upload(
                dataclasses.replace(c.make_upload("photos", "c", "u1"), object_id=first.object_id)
            )
        assert await catalog.get_object("photos", "b") is None
        assert await catalog.get_upload("u1") is None
        # Overwriting the same key keeps working (a new version has a new id).
        await catalog.put_object(c.make_object("photos", "a", etag="e2"))

    async def test_an_object_id_held_by_a_pending_upload_is_refused_to_other_rows(
        self, catalog: Catalog
    ) -> None:
        await c.setup_bucket(catalog)
        upload = c.make_upload("photos", "big", "u1")
        await catalog.create_upload(upload)
        with pytest.raises(IntegrityError):
            await catalog.put_object(
                dataclasses.replace(c.make_object("photos", "x"), object_id=upload.object_id)
            )
        with pytest.raises(IntegrityError):
            await catalog.create_upload(
                dataclasses.replace(
                    c.make_upload("photos", "other", "u2"), object_id=upload.object_id
                )
            )

    async def test_completion_must_keep_the_uploads_tenant_and_object_id(
        self, catalog: Catalog
    ) -> None:
        await c.setup_bucket(catalog)
        upload = c.make_upload("photos", "big", "u1")
        await catalog.create_upload(upload)
        await catalog.put_part(c.make_part("u1", 1))
        parts, _ = await catalog.list_parts("u1")
        record = c.object_for_parts(upload, parts, "e-1")
        for forged in (
            dataclasses.replace(record, object_id=c.ident("another object")),
            dataclasses.replace(record, tenant_id=c.OTHER_TENANT.tenant_id),
        ):
            with pytest.raises(IntegrityError):
                await catalog.complete_upload("u1", forged)
        await catalog.complete_upload("u1", record)
        assert await catalog.get_object("photos", "big") == record

    async def test_delete_tags_and_listings_check_the_owner_in_the_transaction(
        self, catalog: Catalog
    ) -> None:
        await _bucket_of_other_tenant(catalog)
        theirs = c.make_object("theirs", "k", tenant=c.OTHER_TENANT)
        await catalog.put_object(theirs)
        mine = c.TENANT.tenant_id
        with pytest.raises(AccessDenied):
            await catalog.delete_object("theirs", "k", tenant_id=mine)
        with pytest.raises(AccessDenied):
            await catalog.set_tags("theirs", "k", {"a": "b"}, tenant_id=mine)
        with pytest.raises(AccessDenied):
            await catalog.list_objects("theirs", tenant_id=mine)
        with pytest.raises(AccessDenied):
            await catalog.list_uploads("theirs", tenant_id=mine)
        assert await catalog.get_object("theirs", "k") == theirs
        owner = c.OTHER_TENANT.tenant_id
        await catalog.set_tags("theirs", "k", {"a": "b"}, tenant_id=owner)
        assert [o.key for o in (await catalog.list_objects("theirs", tenant_id=owner)).objects]
        assert await catalog.delete_object("theirs", "k", tenant_id=owner) is not None

    async def test_upload_and_part_macs_round_trip(self, catalog: Catalog) -> None:
        await c.setup_bucket(catalog)
        upload = dataclasses.replace(c.make_upload("photos", "big", "u1"), row_mac=b"u" * 32)
        await catalog.create_upload(upload)
        part = dataclasses.replace(c.make_part("u1", 1), row_mac=b"p" * 32)
        await catalog.put_part(part)
        assert await catalog.get_upload("u1") == upload
        assert (await catalog.list_parts("u1"))[0] == [part]
