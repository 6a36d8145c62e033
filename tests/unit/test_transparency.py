"""Transparency records and summaries over a real in-memory catalog: replicas pending repair,
backends the policy does not declare, bucket-key mode, data-subject keys, shredded keys."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from blindstore.catalog.base import Bucket, BucketKey, ObjectRecord, Shred, StoredPart, Tenant
from blindstore.catalog.sql import SqlCatalog
from blindstore.config import Settings
from blindstore.policy import HdsActivity, parse
from blindstore.transparency import (
    CatalogSource,
    bucket_summary,
    object_transparency,
    tenant_summary,
)

pytestmark = pytest.mark.anyio

TENANT = Tenant(b"t" * 16, "acme", "hgw-t-" + (b"t" * 16).hex(), "bs-acme", 1000.0)
SUBJECT_KEY = f"hgw-p-{(b't' * 16).hex()}-{'ab' * 16}"
SETTINGS = Settings.model_validate(
    {"vault": {"addr": "https://vault.example:8200", "mount": "kms"}, "storage": {"name": "legacy"}}
)
POLICY = parse(
    """
version: 1
backends:
  home:
    kind: local
    provider: Op
    jurisdiction: EEA
    certifications: [HDS]
    hds_activities: {physical_sites: Op, hardware: Op, virtual_infrastructure: Op,
                     application_platform: Op, administration_operation: Op, backup: Op}
  cloud:
    kind: s3
    provider: Cloud Inc
    jurisdiction: US
rules:
  - name: all
    targets: [home, cloud]
""",
    "policy.yaml",
)


def obj(
    key: str, backends: tuple[str, ...], repairs: tuple[str, ...] = (), **kw: object
) -> ObjectRecord:
    record = ObjectRecord(
        bucket="files",
        key=key,
        tenant_id=TENANT.tenant_id,
        object_id=key.encode().ljust(16, b"-")[:16],
        backends=backends,
        container=TENANT.container,
        parts=(StoredPart(0, f"00/{key}", 10, 106, "md5"),),
        size=10,
        etag="md5",
        last_modified=1_700_000_000.0,
        wrapped_dek="vault:v3:" + "A" * 40,
        key_name=TENANT.key_name,
        key_version=3,
        repairs=repairs,
    )
    return dataclasses.replace(record, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def catalog() -> AsyncIterator[SqlCatalog]:
    catalog = SqlCatalog("sqlite://")
    await catalog.create_tenant(TENANT)
    await catalog.create_bucket(Bucket("files", TENANT.tenant_id, 1500.0))
    yield catalog
    await catalog.close()


async def test_a_target_awaiting_repair_is_a_pending_replica_and_the_placement_differs(
    catalog: SqlCatalog,
) -> None:
    await catalog.put_object(obj("a", ("home",), ("cloud",)))

    seen = await object_transparency(CatalogSource(catalog, POLICY), SETTINGS, "files", "a")

    assert [(r.backend.name, r.status) for r in seen.replicas] == [
        ("home", "stored"),
        ("cloud", "pending_repair"),
    ]
    assert seen.replicas[1].backend.jurisdiction == "US"
    assert seen.replicas[1].backend.uncarried_activities == list(HdsActivity)
    assert seen.placement is not None
    assert (seen.placement.rule, seen.placement.matches_current) == ("all", False)
    assert seen.placement.missing_targets == ["cloud"]
    assert seen.key_custodian.vault_addr == "https://vault.example:8200"
    assert seen.key_custodian.transit_mount == "kms"
    assert (seen.key_custodian.scope, seen.key_custodian.key_version) == ("tenant", 3)
    assert seen.written_iso == "2023-11-14T22:13:20+00:00"
    assert seen.last_accessed is None


async def test_without_a_policy_the_storage_backend_is_known_by_kind_only(
    catalog: SqlCatalog,
) -> None:
    await catalog.put_object(obj("a", ("legacy", "gone")))

    seen = await object_transparency(CatalogSource(catalog, None), SETTINGS, "files", "a")

    assert seen.placement is None
    legacy, gone = (r.backend for r in seen.replicas)
    assert (legacy.kind, legacy.declared, legacy.provider) == ("local", False, None)
    assert (gone.kind, gone.declared) == ("unknown", False)


async def test_bucket_key_mode_reports_the_bucket_key_and_its_current_version(
    catalog: SqlCatalog,
) -> None:
    key_id = b"k" * 16
    await catalog.put_bucket_key(
        BucketKey(key_id, TENANT.tenant_id, "files", "vault:v5:xyz", TENANT.key_name, 5, 1.0)
    )
    wrapped = f"bk1:{key_id.hex()}:" + "A" * 102 + "=="
    await catalog.put_object(obj("a", ("home",), wrapped_dek=wrapped, key_version=2))

    custodian = (
        await object_transparency(CatalogSource(catalog, POLICY), SETTINGS, "files", "a")
    ).key_custodian

    assert (custodian.wrapping, custodian.bucket_key_id) == ("bucket_key", key_id.hex())
    assert custodian.key_version == 5


async def test_a_shredded_data_subject_key_is_said_so(catalog: SqlCatalog) -> None:
    await catalog.put_object(obj("a", ("home",), key_name=SUBJECT_KEY))
    await catalog.record_shred(
        Shred("s1", "subject", TENANT.tenant_id, (SUBJECT_KEY,), 1.0, 2.0, "op")
    )

    custodian = (
        await object_transparency(CatalogSource(catalog, POLICY), SETTINGS, "files", "a")
    ).key_custodian

    assert (custodian.scope, custodian.shredded) == ("data_subject", True)


class AuditedCatalog(SqlCatalog):
    """A catalog with the audit trail's ``last_access`` (reads recorded by hand)."""

    def __init__(self) -> None:
        super().__init__("sqlite://")
        self.reads: dict[bytes, float] = {}

    async def last_access(self, object_id: bytes) -> float | None:
        return self.reads.get(object_id)


async def test_the_last_access_comes_from_the_catalog_when_it_records_one() -> None:
    catalog = AuditedCatalog()
    try:
        await catalog.create_tenant(TENANT)
        await catalog.create_bucket(Bucket("files", TENANT.tenant_id, 1500.0))
        record = obj("a", ("home",))
        await catalog.put_object(record)
        catalog.reads[record.object_id] = 1_700_000_500.0

        seen = await object_transparency(CatalogSource(catalog, POLICY), SETTINGS, "files", "a")
    finally:
        await catalog.close()

    assert seen.last_accessed == 1_700_000_500.0
    assert seen.last_accessed_iso == "2023-11-14T22:21:40+00:00"


async def test_summaries_count_pending_repairs_and_undeclared_backends(
    catalog: SqlCatalog,
) -> None:
    await catalog.put_object(obj("a", ("home", "cloud")))
    await catalog.put_object(obj("b", ("home",), ("cloud",)))
    await catalog.put_object(obj("c", ("legacy",)))
    source = CatalogSource(catalog, POLICY)

    summary = await bucket_summary(source, SETTINGS, "files")

    assert (summary.objects, summary.bytes, summary.pending_repair_objects) == (3, 30, 1)
    per_backend = {
        u.backend.name: (u.objects, u.bytes, u.pending_repair_objects) for u in summary.backends
    }
    assert per_backend == {"cloud": (1, 10, 1), "home": (2, 20, 0), "legacy": (1, 10, 0)}
    assert {u.name: u.objects for u in summary.providers} == {
        "Cloud Inc": 1,
        "Op": 2,
        "undeclared": 1,
    }
    assert {u.name: u.objects for u in summary.jurisdictions} == {
        "EEA": 2,
        "US": 1,
        "undeclared": 1,
    }
    assert (await tenant_summary(source, SETTINGS, "acme")).backends == summary.backends
