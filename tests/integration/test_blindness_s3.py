"""What an S3 store sees of objects stored through blindstore (SECURITY-NOTES §3.3).

A gateway runs in-process (in-memory key wrapper, in-memory SQLite catalog) with ``S3Backend``
as its only backend, once on moto (AWS) and once on SeaweedFS (on-premise S3): the S3 edge
cannot yet place objects on S3. Objects are stored with canaries in every client-chosen field
(tenant, bucket, key, content type, content disposition, user metadata, tags, body) by a single
PUT, a multipart upload (whose ciphertext parts are themselves S3 multipart uploads) and a copy.
Then everything the store holds is read directly with boto3 (bucket names, keys, content types
and other headers, user metadata, tags, pending uploads, bodies), plus SeaweedFS's raw data
directory (volumes, filer metadata store) and log: no canary in any form, no digest of a
plaintext; names are random ids only, objects ``application/octet-stream``, bare.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio.to_thread
import boto3
import pytest
from botocore.config import Config

from blindstore import provision
from blindstore.backends.ids import BLOB_PATTERN
from blindstore.backends.s3 import CONTENT_TYPE, S3Backend, S3BackendSettings
from blindstore.catalog.sql import SqlCatalog
from blindstore.gateway import Gateway, Principal, WriteMeta
from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.s3.checksums import BodyVerifier
from blindstore.s3.conditions import Conditions
from blindstore.server.wire import VerifiedBody
from tests.integration.test_blindness import Canaries
from tests.services.moto import moto_server  # noqa: F401
from tests.services.seaweedfs import seaweedfs  # noqa: F401

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
PART = 5 * MiB  # the smallest part S3 allows before the last one
CONTAINER = re.compile(r"bs-[a-z2-7]{26}")
#: Headers an S3 store would return if a client-chosen one had been passed through.
PASSED_THROUGH = (
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "CacheControl",
    "Expires",
    "WebsiteRedirectLocation",
)


@dataclass(eq=False)
class Store:
    """One S3 stand-in: a boto3 client, and whatever raw view of its storage it offers."""

    name: str
    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    client: Any = field(repr=False)
    #: Bytes of everything the store keeps outside its API, by name (file path or dump name).
    raw: Callable[[], Iterator[tuple[str, bytes]]] = field(repr=False)


def _client(server: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )


def _files_under(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_socket():
            yield str(path.relative_to(root)), path.read_bytes()


def _nothing() -> Iterator[tuple[str, bytes]]:
    yield from ()


@pytest.fixture(params=["moto", "seaweedfs"])
def store(request: pytest.FixtureRequest) -> Store:
    server = request.getfixturevalue("moto_server" if request.param == "moto" else "seaweedfs")
    # moto keeps everything in memory: its API is the whole view (its /moto-api/data.json
    # dump fails once a bucket has been deleted). SeaweedFS: its volumes, the filer's metadata
    # store and its log.
    raw: Callable[[], Iterator[tuple[str, bytes]]] = _nothing
    if request.param == "seaweedfs":
        raw = partial(_files_under, server.workdir)
    return Store(
        request.param,
        server.endpoint_url,
        server.access_key,
        server.secret_key,
        _client(server),
        raw,
    )


class World:
    """A gateway over ``S3Backend``, an in-memory key wrapper and an in-memory catalog."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.backend = S3Backend(
            S3BackendSettings(
                endpoint_url=store.endpoint_url,
                access_key=store.access_key,
                secret_key=store.secret_key,
                addressing_style="path",
                bucket_prefix=prefix,
                part_size=PART,  # a gateway part's ciphertext is then an S3 multipart upload
            )
        )
        self.catalog = SqlCatalog("sqlite://")
        self.gateway = Gateway(
            self.catalog,
            InMemoryKeyWrapper(),
            {"s3": self.backend},
            default_backend="s3",
            verify_whole_below=64 * 1024,
        )

    async def tenant(self, name: str) -> Principal:
        made = await provision.create_tenant(self.catalog, self.gateway.keys, name)
        return Principal(made.access_key_id, made.tenant)


@pytest.fixture
async def world(store: Store) -> AsyncIterator[World]:
    prefix = f"b{secrets.token_hex(4)}-"
    made = World(store, prefix)
    yield made
    await made.gateway.close()
    await anyio.to_thread.run_sync(_remove_buckets, store.client, prefix)


def _remove_buckets(client: Any, prefix: str) -> None:
    for bucket in client.list_buckets()["Buckets"]:
        name = bucket["Name"]
        if not name.startswith(prefix):
            continue
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)


def patient_file(canaries: Canaries, size: int) -> bytes:
    """A body full of canaries, as a client would send a patient's file."""
    marker = canaries.new("DUPONT_Jean_IRM_body").encode()
    return (marker * (size // len(marker) + 1))[:size]


async def chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def check() -> VerifiedBody:
    return VerifiedBody(BodyVerifier())


def everything_stored(client: Any) -> Iterator[tuple[str, bytes]]:
    """Every name, header, tag and body the store returns, as (where, bytes)."""
    for bucket in client.list_buckets()["Buckets"]:
        name = bucket["Name"]
        yield f"bucket name {name}", name.encode()
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            yield f"pending upload {name}/{upload['Key']}", json.dumps(upload, default=str).encode()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                key = item["Key"]
                where = f"{name}/{key}"
                head = client.head_object(Bucket=name, Key=key)
                tags = client.get_object_tagging(Bucket=name, Key=key)["TagSet"]
                body = client.get_object(Bucket=name, Key=key)["Body"].read()
                yield f"key {where}", key.encode()
                yield f"headers of {where}", json.dumps(head, default=str).encode()
                yield f"tags of {where}", json.dumps(tags).encode()
                yield f"body of {where}", body


def assert_blind(store: Store, canaries: Canaries, secrets_: list[bytes]) -> None:
    forms = list(canaries.forms()) + [(repr(s), s) for s in secrets_]
    seen = 0
    for view in (everything_stored(store.client), store.raw()):
        for where, data in view:
            seen += 1
            for value in canaries.values:
                assert value.lower() not in where.lower(), (value, where)
            for name, form in forms:
                assert form not in data, f"{name} found in {where} ({store.name})"
    assert seen, "nothing was examined"


def assert_opaque(store: Store, prefix: str) -> None:
    """Our buckets are ``<prefix>bs-<random>``; objects blob ids, octet-stream, bare."""
    ours = [
        b["Name"] for b in store.client.list_buckets()["Buckets"] if b["Name"].startswith(prefix)
    ]
    assert ours
    for bucket in ours:
        assert CONTAINER.fullmatch(bucket.removeprefix(prefix)), bucket
        for page in store.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                assert BLOB_PATTERN.fullmatch(item["Key"]), item["Key"]
                head = store.client.head_object(Bucket=bucket, Key=item["Key"])
                assert head["ContentType"] == CONTENT_TYPE
                assert head["Metadata"] == {}
                assert not [h for h in PASSED_THROUGH if head.get(h)], head
                tags = store.client.get_object_tagging(Bucket=bucket, Key=item["Key"])
                assert tags["TagSet"] == []


async def test_the_store_sees_no_name_metadata_tag_or_plaintext(store: Store, world: World) -> None:
    canaries = Canaries()
    c = canaries.new
    gateway = world.gateway
    principal = await world.tenant(c("Hopital-Saint-Louis"))
    bucket = c("patient-bucket").lower()
    await gateway.create_bucket(principal, bucket, "us-east-1")
    stored: list[bytes] = []

    # A single PUT, with every client-chosen field carrying a canary.
    single_key = f"{c('patients')}/{c('DUPONT_Jean_IRM')}.dcm"
    single = patient_file(canaries, 100_000)
    meta = WriteMeta(
        headers={
            "content-type": f"application/{c('dicom')}",
            "content-disposition": f'attachment; filename="{c("dupont")}.dcm"',
            "cache-control": c("cache"),
        },
        user_metadata={"diagnosis": c("glioblastome"), c("metaname"): "x"},
        tags={"patient": c("nir"), c("tagkey"): "1"},
    )
    await gateway.put_object(principal, bucket, single_key, chunks(single), check(), meta)
    stored.append(single)
    await gateway.put_tags(principal, bucket, single_key, {"ward": c("oncologie")})

    # A copy that replaces the metadata and tags, under a new canary key.
    await gateway.copy_object(
        principal,
        bucket,
        single_key,
        bucket,
        c("copy-of-dupont"),
        check(),
        source_conditions=Conditions(),
        meta=WriteMeta(user_metadata={"diagnosis": c("rechute")}),
        tags={"copied": c("copytag")},
    )

    # A multipart upload: checked while pending (parts stored, no row yet) and once complete.
    mp_key = f"{c('multipart')}/{c('scanner')}.raw"
    mp_body = patient_file(canaries, PART + 4096)
    stored.append(mp_body)
    upload = await gateway.create_upload(
        principal,
        bucket,
        mp_key,
        WriteMeta(
            headers={"content-type": f"image/{c('mp-type')}"},
            user_metadata={"diagnosis": c("mp-diagnosis")},
            tags={"mp": c("mptag")},
        ),
    )
    etags = []
    for number, piece in ((1, mp_body[:PART]), (2, mp_body[PART:])):
        made = await gateway.upload_part(
            principal, bucket, mp_key, upload.upload_id, number, chunks(piece), check()
        )
        etags.append((number, made.etag))
    await anyio.to_thread.run_sync(assert_blind, store, canaries, [])
    await gateway.complete_upload(principal, bucket, mp_key, upload.upload_id, etags)

    # Digests of the plaintext would identify a known file: they stay in the catalog too.
    digests: list[bytes] = []
    for body in stored:
        digests += [hashlib.md5(body).digest(), hashlib.md5(body).hexdigest().encode()]
        digests += [hashlib.sha256(body).digest(), body[:32]]
    await anyio.to_thread.run_sync(assert_blind, store, canaries, digests)
    await anyio.to_thread.run_sync(assert_opaque, store, world.backend.settings.bucket_prefix)

    read = await gateway.get_object(principal, bucket, mp_key)
    assert b"".join([block async for block in read.body]) == mp_body
    read = await gateway.get_object(principal, bucket, single_key)
    assert b"".join([block async for block in read.body]) == single
