"""What Google Cloud Storage sees of objects stored through blindstore (SECURITY-NOTES §3.3).

A gateway runs in-process (in-memory key wrapper, in-memory SQLite catalog) with ``GcsBackend``
on gcp-storage-emulator as its only backend; the S3 edge cannot yet place objects on GCS.
Objects are stored with canaries in every client-chosen field (tenant, bucket, key, content
type, content disposition, user metadata, tags, body) by a single PUT (one request and a
resumable session), a multipart upload and a copy. Then everything the emulator holds is read
through google-cloud-storage (bucket names, object names, content types, metadata, bodies) and
raw from its data directory (object files, its metadata file, unfinished uploads, its log): no
canary in any form, no key material, no digest of a plaintext; names are random ids only.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import AsyncIterator

import pytest

from blindstore import provision
from blindstore.backends.gcs import CONTENT_TYPE, GcsBackend, GcsBackendSettings
from blindstore.backends.ids import BLOB_PATTERN
from blindstore.catalog.sql import SqlCatalog
from blindstore.devtools.gcs_emulator import GcsEmulator
from blindstore.gateway import Gateway, Principal, WriteMeta
from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.s3.checksums import BodyVerifier
from blindstore.s3.conditions import Conditions
from blindstore.server.wire import VerifiedBody
from tests.integration.test_blindness import Canaries
from tests.services.gcs_emulator import (  # noqa: F401
    PROJECT,
    emulator_client,
    gcs_emulator,
    remove_buckets,
)

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
PART = 5 * MiB  # the smallest part S3 allows before the last one
CONTAINER = re.compile(r"bs-[a-z2-7]{26}")


def patient_file(canaries: Canaries, size: int) -> bytes:
    """A body full of canaries, as a client would send a patient's file."""
    marker = canaries.new("DUPONT_Jean_IRM_body").encode()
    return (marker * (size // len(marker) + 1))[:size]


async def chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def check() -> VerifiedBody:
    return VerifiedBody(BodyVerifier())


class World:
    """A gateway over GCS, and what the test stored through it."""

    def __init__(self, emulator: GcsEmulator, prefix: str) -> None:
        self.emulator = emulator
        self.keys = InMemoryKeyWrapper()
        self.catalog = SqlCatalog("sqlite://")
        self.backend = GcsBackend(
            GcsBackendSettings(
                endpoint_url=emulator.endpoint_url,
                project=PROJECT,
                bucket_prefix=prefix,
                chunk_size=1 * MiB,  # a 1.5 MiB PUT then goes through a resumable session
            )
        )
        self.gateway = Gateway(
            self.catalog, self.keys, {"gcs": self.backend}, default_backend="gcs"
        )
        self.canaries = Canaries()
        #: Every object stored, by key.
        self.plaintexts: dict[str, bytes] = {}


@pytest.fixture
async def world(gcs_emulator: GcsEmulator) -> AsyncIterator[World]:  # noqa: F811
    prefix = f"blind{secrets.token_hex(3)}-"
    world = World(gcs_emulator, prefix)
    yield world
    await world.gateway.close()
    remove_buckets(emulator_client(gcs_emulator), prefix)


async def store_everything(world: World) -> tuple[Principal, str]:
    """PUTs, a copy and a multipart upload, every field a canary; the principal and bucket."""
    c = world.canaries.new
    gateway = world.gateway
    made = await provision.create_tenant(world.catalog, world.keys, c("hopital-saint-louis"))
    principal = Principal(made.access_key_id, made.tenant)
    bucket = c("patient-bucket").lower()
    await gateway.create_bucket(principal, bucket, "eu-west-3")

    def meta(label: str) -> WriteMeta:
        return WriteMeta(
            headers={
                "content-type": f"application/{c(label + '-type')}",
                "content-disposition": f'attachment; filename="{c(label + "-name")}.dcm"',
            },
            user_metadata={"diagnosis": c(label + "-diagnosis"), c(label + "-metaname"): "x"},
            tags={"patient": c(label + "-nir"), c(label + "-tagkey"): "1"},
        )

    # Single PUTs: one request (small) and a resumable session (larger than a chunk).
    for label, size in (("small", 100_000), ("large", 3 * MiB // 2)):
        key = f"{c('patients')}/{c('DUPONT_Jean_IRM-' + label)}.dcm"
        body = patient_file(world.canaries, size)
        await gateway.put_object(principal, bucket, key, chunks(body), check(), meta(label))
        await gateway.put_tags(principal, bucket, key, {"ward": c("oncologie")})
        world.plaintexts[key] = body

    # A copy under a new canary key, with new metadata and tags.
    copy_key = c("copy-of-dupont")
    source = next(iter(world.plaintexts))
    await gateway.copy_object(
        principal,
        bucket,
        source,
        bucket,
        copy_key,
        check(),
        source_conditions=Conditions(),
        meta=meta("copy"),
        tags={"copied": c("copytag")},
    )
    world.plaintexts[copy_key] = world.plaintexts[source]

    # A multipart upload, checked while its parts are stored but no object exists yet.
    mp_key = f"{c('multipart')}/{c('scanner')}.raw"
    mp_body = patient_file(world.canaries, PART + 4096)
    upload = await gateway.create_upload(principal, bucket, mp_key, meta("multipart"))
    parts = []
    for number, piece in ((1, mp_body[:PART]), (2, mp_body[PART:])):
        part = await gateway.upload_part(
            principal, bucket, mp_key, upload.upload_id, number, chunks(piece), check()
        )
        parts.append((number, part.etag))
    await assert_nothing_leaks(world)
    await gateway.complete_upload(principal, bucket, mp_key, upload.upload_id, parts)
    world.plaintexts[mp_key] = mp_body
    return principal, bucket


def forbidden_forms(world: World, extra: list[bytes]) -> list[tuple[str, bytes]]:
    forms = list(world.canaries.forms())
    for body in world.plaintexts.values():
        # Digests of a plaintext would identify a known file as surely as its name.
        for name, form in (
            ("md5", hashlib.md5(body).digest()),
            ("md5 hex", hashlib.md5(body).hexdigest().encode()),
            ("sha256", hashlib.sha256(body).digest()),
            ("sha256 hex", hashlib.sha256(body).hexdigest().encode()),
            ("first plaintext bytes", body[:32]),
        ):
            forms.append((f"{name} of a plaintext", form))
    forms += [(f"key material {secret[:12]!r}", secret) for secret in extra]
    return forms


async def assert_nothing_leaks(world: World, extra: list[bytes] | None = None) -> None:
    """Read everything the emulator holds, through the SDK and raw; find no forbidden form."""
    forms = forbidden_forms(world, extra or [])
    prefix = world.backend.settings.bucket_prefix
    client = emulator_client(world.emulator)
    ours = [bucket for bucket in client.list_buckets() if bucket.name.startswith(prefix)]
    assert ours, "nothing was stored"
    for bucket in client.list_buckets():
        for value in world.canaries.values:
            assert value.lower() not in bucket.name.lower(), bucket.name
    for bucket in ours:
        assert CONTAINER.fullmatch(bucket.name.removeprefix(prefix)), bucket.name
        assert not bucket.labels
        for blob in client.list_blobs(bucket.name):
            assert BLOB_PATTERN.fullmatch(blob.name), blob.name
            assert blob.content_type == CONTENT_TYPE
            assert not blob.metadata
            for field in ("content_disposition", "content_encoding", "content_language"):
                assert getattr(blob, field) is None, (blob.name, field)
            assert blob.cache_control is None
            data = blob.download_as_bytes()
            assert data[:4] == b"HGW1"
            for name, form in forms:
                assert form not in data, f"{name} found in {bucket.name}/{blob.name}"
    assert_raw_storage_is_blind(world, forms)


def assert_raw_storage_is_blind(world: World, forms: list[tuple[str, bytes]]) -> None:
    workdir = world.emulator.workdir
    files = [path for path in workdir.rglob("*") if path.is_file()]
    assert any(path.name == ".meta" for path in files), "the emulator keeps no data on disk?"
    for path in files:
        relative = str(path.relative_to(workdir))
        for value in world.canaries.values:
            assert value.lower() not in relative.lower(), (value, relative)
        data = path.read_bytes()
        for name, form in forms:
            assert form not in data, f"{name} found in {relative}"


async def test_gcs_sees_no_name_metadata_tag_key_or_plaintext(world: World) -> None:
    principal, bucket = await store_everything(world)

    # The DEKs and their wrapped forms live in the catalog only (the object id, in every
    # blob's header, is random and names nothing).
    key_material: list[bytes] = []
    for key in world.plaintexts:
        record = await world.catalog.get_object(bucket, key)
        assert record is not None
        dek = await world.keys.unwrap(
            record.key_name, record.tenant_id, record.object_id, record.wrapped_dek
        )
        key_material += [dek, record.wrapped_dek.encode()]
    await assert_nothing_leaks(world, key_material)

    # And the gateway reads every object back from GCS.
    for key, plaintext in world.plaintexts.items():
        read = await world.gateway.get_object(principal, bucket, key)
        assert b"".join([chunk async for chunk in read.body]) == plaintext
