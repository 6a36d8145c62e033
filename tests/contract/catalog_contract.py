"""The Catalog contract: behaviours every ``Catalog`` implementation must show.

A test module subclasses ``CatalogContract`` and provides a ``catalog`` fixture: a fresh, empty
catalog. Listing is checked against ``model_listing``, a direct transcription of the semantics
into Python, on shapes that Hypothesis generates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import time
from collections.abc import Sequence

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blindstore.audit.chain import GENESIS, Checkpoint, verify
from blindstore.audit.events import AuditEvent, AuditFilter
from blindstore.catalog.base import (
    AccessKey,
    AccessKeyInfo,
    Bucket,
    BucketKey,
    Catalog,
    KeyUsage,
    ObjectRecord,
    ReplicaUsage,
    Shred,
    StoredPart,
    SubjectKey,
    Tenant,
    Upload,
    UploadPart,
    WrappedRef,
)
from blindstore.errors import (
    BlindstoreError,
    BucketAlreadyExists,
    BucketNotEmpty,
    InvalidArgument,
    InvalidPart,
    InvalidRequest,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
)

BACKEND = "local"
#: A time after every deferred deletion recorded by a test falls due.
_FAR_FUTURE = time.time() + 10 * 365 * 86400


def ident(label: str) -> bytes:
    """A deterministic 16-byte id."""
    return hashlib.sha256(label.encode()).digest()[:16]


def blob(label: str) -> str:
    """A deterministic blob id."""
    return f"00/{hashlib.sha256(label.encode()).hexdigest()[:26].translate(_BASE32)}"


_BASE32 = str.maketrans("0189", "2345")

TENANT = Tenant(ident("tenant"), "acme", "hgw-t-acme", "bs-acme", 1000.0)
OTHER_TENANT = Tenant(ident("other"), "globex", "hgw-t-globex", "bs-globex", 1001.0)


def make_object(
    bucket: str,
    key: str,
    *,
    etag: str = "e1",
    parts: Sequence[str] | None = None,
    backend: str = BACKEND,
    tenant: Tenant = TENANT,
) -> ObjectRecord:
    blobs = parts if parts is not None else [f"{bucket}/{key}/{etag}"]
    return ObjectRecord(
        bucket=bucket,
        key=key,
        tenant_id=tenant.tenant_id,
        object_id=ident(f"{bucket}/{key}/{etag}"),
        backends=(backend,),
        container=tenant.container,
        parts=tuple(
            StoredPart(n, blob(label), 100 + n, 156 + n, f"md5-{n}")
            for n, label in enumerate(blobs)
        ),
        size=100 * len(blobs),
        etag=etag,
        last_modified=2000.0,
        wrapped_dek=f"vault:v1:{etag}",
        key_name=tenant.key_name,
        key_version=1,
    )


def make_upload(bucket: str, key: str, upload_id: str, *, backend: str = BACKEND) -> Upload:
    return Upload(
        upload_id=upload_id,
        bucket=bucket,
        key=key,
        tenant_id=TENANT.tenant_id,
        object_id=ident(upload_id),
        backends=(backend,),
        container=TENANT.container,
        wrapped_dek="vault:v1:upload",
        key_name=TENANT.key_name,
        key_version=3,
        initiated=3000.0,
    )


def make_part(upload_id: str, number: int, label: str = "") -> UploadPart:
    return UploadPart(
        upload_id=upload_id,
        part_number=number,
        blob=blob(f"{upload_id}/{number}/{label}"),
        size=5 << 20,
        stored_size=(5 << 20) + 5176,
        etag=f"etag-{number}-{label}",
        last_modified=3100.0 + number,
    )


def object_for_parts(upload: Upload, parts: Sequence[UploadPart], etag: str) -> ObjectRecord:
    return ObjectRecord(
        bucket=upload.bucket,
        key=upload.key,
        tenant_id=upload.tenant_id,
        object_id=upload.object_id,
        backends=upload.backends,
        container=upload.container,
        parts=tuple(
            StoredPart(p.part_number, p.blob, p.size, p.stored_size, p.etag) for p in parts
        ),
        size=sum(p.size for p in parts),
        etag=etag,
        last_modified=4000.0,
        wrapped_dek=upload.wrapped_dek,
        key_name=upload.key_name,
        key_version=upload.key_version,
    )


def model_listing(
    keys: Sequence[str], prefix: str, delimiter: str, start_after: str, max_keys: int
) -> tuple[list[str], list[str], bool, str | None]:
    """The listing semantics, stated directly: (keys, common prefixes, truncated, next marker)."""
    entries: set[tuple[str, bool]] = set()
    for key in keys:
        if not key.startswith(prefix) or key <= start_after:
            continue
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            entries.add((key, False))
        elif key[: cut + len(delimiter)] > start_after:
            entries.add((key[: cut + len(delimiter)], True))
    ordered = sorted(entries, key=lambda entry: entry[0].encode())
    page = ordered[: max(max_keys, 0)]
    truncated = len(ordered) > len(page) and max_keys > 0
    return (
        [name for name, common in page if not common],
        [name for name, common in page if common],
        truncated,
        page[-1][0] if truncated else None,
    )


def subject_key(label: str, *, tenant: Tenant = TENANT, created: float = 5000.0) -> SubjectKey:
    """A data subject's key; the digest stands for a subject named ``label``."""
    return SubjectKey(
        key_name=f"hgw-p-{tenant.tenant_id.hex()}-{ident(label).hex()}",
        tenant_id=tenant.tenant_id,
        subject_digest=hashlib.sha256(label.encode()).digest(),
        created=created,
    )


def make_shred(
    shred_id: str,
    key_names: Sequence[str],
    *,
    scope: str = "subject",
    tenant: Tenant = TENANT,
    requested: float = 6000.0,
) -> Shred:
    return Shred(
        shred_id=shred_id,
        scope="tenant" if scope == "tenant" else "subject",
        tenant_id=tenant.tenant_id,
        key_names=tuple(key_names),
        requested=requested,
        destroy_after=requested + 86400.0,
        operator="dpo@example.org",
    )


def wrapped_by(record: ObjectRecord, key_name: str, version: int) -> ObjectRecord:
    """The record with its DEK wrapped by ``key_name`` at ``version``."""
    return dataclasses.replace(
        record,
        key_name=key_name,
        key_version=version,
        wrapped_dek=f"vault:v{version}:{record.bucket}/{record.key}",
    )


async def setup_bucket(catalog: Catalog, name: str = "photos") -> None:
    if await catalog.get_tenant(TENANT.tenant_id) is None:
        await catalog.create_tenant(TENANT)
    await catalog.create_bucket(Bucket(name, TENANT.tenant_id, 1500.0))


async def put_keys(catalog: Catalog, bucket: str, keys: Sequence[str]) -> None:
    for key in keys:
        await catalog.put_object(make_object(bucket, key))


_key_chars = st.sampled_from(["a", "b", "B", "/", "-", " ", "é", "😀", "\ue000", "\U0010ffff"])
_keys = st.text(_key_chars, min_size=1, max_size=5)
_bucket_numbers = itertools.count()


@pytest.mark.anyio
class CatalogContract:
    """Run against every Catalog through the ``catalog`` fixture (fresh and empty)."""

    async def test_catalog_satisfies_the_protocol(self, catalog: Catalog) -> None:
        assert isinstance(catalog, Catalog)

    # -- tenants and credentials --------------------------------------------------------------

    async def test_tenants_are_found_by_id_and_by_name(self, catalog: Catalog) -> None:
        await catalog.create_tenant(TENANT)
        await catalog.create_tenant(OTHER_TENANT)

        assert await catalog.get_tenant(TENANT.tenant_id) == TENANT
        assert await catalog.get_tenant_by_name("globex") == OTHER_TENANT
        assert await catalog.get_tenant(ident("nobody")) is None
        assert await catalog.get_tenant_by_name("nobody") is None
        assert await catalog.list_tenants() == [TENANT, OTHER_TENANT]

    async def test_tenant_ids_and_names_are_unique(self, catalog: Catalog) -> None:
        await catalog.create_tenant(TENANT)

        with pytest.raises(InvalidArgument):
            await catalog.create_tenant(dataclasses.replace(TENANT, name="another"))
        with pytest.raises(InvalidArgument):
            await catalog.create_tenant(dataclasses.replace(TENANT, tenant_id=ident("x")))
        assert await catalog.list_tenants() == [TENANT]

    async def test_access_keys_round_trip(self, catalog: Catalog) -> None:
        await catalog.create_tenant(TENANT)
        key = AccessKey("AKIAEXAMPLE", "s3cr3t/with+symbols", TENANT.tenant_id, 1200.0)

        await catalog.add_access_key(key)

        assert await catalog.get_access_key("AKIAEXAMPLE") == key
        assert await catalog.get_access_key("AKIAOTHER") is None

    async def test_access_key_ids_are_unique(self, catalog: Catalog) -> None:
        await catalog.create_tenant(TENANT)
        await catalog.add_access_key(AccessKey("AKIA1", "one", TENANT.tenant_id, 1.0))

        with pytest.raises(InvalidArgument):
            await catalog.add_access_key(AccessKey("AKIA1", "two", TENANT.tenant_id, 2.0))
        stored = await catalog.get_access_key("AKIA1")
        assert stored is not None
        assert stored.sealed_secret == "one"

    async def test_a_clear_secret_is_listed_until_sealed_then_erased(
        self, catalog: Catalog
    ) -> None:
        await catalog.create_tenant(TENANT)
        legacy = AccessKey("AKIAOLD", None, TENANT.tenant_id, 1.0, secret_key="in-clear")
        await catalog.add_access_key(legacy)
        await catalog.add_access_key(AccessKey("AKIANEW", "cs1:sealed", TENANT.tenant_id, 2.0))

        assert await catalog.access_keys_in_clear() == [legacy]
        assert await catalog.seal_access_key("AKIAOLD", "cs1:now-sealed")

        assert await catalog.access_keys_in_clear() == []
        assert await catalog.get_access_key("AKIAOLD") == AccessKey(
            "AKIAOLD", "cs1:now-sealed", TENANT.tenant_id, 1.0
        )
        assert not await catalog.seal_access_key("AKIAGONE", "cs1:x")

    async def test_access_key_needs_an_existing_tenant(self, catalog: Catalog) -> None:
        with pytest.raises(InvalidArgument):
            await catalog.add_access_key(AccessKey("AKIA1", "one", ident("nobody"), 1.0))

    async def test_tenants_are_listed_page_by_page_in_name_order(self, catalog: Catalog) -> None:
        names = ["delta", "alpha", "echo", "charlie", "bravo"]
        for n, name in enumerate(names):
            await catalog.create_tenant(Tenant(ident(name), name, f"k-{n}", f"c-{n}", float(n)))

        first = await catalog.list_tenants_page(limit=2)
        second = await catalog.list_tenants_page(after=first[-1].name, limit=2)
        last = await catalog.list_tenants_page(after=second[-1].name, limit=2)

        assert [t.name for t in first + second + last] == sorted(names)
        assert len(last) == 1
        assert await catalog.list_tenants_page(after="echo") == []
        assert first[0] == await catalog.get_tenant_by_name("alpha")

    async def test_access_keys_are_listed_per_tenant_without_secrets(
        self, catalog: Catalog
    ) -> None:
        await catalog.create_tenant(TENANT)
        await catalog.create_tenant(OTHER_TENANT)
        for akid in ("AKIA3", "AKIA1", "AKIA2"):
            await catalog.add_access_key(AccessKey(akid, "secret", TENANT.tenant_id, 7.0))
        await catalog.add_access_key(AccessKey("AKIA0", "theirs", OTHER_TENANT.tenant_id, 8.0))

        first = await catalog.list_access_keys(TENANT.tenant_id, limit=2)
        rest = await catalog.list_access_keys(TENANT.tenant_id, after="AKIA2")

        assert first == [
            AccessKeyInfo("AKIA1", TENANT.tenant_id, 7.0),
            AccessKeyInfo("AKIA2", TENANT.tenant_id, 7.0),
        ]
        assert rest == [AccessKeyInfo("AKIA3", TENANT.tenant_id, 7.0)]
        assert not any(hasattr(k, "secret_key") for k in first + rest)
        assert await catalog.list_access_keys(ident("nobody")) == []

    async def test_a_deleted_access_key_is_gone_and_the_others_stay(self, catalog: Catalog) -> None:
        await catalog.create_tenant(TENANT)
        await catalog.add_access_key(AccessKey("AKIA1", "one", TENANT.tenant_id, 1.0))
        await catalog.add_access_key(AccessKey("AKIA2", "two", TENANT.tenant_id, 2.0))

        removed = await catalog.delete_access_key("AKIA1")

        assert removed == AccessKeyInfo("AKIA1", TENANT.tenant_id, 1.0)
        assert await catalog.get_access_key("AKIA1") is None
        assert await catalog.get_access_key("AKIA2") is not None
        assert await catalog.delete_access_key("AKIA1") is None
        assert [k.access_key_id for k in await catalog.list_access_keys(TENANT.tenant_id)] == [
            "AKIA2"
        ]

    # -- buckets ------------------------------------------------------------------------------

    async def test_buckets_are_listed_per_tenant_by_name(self, catalog: Catalog) -> None:
        await catalog.create_tenant(TENANT)
        await catalog.create_tenant(OTHER_TENANT)
        for name in ("zeta", "alpha", "mid"):
            await catalog.create_bucket(Bucket(name, TENANT.tenant_id, 1.0, "eu-west-3"))
        await catalog.create_bucket(Bucket("theirs", OTHER_TENANT.tenant_id, 2.0))

        mine = await catalog.list_buckets(TENANT.tenant_id)

        assert [b.name for b in mine] == ["alpha", "mid", "zeta"]
        assert mine[0] == Bucket("alpha", TENANT.tenant_id, 1.0, "eu-west-3")
        assert await catalog.get_bucket("theirs") == Bucket("theirs", OTHER_TENANT.tenant_id, 2.0)
        assert await catalog.get_bucket("missing") is None

    async def test_bucket_names_are_global(self, catalog: Catalog) -> None:
        await catalog.create_tenant(TENANT)
        await catalog.create_tenant(OTHER_TENANT)
        await catalog.create_bucket(Bucket("shared-name", TENANT.tenant_id, 1.0))

        with pytest.raises(BucketAlreadyExists):
            await catalog.create_bucket(Bucket("shared-name", OTHER_TENANT.tenant_id, 2.0))
        with pytest.raises(BucketAlreadyExists):
            await catalog.create_bucket(Bucket("shared-name", TENANT.tenant_id, 3.0))
        assert await catalog.get_bucket("shared-name") == Bucket(
            "shared-name", TENANT.tenant_id, 1.0
        )

    async def test_concurrent_creations_of_one_bucket_name_have_one_winner(
        self, catalog: Catalog
    ) -> None:
        await catalog.create_tenant(TENANT)
        await catalog.create_tenant(OTHER_TENANT)
        outcomes: list[str] = []

        async def create(tenant: Tenant) -> None:
            try:
                await catalog.create_bucket(Bucket("contested", tenant.tenant_id, 1.0))
                outcomes.append("created")
            except BucketAlreadyExists:
                outcomes.append("exists")

        async with anyio.create_task_group() as tg:
            for tenant in (TENANT, OTHER_TENANT, TENANT, OTHER_TENANT):
                tg.start_soon(create, tenant)

        assert sorted(outcomes) == ["created", "exists", "exists", "exists"]

    async def test_deleting_a_missing_bucket_raises_no_such_bucket(self, catalog: Catalog) -> None:
        with pytest.raises(NoSuchBucket):
            await catalog.delete_bucket("missing")

    async def test_a_bucket_holding_objects_cannot_be_deleted(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        await catalog.put_object(make_object("photos", "a.jpg"))

        with pytest.raises(BucketNotEmpty):
            await catalog.delete_bucket("photos")
        assert await catalog.get_bucket("photos") is not None
        assert await catalog.get_object("photos", "a.jpg") is not None

    async def test_deleting_an_empty_bucket_aborts_its_uploads_and_returns_their_parts(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await setup_bucket(catalog, "kept")
        await catalog.create_upload(make_upload("photos", "big.bin", "u1"))
        await catalog.create_upload(make_upload("photos", "other.bin", "u2"))
        await catalog.create_upload(make_upload("kept", "x", "u3"))
        parts = [make_part("u1", 1), make_part("u1", 2), make_part("u2", 1)]
        for part in [*parts, make_part("u3", 1)]:
            await catalog.put_part(part)
        await catalog.put_object(make_object("photos", "gone"))
        await catalog.delete_object("photos", "gone")

        returned = await catalog.delete_bucket("photos")

        assert sorted(returned, key=lambda p: (p.upload_id, p.part_number)) == parts
        assert await catalog.get_bucket("photos") is None
        assert await catalog.get_upload("u1") is None
        assert await catalog.get_upload("u2") is None
        assert await catalog.get_upload("u3") is not None
        await catalog.create_bucket(Bucket("photos", TENANT.tenant_id, 9.0))  # the name is free

    # -- objects ------------------------------------------------------------------------------

    async def test_object_rows_round_trip_every_field(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        record = dataclasses.replace(
            make_object("photos", "dossier/patient é 😀.pdf", parts=["p0", "p1", "p2"]),
            headers={"content-type": "application/pdf", "cache-control": "no-store"},
            user_metadata={"patient": "Zoë", "empty": ""},
            checksums={"crc32c": "AAAAAA=="},
            tags={"classification": "identifying"},
            row_mac=bytes(range(32)),
            last_modified=1_700_000_000.123456,
        )

        assert await catalog.put_object(record) is None

        assert await catalog.get_object("photos", record.key) == record
        assert await catalog.get_object("photos", "dossier/") is None
        assert await catalog.get_object("kept", record.key) is None

    async def test_putting_over_an_object_returns_the_replaced_row(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        first = make_object("photos", "a", etag="v1")
        second = make_object("photos", "a", etag="v2")
        await catalog.put_object(first)

        assert await catalog.put_object(second) == first
        assert await catalog.get_object("photos", "a") == second

    async def test_putting_into_a_missing_bucket_raises_no_such_bucket(
        self, catalog: Catalog
    ) -> None:
        with pytest.raises(NoSuchBucket):
            await catalog.put_object(make_object("missing", "a"))

    @pytest.mark.parametrize(
        "key",
        ["../../etc/passwd", "with space", "😀/🎉", "a/", "/leading", "ünïcödé", "x" * 1024, "%2F"],
    )
    async def test_any_key_round_trips(self, catalog: Catalog, key: str) -> None:
        await setup_bucket(catalog)
        record = make_object("photos", key)

        await catalog.put_object(record)

        assert await catalog.get_object("photos", key) == record
        page = await catalog.list_objects("photos")
        assert [o.key for o in page.objects] == [key]

    async def test_keys_that_prefix_each_other_are_distinct(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        keys = ["a", "a/", "a/b", "ab", "a b"]
        for key in keys:
            await catalog.put_object(make_object("photos", key, etag=f"etag of {key}"))

        for key in keys:
            found = await catalog.get_object("photos", key)
            assert found is not None
            assert found.etag == f"etag of {key}"

    async def test_keys_are_listed_in_utf8_byte_order(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        keys = [
            "b",
            "B",
            "a",
            "A",
            "é",
            "e",
            "z",
            "😀",
            "\ue000",
            "_",
            "~",
            "a/b",
            "a-b",
            "10",
            "9",
        ]
        await put_keys(catalog, "photos", keys)

        page = await catalog.list_objects("photos")

        assert [o.key for o in page.objects] == sorted(keys, key=str.encode)

    async def test_if_none_match_refuses_to_overwrite(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        original = make_object("photos", "a", etag="v1")
        await catalog.put_object(original, if_none_match=True)

        with pytest.raises(PreconditionFailed):
            await catalog.put_object(make_object("photos", "a", etag="v2"), if_none_match=True)
        assert await catalog.get_object("photos", "a") == original

    async def test_if_match_replaces_only_the_expected_version(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        v1 = make_object("photos", "a", etag="v1")
        v2 = make_object("photos", "a", etag="v2")
        await catalog.put_object(v1)

        with pytest.raises(PreconditionFailed):
            await catalog.put_object(v2, if_match="v0")
        assert await catalog.get_object("photos", "a") == v1
        assert await catalog.put_object(v2, if_match="v1") == v1
        assert await catalog.get_object("photos", "a") == v2

    async def test_if_match_on_a_missing_key_raises_no_such_key(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)

        with pytest.raises(NoSuchKey):
            await catalog.put_object(make_object("photos", "a"), if_match="v1")
        assert await catalog.get_object("photos", "a") is None

    async def test_concurrent_if_none_match_puts_have_exactly_one_winner(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        outcomes: dict[str, list[str]] = {f"key-{n}": [] for n in range(8)}

        async def put(key: str, writer: int) -> None:
            try:
                await catalog.put_object(
                    make_object("photos", key, etag=f"w{writer}"), if_none_match=True
                )
                outcomes[key].append(f"w{writer}")
            except PreconditionFailed:
                pass

        async with anyio.create_task_group() as tg:
            for writer in range(4):
                for key in outcomes:
                    tg.start_soon(put, key, writer)

        for key, winners in outcomes.items():
            assert len(winners) == 1, key
            stored = await catalog.get_object("photos", key)
            assert stored is not None
            assert stored.etag == winners[0]

    async def test_concurrent_if_match_puts_have_exactly_one_winner(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        await catalog.put_object(make_object("photos", "counter", etag="base"))
        winners: list[str] = []

        async def put(writer: int) -> None:
            try:
                await catalog.put_object(
                    make_object("photos", "counter", etag=f"w{writer}"), if_match="base"
                )
                winners.append(f"w{writer}")
            except PreconditionFailed:
                pass

        async with anyio.create_task_group() as tg:
            for writer in range(6):
                tg.start_soon(put, writer)

        assert len(winners) == 1
        stored = await catalog.get_object("photos", "counter")
        assert stored is not None
        assert stored.etag == winners[0]

    async def test_concurrent_unconditional_puts_each_replace_exactly_one_row(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        replaced: list[str | None] = []

        async def put(writer: int) -> None:
            old = await catalog.put_object(make_object("photos", "hot", etag=f"w{writer}"))
            replaced.append(None if old is None else old.etag)

        async with anyio.create_task_group() as tg:
            for writer in range(6):
                tg.start_soon(put, writer)

        # Each write replaced the previous one: the versions form one chain.
        stored = await catalog.get_object("photos", "hot")
        assert stored is not None
        assert replaced.count(None) == 1
        assert sorted(e for e in replaced if e is not None) == sorted(
            f"w{n}" for n in range(6) if f"w{n}" != stored.etag
        )

    async def test_provenance_and_retention_round_trip_on_objects(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        record = dataclasses.replace(
            make_object("photos", "scan.dcm"),
            provenance={
                "origin_system": "PACS-CHU-Nord",
                "consent_ref": "consent/2026/ß-42",
                "legal_basis": "gdpr-9-2-h",
            },
            retention_until=1_956_528_000.5,
        )

        await catalog.put_object(record)

        assert await catalog.get_object("photos", "scan.dcm") == record
        page = await catalog.list_objects("photos")
        assert page.objects == [record]

    async def test_replacing_an_object_replaces_its_provenance(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        first = dataclasses.replace(
            make_object("photos", "a", etag="v1"),
            provenance={"consent_ref": "c-1"},
            retention_until=5000.0,
        )
        second = make_object("photos", "a", etag="v2")
        await catalog.put_object(first)

        assert await catalog.put_object(second) == first
        stored = await catalog.get_object("photos", "a")
        assert stored is not None
        assert (stored.provenance, stored.retention_until) == ({}, None)

    async def test_provenance_of_an_upload_reaches_its_completed_object(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        upload = dataclasses.replace(
            make_upload("photos", "big.bin", "u1"),
            provenance={"origin_system": "LIS", "legal_basis": "gdpr-9-2-j"},
            retention_until=7_000_000_000.0,
        )
        await catalog.create_upload(upload)
        assert await catalog.get_upload("u1") == upload
        part = make_part("u1", 1)
        await catalog.put_part(part)
        record = dataclasses.replace(
            object_for_parts(upload, [part], "e1"),
            provenance=upload.provenance,
            retention_until=upload.retention_until,
        )

        await catalog.complete_upload("u1", record)

        assert await catalog.get_object("photos", "big.bin") == record

    async def test_expired_objects_are_those_past_their_retention_in_order(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await setup_bucket(catalog, "scans")
        retained = {
            ("photos", "old"): 100.0,
            ("photos", "older"): 50.0,
            ("scans", "old-too"): 100.0,
            ("photos", "exactly-now"): 500.0,
            ("photos", "future"): 900.0,
        }
        for (bucket, key), until in retained.items():
            record = dataclasses.replace(make_object(bucket, key), retention_until=until)
            await catalog.put_object(record)
        await catalog.put_object(make_object("photos", "forever"))

        found = await catalog.expired_objects(500.0)

        assert [(r.bucket, r.key) for r in found] == [
            ("photos", "older"),
            ("photos", "old"),
            ("scans", "old-too"),
        ]
        only_scans = await catalog.expired_objects(500.0, bucket="scans")
        assert [r.key for r in only_scans] == ["old-too"]
        assert await catalog.expired_objects(500.0, tenant_id=ident("nobody")) == []
        assert len(await catalog.expired_objects(500.0, tenant_id=TENANT.tenant_id)) == 3

    async def test_expired_objects_page_after_a_cursor(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        for index, key in enumerate(["a", "b", "c", "d", "e"]):
            until = 10.0 if index < 3 else 20.0
            await catalog.put_object(
                dataclasses.replace(make_object("photos", key), retention_until=until)
            )
        seen: list[str] = []
        cursor: tuple[float, str, str] | None = None
        while True:
            page = await catalog.expired_objects(1000.0, after=cursor, limit=2)
            if not page:
                break
            seen.extend(r.key for r in page)
            last = page[-1]
            assert last.retention_until is not None
            cursor = (last.retention_until, last.bucket, last.key)

        assert seen == ["a", "b", "c", "d", "e"]

    async def test_delete_object_returns_the_removed_row(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        record = make_object("photos", "a")
        await catalog.put_object(record)

        assert await catalog.delete_object("photos", "a") == record
        assert await catalog.get_object("photos", "a") is None
        assert await catalog.delete_object("photos", "a") is None

    async def test_set_tags_replaces_the_tag_set(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        await catalog.put_object(
            dataclasses.replace(make_object("photos", "a"), tags={"old": "1", "keep": "no"})
        )

        await catalog.set_tags("photos", "a", {"new": "2"})

        stored = await catalog.get_object("photos", "a")
        assert stored is not None
        assert stored.tags == {"new": "2"}
        await catalog.set_tags("photos", "a", {})
        stored = await catalog.get_object("photos", "a")
        assert stored is not None
        assert stored.tags == {}

    async def test_set_tags_on_a_missing_key_raises_no_such_key(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)

        with pytest.raises(NoSuchKey):
            await catalog.set_tags("photos", "a", {"x": "y"})

    # -- listing ------------------------------------------------------------------------------

    async def test_listing_a_missing_bucket_raises_no_such_bucket(self, catalog: Catalog) -> None:
        with pytest.raises(NoSuchBucket):
            await catalog.list_objects("missing")

    async def test_listing_returns_full_records(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        record = dataclasses.replace(make_object("photos", "a"), tags={"t": "v"})
        await catalog.put_object(record)

        page = await catalog.list_objects("photos")

        assert page.objects == [record]
        assert page.common_prefixes == []
        assert not page.truncated
        assert page.next_marker is None

    async def test_max_keys_zero_returns_nothing_and_is_not_truncated(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await put_keys(catalog, "photos", ["a", "b/c"])

        page = await catalog.list_objects("photos", delimiter="/", max_keys=0)

        assert (page.objects, page.common_prefixes, page.truncated, page.next_marker) == (
            [],
            [],
            False,
            None,
        )

    async def test_common_prefixes_count_towards_max_keys(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        await put_keys(catalog, "photos", ["a", "b/1", "b/2", "c", "d/1"])

        first = await catalog.list_objects("photos", delimiter="/", max_keys=2)
        second = await catalog.list_objects(
            "photos", delimiter="/", max_keys=2, start_after=first.next_marker or ""
        )
        third = await catalog.list_objects("photos", delimiter="/", max_keys=2, start_after="d/")

        assert ([o.key for o in first.objects], first.common_prefixes) == (["a"], ["b/"])
        assert (first.truncated, first.next_marker) == (True, "b/")
        assert ([o.key for o in second.objects], second.common_prefixes) == (["c"], ["d/"])
        assert (second.truncated, second.next_marker) == (False, None)
        assert (third.objects, third.common_prefixes, third.truncated) == ([], [], False)

    async def test_a_large_common_prefix_is_rolled_up_into_one_entry(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await put_keys(catalog, "photos", [f"big/{n:04d}" for n in range(300)] + ["c", "a"])

        page = await catalog.list_objects("photos", delimiter="/", max_keys=2)
        rest = await catalog.list_objects("photos", delimiter="/", start_after="big/")

        assert ([o.key for o in page.objects], page.common_prefixes, page.truncated) == (
            ["a"],
            ["big/"],
            True,
        )
        assert ([o.key for o in rest.objects], rest.common_prefixes, rest.truncated) == (
            ["c"],
            [],
            False,
        )

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        keys=st.lists(_keys, max_size=25, unique=True),
        prefix=st.one_of(st.just(""), _keys),
        delimiter=st.sampled_from(["", "/", "-", "a/", "😀"]),
        start_after=st.one_of(st.just(""), _keys),
        max_keys=st.one_of(st.integers(0, 6), st.just(1000)),
    )
    async def test_listing_pages_match_the_reference_model(
        self,
        catalog: Catalog,
        keys: list[str],
        prefix: str,
        delimiter: str,
        start_after: str,
        max_keys: int,
    ) -> None:
        bucket = f"model-{next(_bucket_numbers)}"
        await setup_bucket(catalog, bucket)
        await put_keys(catalog, bucket, keys)

        page = await catalog.list_objects(
            bucket, prefix=prefix, delimiter=delimiter, start_after=start_after, max_keys=max_keys
        )

        assert (
            [o.key for o in page.objects],
            page.common_prefixes,
            page.truncated,
            page.next_marker,
        ) == model_listing(keys, prefix, delimiter, start_after, max_keys)

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        keys=st.lists(_keys, max_size=25, unique=True),
        prefix=st.one_of(st.just(""), _keys),
        delimiter=st.sampled_from(["", "/", "b"]),
        max_keys=st.integers(1, 4),
    )
    async def test_following_next_marker_walks_the_whole_listing_once(
        self, catalog: Catalog, keys: list[str], prefix: str, delimiter: str, max_keys: int
    ) -> None:
        bucket = f"walk-{next(_bucket_numbers)}"
        await setup_bucket(catalog, bucket)
        await put_keys(catalog, bucket, keys)
        walked_keys: list[str] = []
        walked_prefixes: list[str] = []
        marker = ""

        while True:
            page = await catalog.list_objects(
                bucket, prefix=prefix, delimiter=delimiter, start_after=marker, max_keys=max_keys
            )
            walked_keys += [o.key for o in page.objects]
            walked_prefixes += page.common_prefixes
            if not page.truncated:
                break
            assert page.next_marker is not None
            assert len(page.objects) + len(page.common_prefixes) == max_keys
            marker = page.next_marker

        every_key, every_prefix, _, _ = model_listing(keys, prefix, delimiter, "", len(keys) + 1)
        assert (walked_keys, walked_prefixes) == (every_key, every_prefix)

    # -- multipart ----------------------------------------------------------------------------

    async def test_uploads_round_trip(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        upload = dataclasses.replace(
            make_upload("photos", "big.bin", "u1"),
            headers={"content-type": "video/mp4"},
            user_metadata={"m": "1"},
            tags={"t": "2"},
            checksum_algorithm="crc32c",
        )

        await catalog.create_upload(upload)

        assert await catalog.get_upload("u1") == upload
        assert await catalog.get_upload("u2") is None

    async def test_creating_an_upload_in_a_missing_bucket_raises_no_such_bucket(
        self, catalog: Catalog
    ) -> None:
        with pytest.raises(NoSuchBucket):
            await catalog.create_upload(make_upload("missing", "k", "u1"))

    async def test_putting_a_part_again_replaces_it_and_returns_the_old_one(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await catalog.create_upload(make_upload("photos", "big.bin", "u1"))
        first = dataclasses.replace(make_part("u1", 1, "first"), checksums={"sha256": "x="})
        second = make_part("u1", 1, "second")

        assert await catalog.put_part(first) is None
        assert await catalog.put_part(second) == first
        assert await catalog.list_parts("u1") == ([second], False)

    async def test_putting_a_part_of_a_missing_upload_raises_no_such_upload(
        self, catalog: Catalog
    ) -> None:
        with pytest.raises(NoSuchUpload):
            await catalog.put_part(make_part("gone", 1))

    async def test_list_parts_pages_by_part_number(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        await catalog.create_upload(make_upload("photos", "big.bin", "u1"))
        parts = [make_part("u1", n) for n in (7, 1, 3, 10000, 2)]
        for part in parts:
            await catalog.put_part(part)
        ordered = sorted(parts, key=lambda p: p.part_number)

        assert await catalog.list_parts("u1") == (ordered, False)
        assert await catalog.list_parts("u1", max_parts=2) == (ordered[:2], True)
        assert await catalog.list_parts("u1", part_number_marker=2, max_parts=2) == (
            ordered[2:4],
            True,
        )
        assert await catalog.list_parts("u1", part_number_marker=7) == (ordered[4:], False)
        assert await catalog.list_parts("u1", part_number_marker=10000) == ([], False)

    async def test_list_parts_of_a_missing_upload_raises_no_such_upload(
        self, catalog: Catalog
    ) -> None:
        with pytest.raises(NoSuchUpload):
            await catalog.list_parts("gone")

    async def test_list_uploads_pages_by_key_then_upload_id(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        await setup_bucket(catalog, "kept")
        specs = [("b", "u2"), ("a", "u9"), ("b", "u1"), ("c/d", "u3"), ("B", "u4")]
        for key, upload_id in specs:
            await catalog.create_upload(make_upload("photos", key, upload_id))
        await catalog.create_upload(make_upload("kept", "a", "u5"))

        def ids(page_uploads: list[Upload]) -> list[str]:
            return [u.upload_id for u in page_uploads]

        every = await catalog.list_uploads("photos")
        assert ids(every.uploads) == ["u4", "u9", "u1", "u2", "u3"]
        assert not every.truncated
        first = await catalog.list_uploads("photos", max_uploads=2)
        assert (ids(first.uploads), first.truncated) == (["u4", "u9"], True)
        after_b = await catalog.list_uploads("photos", key_marker="b")
        assert ids(after_b.uploads) == ["u3"]
        within_b = await catalog.list_uploads("photos", key_marker="b", upload_id_marker="u1")
        assert ids(within_b.uploads) == ["u2", "u3"]
        prefixed = await catalog.list_uploads("photos", prefix="c/")
        assert ids(prefixed.uploads) == ["u3"]
        assert (await catalog.list_uploads("photos", max_uploads=0)).uploads == []

    async def test_listing_uploads_of_a_missing_bucket_raises_no_such_bucket(
        self, catalog: Catalog
    ) -> None:
        with pytest.raises(NoSuchBucket):
            await catalog.list_uploads("missing")

    async def test_complete_commits_the_object_and_returns_unused_parts(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        upload = make_upload("photos", "big.bin", "u1")
        await catalog.create_upload(upload)
        parts = [make_part("u1", n) for n in (1, 2, 3, 4)]
        for part in parts:
            await catalog.put_part(part)
        record = object_for_parts(upload, [parts[0], parts[2]], "md5-2")

        replaced, unused = await catalog.complete_upload("u1", record)

        assert replaced is None
        assert unused == [parts[1], parts[3]]
        assert await catalog.get_object("photos", "big.bin") == record
        assert await catalog.get_upload("u1") is None
        with pytest.raises(NoSuchUpload):
            await catalog.list_parts("u1")
        with pytest.raises(NoSuchUpload):
            await catalog.put_part(make_part("u1", 5))

    async def test_complete_refuses_a_part_uploaded_again_meanwhile_and_keeps_the_upload(
        self, catalog: Catalog
    ) -> None:
        """A completion chose part 1's row; the client uploaded part 1 again before it committed
        (the earlier blob is on its way out): committing would point the object at that blob."""
        await setup_bucket(catalog)
        upload = make_upload("photos", "big.bin", "u1")
        await catalog.create_upload(upload)
        chosen = make_part("u1", 1, "first")
        await catalog.put_part(chosen)
        again = make_part("u1", 1, "again")
        await catalog.put_part(again)

        with pytest.raises(InvalidPart):
            await catalog.complete_upload("u1", object_for_parts(upload, [chosen], "e1"))

        assert await catalog.get_object("photos", "big.bin") is None
        assert await catalog.list_parts("u1") == ([again], False)

    async def test_complete_over_an_existing_object_returns_it(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        existing = make_object("photos", "big.bin", etag="old")
        await catalog.put_object(existing)
        upload = make_upload("photos", "big.bin", "u1")
        await catalog.create_upload(upload)
        part = make_part("u1", 1)
        await catalog.put_part(part)

        replaced, unused = await catalog.complete_upload(
            "u1", object_for_parts(upload, [part], "new"), if_match="old"
        )

        assert (replaced, unused) == (existing, [])

    async def test_complete_with_a_failed_precondition_keeps_the_upload(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        existing = make_object("photos", "big.bin", etag="old")
        await catalog.put_object(existing)
        upload = make_upload("photos", "big.bin", "u1")
        await catalog.create_upload(upload)
        part = make_part("u1", 1)
        await catalog.put_part(part)
        record = object_for_parts(upload, [part], "new")

        with pytest.raises(PreconditionFailed):
            await catalog.complete_upload("u1", record, if_none_match=True)
        with pytest.raises(PreconditionFailed):
            await catalog.complete_upload("u1", record, if_match="other")

        assert await catalog.get_object("photos", "big.bin") == existing
        assert await catalog.get_upload("u1") == upload
        assert await catalog.list_parts("u1") == ([part], False)

    async def test_completing_a_missing_upload_raises_no_such_upload(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        upload = make_upload("photos", "k", "u1")

        with pytest.raises(NoSuchUpload):
            await catalog.complete_upload("u1", object_for_parts(upload, [], "e"))
        assert await catalog.get_object("photos", "k") is None

    async def test_complete_refuses_a_record_for_another_key(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        upload = make_upload("photos", "k", "u1")
        await catalog.create_upload(upload)

        with pytest.raises(BlindstoreError):
            await catalog.complete_upload(
                "u1", object_for_parts(dataclasses.replace(upload, key="other"), [], "e")
            )
        assert await catalog.get_upload("u1") == upload
        assert await catalog.get_object("photos", "other") is None

    async def test_an_upload_completes_only_once(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        upload = make_upload("photos", "k", "u1")
        await catalog.create_upload(upload)
        part = make_part("u1", 1)
        await catalog.put_part(part)
        record = object_for_parts(upload, [part], "e")
        outcomes: list[str] = []

        async def complete() -> None:
            try:
                await catalog.complete_upload("u1", record)
                outcomes.append("completed")
            except NoSuchUpload:
                outcomes.append("gone")

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(complete)

        assert sorted(outcomes) == ["completed", "gone", "gone"]

    async def test_abort_removes_the_upload_and_returns_its_parts(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        await catalog.create_upload(make_upload("photos", "k", "u1"))
        parts = [make_part("u1", n) for n in (2, 1)]
        for part in parts:
            await catalog.put_part(part)

        assert await catalog.abort_upload("u1") == sorted(parts, key=lambda p: p.part_number)
        assert await catalog.get_upload("u1") is None
        with pytest.raises(NoSuchUpload):
            await catalog.abort_upload("u1")

    # -- maintenance --------------------------------------------------------------------------

    async def test_referenced_blobs_cover_objects_and_pending_parts_of_one_backend(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await catalog.put_object(make_object("photos", "a", parts=["a0", "a1"]))
        await catalog.put_object(make_object("photos", "b", parts=["b0"], backend="s3-paris"))
        await catalog.create_upload(make_upload("photos", "big", "u1"))
        await catalog.create_upload(make_upload("photos", "far", "u2", backend="s3-paris"))
        await catalog.put_part(make_part("u1", 1))
        await catalog.put_part(make_part("u2", 1))
        container = TENANT.container

        assert await catalog.referenced_blobs(BACKEND) == {
            (container, blob("a0")),
            (container, blob("a1")),
            (container, make_part("u1", 1).blob),
        }
        assert await catalog.referenced_blobs("s3-paris") == {
            (container, blob("b0")),
            (container, make_part("u2", 1).blob),
        }
        assert await catalog.referenced_blobs("unused") == set()

    # -- deferred deletion ---------------------------------------------------------------------

    async def test_an_overwrite_records_the_replaced_blobs_for_deferred_deletion(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        first = dataclasses.replace(
            make_object("photos", "a", etag="v1", parts=["a0", "a1"]),
            backends=("disk", "s3"),
            repairs=("gcs",),
        )
        await catalog.put_object(first)
        assert await catalog.due_deletions(_FAR_FUTURE) == []

        before = time.time()
        await catalog.put_object(make_object("photos", "a", etag="v2", parts=["b0"]))

        container = TENANT.container
        old = {(container, blob("a0")), (container, blob("a1"))}
        for backend in ("disk", "s3", "gcs"):
            assert await catalog.deferred_blobs(backend) == old
        assert await catalog.deferred_blobs(BACKEND) == set()
        # Not due at once: a read that found the old row may still be streaming it.
        assert await catalog.due_deletions(before) == []
        due = await catalog.due_deletions(_FAR_FUTURE)
        assert {(d.backend, d.container, d.blob) for d in due} == {
            (backend, container, name) for backend in ("disk", "s3", "gcs") for _, name in old
        }
        assert all(d.not_before >= before for d in due)
        assert [d.not_before for d in due] == sorted(d.not_before for d in due)

    async def test_deletes_record_the_removed_blobs_for_deferred_deletion(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await put_keys(catalog, "photos", ["by-key", "by-version", "kept-version"])
        await catalog.delete_object("photos", "by-key")
        removed = await catalog.delete_object_version(
            "photos", "by-version", make_object("photos", "by-version").object_id
        )
        assert removed is not None
        assert await catalog.delete_object_version("photos", "kept-version", ident("other")) is None
        assert await catalog.delete_object("photos", "absent") is None

        assert await catalog.deferred_blobs(BACKEND) == {
            (TENANT.container, blob("photos/by-key/e1")),
            (TENANT.container, blob("photos/by-version/e1")),
        }

    async def test_completing_over_an_object_records_its_blobs_for_deferred_deletion(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await catalog.put_object(make_object("photos", "big", parts=["old0"]))
        upload = make_upload("photos", "big", "u1")
        await catalog.create_upload(upload)
        part = make_part("u1", 1)
        await catalog.put_part(part)

        await catalog.complete_upload("u1", object_for_parts(upload, [part], "m-1"))

        # The completed upload's own parts are the new row's: only the old blob waits.
        assert await catalog.deferred_blobs(BACKEND) == {(TENANT.container, blob("old0"))}

    async def test_a_refused_overwrite_records_nothing_and_a_kept_blob_is_never_recorded(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await catalog.put_object(make_object("photos", "a", etag="v1", parts=["shared", "old"]))
        with pytest.raises(PreconditionFailed):
            await catalog.put_object(make_object("photos", "a", etag="v2"), if_match="nope")
        assert await catalog.deferred_blobs(BACKEND) == set()

        await catalog.put_object(make_object("photos", "a", etag="v3", parts=["shared"]))

        assert await catalog.deferred_blobs(BACKEND) == {(TENANT.container, blob("old"))}

    async def test_deferred_deletions_can_be_postponed_and_finished(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        await put_keys(catalog, "photos", ["a", "b"])
        await catalog.delete_object("photos", "a")
        await catalog.delete_object("photos", "b")
        first, second = await catalog.due_deletions(_FAR_FUTURE)

        await catalog.postpone_deletions([first], _FAR_FUTURE + 10)
        assert await catalog.due_deletions(_FAR_FUTURE) == [second]
        assert await catalog.due_deletions(_FAR_FUTURE, limit=0) == []
        await catalog.finish_deletions([second, second])
        assert await catalog.due_deletions(_FAR_FUTURE) == []
        (postponed,) = await catalog.due_deletions(_FAR_FUTURE + 10)
        assert postponed == dataclasses.replace(first, not_before=_FAR_FUTURE + 10)
        await catalog.finish_deletions([postponed])
        assert await catalog.deferred_blobs(BACKEND) == set()
        await catalog.finish_deletions([])
        await catalog.postpone_deletions([], 0.0)

    # -- replicas ------------------------------------------------------------------------------

    async def test_objects_uploads_and_parts_keep_their_replica_lists(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        record = dataclasses.replace(
            make_object("photos", "twice"), backends=("disk", "s3-paris"), repairs=("azure",)
        )
        upload = dataclasses.replace(
            make_upload("photos", "big", "u1"), backends=("disk", "s3-paris", "azure"), quorum=2
        )
        part = dataclasses.replace(make_part("u1", 1), backends=("disk", "azure"))
        await catalog.put_object(record)
        await catalog.create_upload(upload)
        await catalog.put_part(part)

        assert await catalog.get_object("photos", "twice") == record
        assert await catalog.get_upload("u1") == upload
        assert (await catalog.list_parts("u1"))[0] == [part]

    async def test_referenced_blobs_count_every_replica_repair_and_part_copy(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await catalog.put_object(
            dataclasses.replace(
                make_object("photos", "a", parts=["a0"]), backends=("disk", "s3"), repairs=("gcs",)
            )
        )
        await catalog.create_upload(
            dataclasses.replace(make_upload("photos", "big", "u1"), backends=("disk", "s3"))
        )
        await catalog.put_part(dataclasses.replace(make_part("u1", 1), backends=("disk", "az")))
        container = TENANT.container
        part = (container, make_part("u1", 1).blob)

        assert await catalog.referenced_blobs("disk") == {(container, blob("a0")), part}
        assert await catalog.referenced_blobs("s3") == {(container, blob("a0")), part}
        assert await catalog.referenced_blobs("gcs") == {(container, blob("a0"))}
        assert await catalog.referenced_blobs("az") == {part}
        assert await catalog.referenced_blobs("dis") == set()

    async def test_objects_to_repair_pages_by_key_and_set_replicas_moves_a_repaired_target(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        for key in ("c", "a", "b"):
            await catalog.put_object(
                dataclasses.replace(make_object("photos", key), repairs=("s3",))
            )
        await catalog.put_object(make_object("photos", "healthy"))

        first = await catalog.objects_to_repair(limit=2)
        rest = await catalog.objects_to_repair(after=("photos", first[-1].key), limit=2)
        assert [r.key for r in first] == ["a", "b"]
        assert [r.key for r in rest] == ["c"]

        a = first[0]
        assert await catalog.set_replicas("photos", "a", a.object_id, (BACKEND, "s3"), ())
        assert not await catalog.set_replicas("photos", "b", ident("other"), (BACKEND, "s3"), ())
        assert [r.key for r in await catalog.objects_to_repair()] == ["b", "c"]
        repaired = await catalog.get_object("photos", "a")
        assert repaired is not None
        assert (repaired.backends, repaired.repairs) == ((BACKEND, "s3"), ())

    async def test_ping_answers(self, catalog: Catalog) -> None:
        await catalog.ping()

    async def test_a_failed_replica_moves_to_repairs_and_the_last_one_quarantines(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        record = dataclasses.replace(make_object("photos", "scan"), backends=("a", "b"))
        await catalog.put_object(record)
        oid = record.object_id

        assert await catalog.mark_replica_bad("photos", "scan", oid, "a", 2000.0) == (
            "moved_to_repairs"
        )
        moved = await catalog.get_object("photos", "scan")
        assert moved is not None
        assert (moved.backends, moved.repairs, moved.quarantined) == (("b",), ("a",), None)
        # A second reader that failed on the same replica changes nothing more.
        assert await catalog.mark_replica_bad("photos", "scan", oid, "a", 2001.0) == "unchanged"
        # Another version of the key is not touched by a failure seen on an older one.
        assert (
            await catalog.mark_replica_bad("photos", "scan", ident("old"), "b", 2002.0)
            == "unchanged"
        )

        assert await catalog.mark_replica_bad("photos", "scan", oid, "b", 2003.0) == "quarantined"
        assert await catalog.mark_replica_bad("photos", "scan", oid, "b", 2004.0) == "quarantined"
        quarantined = await catalog.get_object("photos", "scan")
        assert quarantined is not None
        assert (quarantined.backends, quarantined.repairs) == (("b",), ("a",))
        assert quarantined.quarantined == 2003.0
        assert [r.key for r in await catalog.objects_to_repair()] == ["scan"]

        # A repair that found a replica that verifies lifts the quarantine.
        assert await catalog.set_replicas("photos", "scan", oid, ("b", "a"), ())
        healed = await catalog.get_object("photos", "scan")
        assert healed is not None
        assert (healed.backends, healed.repairs, healed.quarantined) == (("b", "a"), (), None)
        assert await catalog.objects_to_repair() == []

    async def test_a_quarantined_object_alone_is_listed_for_repair(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        record = make_object("photos", "only")
        await catalog.put_object(record)
        assert await catalog.mark_replica_bad(
            "photos", "only", record.object_id, BACKEND, 3000.0
        ) == ("quarantined")
        listed = await catalog.objects_to_repair()
        assert [(r.key, r.backends, r.quarantined) for r in listed] == [
            ("only", (BACKEND,), 3000.0)
        ]
        # Overwriting the key gives a fresh, healthy object.
        await catalog.put_object(make_object("photos", "only"))
        assert await catalog.objects_to_repair() == []

    async def test_replica_usage_counts_objects_and_bytes_per_replica_set_by_tenant_or_bucket(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog, "alpha")
        await setup_bucket(catalog, "beta")
        await catalog.create_tenant(OTHER_TENANT)
        await catalog.create_bucket(Bucket("gamma", OTHER_TENANT.tenant_id, 1500.0))

        def placed(
            bucket: str, key: str, parts: int, backends: tuple[str, ...], repairs: tuple[str, ...]
        ) -> ObjectRecord:
            tenant = OTHER_TENANT if bucket == "gamma" else TENANT
            made = make_object(bucket, key, parts=[str(n) for n in range(parts)], tenant=tenant)
            return dataclasses.replace(made, backends=backends, repairs=repairs)

        await catalog.put_object(placed("alpha", "a", 1, ("disk", "s3"), ()))
        await catalog.put_object(placed("alpha", "b", 2, ("disk", "s3"), ()))
        await catalog.put_object(placed("alpha", "c", 1, ("disk",), ("s3",)))
        await catalog.put_object(placed("beta", "d", 3, ("disk", "s3"), ()))
        await catalog.put_object(placed("gamma", "e", 1, ("azure",), ()))

        def usage(rows: Sequence[ReplicaUsage]) -> set[ReplicaUsage]:
            assert len(rows) == len(set(rows)), "one row per replica set"
            return set(rows)

        assert usage(await catalog.replica_usage(bucket="alpha")) == {
            ReplicaUsage(("disk", "s3"), (), objects=2, bytes=300),
            ReplicaUsage(("disk",), ("s3",), objects=1, bytes=100),
        }
        assert usage(await catalog.replica_usage(tenant_id=TENANT.tenant_id)) == {
            ReplicaUsage(("disk", "s3"), (), objects=3, bytes=600),
            ReplicaUsage(("disk",), ("s3",), objects=1, bytes=100),
        }
        assert usage(await catalog.replica_usage(tenant_id=OTHER_TENANT.tenant_id)) == {
            ReplicaUsage(("azure",), (), objects=1, bytes=100)
        }
        assert (
            usage(await catalog.replica_usage(tenant_id=OTHER_TENANT.tenant_id, bucket="alpha"))
            == set()
        )
        assert len(await catalog.replica_usage()) == 3
        assert await catalog.replica_usage(bucket="missing") == []

    async def test_bucket_keys_round_trip_and_ids_are_unique(self, catalog: Catalog) -> None:
        key = make_bucket_key("bk", version=2)
        await catalog.put_bucket_key(key)

        assert await catalog.get_bucket_key(key.bucket_key_id) == key
        assert await catalog.get_bucket_key(ident("missing")) is None
        with pytest.raises(InvalidArgument):
            await catalog.put_bucket_key(dataclasses.replace(key, bucket="other"))

    async def test_bucket_keys_below_a_version_page_by_id_within_one_key_name(
        self, catalog: Catalog
    ) -> None:
        old = sorted(
            (make_bucket_key(f"old{i}", version=1 + i % 2) for i in range(5)),
            key=lambda k: k.bucket_key_id,
        )
        for key in old:
            await catalog.put_bucket_key(key)
        await catalog.put_bucket_key(make_bucket_key("current", version=3))
        await catalog.put_bucket_key(make_bucket_key("elsewhere", version=1, key_name="hgw-t-x"))

        first = await catalog.bucket_keys_below(TENANT.key_name, 3, limit=3)
        rest = await catalog.bucket_keys_below(
            TENANT.key_name, 3, after=first[-1].bucket_key_id, limit=3
        )
        assert first + rest == old
        assert [k.key_version for k in await catalog.bucket_keys_below(TENANT.key_name, 2)] == [
            1 for k in old if k.key_version == 1
        ]

    async def test_rewrap_bucket_key_is_a_compare_and_set_on_the_wrapped_form(
        self, catalog: Catalog
    ) -> None:
        key = make_bucket_key("bk", version=1)
        await catalog.put_bucket_key(key)

        assert await catalog.rewrap_bucket_key(key.bucket_key_id, key.wrapped, "vault:v2:BBBB", 2)
        assert not await catalog.rewrap_bucket_key(
            key.bucket_key_id, key.wrapped, "vault:v3:CCCC", 3
        )
        assert not await catalog.rewrap_bucket_key(ident("gone"), key.wrapped, "vault:v2:DD", 2)
        assert await catalog.get_bucket_key(key.bucket_key_id) == dataclasses.replace(
            key, wrapped="vault:v2:BBBB", key_version=2
        )

    # -- data-subject keys ---------------------------------------------------------------------

    async def test_unkeyed_subject_digests_are_listed_and_replaced_by_compare_and_set(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        old = dataclasses.replace(subject_key("patient-1"), digest_keyed=False)
        new = subject_key("patient-2")
        await catalog.add_subject_key(old)
        await catalog.add_subject_key(new)
        assert await catalog.unkeyed_subject_keys() == [old]

        keyed = hashlib.sha256(b"keyed" + old.subject_digest).digest()
        # Another digest than the row holds: nothing changes.
        assert not await catalog.set_keyed_subject_digest(old.key_name, keyed, keyed)
        assert await catalog.set_keyed_subject_digest(old.key_name, old.subject_digest, keyed)
        assert not await catalog.set_keyed_subject_digest(old.key_name, old.subject_digest, keyed)

        assert await catalog.unkeyed_subject_keys() == []
        found = await catalog.get_subject_key(TENANT.tenant_id, keyed)
        assert found == dataclasses.replace(old, subject_digest=keyed, digest_keyed=True)
        assert await catalog.get_subject_key(TENANT.tenant_id, old.subject_digest) is None

    async def test_a_subject_key_is_found_by_its_tenant_and_digest(self, catalog: Catalog) -> None:
        await catalog.create_tenant(TENANT)
        await catalog.create_tenant(OTHER_TENANT)
        mine = subject_key("patient-1")
        theirs = subject_key("patient-1", tenant=OTHER_TENANT)

        assert await catalog.add_subject_key(mine) == mine
        assert await catalog.add_subject_key(theirs) == theirs

        assert await catalog.get_subject_key(TENANT.tenant_id, mine.subject_digest) == mine
        assert await catalog.get_subject_key(OTHER_TENANT.tenant_id, mine.subject_digest) == theirs
        other_digest = subject_key("patient-2").subject_digest
        assert await catalog.get_subject_key(TENANT.tenant_id, other_digest) is None
        assert await catalog.list_subject_keys(TENANT.tenant_id) == [mine]

    async def test_adding_a_second_key_for_a_live_subject_returns_the_first(
        self, catalog: Catalog
    ) -> None:
        await catalog.create_tenant(TENANT)
        first = subject_key("patient-1")
        await catalog.add_subject_key(first)
        second = dataclasses.replace(first, key_name="hgw-p-second", created=5001.0)

        assert await catalog.add_subject_key(second) == first
        assert await catalog.list_subject_keys(TENANT.tenant_id) == [first]

    async def test_concurrent_additions_of_a_subject_key_agree_on_one(
        self, catalog: Catalog
    ) -> None:
        await catalog.create_tenant(TENANT)
        base = subject_key("patient-1")
        returned: list[SubjectKey] = []

        async def add(n: int) -> None:
            returned.append(
                await catalog.add_subject_key(dataclasses.replace(base, key_name=f"k{n}"))
            )

        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(add, n)

        stored = await catalog.list_subject_keys(TENANT.tenant_id)
        assert len(stored) == 1
        assert returned == [stored[0]] * 6

    async def test_a_shredded_subject_gets_a_new_live_key_and_the_old_one_is_kept(
        self, catalog: Catalog
    ) -> None:
        await catalog.create_tenant(TENANT)
        old = subject_key("patient-1", created=5000.0)
        await catalog.add_subject_key(old)
        await catalog.record_shred(make_shred("s1", [old.key_name], requested=6000.0))

        assert await catalog.get_subject_key(TENANT.tenant_id, old.subject_digest) is None
        new = dataclasses.replace(old, key_name="hgw-p-new", created=7000.0)
        assert await catalog.add_subject_key(new) == new

        assert await catalog.get_subject_key(TENANT.tenant_id, old.subject_digest) == new
        assert await catalog.list_subject_keys(TENANT.tenant_id) == [
            dataclasses.replace(old, shredded=6000.0),
            new,
        ]

    # -- crypto-shredding records ---------------------------------------------------------------

    async def test_a_tenant_shred_marks_the_tenant_and_its_subject_keys_until_cancelled(
        self, catalog: Catalog
    ) -> None:
        await catalog.create_tenant(TENANT)
        await catalog.create_tenant(OTHER_TENANT)
        patient = subject_key("patient-1")
        bystander = subject_key("patient-1", tenant=OTHER_TENANT)
        await catalog.add_subject_key(patient)
        await catalog.add_subject_key(bystander)
        shred = make_shred("s1", [TENANT.key_name, patient.key_name], scope="tenant")

        await catalog.record_shred(shred)

        assert await catalog.list_shreds() == [shred]
        assert await catalog.get_tenant(TENANT.tenant_id) == dataclasses.replace(
            TENANT, shredded=shred.requested
        )
        assert await catalog.get_tenant(OTHER_TENANT.tenant_id) == OTHER_TENANT
        assert await catalog.list_subject_keys(TENANT.tenant_id) == [
            dataclasses.replace(patient, shredded=shred.requested)
        ]
        assert await catalog.list_subject_keys(OTHER_TENANT.tenant_id) == [bystander]
        assert await catalog.revoked_key_names() == {TENANT.key_name, patient.key_name}

        await catalog.cancel_shred("s1")

        assert await catalog.list_shreds() == []
        assert await catalog.get_tenant(TENANT.tenant_id) == TENANT
        assert await catalog.list_subject_keys(TENANT.tenant_id) == [patient]
        assert await catalog.revoked_key_names() == frozenset()

    async def test_a_subject_shred_marks_only_its_keys(self, catalog: Catalog) -> None:
        await catalog.create_tenant(TENANT)
        shredded, kept = subject_key("patient-1"), subject_key("patient-2")
        await catalog.add_subject_key(shredded)
        await catalog.add_subject_key(kept)

        await catalog.record_shred(make_shred("s1", [shredded.key_name]))

        assert await catalog.get_tenant(TENANT.tenant_id) == TENANT
        assert await catalog.get_subject_key(TENANT.tenant_id, shredded.subject_digest) is None
        assert await catalog.get_subject_key(TENANT.tenant_id, kept.subject_digest) == kept
        assert await catalog.revoked_key_names() == {shredded.key_name}

    async def test_finishing_a_shred_records_its_certificate_and_forbids_cancelling(
        self, catalog: Catalog
    ) -> None:
        await catalog.create_tenant(TENANT)
        shred = make_shred("s1", [TENANT.key_name], scope="tenant")
        await catalog.record_shred(shred)

        await catalog.finish_shred("s1", 9000.5, '{"type": "certificate"}')

        done = dataclasses.replace(shred, destroyed=9000.5, certificate='{"type": "certificate"}')
        assert await catalog.list_shreds() == [done]
        with pytest.raises(InvalidRequest, match="destroyed"):
            await catalog.cancel_shred("s1")
        assert await catalog.list_shreds() == [done]
        assert await catalog.revoked_key_names() == {TENANT.key_name}
        tenant = await catalog.get_tenant(TENANT.tenant_id)
        assert tenant is not None
        assert tenant.shredded == shred.requested

    async def test_cancelling_an_unknown_shred_does_nothing(self, catalog: Catalog) -> None:
        await catalog.cancel_shred("never-recorded")

        assert await catalog.list_shreds() == []

    async def test_shreds_are_listed_oldest_first_and_all_revoke_their_keys(
        self, catalog: Catalog
    ) -> None:
        await catalog.create_tenant(TENANT)
        late = make_shred("a-late", ["hgw-p-late"], requested=7000.0)
        early = make_shred("z-early", ["hgw-p-early", "hgw-p-also"], requested=6000.0)
        await catalog.record_shred(late)
        await catalog.record_shred(early)
        await catalog.finish_shred("z-early", 6500.0, "{}")

        assert [s.shred_id for s in await catalog.list_shreds()] == ["z-early", "a-late"]
        assert await catalog.revoked_key_names() == {"hgw-p-late", "hgw-p-early", "hgw-p-also"}

    async def test_key_usage_counts_objects_bytes_and_uploads_of_the_named_keys(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await catalog.put_object(wrapped_by(make_object("photos", "a", parts=["1"]), "kp", 1))
        await catalog.put_object(wrapped_by(make_object("photos", "b", parts=["1", "2"]), "kq", 1))
        await catalog.put_object(make_object("photos", "tenant-key"))
        await catalog.create_upload(
            dataclasses.replace(make_upload("photos", "u", "u1"), key_name="kp")
        )
        await catalog.create_upload(make_upload("photos", "u", "u2"))

        assert await catalog.key_usage(["kp", "kq"]) == KeyUsage(objects=2, bytes=300, uploads=1)
        assert await catalog.key_usage(["kq"]) == KeyUsage(objects=1, bytes=200, uploads=0)
        assert await catalog.key_usage(["unused"]) == KeyUsage()
        assert await catalog.key_usage([]) == KeyUsage()

    # -- rewrap ----------------------------------------------------------------------------------

    async def test_wrapped_below_pages_objects_by_location_below_a_version(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog, "alpha")
        await setup_bucket(catalog, "beta")
        k = TENANT.key_name
        old = [
            wrapped_by(make_object("beta", "a"), k, 1),
            wrapped_by(make_object("alpha", "z"), k, 2),
            wrapped_by(make_object("alpha", "b"), k, 1),
        ]
        for record in old:
            await catalog.put_object(record)
        await catalog.put_object(wrapped_by(make_object("alpha", "current"), k, 3))
        await catalog.put_object(wrapped_by(make_object("alpha", "other-key"), "hgw-other", 1))

        first = await catalog.wrapped_below("objects", k, 3, limit=2)
        rest = await catalog.wrapped_below("objects", k, 3, after=first[-1].locator, limit=2)

        by_location = sorted(old, key=lambda r: (r.bucket, r.key))
        assert first + rest == [
            WrappedRef(
                "objects", (r.bucket, r.key), r.tenant_id, r.object_id, r.wrapped_dek, r.key_version
            )
            for r in by_location
        ]
        assert [ref.locator for ref in first] == [("alpha", "b"), ("alpha", "z")]
        assert [ref.locator for ref in await catalog.wrapped_below("objects", k, 2)] == [
            ("alpha", "b"),
            ("beta", "a"),
        ]
        assert await catalog.wrapped_below("objects", k, 1) == []
        assert await catalog.wrapped_below("uploads", k, 3) == []

    async def test_wrapped_below_pages_pending_uploads_by_upload_id(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        for upload_id, version in (("u3", 1), ("u1", 2), ("u2", 5), ("u4", 1)):
            await catalog.create_upload(
                dataclasses.replace(make_upload("photos", "k", upload_id), key_version=version)
            )

        first = await catalog.wrapped_below("uploads", TENANT.key_name, 5, limit=2)
        rest = await catalog.wrapped_below("uploads", TENANT.key_name, 5, after=first[-1].locator)

        assert first == [
            WrappedRef("uploads", ("u1", ""), TENANT.tenant_id, ident("u1"), "vault:v1:upload", 2),
            WrappedRef("uploads", ("u3", ""), TENANT.tenant_id, ident("u3"), "vault:v1:upload", 1),
        ]
        assert [ref.locator for ref in rest] == [("u4", "")]
        assert await catalog.wrapped_below("objects", TENANT.key_name, 5) == []

    async def test_count_wrapped_below_covers_objects_and_uploads_of_one_key(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        k = TENANT.key_name
        await catalog.put_object(wrapped_by(make_object("photos", "a"), k, 1))
        await catalog.put_object(wrapped_by(make_object("photos", "b"), k, 2))
        await catalog.put_object(wrapped_by(make_object("photos", "c"), "hgw-other", 1))
        await catalog.create_upload(
            dataclasses.replace(make_upload("photos", "u", "u1"), key_version=1)
        )

        assert await catalog.count_wrapped_below(k, 2) == 2
        assert await catalog.count_wrapped_below(k, 3) == 3
        assert await catalog.count_wrapped_below(k, 1) == 0
        assert await catalog.count_wrapped_below("hgw-other", 2) == 1

    async def test_replace_wrapped_stores_only_rows_unchanged_meanwhile(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        k = TENANT.key_name
        for key in ("kept", "rewritten", "replaced", "deleted"):
            await catalog.put_object(wrapped_by(make_object("photos", key), k, 1))
        await catalog.create_upload(
            dataclasses.replace(make_upload("photos", "u", "u1"), key_version=1)
        )
        refs = {
            ref.locator[0] if ref.table == "uploads" else ref.locator[1]: ref
            for ref in [
                *await catalog.wrapped_below("objects", k, 2),
                *await catalog.wrapped_below("uploads", k, 2),
            ]
        }
        # Meanwhile: a client overwrites one row with a new DEK, another with a new object that
        # happens to carry the same wrapped text, and deletes a third.
        await catalog.put_object(
            dataclasses.replace(make_object("photos", "rewritten"), wrapped_dek="vault:v2:fresh")
        )
        clash = wrapped_by(make_object("photos", "replaced", etag="other"), k, 1)
        assert clash.wrapped_dek == refs["replaced"].wrapped
        await catalog.put_object(clash)
        await catalog.delete_object("photos", "deleted")

        stored = await catalog.replace_wrapped(
            [(ref, f"vault:v2:new-{name}", 2) for name, ref in refs.items()]
        )

        assert stored == 2
        kept = await catalog.get_object("photos", "kept")
        assert kept is not None
        assert (kept.wrapped_dek, kept.key_version) == ("vault:v2:new-kept", 2)
        upload = await catalog.get_upload("u1")
        assert upload is not None
        assert (upload.wrapped_dek, upload.key_version) == ("vault:v2:new-u1", 2)
        rewritten = await catalog.get_object("photos", "rewritten")
        assert rewritten is not None
        assert rewritten.wrapped_dek == "vault:v2:fresh"
        assert await catalog.get_object("photos", "replaced") == clash
        assert await catalog.get_object("photos", "deleted") is None
        assert await catalog.replace_wrapped([]) == 0

    # -- purges after shredding ------------------------------------------------------------------

    async def test_objects_and_uploads_with_keys_are_found_by_key_name(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await setup_bucket(catalog, "archive")
        mine = [
            wrapped_by(make_object("photos", "c"), "kp", 1),
            wrapped_by(make_object("archive", "z"), "kq", 4),
            wrapped_by(make_object("photos", "a"), "kp", 2),
        ]
        for record in mine:
            await catalog.put_object(record)
        await catalog.put_object(make_object("photos", "b"))
        pending = dataclasses.replace(make_upload("photos", "k", "u2"), key_name="kq")
        await catalog.create_upload(pending)
        await catalog.create_upload(make_upload("photos", "k", "u1"))

        first = await catalog.objects_with_keys(["kp", "kq"], limit=2)
        rest = await catalog.objects_with_keys(["kp", "kq"], after=("photos", "a"))

        assert first == sorted(mine, key=lambda r: (r.bucket, r.key))[:2]
        assert rest == [mine[0]]
        assert await catalog.objects_with_keys(["unused"]) == []
        assert await catalog.uploads_with_keys(["kp", "kq"]) == [pending]
        assert await catalog.uploads_with_keys(["kp"]) == []

    async def test_delete_object_version_removes_only_that_version(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        record = make_object("photos", "a", etag="v1")
        await catalog.put_object(record)

        assert await catalog.delete_object_version("photos", "a", ident("another")) is None
        assert await catalog.get_object("photos", "a") == record
        assert await catalog.delete_object_version("photos", "a", record.object_id) == record
        assert await catalog.get_object("photos", "a") is None
        assert await catalog.delete_object_version("photos", "a", record.object_id) is None

    async def test_purging_a_tenant_deletes_its_data_and_nothing_else(
        self, catalog: Catalog
    ) -> None:
        await setup_bucket(catalog)
        await setup_bucket(catalog, "empty")
        await catalog.create_tenant(OTHER_TENANT)
        await catalog.create_bucket(Bucket("theirs", OTHER_TENANT.tenant_id, 1.0))
        mine_key = AccessKey("AKIAMINE", "s1", TENANT.tenant_id, 1.0)
        their_key = AccessKey("AKIATHEIRS", "s2", OTHER_TENANT.tenant_id, 1.0)
        await catalog.add_access_key(mine_key)
        await catalog.add_access_key(their_key)
        patient = subject_key("patient-1")
        await catalog.add_subject_key(patient)
        await catalog.put_object(make_object("photos", "a", parts=["1", "2"]))
        await catalog.put_object(wrapped_by(make_object("photos", "b"), patient.key_name, 1))
        await catalog.create_upload(make_upload("photos", "big", "u1"))
        await catalog.put_part(make_part("u1", 1))
        theirs = make_object("theirs", "a", tenant=OTHER_TENANT)
        await catalog.put_object(theirs)
        their_upload = dataclasses.replace(
            make_upload("theirs", "big", "u2"),
            tenant_id=OTHER_TENANT.tenant_id,
            container=OTHER_TENANT.container,
        )
        await catalog.create_upload(their_upload)
        their_part = make_part("u2", 1)
        await catalog.put_part(their_part)
        shred = make_shred("s1", [TENANT.key_name, patient.key_name], scope="tenant")
        await catalog.record_shred(shred)

        assert await catalog.purge_tenant(TENANT.tenant_id) == KeyUsage(
            objects=2, bytes=300, uploads=1
        )

        assert await catalog.list_buckets(TENANT.tenant_id) == []
        assert await catalog.get_bucket("photos") is None
        assert await catalog.get_object("photos", "a") is None
        assert await catalog.get_upload("u1") is None
        assert await catalog.referenced_blobs(BACKEND) == {
            (OTHER_TENANT.container, theirs.parts[0].blob),
            (OTHER_TENANT.container, their_part.blob),
        }
        # The tenant row, its credentials, subject keys and shredding records stay.
        assert await catalog.get_tenant(TENANT.tenant_id) == dataclasses.replace(
            TENANT, shredded=shred.requested
        )
        assert await catalog.get_access_key("AKIAMINE") == mine_key
        assert len(await catalog.list_subject_keys(TENANT.tenant_id)) == 1
        assert await catalog.list_shreds() == [shred]
        # Another tenant is untouched.
        assert await catalog.get_access_key("AKIATHEIRS") == their_key
        assert await catalog.get_object("theirs", "a") == theirs
        assert await catalog.get_upload("u2") == their_upload
        assert await catalog.list_parts("u2") == ([their_part], False)
        assert await catalog.purge_tenant(TENANT.tenant_id) == KeyUsage()

    async def test_cancelling_a_subject_shred_after_the_subject_got_a_new_key_keeps_the_new_one(
        self, catalog: Catalog
    ) -> None:
        await catalog.create_tenant(TENANT)
        old = subject_key("patient-1", created=5000.0)
        await catalog.add_subject_key(old)
        await catalog.record_shred(make_shred("s1", [old.key_name], requested=6000.0))
        new = dataclasses.replace(old, key_name="hgw-p-new", created=7000.0)
        await catalog.add_subject_key(new)

        await catalog.cancel_shred("s1")

        assert await catalog.list_shreds() == []
        assert await catalog.revoked_key_names() == frozenset()
        assert await catalog.get_subject_key(TENANT.tenant_id, old.subject_digest) == new
        # The restored key stays retired: one live key per subject.
        assert await catalog.list_subject_keys(TENANT.tenant_id) == [
            dataclasses.replace(old, shredded=6000.0),
            new,
        ]

    # -- the audit trail ---------------------------------------------------------------------

    async def test_audit_appends_continue_one_chain_from_genesis(self, catalog: Catalog) -> None:
        first = await catalog.append_audit([audit_event(1), audit_event(2)])
        second = await catalog.append_audit([audit_event(3)])

        assert [r.seq for r in first + second] == [1, 2, 3]
        assert first[0].prev_hash == GENESIS
        assert second[0].prev_hash == first[1].hash
        stored = await catalog.audit_records()
        assert stored == first + second
        assert verify(stored, [], {}) == []
        assert await catalog.audit_head() == (3, second[0].hash)

    async def test_audit_records_keep_every_field_exactly(self, catalog: Catalog) -> None:
        event = dataclasses.replace(
            audit_event(1),
            key="dir/ké\u00e9 y",
            backends=("eu-1", "eu-2"),
            detail={"denied": True, "n": 3, "why": "x"},
            time=1_700_000_000.123456,
        )
        bare = AuditEvent(time=5.0, request_id="r", principal="", operation="Unknown", result="400")
        await catalog.append_audit([event, bare])

        stored = await catalog.audit_records()
        assert [r.event for r in stored] == [event, bare]

    async def test_audit_log_pages_in_seq_order(self, catalog: Catalog) -> None:
        await catalog.append_audit([audit_event(i) for i in range(1, 8)])

        page1 = await catalog.audit_records(limit=3)
        page2 = await catalog.audit_records(after_seq=page1[-1].seq, limit=3)
        page3 = await catalog.audit_records(after_seq=page2[-1].seq, limit=3)

        assert [r.seq for r in page1 + page2 + page3] == list(range(1, 8))

    async def test_audit_queries_filter_and_page_newest_first(self, catalog: Catalog) -> None:
        events = [
            audit_event(i, principal="AK1" if i % 2 else "AK2", operation="GetObject")
            for i in range(1, 9)
        ]
        events.append(audit_event(9, principal="AK1", operation="PutObject", key="other"))
        await catalog.append_audit(events)

        mine = await catalog.query_audit(AuditFilter(principal="AK1"), limit=2)
        assert [r.seq for r in mine] == [9, 7]
        more = await catalog.query_audit(AuditFilter(principal="AK1"), limit=2, cursor=7)
        assert [r.seq for r in more] == [5, 3]
        oldest = await catalog.query_audit(
            AuditFilter(principal="AK1"), newest_first=False, limit=2, cursor=1
        )
        assert [r.seq for r in oldest] == [3, 5]

        puts = await catalog.query_audit(AuditFilter(operation="PutObject"))
        assert [r.seq for r in puts] == [9]
        by_key = await catalog.query_audit(AuditFilter(bucket="photos", key="k3"))
        assert [r.seq for r in by_key] == [3]
        by_object = await catalog.query_audit(AuditFilter(object_id=ident("object-4")))
        assert [r.seq for r in by_object] == [4]
        by_tenant = await catalog.query_audit(AuditFilter(tenant_id=OTHER_TENANT.tenant_id))
        assert by_tenant == []
        window = await catalog.query_audit(AuditFilter(since=1003.0, until=1006.0))
        assert [r.seq for r in window] == [5, 4, 3]

    async def test_last_access_is_the_latest_successful_read(self, catalog: Catalog) -> None:
        oid = ident("object-1")
        assert await catalog.last_access(oid) is None
        await catalog.append_audit(
            [
                audit_event(1, operation="PutObject", object_id=oid),
                audit_event(2, operation="GetObject", object_id=oid),
                audit_event(3, operation="HeadObject", object_id=oid),
                audit_event(4, operation="GetObject", object_id=oid, result="403 AccessDenied"),
                audit_event(5, operation="PutObjectTagging", object_id=oid),
                audit_event(6, operation="GetObject", object_id=ident("object-2")),
            ]
        )
        assert await catalog.last_access(oid) == 1003.0

    async def test_audit_checkpoints_are_kept_once_per_seq(self, catalog: Catalog) -> None:
        await catalog.append_audit([audit_event(1), audit_event(2)])
        head = await catalog.audit_head()
        assert head is not None
        checkpoint = Checkpoint(2, head[1], 10.0, "hgw-audit", 1, "vault:v1:AAAA")
        await catalog.add_audit_checkpoint(checkpoint)
        await catalog.add_audit_checkpoint(dataclasses.replace(checkpoint, time=11.0))

        assert await catalog.audit_checkpoints() == [checkpoint]

    async def test_chained_audit_checkpoints_round_trip_and_extend_only_the_latest(
        self, catalog: Catalog
    ) -> None:
        await catalog.append_audit([audit_event(n) for n in range(1, 6)])
        first = Checkpoint(
            2, bytes(32), 10.0, "hgw-audit", 1, "vault:v1:AAAA", 0, GENESIS, "checkpoint", 1
        )
        assert await catalog.add_audit_checkpoint(first)
        second = Checkpoint(
            4, bytes(32), 11.0, "hgw-audit", 1, "vault:v1:BBBB", 2, b"\x01" * 32,
            "discontinuity", 3,
        )  # fmt: skip
        # Chained to a checkpoint that is not the latest (a lost race): refused.
        assert not await catalog.add_audit_checkpoint(dataclasses.replace(second, prev_seq=0))
        assert await catalog.add_audit_checkpoint(second)
        # Not above the latest: refused.
        assert not await catalog.add_audit_checkpoint(dataclasses.replace(second, seq=3))

        assert await catalog.audit_checkpoints() == [first, second]
        assert await catalog.audit_checkpoints(since_seq=3) == [second]
        assert await catalog.latest_audit_checkpoint() == second

    async def test_object_marks_list_every_live_row_page_by_page(self, catalog: Catalog) -> None:
        await setup_bucket(catalog)
        rows = [make_object("photos", f"k{n}") for n in range(5)]
        for row in rows:
            await catalog.put_object(row)
        first = await catalog.object_marks(limit=3)
        rest = await catalog.object_marks(after=(first[-1].bucket, first[-1].key), limit=3)

        assert [(m.key, m.object_id, m.row_mac) for m in first + rest] == [
            (r.key, r.object_id, r.row_mac) for r in rows
        ]

    async def test_concurrent_audit_appends_make_one_unbroken_chain(self, catalog: Catalog) -> None:
        async def append(n: int) -> None:
            await catalog.append_audit([audit_event(n), audit_event(n + 100)])

        async with anyio.create_task_group() as tg:
            for n in range(1, 21):
                tg.start_soon(append, n)

        stored = await catalog.audit_records()
        assert [r.seq for r in stored] == list(range(1, 41))
        assert verify(stored, [], {}) == []


def make_bucket_key(label: str, *, version: int, key_name: str = TENANT.key_name) -> BucketKey:
    return BucketKey(
        bucket_key_id=ident(label),
        tenant_id=TENANT.tenant_id,
        bucket="photos",
        wrapped=f"vault:v{version}:{blob(label)[3:]}",
        key_name=key_name,
        key_version=version,
        created=1000.0,
    )


def audit_event(
    n: int,
    *,
    principal: str = "AKIDEXAMPLE",
    operation: str = "GetObject",
    result: str = "200",
    key: str | None = None,
    object_id: bytes | None = None,
) -> AuditEvent:
    return AuditEvent(
        time=1000.0 + n,
        request_id=f"req-{n}",
        principal=principal,
        operation=operation,
        result=result,
        tenant_id=TENANT.tenant_id,
        bucket="photos",
        key=key if key is not None else f"k{n}",
        object_id=object_id if object_id is not None else ident(f"object-{n}"),
        version="etag",
        backends=("local",),
        key_name=TENANT.key_name,
        key_version=1,
        bytes=n,
        source="192.0.2.1",
    )
