"""Data-subject keys in the gateway: one Transit key per patient, refused once shredded."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from functools import partial

import pytest

from blindstore import provision
from blindstore.backends.memory import MemoryBackend
from blindstore.catalog.base import ObjectRecord, Shred
from blindstore.catalog.sql import SqlCatalog
from blindstore.errors import KeyServiceError, KeyShredded
from blindstore.gateway import Gateway, Principal, WriteMeta
from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.keys.service import KeyService
from blindstore.s3.checksums import BodyVerifier
from blindstore.s3.conditions import Conditions
from blindstore.server.wire import VerifiedBody
from blindstore.subjects import is_subject_key, subject_digest, unkeyed_digest

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
PATIENT = "patient-1"


class World:
    def __init__(self) -> None:
        self.wrapper = InMemoryKeyWrapper(upsert=True)
        # The real key service: a DEK written is cached, so refusal cannot rely on Transit.
        self.keys = KeyService(self.wrapper)
        self.catalog = SqlCatalog("sqlite://")
        self.gateway = Gateway(
            self.catalog, self.keys, {"memory": MemoryBackend()}, default_backend="memory"
        )
        self.gateway.subject_keying = partial(self.wrapper.hmac, "hgw-subjects")
        self.principal: Principal

    async def setup(self) -> None:
        made = await provision.create_tenant(self.catalog, self.keys, "clinic")
        self.principal = Principal(made.access_key_id, made.tenant)
        await self.gateway.create_bucket(self.principal, "b", "us-east-1")

    async def put(self, key: str, data: bytes, subject: str | None = None) -> ObjectRecord:
        return await self.gateway.put_object(
            self.principal, "b", key, _chunks(data), _check(), WriteMeta(subject=subject)
        )

    async def get(self, key: str) -> bytes:
        read = await self.gateway.get_object(self.principal, "b", key)
        return b"".join([chunk async for chunk in read.body])

    async def copy(self, src: str, dst: str, subject: str | None = None) -> ObjectRecord:
        return await self.gateway.copy_object(
            self.principal,
            "b",
            src,
            "b",
            dst,
            _check(),
            source_conditions=Conditions(),
            meta=None,
            tags=None,
            subject=subject,
        )

    async def shred(self, *key_names: str) -> None:
        await self.catalog.record_shred(
            Shred(
                shred_id="s1",
                scope="subject",
                tenant_id=self.principal.tenant.tenant_id,
                key_names=key_names,
                requested=1.0,
                destroy_after=2.0,
                operator="dpo",
            )
        )
        await self.gateway.refresh_revocations()


async def _chunks(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _check() -> VerifiedBody:
    return VerifiedBody(BodyVerifier())


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    await w.setup()
    yield w
    await w.gateway.close()


async def test_objects_of_a_subject_share_its_own_key_and_others_do_not(world: World) -> None:
    first = await world.put("a", b"1", subject=PATIENT)
    second = await world.put("b", b"2", subject=PATIENT)
    other = await world.put("c", b"3", subject="patient-2")
    plain = await world.put("d", b"4")

    assert is_subject_key(first.key_name)
    assert first.key_name.startswith("hgw-p-")
    assert second.key_name == first.key_name
    assert is_subject_key(other.key_name)
    assert other.key_name != first.key_name
    assert plain.key_name == world.principal.tenant.key_name
    assert [await world.get(k) for k in "abcd"] == [b"1", b"2", b"3", b"4"]
    tenant_id = world.principal.tenant.tenant_id
    digest = await subject_digest(tenant_id, PATIENT, world.gateway.keyed_subject)
    found = await world.catalog.get_subject_key(tenant_id, digest)
    assert found is not None
    assert found.key_name == first.key_name


async def test_the_stored_digest_is_keyed_not_a_hash_of_the_subject_id(world: World) -> None:
    await world.put("a", b"1", subject=PATIENT)
    tenant_id = world.principal.tenant.tenant_id
    [key] = await world.catalog.list_subject_keys(tenant_id)

    unkeyed = unkeyed_digest(tenant_id, PATIENT)
    assert key.subject_digest != unkeyed
    assert key.subject_digest == await world.wrapper.hmac("hgw-subjects", unkeyed)
    assert key.digest_keyed


async def test_a_write_naming_a_subject_is_refused_without_a_digest_key(world: World) -> None:
    world.gateway.subject_keying = None
    with pytest.raises(KeyServiceError, match="no data-subject digest key"):
        await world.put("a", b"1", subject=PATIENT)
    assert await world.catalog.get_object("b", "a") is None


async def test_the_subject_id_is_stored_nowhere(world: World) -> None:
    secret = "NIR-1850578006084"
    await world.put("a", b"data", subject=secret)

    record = await world.catalog.get_object("b", "a")
    subject_keys = await world.catalog.list_subject_keys(world.principal.tenant.tenant_id)
    assert record is not None
    assert secret not in repr(dataclasses.asdict(record))
    assert secret not in repr(subject_keys)
    assert secret not in subject_keys[0].key_name


async def test_a_shredded_subject_is_refused_even_with_its_dek_cached(world: World) -> None:
    shredded = await world.put("a", b"patient data", subject=PATIENT)
    await world.put("b", b"other patient", subject="patient-2")
    await world.put("c", b"tenant data")
    calls = world.keys.vault_calls
    assert await world.get("a") == b"patient data"
    assert world.keys.vault_calls == calls  # served from the cached DEK

    await world.shred(shredded.key_name)

    with pytest.raises(KeyShredded, match="data subject key"):
        await world.get("a")
    with pytest.raises(KeyShredded):
        await world.copy("a", "a-copy")
    assert await world.get("b") == b"other patient"
    assert await world.get("c") == b"tenant data"


async def test_a_shredded_subject_writes_again_under_a_new_key(world: World) -> None:
    old = await world.put("a", b"1", subject=PATIENT)
    await world.shred(old.key_name)

    new = await world.put("b", b"2", subject=PATIENT)

    assert is_subject_key(new.key_name)
    assert new.key_name != old.key_name
    assert await world.get("b") == b"2"


async def test_a_copy_keeps_the_subject_key_unless_it_names_another_subject(
    world: World,
) -> None:
    source = await world.put("a", b"scan", subject=PATIENT)
    other = await world.put("o", b"x", subject="patient-2")
    plain = await world.put("p", b"y")

    kept = await world.copy("a", "kept")
    moved = await world.copy("a", "moved", subject="patient-2")
    adopted = await world.copy("p", "adopted", subject=PATIENT)
    still_plain = await world.copy("p", "still-plain")

    assert kept.key_name == source.key_name
    assert moved.key_name == other.key_name
    assert adopted.key_name == source.key_name
    assert still_plain.key_name == plain.key_name
    assert kept.object_id != source.object_id  # a fresh DEK, under the same subject key
    assert [await world.get(k) for k in ("kept", "moved", "adopted")] == [b"scan", b"scan", b"y"]


async def test_a_multipart_upload_with_a_subject_uses_the_subject_key(world: World) -> None:
    single = await world.put("single", b"1", subject=PATIENT)
    upload = await world.gateway.create_upload(
        world.principal, "b", "big", WriteMeta(subject=PATIENT)
    )
    parts = [os.urandom(5 * MiB), b"tail"]
    etags = []
    for number, part in enumerate(parts, 1):
        made = await world.gateway.upload_part(
            world.principal, "b", "big", upload.upload_id, number, _chunks(part), _check()
        )
        etags.append((number, made.etag))

    record = await world.gateway.complete_upload(
        world.principal, "b", "big", upload.upload_id, etags
    )

    assert upload.key_name == single.key_name
    assert record.key_name == single.key_name
    assert await world.get("big") == b"".join(parts)


async def test_parts_of_an_upload_of_a_shredded_subject_are_refused(world: World) -> None:
    upload = await world.gateway.create_upload(
        world.principal, "b", "big", WriteMeta(subject=PATIENT)
    )
    await world.shred(upload.key_name)

    with pytest.raises(KeyShredded):
        await world.gateway.upload_part(
            world.principal, "b", "big", upload.upload_id, 1, _chunks(b"x"), _check()
        )
