"""Crypto-shredding a tenant or a data subject: keys first, then the noise, then a certificate."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from blindstore.backends.memory import MemoryBackend
from blindstore.catalog.base import Bucket, ObjectRecord, SubjectKey, Tenant
from blindstore.catalog.sql import SqlCatalog
from blindstore.lifecycle.certificates import CERTIFICATE_TYPE, verify
from blindstore.lifecycle.shred import (
    NothingToShred,
    Signer,
    destroy,
    new_subject_shred,
    new_tenant_shred,
    request_shred,
    restore_shred,
)
from blindstore.subjects import subject_digest
from tests.contract.catalog_contract import (
    OTHER_TENANT,
    TENANT,
    blob,
    make_object,
    make_part,
    make_upload,
    wrapped_by,
)
from tests.unit.keys.fakes import ManualClock
from tests.unit.lifecycle.fakes import FakeTransitAdmin

pytestmark = pytest.mark.anyio


async def _keyed(digest: bytes) -> bytes:
    """Stands for the gateway's Transit HMAC (a fixed local key)."""
    return hmac.new(b"k" * 32, digest, hashlib.sha256).digest()


SIGNING_KEY = "hgw-sign"
PATIENT = "patient-1"
PATIENT_KEY = f"hgw-p-{TENANT.tenant_id.hex()}-{'11' * 16}"
OTHER_PATIENT_KEY = f"hgw-p-{TENANT.tenant_id.hex()}-{'22' * 16}"
REPLICAS = ("a", "b")
ORPHAN = blob("orphan")


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _ids() -> Any:
    counter = iter(range(1, 1000))
    return lambda n: next(counter).to_bytes(n, "big")


class World:
    def __init__(self) -> None:
        self.clock = ManualClock(50_000.0)
        self.catalog = SqlCatalog("sqlite://")
        self.backends = {name: MemoryBackend(name) for name in REPLICAS}
        self.admin = FakeTransitAdmin(self.clock)
        for name in (TENANT.key_name, OTHER_TENANT.key_name, PATIENT_KEY, OTHER_PATIENT_KEY):
            self.admin.add_key(name)
        self.admin.add_signing_key(SIGNING_KEY)
        self.signer = Signer(self.admin, SIGNING_KEY, "https://bao.example:8200", "transit")  # type: ignore[arg-type]

    async def setup(self) -> None:
        for tenant, bucket in ((TENANT, "photos"), (OTHER_TENANT, "theirs")):
            await self.catalog.create_tenant(tenant)
            await self.catalog.create_bucket(Bucket(bucket, tenant.tenant_id, 1.0))
        for name, subject in ((PATIENT_KEY, PATIENT), (OTHER_PATIENT_KEY, "patient-2")):
            await self.catalog.add_subject_key(
                SubjectKey(
                    name,
                    TENANT.tenant_id,
                    await subject_digest(TENANT.tenant_id, subject, _keyed),
                    2.0,
                )
            )

    async def store(self, record: ObjectRecord) -> ObjectRecord:
        """Blobs on every replica, then the row (as the gateway does)."""
        record = dataclasses.replace(record, backends=REPLICAS)
        for backend in self.backends.values():
            for part in record.parts:
                await backend.put(record.container, part.blob, _chunks(b"ciphertext"))
        await self.catalog.put_object(record)
        return record

    def blobs(self, container: str) -> set[tuple[str, str]]:
        return {
            (name, blob)
            for name, backend in self.backends.items()
            for (owner, blob) in backend._blobs
            if owner == container
        }

    async def tenant_shred(self, grace: float = 0.0) -> Any:
        tenant = await self.catalog.get_tenant(TENANT.tenant_id)
        assert tenant is not None
        return new_tenant_shred(
            tenant,
            [PATIENT_KEY, OTHER_PATIENT_KEY],
            grace=grace,
            operator="dpo@example.org",
            clock=self.clock,
            rng=_ids(),
        )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    await w.setup()
    yield w
    await w.catalog.close()


async def fill(w: World) -> dict[str, Any]:
    """Objects of the tenant (tenant key and subject keys), an upload, and another tenant's."""
    made = {
        "plain": await w.store(make_object("photos", "plain", parts=["p0", "p1"])),
        "patient": await w.store(
            wrapped_by(make_object("photos", "dossier", parts=["d0"]), PATIENT_KEY, 1)
        ),
        "patient2": await w.store(
            wrapped_by(make_object("photos", "scan", parts=["s0"]), PATIENT_KEY, 1)
        ),
        "other patient": await w.store(
            wrapped_by(make_object("photos", "x-ray", parts=["x0"]), OTHER_PATIENT_KEY, 1)
        ),
        "theirs": await w.store(make_object("theirs", "a", parts=["t0"], tenant=OTHER_TENANT)),
    }
    upload = dataclasses.replace(
        make_upload("photos", "big", "u1"), key_name=PATIENT_KEY, backends=REPLICAS
    )
    await w.catalog.create_upload(upload)
    part = dataclasses.replace(make_part("u1", 1), backends=("a",))
    await w.catalog.put_part(part)
    await w.backends["a"].put(TENANT.container, part.blob, _chunks(b"part"))
    made["upload"], made["part"] = upload, part
    # Garbage in the tenant's container that no row points at (a crashed write).
    await w.backends["b"].put(TENANT.container, ORPHAN, _chunks(b"orphan"))
    return made


def keys_of(certificate: dict[str, Any]) -> list[str]:
    return [entry["name"] for entry in certificate["keys"]]


async def test_destroying_a_tenant_deletes_its_keys_then_its_rows_and_containers(
    world: World,
) -> None:
    made = await fill(world)
    their_blobs = world.blobs(OTHER_TENANT.container)
    rows_when_destroyed: list[int] = []
    destroy_key = world.admin.destroy

    async def look_then_destroy(name: str) -> None:
        rows_when_destroyed.append(len(await world.catalog.objects_with_keys([TENANT.key_name])))
        await destroy_key(name)

    world.admin.destroy = look_then_destroy  # type: ignore[method-assign]
    shred = await world.tenant_shred()
    await request_shred(world.catalog, world.admin, shred)  # type: ignore[arg-type]
    world.clock.advance(5)

    certificate = await destroy(
        world.catalog, world.backends, shred, world.signer, clock=world.clock
    )

    assert world.admin.soft_deleted == []  # no grace: straight to destruction
    assert world.admin.destroyed == [TENANT.key_name, PATIENT_KEY, OTHER_PATIENT_KEY]
    assert rows_when_destroyed == [1, 1, 1]  # the keys went first
    assert world.blobs(TENANT.container) == set()
    assert await world.catalog.list_buckets(TENANT.tenant_id) == []
    assert await world.catalog.get_upload("u1") is None
    # The other tenant keeps everything.
    assert OTHER_TENANT.key_name in world.admin.keys
    assert world.blobs(OTHER_TENANT.container) == their_blobs
    assert await world.catalog.get_object("theirs", "a") == made["theirs"]
    # A certificate that verifies with the signing key's public key, and says what was destroyed.
    assert verify(certificate, world.admin.public_keys(SIGNING_KEY)) == 1
    assert certificate["type"] == CERTIFICATE_TYPE
    assert (certificate["scope"], certificate["shred_id"]) == ("tenant", shred.shred_id)
    assert certificate["tenant"] == {"id": TENANT.tenant_id.hex(), "name": TENANT.name}
    assert keys_of(certificate) == [TENANT.key_name, PATIENT_KEY, OTHER_PATIENT_KEY]
    assert certificate["keys"][0] == {"name": TENANT.key_name, "existed": True, "versions": [1]}
    assert (
        certificate["keys"][1]["subject_digest"]
        == (await subject_digest(TENANT.tenant_id, PATIENT, _keyed)).hex()
    )
    assert PATIENT not in json.dumps(certificate)
    assert certificate["destroyed"] == {
        "objects": 4,
        "bytes": 500,
        "pending_uploads": 1,
        # 5 parts on 2 replicas, one pending part, one orphan.
        "blobs_deleted": 12,
        "backends": ["a", "b"],
    }
    assert certificate["grace_seconds"] == 0
    assert certificate["operator"] == "dpo@example.org"
    assert certificate["key_custodian"] == {
        "vault_addr": "https://bao.example:8200",
        "transit_mount": "transit",
    }
    (recorded,) = await world.catalog.list_shreds()
    assert recorded.destroyed == world.clock.now
    assert recorded.certificate is not None
    assert json.loads(recorded.certificate) == certificate


async def test_destroying_a_subject_deletes_only_that_subjects_objects_and_blobs(
    world: World,
) -> None:
    made = await fill(world)
    their_blobs = world.blobs(OTHER_TENANT.container)
    kept_blobs = {
        (name, part.blob)
        for key in ("plain", "other patient")
        for name in REPLICAS
        for part in made[key].parts
    }
    tenant = await world.catalog.get_tenant(TENANT.tenant_id)
    assert tenant is not None
    shred = await new_subject_shred(
        world.catalog,
        tenant,
        PATIENT,
        grace=0,
        operator="dpo",
        keyed=_keyed,
        clock=world.clock,
        rng=_ids(),
    )
    await request_shred(world.catalog, world.admin, shred)  # type: ignore[arg-type]

    certificate = await destroy(
        world.catalog, world.backends, shred, world.signer, clock=world.clock
    )

    assert shred.key_names == (PATIENT_KEY,)
    assert world.admin.destroyed == [PATIENT_KEY]
    assert await world.catalog.get_object("photos", "dossier") is None
    assert await world.catalog.get_object("photos", "scan") is None
    assert await world.catalog.get_upload("u1") is None
    assert await world.catalog.get_object("photos", "plain") == made["plain"]
    assert await world.catalog.get_object("photos", "x-ray") == made["other patient"]
    assert world.blobs(TENANT.container) == kept_blobs | {("b", ORPHAN)}
    assert world.blobs(OTHER_TENANT.container) == their_blobs
    assert await world.catalog.get_tenant(TENANT.tenant_id) == TENANT
    assert verify(certificate, world.admin.public_keys(SIGNING_KEY)) == 1
    assert certificate["scope"] == "subject"
    assert keys_of(certificate) == [PATIENT_KEY]
    assert certificate["destroyed"] == {
        "objects": 2,
        "bytes": 200,
        "pending_uploads": 1,
        # 2 objects on 2 replicas; the pending part is deleted from every target of its upload
        # (it may have landed on any), and each deletion counts.
        "blobs_deleted": 6,
        "backends": ["a", "b"],
    }


async def test_a_grace_period_soft_deletes_the_keys_and_restore_undoes_it(world: World) -> None:
    never_used = f"hgw-p-{TENANT.tenant_id.hex()}-{'33' * 16}"
    tenant = await world.catalog.get_tenant(TENANT.tenant_id)
    assert tenant is not None
    shred = new_tenant_shred(
        tenant, [PATIENT_KEY, never_used], grace=86400, operator="dpo", clock=world.clock
    )

    await request_shred(world.catalog, world.admin, shred)  # type: ignore[arg-type]

    assert world.admin.soft_deleted == [TENANT.key_name, PATIENT_KEY]  # no Transit key: skipped
    assert world.admin.destroyed == []
    assert await world.catalog.revoked_key_names() == set(shred.key_names)
    marked = await world.catalog.get_tenant(TENANT.tenant_id)
    assert marked is not None
    assert marked.shredded == world.clock.now

    await restore_shred(world.catalog, world.admin, shred)  # type: ignore[arg-type]

    assert world.admin.restored == [TENANT.key_name, PATIENT_KEY]
    assert not any(key.soft_deleted for key in world.admin.keys.values())
    assert await world.catalog.list_shreds() == []
    assert await world.catalog.revoked_key_names() == frozenset()
    assert await world.catalog.get_tenant(TENANT.tenant_id) == TENANT


async def test_a_destroyed_request_cannot_be_restored(world: World) -> None:
    shred = await world.tenant_shred()
    await request_shred(world.catalog, world.admin, shred)  # type: ignore[arg-type]
    await destroy(world.catalog, world.backends, shred, world.signer, clock=world.clock)
    (done,) = await world.catalog.list_shreds()

    with pytest.raises(NothingToShred, match="destroyed"):
        await restore_shred(world.catalog, world.admin, done)  # type: ignore[arg-type]
    assert world.admin.restored == []


async def test_an_already_shredded_tenant_cannot_be_shredded_again(world: World) -> None:
    await request_shred(world.catalog, world.admin, await world.tenant_shred(grace=60))  # type: ignore[arg-type]
    tenant = await world.catalog.get_tenant(TENANT.tenant_id)
    assert tenant is not None

    with pytest.raises(NothingToShred, match="already shredded"):
        new_tenant_shred(tenant, [], grace=0, operator="dpo")


@pytest.mark.parametrize("subject", ["patient-unknown", "Patient-1"])
async def test_an_unknown_subject_cannot_be_shredded(world: World, subject: str) -> None:
    other: Tenant = OTHER_TENANT

    with pytest.raises(NothingToShred, match="no live key"):
        await new_subject_shred(
            world.catalog, TENANT, subject, grace=0, operator="dpo", keyed=_keyed
        )
    with pytest.raises(NothingToShred):
        await new_subject_shred(
            world.catalog, other, PATIENT, grace=0, operator="dpo", keyed=_keyed
        )


async def test_a_shredded_subject_cannot_be_shredded_again_until_it_has_a_new_key(
    world: World,
) -> None:
    first = await new_subject_shred(
        world.catalog, TENANT, PATIENT, grace=60, operator="dpo", keyed=_keyed
    )
    await request_shred(world.catalog, world.admin, first)  # type: ignore[arg-type]

    with pytest.raises(NothingToShred):
        await new_subject_shred(
            world.catalog, TENANT, PATIENT, grace=60, operator="dpo", keyed=_keyed
        )


async def test_a_subject_shred_covers_a_key_left_retired_by_a_restore(world: World) -> None:
    # Shredding requested, the subject writes again (a new key), the request is restored.
    first = await new_subject_shred(
        world.catalog, TENANT, PATIENT, grace=60, operator="dpo", keyed=_keyed
    )
    await request_shred(world.catalog, world.admin, first)  # type: ignore[arg-type]
    new_key = f"hgw-p-{TENANT.tenant_id.hex()}-{'44' * 16}"
    digest = await subject_digest(TENANT.tenant_id, PATIENT, _keyed)
    await world.catalog.add_subject_key(SubjectKey(new_key, TENANT.tenant_id, digest, 3.0))
    await restore_shred(world.catalog, world.admin, first)  # type: ignore[arg-type]

    second = await new_subject_shred(
        world.catalog, TENANT, PATIENT, grace=0, operator="dpo", keyed=_keyed
    )

    assert set(second.key_names) == {PATIENT_KEY, new_key}
