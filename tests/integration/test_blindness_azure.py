"""What Azure sees (SECURITY-NOTES §3.3, §5.3 case 31): the gateway over AzureBackend on Azurite.

The gateway runs in-process (in-memory KEK, in-memory SQLite catalog) with Azure as its default
backend. Objects are written whose tenant, bucket, key, content headers, user metadata, tags and
body carry canaries: a single PUT, a PUT large enough to be staged in blocks, a multipart upload
(checked while pending too) and a copy. Then the account is read as the provider could read it:
through azure-storage-blob (container names and metadata, blob names, properties, metadata,
index tags, bodies), and raw, in Azurite's data directory (its metadata database and extent
files) and its logs of every request received. No canary, plaintext digest or plaintext prefix
may appear anywhere; every blob is ``application/octet-stream``, without metadata or tags, named
``<2 hex>/<26 base32>`` in the tenant's ``bs-<26 base32>`` container.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from azure.storage.blob import BlobServiceClient
from pydantic import SecretStr

from blindstore import provision
from blindstore.backends.azure import AzureBackend, AzureBackendSettings
from blindstore.catalog.sql import SqlCatalog
from blindstore.devtools.azurite import AzuriteServer
from blindstore.gateway import Gateway, Principal, WriteMeta
from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.s3.checksums import BodyVerifier
from blindstore.s3.conditions import Conditions
from blindstore.server.wire import VerifiedBody
from tests.services.azurite import azurite_server  # noqa: F401

MiB = 1024 * 1024
CONTAINER = re.compile(r"bs-[a-z2-7]{26}")
BLOB = re.compile(r"[0-9a-f]{2}/[a-z2-7]{26}")
#: Azurite saves its metadata database every 5 s: wait a little longer than that, at most.
FLUSH_TIMEOUT = 15.0


class Canaries:
    """Unique marker strings, and every byte form they could leak in."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(8)
        self.values: list[str] = []

    def __call__(self, label: str) -> str:
        value = f"{label}-{self.tag}-{len(self.values)}"
        self.values.append(value)
        return value

    def forms(self) -> Iterator[tuple[str, bytes]]:
        for value in self.values:
            yield f"{value} (utf-8)", value.encode()
            yield f"{value} (utf-16-le)", value.encode("utf-16-le")
            yield f"{value} (utf-16-be)", value.encode("utf-16-be")
            yield f"{value} (percent-encoded)", quote(value, safe="").encode()
            yield f"{value} (upper-case)", value.upper().encode()
            yield f"{value} (lower-case)", value.lower().encode()


def body(canaries: Canaries, size: int) -> bytes:
    """A body full of canaries: a patient file as a client would send it."""
    marker = canaries("DUPONT_Jean_IRM_body").encode()
    return (marker * (size // len(marker) + 1))[:size]


async def chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def check() -> VerifiedBody:
    return VerifiedBody(BodyVerifier())


def leaks(data: bytes, forms: list[tuple[str, bytes]]) -> list[str]:
    return [name for name, form in forms if form in data]


def assert_account_is_blind(
    service: BlobServiceClient,
    container: str,
    forms: list[tuple[str, bytes]],
    existing: set[str],
) -> set[str]:
    """Read the whole account through the SDK; return the tenant container's blob names.

    ``existing``: the containers other tests made before this one (the account is shared).
    """
    names: set[str] = set()
    created = set()
    for item in service.list_containers(include_metadata=True):
        assert not leaks(item.name.encode(), forms), item.name
        assert not item.metadata, item.name
        if item.name not in existing:
            created.add(item.name)
        client = service.get_container_client(item.name)
        for blob in client.list_blobs(include=["metadata", "tags", "uncommittedblobs"]):
            assert not leaks(blob.name.encode(), forms), blob.name
            if item.name != container:
                continue
            names.add(blob.name)
            assert BLOB.fullmatch(blob.name), blob.name
            assert not blob.metadata, blob.name
            assert not blob.tags, blob.name
            blob_client = client.get_blob_client(blob.name)
            properties = blob_client.get_blob_properties()
            settings = properties.content_settings
            assert settings.content_type == "application/octet-stream", blob.name
            assert settings.content_disposition is None, blob.name
            assert settings.content_encoding is None, blob.name
            assert settings.content_language is None, blob.name
            assert settings.cache_control is None, blob.name
            assert properties.metadata == {}, blob.name
            assert not properties.tag_count, blob.name
            assert blob_client.get_blob_tags() == {}, blob.name
            stored = blob_client.download_blob().readall()
            assert stored[:4] == b"HGW1", blob.name  # ciphertext in the gateway's envelope
            assert not leaks(stored, forms), blob.name
    assert created == {container}  # one per tenant, created on first write
    assert CONTAINER.fullmatch(container)
    return names


def wait_until_saved(azurite: AzuriteServer, blob_names: set[str]) -> Path:
    """Azurite's metadata database, once it has saved every one of ``blob_names``."""
    database = azurite.data_dir / "__azurite_db_blob__.json"
    deadline = time.monotonic() + FLUSH_TIMEOUT
    while True:
        saved = database.read_bytes() if database.exists() else b""
        if all(name.encode() in saved for name in blob_names):
            return database
        assert time.monotonic() < deadline, "Azurite did not save its database"
        time.sleep(0.2)


def raw_leaks(azurite: AzuriteServer, forms: list[tuple[str, bytes]]) -> dict[Path, list[str]]:
    """Every file of Azurite's (data, request logs) whose path or bytes hold one of ``forms``."""
    found: dict[Path, list[str]] = {}
    files = [path for path in azurite.workdir.rglob("*") if path.is_file()]
    assert azurite.debug_log_path in files  # every request's URL and headers, as received
    for path in files:
        relative = str(path.relative_to(azurite.workdir)).encode()
        hits = leaks(relative, forms) + leaks(path.read_bytes(), forms)
        if hits:
            found[path] = hits
    return found


@pytest.mark.anyio
async def test_azure_sees_no_name_metadata_tag_or_plaintext(azurite: AzuriteServer) -> None:
    c = Canaries()
    backend = AzureBackend(
        # 1 MiB blocks: the large PUT and the multipart part are staged and committed.
        AzureBackendSettings(connection_string=SecretStr(azurite.connection_string), block_size=MiB)
    )
    catalog = SqlCatalog("sqlite://")
    keys = InMemoryKeyWrapper()
    gateway = Gateway(catalog, keys, {"azure": backend}, default_backend="azure")
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    existing = {item.name for item in service.list_containers()}
    try:
        made = await provision.create_tenant(catalog, keys, c("Hopital_Saint-Louis"))
        principal = Principal(made.access_key_id, made.tenant)
        bucket = c("patient-bucket").lower()
        await gateway.create_bucket(principal, bucket, "us-east-1")
        stored: list[bytes] = []

        def meta(label: str) -> WriteMeta:
            return WriteMeta(
                headers={
                    "content-type": f"application/{c(label + '-dicom')}",
                    "content-disposition": f'attachment; filename="{c(label + "-dupont")}.dcm"',
                    "content-language": c(label + "-lang"),
                    "cache-control": c(label + "-cache"),
                },
                user_metadata={"diagnosis": c(label + "-glioblastome"), c(label + "-name"): "x"},
                tags={"patient": c(label + "-nir"), c(label + "-tagkey"): "1"},
            )

        # A single PUT (one Put Blob), and one large enough to be staged in blocks.
        single_key = f"{c('patients')}/{c('DUPONT_Jean_IRM')}.dcm"
        single = body(c, 100_000)
        large_key = f"{c('scans')}/{c('MARTIN_Anne_CT')}.raw"
        large = body(c, 3 * MiB + 12345)
        for key, data, label in ((single_key, single, "single"), (large_key, large, "large")):
            await gateway.put_object(principal, bucket, key, chunks(data), check(), meta(label))
            stored.append(data)
        await gateway.put_tags(principal, bucket, single_key, {"ward": c("oncologie")})

        # A copy that replaces metadata and tags, under a new canary key.
        copy_key = c("copy-of-dupont")
        await gateway.copy_object(
            principal,
            bucket,
            single_key,
            bucket,
            copy_key,
            check(),
            source_conditions=Conditions(),
            meta=meta("copy"),
            tags={"copied": c("copytag")},
        )

        # A multipart upload: checked while pending (parts stored, no row yet), then complete.
        mp_key = f"{c('multipart')}/{c('scanner')}.raw"
        mp_body = body(c, 5 * MiB + 4096)
        stored.append(mp_body)
        upload = await gateway.create_upload(principal, bucket, mp_key, meta("mp"))
        etags = []
        for number, piece in ((1, mp_body[: 5 * MiB]), (2, mp_body[5 * MiB :])):
            part = await gateway.upload_part(
                principal, bucket, mp_key, upload.upload_id, number, chunks(piece), check()
            )
            etags.append((number, part.etag))
        forms = list(c.forms())
        assert_account_is_blind(service, made.tenant.container, forms, existing)
        await gateway.complete_upload(principal, bucket, mp_key, upload.upload_id, etags)

        # Digests of the plaintext would identify a known file: they stay in the catalog too.
        for data in stored:
            forms += [
                ("md5", hashlib.md5(data).digest()),
                ("md5 hex", hashlib.md5(data).hexdigest().encode()),
                ("sha256", hashlib.sha256(data).digest()),
                ("sha256 hex", hashlib.sha256(data).hexdigest().encode()),
                ("plaintext prefix", data[:32]),
            ]
        names = assert_account_is_blind(service, made.tenant.container, forms, existing)
        assert len(names) == 5  # single, large, copy, two parts
        wait_until_saved(azurite, names)
        assert raw_leaks(azurite, forms) == {}

        for key, data in ((mp_key, mp_body), (copy_key, single), (large_key, large)):
            read = await gateway.get_object(principal, bucket, key)
            assert b"".join([piece async for piece in read.body]) == data
    finally:
        service.close()
        await gateway.close()


def test_the_raw_scan_would_see_a_leak(azurite: AzuriteServer) -> None:
    """The raw walk is not vacuous: metadata written through the SDK is found in the database."""
    c = Canaries()
    blob = f"ab/{'a' * 26}"
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.create_container(c("leak").lower())
        try:
            container.upload_blob(blob, b"x", metadata={"m": c("meta")})
            database = wait_until_saved(azurite, {blob})
            found = raw_leaks(azurite, list(c.forms()))
        finally:
            container.delete_container()
    assert any(name.startswith(c.values[1]) for name in found[database])
    assert azurite.debug_log_path in found
