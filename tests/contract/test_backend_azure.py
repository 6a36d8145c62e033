"""The Backend contract against AzureBackend on a real Azurite, and what is Azure-specific.

Each test gets its own container prefix, so the session's one Azurite serves every test as an
empty account.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    BlobServiceClient,
    ResourceTypes,
    generate_account_sas,
)
from pydantic import SecretStr, ValidationError

from blindstore.backends.azure import AzureBackend, AzureBackendSettings
from blindstore.devtools.azurite import AzuriteServer
from blindstore.errors import BackendUnavailable, BlindstoreError, BlobNotFound, ConfigError
from tests.contract.backend_contract import (
    CONTAINER,
    Artifacts,
    BackendContract,
    blob_id,
    chunked,
    failing_after,
    listing,
    read_all,
)
from tests.services.azurite import azurite_server  # noqa: F401

MiB = 1024 * 1024


@pytest.fixture
def prefix() -> str:
    """A container prefix of this test's own: a fresh, empty account as far as it can see."""
    return f"c{secrets.token_hex(4)}-"


@pytest.fixture
def service(azurite: AzuriteServer) -> Iterator[BlobServiceClient]:
    """Azurite seen directly through the SDK, as an auditor of the provider would."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as client:
        yield client


def _settings(azurite: AzuriteServer, prefix: str, **extra: object) -> AzureBackendSettings:
    return AzureBackendSettings(
        connection_string=SecretStr(azurite.connection_string),
        container_prefix=prefix,
        **extra,  # type: ignore[arg-type]
    )


class TestAzureBackend(BackendContract):
    @pytest.fixture
    async def backend(self, azurite: AzuriteServer, prefix: str) -> AsyncIterator[AzureBackend]:
        # Small blocks and windows: the contract's multi-MiB blobs are staged in blocks and
        # read in several ranged requests, not just sent whole.
        backend = AzureBackend(_settings(azurite, prefix, block_size=MiB, read_size=256 * 1024))
        yield backend
        await backend.close()

    @pytest.fixture
    def artifacts(self, service: BlobServiceClient, prefix: str) -> Artifacts:
        # Committed blobs in every container of this test. Blocks staged by a put that never
        # committed are Azure's own temporary state: unlisted, unreadable, discarded after a
        # week; test_failed_put_commits_nothing shows them.
        def held() -> list[str]:
            return sorted(
                f"{container.name}/{blob.name}"
                for container in service.list_containers(name_starts_with=prefix)
                for blob in service.get_container_client(container.name).list_blobs()
            )

        async def held_now() -> list[str]:
            return await anyio.to_thread.run_sync(held)

        return held_now


async def _stream(chunk: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield chunk


@pytest.mark.anyio
async def test_large_blob_is_staged_in_blocks_and_streamed_in_bounded_memory(
    azurite: AzuriteServer, prefix: str, service: BlobServiceClient
) -> None:
    """20 MiB through 4 MiB blocks: one block in memory on the way in, one window out."""
    backend = AzureBackend(_settings(azurite, prefix, block_size=4 * MiB, read_size=MiB))
    chunk = bytes(range(256)) * 256  # 64 KiB, the same object every time
    count = 320  # 20 MiB
    expected = hashlib.sha256(chunk * count).digest()
    try:
        tracemalloc.start()
        try:
            stored = await backend.put(CONTAINER, blob_id(1), _stream(chunk, count))
            _, put_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            digest = hashlib.sha256()
            async for block in backend.get(CONTAINER, blob_id(1)):
                digest.update(block)
            _, get_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        await backend.close()

    assert stored == 20 * MiB
    assert digest.digest() == expected
    assert put_peak < 5 * MiB  # the 4 MiB block buffer and change
    # The SDK's list(len-hinted stream) costs 8 bytes per byte of a window: 9 MiB per 1 MiB.
    assert get_peak < 12 * MiB  # + the window being joined, + the one the caller holds
    blob = service.get_blob_client(f"{prefix}{CONTAINER}", blob_id(1))
    committed, uncommitted = blob.get_block_list("all")
    assert [block.size for block in committed] == [4 * MiB] * 5
    assert uncommitted == []
    assert blob.get_blob_properties().content_settings.content_type == "application/octet-stream"


@pytest.mark.anyio
async def test_failed_put_commits_nothing(
    azurite: AzuriteServer, prefix: str, service: BlobServiceClient
) -> None:
    """Staged blocks of a put whose body fails stay uncommitted: invisible to reads and lists."""
    backend = AzureBackend(_settings(azurite, prefix, block_size=MiB))
    try:
        with pytest.raises(ConnectionResetError):
            await backend.put(
                CONTAINER, blob_id(1), failing_after([b"\x05" * MiB] * 3, ConnectionResetError())
            )
        with pytest.raises(BlobNotFound):
            await backend.size(CONTAINER, blob_id(1))
        with pytest.raises(BlobNotFound):
            await read_all(backend, blob_id(1))
        assert await listing(backend) == []
    finally:
        await backend.close()

    container = service.get_container_client(f"{prefix}{CONTAINER}")
    assert list(container.list_blobs()) == []
    # What Azure keeps meanwhile: an uncommitted blob of size 0 (its blocks expire in a week).
    leftovers = list(container.list_blobs(include=["uncommittedblobs"]))
    assert [(blob.name, blob.size) for blob in leftovers] == [(blob_id(1), 0)]


@pytest.mark.anyio
async def test_first_writes_to_a_new_container_may_race(
    azurite: AzuriteServer, prefix: str
) -> None:
    """The container is created on first use; concurrent first writers all succeed."""
    backend = AzureBackend(_settings(azurite, prefix))
    try:
        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(backend.put, CONTAINER, blob_id(n), chunked(b"x" * n))
        assert [info.size for info in await listing(backend)] == sorted(range(6))
    finally:
        await backend.close()


@pytest.mark.anyio
async def test_list_pages_through_the_native_listing(azurite: AzuriteServer, prefix: str) -> None:
    backend = AzureBackend(_settings(azurite, prefix, list_page_size=2))
    try:
        for n in range(5):
            await backend.put(CONTAINER, blob_id(n), chunked(b"y" * n))
        found = await listing(backend)
    finally:
        await backend.close()
    assert [(info.blob, info.size) for info in found] == sorted((blob_id(n), n) for n in range(5))


async def _round_trip(backend: AzureBackend) -> None:
    try:
        await backend.put(CONTAINER, blob_id(7), chunked(b"over ", b"the wire"))
        assert await read_all(backend, blob_id(7), 5) == b"the wire"
        assert [info.blob for info in await listing(backend)] == [blob_id(7)]
        await backend.delete(CONTAINER, blob_id(7))
        assert await listing(backend) == []
    finally:
        await backend.close()


@pytest.mark.anyio
@pytest.mark.parametrize("named", [False, True])
async def test_account_key_mode_round_trips(
    azurite: AzuriteServer, prefix: str, named: bool
) -> None:
    """The account name comes from the URL (Azurite: its path) or from ``account_name``."""
    settings = AzureBackendSettings(
        account_url=azurite.blob_endpoint,
        account_key=SecretStr(azurite.account_key),
        account_name=azurite.account_name if named else None,
        container_prefix=prefix,
    )
    await _round_trip(AzureBackend(settings))


@pytest.mark.anyio
async def test_sas_mode_round_trips(azurite: AzuriteServer, prefix: str) -> None:
    token = generate_account_sas(
        azurite.account_name,
        azurite.account_key,
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(
            read=True, write=True, delete=True, list=True, add=True, create=True
        ),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    settings = AzureBackendSettings(
        account_url=azurite.blob_endpoint, sas_token=SecretStr(token), container_prefix=prefix
    )
    await _round_trip(AzureBackend(settings))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: connections are refused


@pytest.mark.anyio
async def test_unreachable_endpoint_raises_backend_unavailable() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}/devstoreaccount1"
    settings = AzureBackendSettings(
        connection_string=SecretStr(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={'A' * 86}==;BlobEndpoint={endpoint};"
        ),
        connect_timeout=1.0,
    )
    backend = AzureBackend(settings)
    try:
        with pytest.raises(BackendUnavailable):
            await backend.put(CONTAINER, blob_id(1), chunked(b"data"))
        with pytest.raises(BackendUnavailable):
            await read_all(backend, blob_id(1))
        with pytest.raises(BackendUnavailable):
            await backend.size(CONTAINER, blob_id(1))
        with pytest.raises(BackendUnavailable):
            await backend.delete(CONTAINER, blob_id(1))
        with pytest.raises(BackendUnavailable):
            await listing(backend)
    finally:
        await backend.close()


@pytest.mark.anyio
async def test_refused_credentials_raise_backend_unavailable_and_say_why(
    azurite: AzuriteServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = AzureBackendSettings(
        account_url=azurite.blob_endpoint,
        account_key=SecretStr("B" * 86 + "=="),
        container_prefix=prefix,
    )
    backend = AzureBackend(settings)
    try:
        with caplog.at_level(logging.ERROR, logger="blindstore.backends.azure"):
            with pytest.raises(BackendUnavailable):
                await backend.put(CONTAINER, blob_id(1), chunked(b"data"))
            with pytest.raises(BackendUnavailable):
                await backend.size(CONTAINER, blob_id(1))
    finally:
        await backend.close()
    assert "refused the backend's credentials" in caplog.text
    assert "B" * 20 not in caplog.text


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"account_url": "https://acct.blob.core.windows.net"},
        {"connection_string": "x", "account_url": "https://acct.blob.core.windows.net"},
        {"connection_string": "x", "sas_token": "sv=1"},
        {
            "account_url": "https://acct.blob.core.windows.net",
            "account_key": "k",
            "sas_token": "sv=1",
        },
        {"account_url": "https://acct.blob.core.windows.net?sv=1&sig=s", "sas_token": "sv=1"},
        {"account_url": "https://a.example", "sas_token": "sv=1", "account_name": "acct"},
        {"connection_string": "x", "container_prefix": "Upper-"},
        {"connection_string": "x", "block_size": 4000 * MiB + 1},
    ],
)
def test_settings_refuse_anything_but_one_credential_mode(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AzureBackendSettings(**fields)  # type: ignore[arg-type]


def test_secrets_never_appear_in_a_repr() -> None:
    settings = AzureBackendSettings(
        account_url="https://acct.blob.core.windows.net", sas_token=SecretStr("sig=s3cr3t")
    )
    keyed = AzureBackendSettings(connection_string=SecretStr("AccountKey=s3cr3t"))
    assert "s3cr3t" not in repr(settings) + str(settings) + repr(keyed)


def test_a_token_credential_over_plain_http_is_a_config_error() -> None:
    settings = AzureBackendSettings(
        account_url="http://127.0.0.1:1/devstoreaccount1", use_default_credential=True
    )
    with pytest.raises(ConfigError):
        AzureBackend(settings)


@pytest.mark.anyio
async def test_default_credential_mode_builds_without_contacting_anyone() -> None:
    """DefaultAzureCredential fetches a token on the first request only (none is made here)."""
    settings = AzureBackendSettings(
        account_url="https://acct.blob.core.windows.net", use_default_credential=True
    )
    backend = AzureBackend(settings)
    await backend.close()


@pytest.mark.anyio
async def test_a_prefix_that_makes_container_names_too_long_is_refused(
    azurite: AzuriteServer,
) -> None:
    backend = AzureBackend(_settings(azurite, "p" * 32))
    try:
        with pytest.raises(BlindstoreError, match="Invalid container"):
            await backend.put("bs-" + "a" * 30, blob_id(1), chunked(b"x"))
    finally:
        await backend.close()
