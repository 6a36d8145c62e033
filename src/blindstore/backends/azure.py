"""The Azure Blob Storage backend (``azure-storage-blob``): ciphertext block blobs, nothing else.

Layout: container ``<container_prefix><container>``, blob name = blob id (``<shard>/<id>``).
Every blob is written ``application/octet-stream`` with no metadata, no tags and no other
property, in a container created on first write.

Writes. A blob that fits in one block (``block_size``) is sent as one Put Blob. A larger one is
staged block by block as its bytes arrive (Put Block, random block ids of equal length; one
block held in memory) and made visible at once by Put Block List. Until that commit Azure
serves neither the blob nor its new content, so a put is atomic. A put that fails or is
cancelled before its commit leaves only *uncommitted blocks*: never listed (unless a listing
asks for ``uncommittedblobs``), never readable, discarded by Azure a week after the last one
was staged or at the next commit to that name. They are not deleted here: Delete Blob would
also delete the committed blob that a failed overwrite must keep, and Put Block List's
``If-None-Match`` (the only safe way to discard them) is not honoured by Azurite. The gateway
writes every blob under a fresh random id, so such leftovers are billed for a week at most.
Two puts racing on one name: the last commit wins, and a put whose staged blocks were discarded
by the other's commit returns as if it had been overwritten at once (what it was, in effect).

Reads. ``get`` fetches the range in windows of ``read_size``, one ranged Get Blob each, the
later ones pinned to the first one's ETag. Memory: the SDK turns each response into bytes
with ``b"".join(list(stream))``, and ``list`` preallocates from the stream's length, 8 bytes
per byte of the window; a read in flight therefore peaks at about 9 × ``read_size``.

Threads. The SDK is synchronous: every call runs in a worker thread, at most
``max_concurrency`` at once, over one keep-alive session with as many pooled connections.

Errors and retries. SDK exceptions are translated once, in ``_map_errors``: not found →
``BlobNotFound``; unreachable, timed out, 408/429/5xx, cut-off responses → ``BackendUnavailable``
after ``retry_attempts`` tries (stamina, short exponential backoff); refused credentials and
any other refusal → ``BackendUnavailable`` at once, with the cause in the log. The SDK's own
retry policy is switched off, so that the two never multiply; each retried call is whole (a
block we still hold, a read window, a listing page).

Memory: each put in progress holds at most one block (``block_size``; a blob smaller than
that, as it arrived); each read in flight about 9 × ``read_size``, with at most
``max_concurrency`` calls in flight. A blob holds at most 50,000 blocks: ``block_size`` ×
50,000 is the largest blob (8 MiB → 390 GiB).
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Self, TypeVar, TypeVarTuple, cast

import anyio
import anyio.to_thread
import requests
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from blindstore.backends._threads import call_with_retries
from blindstore.backends.base import BlobInfo
from blindstore.backends.ids import (
    BLOB_PATTERN,
    CONTAINER_PATTERN,
    check_blob,
    check_container,
    check_range,
)
from blindstore.errors import (
    BackendUnavailable,
    BlindstoreError,
    BlobNotFound,
    ConfigError,
    EntityTooLarge,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

_log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

KiB: Final = 1024
MiB: Final = 1024 * KiB
#: Azure's limits for block blobs (service version 2019-12-12 and later).
MAX_BLOCKS: Final = 50_000
MAX_BLOCK_SIZE: Final = 4000 * MiB
#: Statuses that mean "try again later" (Azure answers 503 ServerBusy when throttling).
_TRANSIENT_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
_OCTET_STREAM: Final = ContentSettings(content_type="application/octet-stream")

# ``list`` is taken inside AzureBackend by the Backend method.
_Page = list[tuple[str, int, float]]
_BlockIds = list[str]


class AzureBackendSettings(BaseModel):
    """How to reach one storage account. Exactly one credential mode:

    * ``connection_string`` (from the portal; holds the endpoint and a key or SAS), or
    * ``account_url`` with one of ``account_key`` (``account_name`` when the URL does not start
      with it, as behind a private endpoint), ``sas_token`` (account or container SAS, query
      string without ``?``) or ``use_default_credential`` (``azure.identity``'s
      DefaultAzureCredential: environment, workload or managed identity, Azure CLI…; HTTPS only).

    Memory: ``block_size`` per put in progress, plus up to ``max_concurrency`` × 9 ×
    ``read_size`` for reads (see the module docstring).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    connection_string: SecretStr | None = None
    account_url: str | None = None
    account_name: str | None = Field(None, pattern=r"^[a-z0-9]{3,24}$")
    account_key: SecretStr | None = None
    sas_token: SecretStr | None = None
    use_default_credential: bool = False
    #: Prepended to every container name (e.g. ``"prod-"``); the result must still be a valid
    #: container name (3-63 characters, lower-case letters, digits, single hyphens).
    container_prefix: str = Field("", pattern=r"^(?:[a-z0-9]+(?:-[a-z0-9]+)*-?)?$", max_length=32)
    #: Bytes per staged block, held in memory while it fills; also the largest single Put Blob.
    block_size: int = Field(8 * MiB, ge=64 * KiB, le=MAX_BLOCK_SIZE)
    #: Bytes per ranged read (one request each).
    read_size: int = Field(1 * MiB, ge=64 * KiB, le=64 * MiB)
    #: Blobs per listing request (Azure's maximum is 5000).
    list_page_size: int = Field(1000, ge=1, le=5000)
    #: SDK calls (worker threads, pooled connections) in flight at once.
    max_concurrency: int = Field(8, ge=1, le=256)
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(60.0, gt=0)
    #: Tries of a call failing transiently, and the time they may take together.
    retry_attempts: int = Field(3, ge=1, le=10)
    retry_timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _one_credential_mode(self) -> Self:
        url_modes = [
            self.account_key is not None,
            self.sas_token is not None,
            self.use_default_credential,
        ]
        if self.connection_string is not None:
            if self.account_url is not None or any(url_modes):
                raise ValueError("a connection string carries its own endpoint and credential")
        elif self.account_url is None:
            raise ValueError("give connection_string, or account_url and one credential")
        elif sum(url_modes) != 1:
            raise ValueError("give exactly one of account_key, sas_token or use_default_credential")
        if self.account_name is not None and self.account_key is None:
            raise ValueError("account_name is only used with account_key")
        if self.account_url is not None and "?" in self.account_url:
            # A SAS in the URL would be printed wherever the settings are.
            raise ValueError("account_url must not carry a query string: use sas_token")
        return self


class AzureBackend:
    """Blobs in Azure Blob Storage (or Azurite), one container per gateway container."""

    def __init__(self, settings: AzureBackendSettings, name: str = "azure") -> None:
        self.name = name
        self.settings = settings
        self._credential: Any = None
        self._service = self._make_service()
        self._limiter = anyio.CapacityLimiter(settings.max_concurrency)

    async def put(self, container: str, blob: str, chunks: AsyncIterator[bytes]) -> int:
        """Store ``chunks`` as one blob, atomically; return the number of bytes stored."""
        target = self._blob(container, blob)
        blocks = _BlockBuffer(self.settings.block_size)
        staged: _BlockIds = []
        total = 0
        async for chunk in chunks:
            total += len(chunk)
            for block in blocks.add(chunk):
                staged.append(await self._stage(target, block, len(staged)))
        if not staged:
            data = blocks.small()
            whole = io.BytesIO(data)
            try:
                await self._call(_upload_whole, target, whole, len(data))
            finally:
                whole.close()  # see _let_go
            return total
        if blocks.pending:
            staged.append(await self._stage(target, blocks.rest(), len(staged)))
        await self._call(_commit, target.blob, staged)
        return total

    async def get(
        self, container: str, blob: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` of the blob, one ranged request per ``read_size``."""
        check_range(start, end)
        client = self._blob(container, blob).blob
        if end == start:
            await self._call(_blob_size, client)  # nothing to read, but it must exist
            return
        window = self.settings.read_size
        first = await self._call(_read, client, start, _span(window, start, end), None)
        if first is None:
            return  # ``start`` is at or past the end of the blob
        data, etag, size = first
        stop = size if end is None else min(end, size)
        offset = start + len(data)
        if data:
            yield data
        while offset < stop:
            later = await self._call(_read, client, offset, min(window, stop - offset), etag)
            if later is None or not later[0]:
                raise BlindstoreError("A blob was truncated while being read.")
            offset += len(later[0])
            yield later[0]

    async def size(self, container: str, blob: str) -> int:
        """Size in bytes of a stored blob; BlobNotFound if absent."""
        return await self._call(_blob_size, self._blob(container, blob).blob)

    async def delete(self, container: str, blob: str) -> None:
        """Remove a blob (and any snapshot of it); a missing blob is not an error."""
        await self._call(_delete, self._blob(container, blob).blob)

    async def list(self, container: str) -> AsyncIterator[BlobInfo]:
        """Every committed blob of ``container``, one listing page per thread hop."""
        client = self._container(container)
        token: str | None = None
        while True:
            page, token = await self._call(_list_page, client, self.settings.list_page_size, token)
            for blob, size, modified in page:
                if BLOB_PATTERN.fullmatch(blob) is not None:
                    yield BlobInfo(container, blob, size, modified)
            if not token:
                return

    async def close(self) -> None:
        """Close the HTTP session (and the identity credential, if any)."""

        def close() -> None:
            self._service.close()
            if self._credential is not None and hasattr(self._credential, "close"):
                self._credential.close()

        await anyio.to_thread.run_sync(close)

    # ------------------------------------------------------------------ internals

    def _container(self, container: str) -> ContainerClient:
        check_container(container)
        full = f"{self.settings.container_prefix}{container}"
        if CONTAINER_PATTERN.fullmatch(full) is None:  # the prefix made it too long
            raise BlindstoreError("Invalid container name.")
        return self._service.get_container_client(full)

    def _blob(self, container: str, blob: str) -> _Target:
        client = self._container(container)
        check_blob(blob)
        return _Target(client, client.get_blob_client(blob))

    async def _stage(self, target: _Target, block: memoryview, count: int) -> str:
        if count >= MAX_BLOCKS:
            raise EntityTooLarge(
                f"A blob holds at most {MAX_BLOCKS} blocks of {self.settings.block_size} bytes."
            )
        # Random ids: two puts racing on one name never mix blocks. Equal lengths (32 hex
        # characters) are required by Azure within one blob.
        block_id = secrets.token_hex(16)
        try:
            await self._call(_stage_block, target, block_id, block)
        finally:
            _let_go(block)
        return block_id

    async def _call(self, work: Callable[[*Ts], T], *args: *Ts) -> T:
        """Run ``work`` in a worker thread with errors mapped; retry transient failures."""
        return await call_with_retries(
            partial(_mapped, work, *args),
            transient=_Transient,
            attempts=self.settings.retry_attempts,
            timeout=self.settings.retry_timeout,
            limiter=self._limiter,
            wait_initial=0.1,
            wait_max=2.0,
        )

    def _make_service(self) -> BlobServiceClient:
        settings = self.settings
        session = requests.Session()
        # No retries below the SDK (ours are above it); one pooled connection per worker.
        adapter = HTTPAdapter(
            pool_connections=1,
            pool_maxsize=settings.max_concurrency,
            max_retries=Retry(total=False, redirect=False, raise_on_status=False),
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        options: dict[str, Any] = {
            "transport": RequestsTransport(session=session, session_owner=True),
            "retry_total": 0,  # the SDK's retry policy off: stamina retries in _call
            "connection_timeout": settings.connect_timeout,
            "read_timeout": settings.read_timeout,
            "max_single_put_size": settings.block_size,
            "max_block_size": settings.block_size,
            "max_single_get_size": settings.read_size,
            "max_chunk_get_size": settings.read_size,
        }
        try:
            if settings.connection_string is not None:
                return BlobServiceClient.from_connection_string(
                    settings.connection_string.get_secret_value(), **options
                )
            assert settings.account_url is not None  # checked by the settings
            credential = self._make_credential()
            return BlobServiceClient(settings.account_url, credential=credential, **options)
        except ValueError as exc:  # malformed connection string, token credential over HTTP…
            session.close()
            if self._credential is not None:
                self._credential.close()
            raise ConfigError(f"invalid Azure backend settings: {exc}") from None

    def _make_credential(
        self,
    ) -> str | AzureNamedKeyCredential | AzureSasCredential | TokenCredential:
        settings = self.settings
        if settings.account_key is not None:
            key = settings.account_key.get_secret_value()
            if settings.account_name is None:
                return key  # the SDK reads the account name from the URL
            return AzureNamedKeyCredential(settings.account_name, key)
        if settings.sas_token is not None:
            return AzureSasCredential(settings.sas_token.get_secret_value().lstrip("?"))
        from azure.identity import DefaultAzureCredential  # slow import, needed in one mode

        self._credential = DefaultAzureCredential()
        return self._credential  # type: ignore[no-any-return]


class _Target(NamedTuple):
    container: ContainerClient
    blob: BlobClient


class _Transient(BackendUnavailable):
    """A failure worth retrying (unreachable, timed out, throttled, 5xx)."""


def _mapped(work: Callable[[*Ts], T], *args: *Ts) -> T:
    with _map_errors():
        return work(*args)


@contextmanager
def _map_errors() -> Iterator[None]:
    """The one translation point from azure-core/azure-storage exceptions to ours."""
    try:
        yield
    except BlindstoreError:
        raise
    except ResourceNotFoundError:
        raise BlobNotFound() from None
    except ResourceModifiedError as exc:
        raise BlindstoreError("A blob was replaced while being read.") from exc
    except (ServiceRequestError, ServiceResponseError, IncompleteReadError) as exc:
        raise _Transient() from exc  # not reached, timed out, or cut off mid-response
    except HttpResponseError as exc:  # ClientAuthenticationError included
        if exc.status_code in _TRANSIENT_STATUS:
            raise _Transient() from exc
        if isinstance(exc, ClientAuthenticationError) or exc.status_code in (401, 403):
            # A wrong key, an expired SAS, an identity without a data role: for an operator.
            _log.error(
                "Azure refused the backend's credentials (status %s, %s): check the account "
                "key, SAS token or identity, and its permissions",
                exc.status_code,
                _error_code(exc),
            )
        else:
            _log.error(
                "Azure refused a backend request (status %s, %s)", exc.status_code, _error_code(exc)
            )
        raise BackendUnavailable() from exc
    except AzureError as exc:
        _log.error("Azure backend call failed: %s", type(exc).__name__)
        raise BackendUnavailable() from exc


def _error_code(exc: HttpResponseError) -> str | None:
    """Azure's error code (``AuthorizationFailure``…), as a plain string."""
    code = getattr(exc, "error_code", None)
    return None if code is None else str(getattr(code, "value", code))


class _BlockBuffer:
    """Regroups a byte stream into blocks of exactly ``size`` bytes, one block in memory.

    Bytes are kept as the chunks they came in until a block is reached (a small blob is then
    sent as it arrived), then copied into one reused buffer: a full block is handed out as a
    view of it, which the caller must have sent before adding more.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._chunks: list[bytes] = []
        self._buffer: bytearray | None = None
        self.pending = 0

    def add(self, chunk: bytes) -> Iterator[memoryview]:
        """Take ``chunk``; yield every block it completes."""
        if self._buffer is None:
            if self.pending + len(chunk) < self.size:
                if chunk:
                    self._chunks.append(chunk)
                    self.pending += len(chunk)
                return
            self._buffer = bytearray(self.size)
            self.pending = 0
            self._chunks.reverse()
            while self._chunks:  # copied one by one: the list and the buffer never both full
                yield from self._fill(self._chunks.pop())
        yield from self._fill(chunk)

    def small(self) -> bytes:
        """Everything, when no block was completed."""
        assert self._buffer is None
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)

    def rest(self) -> memoryview:
        """The last, partial block."""
        assert self._buffer is not None
        return memoryview(self._buffer)[: self.pending]

    def _fill(self, chunk: bytes) -> Iterator[memoryview]:
        assert self._buffer is not None
        view = memoryview(chunk)
        while view:
            taken = min(len(view), self.size - self.pending)
            self._buffer[self.pending : self.pending + taken] = view[:taken]
            self.pending += taken
            view = view[taken:]
            if self.pending == self.size:
                yield memoryview(self._buffer)
                self.pending = 0


def _span(window: int, start: int, end: int | None) -> int:
    return window if end is None else min(window, end - start)


def _with_container(target: _Target, work: Callable[[], T]) -> T:
    """Run a write; if the container does not exist yet, create it and run it again."""
    try:
        return work()
    except ResourceNotFoundError as exc:
        if getattr(exc, "error_code", None) != "ContainerNotFound":
            raise
    with suppress(ResourceExistsError):  # created meanwhile by another writer
        target.container.create_container()
    try:
        return work()
    except ResourceNotFoundError as exc:  # deleted again at once (being deleted: 409 → retry)
        raise _Transient() from exc


def _upload_whole(target: _Target, whole: io.BytesIO, length: int) -> None:
    def upload() -> None:
        whole.seek(0)  # a retried upload sends it all again
        target.blob.upload_blob(
            whole, length=length, overwrite=True, content_settings=_OCTET_STREAM
        )

    _with_container(target, upload)


def _let_go(block: memoryview) -> None:
    """Release a block's view once sent.

    An idle anyio worker thread keeps the arguments of the last call it ran until it runs
    another (or exits after 10 s idle): released, the view no longer holds the block buffer.
    """
    with suppress(BufferError):  # still exported by someone: the buffer lives on with them
        block.release()


def _stage_block(target: _Target, block_id: str, block: memoryview) -> None:
    # The view is sent as it is (typed ``bytes`` by the SDK, which accepts any buffer).
    data = cast("bytes", block)
    _with_container(target, lambda: target.blob.stage_block(block_id, data, length=len(block)))


def _commit(client: BlobClient, block_ids: _BlockIds) -> None:
    # No metadata, no tags: the content type is the only property, the same for every blob.
    blocks = [BlobBlock(block_id) for block_id in block_ids]
    try:
        client.commit_block_list(blocks, content_settings=_OCTET_STREAM)
    except HttpResponseError as exc:
        if getattr(exc, "error_code", None) != "InvalidBlockList":
            raise
        # Our staged blocks are gone: another writer committed to this name meanwhile, and
        # Azure discards every uncommitted block at a commit. That writer's complete blob
        # stands; ours counts as written just before it, and overwritten (last writer wins).
        try:
            client.get_blob_properties()
        except ResourceNotFoundError:
            raise exc from None  # nobody committed: the blocks were lost some other way
        _log.warning("a concurrent write to the same Azure blob superseded this one")


def _read(
    client: BlobClient, offset: int, length: int, etag: str | None
) -> tuple[bytes, str, int] | None:
    """One ranged read: (bytes, ETag, blob size), or None if ``offset`` is past the end."""
    pinned: dict[str, Any] = {}
    if etag is not None:
        pinned = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
    try:
        download = client.download_blob(offset=offset, length=length, **pinned)
    except HttpResponseError as exc:
        if exc.status_code == 416:  # range not satisfiable: the blob exists but ends before
            return None
        raise
    data = download.readall()
    properties = download.properties
    return data, properties.etag, _total_size(properties.content_range)


def _total_size(content_range: str | None) -> int:
    """The blob size from ``bytes <first>-<last>/<size>`` (Azure's answer to a ranged read)."""
    total = (content_range or "").rpartition("/")[2]
    if not total.isdigit():  # guessing could end a read early: the caller would see less
        raise BlindstoreError("Azure answered a ranged read without its blob size.")
    return int(total)


def _blob_size(client: BlobClient) -> int:
    return int(client.get_blob_properties().size)


def _delete(client: BlobClient) -> None:
    with suppress(ResourceNotFoundError):  # already gone, or the container never existed
        client.delete_blob(delete_snapshots="include")


def _list_page(client: ContainerClient, size: int, token: str | None) -> tuple[_Page, str | None]:
    pages = client.list_blobs(results_per_page=size).by_page(continuation_token=token)
    try:
        page = [(item.name, int(item.size), item.last_modified.timestamp()) for item in next(pages)]
    except StopIteration:
        return [], None
    except ResourceNotFoundError:  # a container never written to holds nothing
        return [], None
    return page, pages.continuation_token  # type: ignore[attr-defined]


__all__ = ["AzureBackend", "AzureBackendSettings"]
