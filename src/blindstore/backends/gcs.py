"""The Google Cloud Storage backend: one bucket per container, ciphertext blobs only.

Bucket name = ``bucket_prefix + container``. A bucket is created when a put first finds it
missing (uniform bucket-level access, public access prevention enforced, the configured location
and soft-delete retention); a ``409 Conflict`` means another writer created it first. Blobs are
written ``application/octet-stream`` with no metadata. Nothing else is ever sent to Google.

Writes: a blob of at most ``chunk_size`` bytes is one ``upload_from_string`` request. A larger one
is a resumable upload session fed ``chunk_size`` pieces as they arrive; it becomes an object only
when the last piece (with the total length and the CRC32C of the whole blob) is accepted, so a
failed or cancelled put leaves no object. The session is then cancelled (``DELETE``); a session
nobody cancels expires after a week and never becomes an object either.

Reads are ranged media downloads of at most ``read_size`` bytes. After the first one the client
pins the object generation it saw, so a blob overwritten during a long read fails
(``BlobNotFound``) instead of mixing two versions.

google-cloud-storage is blocking: every request runs in a worker thread, at most
``max_concurrency`` at a time, with the library's own retries off. Errors are translated once,
in ``_map_errors``; transient ones (connection failures, timeouts, 408, 429, 5xx) are retried by
stamina around each request. A resumable piece is retried after asking the session how many
bytes it holds, so no byte is sent twice or skipped.

Memory per put: at most about ``2 × chunk_size`` plus one incoming chunk; per get: ``read_size``.
"""

from __future__ import annotations

import base64
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar, TypeVarTuple

import anyio
import anyio.to_thread
import google.auth
import google.auth.exceptions
import google_crc32c
import requests  # type: ignore[import-untyped,unused-ignore]
from google.api_core import exceptions as api_errors
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage  # type: ignore[attr-defined,import-untyped,unused-ignore]
from google.cloud.storage import (  # type: ignore[import-untyped,unused-ignore]
    exceptions as storage_errors,
)
from google.oauth2 import service_account
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from requests.adapters import HTTPAdapter  # type: ignore[import-untyped,unused-ignore]

from blindstore.backends._threads import call_with_retries
from blindstore.backends.base import BlobInfo
from blindstore.backends.ids import BLOB_PATTERN, check_blob, check_container, check_range
from blindstore.errors import BackendUnavailable, BlindstoreError, BlobNotFound, ConfigError

_log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

KiB: Final = 1024
MiB: Final = 1024 * KiB
#: GCS accepts non-final resumable pieces only in multiples of this.
CHUNK_MULTIPLE: Final = 256 * KiB
CONTENT_TYPE: Final = "application/octet-stream"
_MAX_BUCKET_NAME: Final = 63
_LIST_PAGE_SIZE: Final = 1000
_LIST_FIELDS: Final = "items(name,size,updated),nextPageToken"
_SESSION_RANGE: Final = re.compile(r"bytes=0-(\d+)")
#: Answers to a session cancel that mean "gone": 499 is GCS's documented success.
_CANCELLED: Final = frozenset({200, 204, 404, 410, 499})

# Statuses that mean "try again": request timeout, throttling, server-side failures.
_TRANSIENT_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
# Failures below HTTP: nothing was answered, or the answer was cut off or corrupted in transit.
_TRANSIENT_TRANSPORT: Final = (
    google.auth.exceptions.TransportError,
    requests.exceptions.RequestException,
    ConnectionError,
    TimeoutError,
    storage_errors.DataCorruption,
)


class GcsBackendSettings(BaseModel):
    """How to reach GCS and how to store blobs there.

    Credentials: ``credentials_file`` (a service account JSON key) or
    ``use_default_credentials`` (application-default credentials: workload identity, the
    metadata server, ``GOOGLE_APPLICATION_CREDENTIALS``); with neither, requests are anonymous,
    which only an emulator at ``endpoint_url`` accepts. ``project`` defaults to the credentials'
    project; it is needed to create buckets.

    ``location`` (e.g. ``EUROPE-WEST9``) and ``soft_delete_retention_seconds`` (0 disables soft
    delete; None keeps GCS's default of 7 days) apply to the buckets this backend creates only.
    Left unset, GCS places new buckets in the US multi-region.

    Memory per put is about ``2 × chunk_size``; at most ``max_concurrency`` requests run at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str | None = None
    credentials_file: Path | None = None
    use_default_credentials: bool = False
    endpoint_url: str | None = None
    bucket_prefix: str = Field("", max_length=34, pattern=r"^(?:[a-z0-9][a-z0-9-]*)?$")
    location: str | None = None
    soft_delete_retention_seconds: int | None = Field(None, ge=0)
    chunk_size: int = Field(8 * MiB, ge=CHUNK_MULTIPLE)
    read_size: int = Field(1 * MiB, ge=64 * KiB)
    max_concurrency: int = Field(8, ge=1, le=256)
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(60.0, gt=0)
    retry_attempts: int = Field(3, ge=1)
    #: Total time for the attempts at one request (a piece of ``chunk_size`` on a slow link
    #: takes a while).
    retry_timeout: float = Field(30.0, gt=0)

    @field_validator("chunk_size")
    @classmethod
    def _whole_pieces(cls, value: int) -> int:
        if value % CHUNK_MULTIPLE:
            raise ValueError(f"chunk_size must be a multiple of {CHUNK_MULTIPLE} (256 KiB)")
        return value

    @field_validator("bucket_prefix")
    @classmethod
    def _allowed_by_gcs(cls, value: str) -> str:
        # GCS refuses bucket names that start with "goog" or contain "google".
        if value.startswith("goog") or "google" in value:
            raise ValueError('bucket_prefix may not start with "goog" or contain "google"')
        return value

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> GcsBackendSettings:
        if self.credentials_file is not None and self.use_default_credentials:
            raise ValueError("give credentials_file or use_default_credentials, not both")
        if (
            self.credentials_file is None
            and not self.use_default_credentials
            and self.endpoint_url is None
        ):
            raise ValueError(
                "GCS needs credentials_file or use_default_credentials "
                "(anonymous access is for an emulator at endpoint_url only)"
            )
        return self


# The name ``list`` is taken inside GcsBackend by the Backend method.
_Infos = list[BlobInfo]


class _RetryableUnavailable(BackendUnavailable):
    """A failure worth retrying (stamina retries on this class only)."""


class GcsBackend:
    """Blobs in Google Cloud Storage (or gcp-storage-emulator at ``endpoint_url``)."""

    def __init__(self, settings: GcsBackendSettings, name: str = "gcs") -> None:
        self.name = name
        self.settings = settings
        credentials, project = _credentials(settings)
        self._http: Any = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
        # One keep-alive connection per worker thread, no urllib3-level retries (stamina's job).
        adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=settings.max_concurrency, max_retries=0
        )
        self._http.mount("https://", adapter)
        self._http.mount("http://", adapter)
        options = {"api_endpoint": settings.endpoint_url} if settings.endpoint_url else None
        self._client: Any = storage.Client(
            project=project, credentials=credentials, _http=self._http, client_options=options
        )
        # Recent google-cloud-storage releases start a thread per newly seen bucket to fetch
        # its metadata for tracing attributes (DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA
        # turns that off): requests outside our limiter and timeouts, which need
        # storage.buckets.get. The library checks this attribute for falsiness before use.
        if getattr(self._client, "_bucket_metadata_cache", None) is not None:
            self._client._bucket_metadata_cache = None
        self._limiter = anyio.CapacityLimiter(settings.max_concurrency)
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        if settings.location is None and settings.endpoint_url is None:
            _log.warning(
                "gcs backend %s: no location set, buckets it creates go to GCS's default "
                "(US multi-region)",
                name,
            )

    async def put(self, container: str, blob: str, chunks: AsyncIterator[bytes]) -> int:
        """Store ``chunks`` as one blob, atomically; return the number of bytes stored."""
        bucket = self._bucket_name(container)
        check_blob(blob)
        chunk_size = self.settings.chunk_size
        pending = _Pending()
        session: _Session | None = None
        sent = 0
        try:
            async for chunk in chunks:
                pending.add(chunk)
                # Strictly more than one piece: the last piece is then never empty.
                while pending.size > chunk_size:
                    if session is None:
                        session = await self._call(self._open_session, bucket, blob)
                    piece = _Parcel(pending.take(chunk_size))
                    await self._call(session.send, piece, sent, False)
                    sent += len(piece.take())  # dropped before the next piece is cut
            rest = _Parcel(pending.take(pending.size))
            if session is None:
                await self._call(self._upload_small, bucket, blob, rest)
                return len(rest.take())
            await self._call(session.send, rest, sent, True)
            return sent + len(rest.take())
        except BaseException as exc:
            if session is not None and not session.finished:
                # Runs even when the put is cancelled: no session may stay open behind it.
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(session.cancel, limiter=self._limiter)
            if isinstance(exc, BlobNotFound):  # a bucket or session vanished under the put
                raise BackendUnavailable("GCS lost a bucket or upload session") from exc
            raise

    async def get(
        self, container: str, blob: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` of the blob, one ranged download per ``read_size``."""
        check_range(start, end)
        bucket = self._bucket_name(container)
        check_blob(blob)
        if end == start:
            await self.size(container, blob)  # nothing to read, but a missing blob still fails
            return
        handle = self._client.bucket(bucket).blob(blob)
        step = self.settings.read_size
        offset = start
        while end is None or offset < end:
            want = step if end is None else min(step, end - offset)
            received = _Parcel()
            await self._call(self._download, handle, offset, want, received)
            data = received.take()
            if data:
                yield data
            offset += len(data)
            if len(data) < want:
                return  # the blob ends here

    async def size(self, container: str, blob: str) -> int:
        """Size in bytes of a stored blob; BlobNotFound if absent."""
        bucket = self._bucket_name(container)
        check_blob(blob)
        return await self._call(self._size, bucket, blob)

    async def delete(self, container: str, blob: str) -> None:
        """Remove a blob; a missing blob (or bucket) is not an error."""
        bucket = self._bucket_name(container)
        check_blob(blob)
        await self._call(self._delete, bucket, blob)

    async def list(self, container: str) -> AsyncIterator[BlobInfo]:
        """Every complete blob in ``container``, by id, one request per page of 1000."""
        bucket = self._bucket_name(container)
        token: str | None = None
        while True:
            page, token = await self._call(self._list_page, bucket, container, token)
            for info in page:
                yield info
            if token is None:
                return

    async def close(self) -> None:
        """Close the keep-alive connections."""
        self._http.close()

    # ------------------------------------------------------------------ edges

    def _bucket_name(self, container: str) -> str:
        check_container(container)
        name = self.settings.bucket_prefix + container
        if len(name) > _MAX_BUCKET_NAME:
            raise BlindstoreError("Invalid container name.")
        return name

    async def _call(self, work: Callable[[*Ts], T], *args: *Ts) -> T:
        """Run one blocking request in a worker thread; retry it while it fails transiently."""
        return await call_with_retries(
            partial(_mapped, work, *args),
            transient=_RetryableUnavailable,
            attempts=self.settings.retry_attempts,
            timeout=self.settings.retry_timeout,
            limiter=self._limiter,
        )

    # The methods below run in worker threads.

    def _create_bucket(self, name: str) -> None:
        bucket = self._client.bucket(name)
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        bucket.iam_configuration.public_access_prevention = "enforced"
        if self.settings.soft_delete_retention_seconds is not None:
            policy = bucket.soft_delete_policy
            policy.retention_duration_seconds = self.settings.soft_delete_retention_seconds
        # Conflict: another writer created it first (or it is ours already).
        with suppress(api_errors.Conflict):
            bucket.create(location=self.settings.location, retry=None, timeout=self._timeout)

    def _upload_small(self, bucket: str, blob: str, data: _Parcel) -> None:
        target = self._client.bucket(bucket).blob(blob)
        try:
            self._upload_string(target, data.data)
        except api_errors.NotFound:
            self._create_bucket(bucket)
            self._upload_string(target, data.data)

    def _upload_string(self, target: Any, data: bytes) -> None:
        target.upload_from_string(
            data, content_type=CONTENT_TYPE, checksum="crc32c", retry=None, timeout=self._timeout
        )

    def _open_session(self, bucket: str, blob: str) -> _Session:
        target = self._client.bucket(bucket).blob(blob)
        try:
            url = self._start_session(target)
        except api_errors.NotFound:
            self._create_bucket(bucket)
            url = self._start_session(target)
        return _Session(self._http, url, self._timeout)

    def _start_session(self, target: Any) -> str:
        url: str = target.create_resumable_upload_session(
            content_type=CONTENT_TYPE, size=None, checksum=None, retry=None, timeout=self._timeout
        )
        return url

    def _download(self, handle: Any, offset: int, length: int, received: _Parcel) -> None:
        try:
            received.data = handle.download_as_bytes(
                start=offset,
                end=offset + length - 1,
                raw_download=True,  # never transcode: the bytes are ciphertext
                checksum=None,  # whole-object digests do not cover a range; AEAD tags do
                retry=None,
                timeout=self._timeout,
            )
        except api_errors.RequestRangeNotSatisfiable:
            received.data = b""  # the range starts at or after the end of the blob

    def _size(self, bucket: str, blob: str) -> int:
        found = self._client.bucket(bucket).get_blob(blob, retry=None, timeout=self._timeout)
        if found is None:
            raise BlobNotFound()
        return int(found.size or 0)

    def _delete(self, bucket: str, blob: str) -> None:
        # NotFound: deleted already (perhaps by an earlier attempt whose answer was lost).
        with suppress(api_errors.NotFound):
            self._client.bucket(bucket).blob(blob).delete(retry=None, timeout=self._timeout)

    def _list_page(
        self, bucket: str, container: str, token: str | None
    ) -> tuple[_Infos, str | None]:
        listing = self._client.list_blobs(
            bucket,
            page_token=token,
            page_size=_LIST_PAGE_SIZE,
            fields=_LIST_FIELDS,
            retry=None,
            timeout=self._timeout,
        )
        try:
            page = next(listing.pages)
        except (api_errors.NotFound, StopIteration):
            return [], None  # no bucket yet: nothing was ever put in this container
        found = [
            BlobInfo(container, item.name, int(item.size or 0), _epoch(item.updated))
            for item in page
            # Objects someone else put in the bucket are not ours to report (or collect).
            if BLOB_PATTERN.fullmatch(item.name)
        ]
        return found, listing.next_page_token or None


class _Parcel:
    """Bytes passed to or from a worker thread, released by the caller after the call.

    An idle anyio worker thread keeps its last arguments and result alive until its next job
    (or for up to 10 s): passed directly, a piece would stay in memory once per idle thread.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    def take(self) -> bytes:
        data, self.data = self.data, b""
        return data


class _Pending:
    """Bytes received and not yet sent, kept as the chunks that brought them (no regrowing
    buffer: a piece is joined once, when it is cut)."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self.size = 0

    def add(self, chunk: bytes) -> None:
        if chunk:
            self._chunks.append(bytes(chunk))
            self.size += len(chunk)

    def take(self, size: int) -> bytes:
        """Remove and return the first ``size`` bytes (at most ``self.size``)."""
        taken: list[bytes] = []
        missing = min(size, self.size)
        self.size -= missing
        while missing:
            first = self._chunks.popleft()
            if len(first) > missing:
                self._chunks.appendleft(first[missing:])
                first = first[:missing]
            taken.append(first)
            missing -= len(first)
        return taken[0] if len(taken) == 1 else b"".join(taken)


class _Session:
    """One resumable upload session, driven from worker threads, one request at a time.

    ``persisted`` is what GCS holds; a piece is sent from there, so a retry after a failure
    (which first asks the session where it stands) neither repeats nor skips bytes.
    """

    def __init__(self, http: Any, url: str, timeout: tuple[float, float]) -> None:
        self._http = http
        self._url = url
        self._timeout = timeout
        self._crc: Any = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
        self._summed = 0
        self._unsure = False
        self.persisted = 0
        self.finished = False

    def send(self, parcel: _Parcel, start: int, final: bool) -> None:
        """Make GCS hold the parcel's bytes (from offset ``start``); ``final`` completes it."""
        piece = parcel.data
        end = start + len(piece)
        if self._summed == start:
            self._crc.update(piece)
            self._summed = end
        if self._unsure:  # an earlier attempt failed: GCS may hold part of it
            self._absorb(self._request(b"", {"Content-Range": "bytes */*"}), end)
        self._unsure = True
        while not self.finished:
            if self.persisted == end and not final:
                break
            if not start <= self.persisted <= end:
                raise BackendUnavailable("GCS reports a resumable upload offset we did not send")
            before = self.persisted
            data = piece[before - start :]
            total = str(end) if final else "*"
            headers = {
                "Content-Range": f"bytes {before}-{end - 1}/{total}" if data else f"bytes */{end}"
            }
            if final:
                digest = base64.b64encode(self._crc.digest()).decode("ascii")
                headers["X-Goog-Hash"] = f"crc32c={digest}"
            self._absorb(self._request(data, headers), end)
            if not self.finished and self.persisted <= before:
                raise _RetryableUnavailable("GCS accepted none of a resumable upload piece")
        self._unsure = False

    def cancel(self) -> None:
        """End the session without creating an object; best effort (it expires anyway)."""
        try:
            response = self._http.delete(self._url, timeout=self._timeout)
        except (
            requests.exceptions.RequestException,
            google.auth.exceptions.GoogleAuthError,
            OSError,
        ) as exc:
            _log.warning("could not cancel a GCS upload session: %s", type(exc).__name__)
            return
        if response.status_code not in _CANCELLED:
            # gcp-storage-emulator answers 501: it cannot cancel. The session never becomes a
            # blob and GCS drops it after a week.
            _log.warning("could not cancel a GCS upload session: HTTP %s", response.status_code)

    def _request(self, data: bytes, headers: dict[str, str]) -> Any:
        return self._http.put(
            self._url, data=data, headers=headers, timeout=self._timeout, allow_redirects=False
        )

    def _absorb(self, response: Any, end: int) -> None:
        status = response.status_code
        if status in (200, 201):
            self.finished = True
            self.persisted = end
            self._check_stored(response.json())
        elif status == 308:  # "resume incomplete": the Range header says what GCS holds
            self.persisted = _persisted(response.headers.get("Range"))
        elif status in (404, 410):
            raise BackendUnavailable("the GCS resumable upload session expired")
        else:
            raise api_errors.from_http_response(response)  # type: ignore[no-untyped-call]

    def _check_stored(self, resource: dict[str, Any]) -> None:
        stored = resource.get("crc32c")
        expected = base64.b64encode(self._crc.digest()).decode("ascii")
        if int(resource.get("size", self.persisted)) != self.persisted or (
            stored is not None and stored != expected
        ):
            # GCS itself refuses a mismatching X-Goog-Hash; this guards against anything else.
            raise BackendUnavailable("GCS stored other bytes than the backend sent")


@contextmanager
def _map_errors() -> Iterator[None]:
    """The one translation point from google-cloud-storage errors to the blindstore tree."""
    try:
        yield
    except BlindstoreError:
        raise
    except api_errors.NotFound as exc:
        raise BlobNotFound() from exc
    except (
        api_errors.Unauthorized,
        api_errors.Forbidden,
        google.auth.exceptions.RefreshError,
    ) as exc:
        if getattr(exc, "retryable", False):  # the token endpoint failed, not our credentials
            raise _RetryableUnavailable("GCS token refresh failed") from exc
        _log.error(
            "GCS refused the backend's credentials (%s): check the credentials and the "
            "service account's roles on the bucket",
            exc,
        )
        raise BackendUnavailable("GCS refused the credentials") from exc
    except api_errors.GoogleAPICallError as exc:
        if exc.code in _TRANSIENT_STATUS:
            raise _RetryableUnavailable(f"GCS unavailable: HTTP {exc.code}") from exc
        _log.error("GCS answered unexpectedly: %s", exc)
        raise BackendUnavailable() from exc
    except _TRANSIENT_TRANSPORT as exc:
        raise _RetryableUnavailable(f"GCS unreachable: {type(exc).__name__}") from exc
    except storage_errors.InvalidResponse as exc:
        _log.error("GCS answered unexpectedly: %s", exc)
        raise BackendUnavailable() from exc


def _mapped(work: Callable[[*Ts], T], *args: *Ts) -> T:
    with _map_errors():
        return work(*args)


def _credentials(settings: GcsBackendSettings) -> tuple[Credentials, str]:
    """The credentials the settings name, and the project buckets are created in."""
    project = settings.project
    credentials: Credentials
    try:
        if settings.credentials_file is not None:
            key = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(settings.credentials_file), scopes=storage.Client.SCOPE
            )
            credentials, project = key, project or key.project_id
        elif settings.use_default_credentials:
            credentials, found = google.auth.default(scopes=storage.Client.SCOPE)
            project = project or found
        else:
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
            project = project or "blindstore"  # an emulator accepts any project
    except OSError as exc:
        raise ConfigError(
            f"cannot read the GCS credentials file {settings.credentials_file}: {exc.strerror}"
        ) from exc
    except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise ConfigError(f"no usable GCS credentials: {exc}") from exc
    if not project:
        raise ConfigError("the GCS backend needs a project: set project")
    return credentials, project


def _persisted(header: str | None) -> int:
    """Bytes a session holds, from a 308's ``Range: bytes=0-N`` (absent: none yet)."""
    if header is None:
        return 0
    match = _SESSION_RANGE.fullmatch(header.strip())
    if match is None:
        raise BackendUnavailable("GCS sent an unreadable resumable upload range")
    return int(match.group(1)) + 1


def _epoch(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


__all__ = ["CHUNK_MULTIPLE", "CONTENT_TYPE", "GcsBackend", "GcsBackendSettings"]
