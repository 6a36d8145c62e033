"""The S3 backend (boto3): AWS S3 and any S3-compatible store (SeaweedFS, MinIO, Ceph RGW, ...).

Containers are buckets named ``bucket_prefix + container``, created on first put; blobs are
objects named by their blob id, always written ``application/octet-stream`` with no user
metadata and no tags (the gateway's catalog holds everything else).

- **put** buffers up to ``part_size``: a blob that fits is one ``PutObject``; a larger one is a
  multipart upload of ``part_size`` parts (the last shorter), one part uploading in a worker
  thread while the next is being filled, so memory stays at about ``2 × part_size`` plus one
  incoming chunk per put (plus ~2 MiB that botocore uses per request). Any failure or
  cancellation aborts the upload: nothing is visible until ``CompleteMultipartUpload``, and
  nothing is left pending after a failure. A put cancelled while its last request is on the
  wire may still leave the object (a thread cannot be interrupted): an orphan under a fresh id,
  which the garbage collector removes, as after a crash.
- **get** sends a native ``Range`` request and reads the body in ``READ_SIZE`` reads, each in a
  worker thread; a store that ignores ``Range`` is read and clipped here. The request is
  retried; a body that breaks off midway is not resumed (the read fails, the client retries).
- **list** pages through ``ListObjectsV2`` (one continuation token per call, so that a failed
  page can be retried alone).

botocore is blocking: every call runs in a worker thread, bounded by a capacity limiter of
``max_concurrency`` (also the size of botocore's connection pool). botocore's own retries are
off; transient failures (connection errors, timeouts, 5xx, throttling) of idempotent calls (get,
head, delete, list, a buffered PutObject, each UploadPart) are retried here with ``stamina``.
botocore exceptions are translated once, in ``_map_errors``: missing key → ``BlobNotFound``;
unreachable, timed out, 5xx, throttled, refused credentials → ``BackendUnavailable``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import anyio
import anyio.to_thread
import boto3
import botocore.exceptions
from anyio.abc import TaskGroup
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from blindstore.backends._threads import call_with_retries
from blindstore.backends.base import BlobInfo
from blindstore.backends.ids import BLOB_PATTERN, check_blob, check_container, check_range
from blindstore.errors import BackendUnavailable, BlindstoreError, BlobNotFound, ConfigError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_log = logging.getLogger(__name__)
_SESSION_LOCK = threading.Lock()

T = TypeVar("T")
# The name ``list`` is taken inside S3Backend by the Backend method.
_Infos = list[BlobInfo]
_Parts = list[tuple[int, str]]

MiB: Final = 1024 * 1024
#: S3's smallest part (all but the last) and largest part.
MIN_PART_SIZE: Final = 5 * MiB
MAX_PART_SIZE: Final = 5 * 1024 * MiB
#: Largest read from a GET body, and largest chunk ``get`` yields.
READ_SIZE: Final = 1 * MiB
CONTENT_TYPE: Final = "application/octet-stream"
_MAX_BUCKET_NAME: Final = 63
_FORBIDDEN_PREFIXES: Final = ("xn--", "sthree-", "amzn-s3-demo-")

# Error codes as S3 and the common S3-compatible stores spell them.
_NOT_FOUND: Final = frozenset({"NoSuchKey", "NotFound", "404"})
_NO_BUCKET: Final = frozenset({"NoSuchBucket"})
_TRANSIENT: Final = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "OperationAborted",
    }
)
_DENIED: Final = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "InvalidSecurity",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)
_NO_CREDENTIALS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
    botocore.exceptions.TokenRetrievalError,
    botocore.exceptions.SSOError,
)
# Connection refused/reset, DNS, TLS, connect and read timeouts, truncated bodies.
_UNREACHABLE = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.IncompleteReadError,
    OSError,
)


class S3BackendSettings(BaseModel):
    """How to reach one S3 (or S3-compatible) store.

    Credentials: ``access_key`` + ``secret_key`` (+ ``session_token``), else the named
    ``profile``, else boto3's standard chain (environment, shared files, container/instance
    roles). ``endpoint_url`` None means AWS itself. ``bucket_prefix`` is prepended to every
    container name, so that operators can recognise the gateway's buckets (the names themselves
    stay random); with tenant containers of 29 characters a prefix of up to 30 keeps every
    name within S3's 63. Memory per concurrent put ≈ ``2 × part_size`` + one chunk + ~2 MiB
    (botocore); per get ``READ_SIZE``; threads and connections ≤ ``max_concurrency``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint_url: str | None = None
    region: str = "us-east-1"
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    access_key: str | None = None
    secret_key: SecretStr | None = None
    session_token: SecretStr | None = None
    profile: str | None = None
    bucket_prefix: str = Field("", pattern=r"^(?:[a-z0-9][a-z0-9-]{0,29})?$")
    part_size: int = Field(8 * MiB, ge=MIN_PART_SIZE, le=MAX_PART_SIZE)
    max_concurrency: int = Field(8, ge=1, le=256)
    #: Objects per ``ListObjectsV2`` call (S3 answers at most 1000).
    list_page_size: int = Field(1000, ge=1, le=1000)
    verify_tls: bool = True
    ca_bundle: Path | None = None
    connect_timeout_seconds: float = Field(5.0, gt=0)
    read_timeout_seconds: float = Field(60.0, gt=0)
    #: Attempts (first included) for idempotent calls that fail transiently, within a deadline.
    retry_attempts: int = Field(3, ge=1, le=10)
    retry_timeout_seconds: float = Field(20.0, gt=0)
    #: "when_required" for older S3-compatible stores that reject botocore's default CRC
    #: checksums on uploads (our ciphertext is authenticated anyway; the checksum catches
    #: corruption in transit at write time rather than at read time).
    checksums: Literal["when_supported", "when_required"] = "when_supported"

    @field_validator("bucket_prefix")
    @classmethod
    def _allowed_prefix(cls, value: str) -> str:
        if value.startswith(_FORBIDDEN_PREFIXES):
            raise ValueError(f"bucket names may not start with {', '.join(_FORBIDDEN_PREFIXES)}")
        return value

    @model_validator(mode="after")
    def _one_credential_source(self) -> S3BackendSettings:
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("give access_key and secret_key together")
        if self.session_token is not None and self.access_key is None:
            raise ValueError("session_token needs access_key and secret_key")
        if self.profile is not None and self.access_key is not None:
            raise ValueError("give either a profile or an access key, not both")
        return self


class _BucketMissing(BlobNotFound):
    """The bucket does not exist (yet): create it on put, an empty listing on list."""


class _Transient(BackendUnavailable):
    """A failure worth retrying: unreachable, timed out, 5xx, throttled."""


class S3Backend:
    """Blobs as objects in per-container buckets of one S3 endpoint."""

    def __init__(self, settings: S3BackendSettings | None = None, name: str = "s3") -> None:
        self.name = name
        self.settings = settings or S3BackendSettings()
        self._client: S3Client = _make_client(self.settings)
        self._limiter = anyio.CapacityLimiter(self.settings.max_concurrency)

    # ------------------------------------------------------------------ Backend protocol

    async def put(self, container: str, blob: str, chunks: AsyncIterator[bytes]) -> int:
        """Store ``chunks`` as one object, atomically; return the number of bytes stored."""
        bucket = self._bucket(container)
        check_blob(blob)
        part_size = self.settings.part_size
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) > part_size:
                return await self._put_multipart(bucket, blob, buffer, chunks)
        # Everything fit in one part: a single request, retried as a whole if need be.
        body = _Body(bytes(buffer))
        del buffer[:]
        try:
            await self._with_bucket(bucket, functools.partial(self._put_object, bucket, blob, body))
        finally:
            body.release()
        return body.size

    async def get(
        self, container: str, blob: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Yield bytes ``[start, end)`` of the object, read ``READ_SIZE`` at a time."""
        check_range(start, end)
        bucket = self._bucket(container)
        check_blob(blob)
        if end == start:
            # An empty range cannot be asked of S3; still say whether the blob exists.
            await self.size(container, blob)
            return
        reader = await self._call(
            functools.partial(self._open, bucket, blob, start, end), retry=True
        )
        try:
            if reader.first:
                yield reader.first
            while not reader.done:
                yield await self._call(reader.read_next, retry=False)
        finally:
            reader.close()

    async def size(self, container: str, blob: str) -> int:
        """Size in bytes of a stored object (``HeadObject``); ``BlobNotFound`` if absent."""
        bucket = self._bucket(container)
        check_blob(blob)
        head = await self._call(
            functools.partial(self._client.head_object, Bucket=bucket, Key=blob), retry=True
        )
        return head["ContentLength"]

    async def delete(self, container: str, blob: str) -> None:
        """Remove an object; a missing object or bucket is not an error."""
        bucket = self._bucket(container)
        check_blob(blob)
        with suppress(BlobNotFound):
            await self._call(
                functools.partial(self._client.delete_object, Bucket=bucket, Key=blob), retry=True
            )

    async def list(self, container: str) -> AsyncIterator[BlobInfo]:
        """Every complete object of the container's bucket that has a blob id for a name."""
        bucket = self._bucket(container)
        token: str | None = None
        while True:
            try:
                infos, token = await self._call(
                    functools.partial(self._list_page, container, bucket, token), retry=True
                )
            except _BucketMissing:
                return
            for info in infos:
                yield info
            if token is None:
                return

    async def close(self) -> None:
        """Close botocore's connection pool."""
        await anyio.to_thread.run_sync(self._client.close)

    # ------------------------------------------------------------------ multipart

    async def _put_multipart(
        self, bucket: str, blob: str, buffer: bytearray, chunks: AsyncIterator[bytes]
    ) -> int:
        part_size = self.settings.part_size
        # Retried like the idempotent calls: at worst a retry after a lost answer leaves one
        # empty upload pending (invisible; removed by the bucket's lifecycle rule), where not
        # retrying would fail the put on every network blip.
        upload_id = await self._with_bucket(
            bucket, functools.partial(self._create_upload, bucket, blob)
        )
        total = 0
        try:
            failure: Exception | None = None
            async with anyio.create_task_group() as tg:
                pipeline = _PartPipeline(
                    tg, functools.partial(self._upload_part, bucket, blob, upload_id)
                )
                try:
                    while True:
                        while len(buffer) > part_size:
                            rest = buffer[part_size:]
                            del buffer[part_size:]
                            total += len(buffer)
                            await pipeline.send(buffer)
                            buffer = rest
                        chunk = await anext(chunks, None)
                        if chunk is None:
                            break
                        buffer += chunk
                    if buffer:
                        total += len(buffer)
                        await pipeline.send(buffer)
                    parts = await pipeline.finish()
                except Exception as exc:
                    # Raised after the task group, not from it: callers see this exception
                    # itself rather than an ExceptionGroup around it.
                    failure = exc
                    tg.cancel_scope.cancel()
            if failure is not None:
                raise failure
            await self._call(
                functools.partial(self._complete_upload, bucket, blob, upload_id, parts),
                retry=False,
            )
        except BaseException:
            # Also on cancellation: no part may outlive a put that did not complete.
            with anyio.CancelScope(shield=True):
                await self._abort_upload(bucket, blob, upload_id)
            raise
        return total

    async def _upload_part(
        self, bucket: str, blob: str, upload_id: str, number: int, data: bytes
    ) -> str:
        body = _Body(data)
        try:
            return await self._call(
                functools.partial(self._send_part, bucket, blob, upload_id, number, body),
                retry=True,
            )
        finally:
            body.release()

    async def _abort_upload(self, bucket: str, blob: str, upload_id: str) -> None:
        try:
            await self._call(
                functools.partial(
                    self._client.abort_multipart_upload, Bucket=bucket, Key=blob, UploadId=upload_id
                ),
                retry=True,
            )
        except BlobNotFound:
            pass  # NoSuchUpload: already gone
        except BlindstoreError as exc:
            # The parts stay invisible; a lifecycle rule (AbortIncompleteMultipartUpload) on the
            # bucket removes them eventually.
            _log.warning("S3 backend: could not abort a multipart upload: %s", exc.message)

    # ------------------------------------------------------------------ worker-thread calls

    def _put_object(self, bucket: str, blob: str, body: _Body) -> None:
        self._client.put_object(Bucket=bucket, Key=blob, Body=body.data, ContentType=CONTENT_TYPE)

    def _send_part(self, bucket: str, blob: str, upload_id: str, number: int, body: _Body) -> str:
        response = self._client.upload_part(
            Bucket=bucket, Key=blob, UploadId=upload_id, PartNumber=number, Body=body.data
        )
        return response["ETag"]

    def _create_upload(self, bucket: str, blob: str) -> str:
        response = self._client.create_multipart_upload(
            Bucket=bucket, Key=blob, ContentType=CONTENT_TYPE
        )
        return response["UploadId"]

    def _complete_upload(self, bucket: str, blob: str, upload_id: str, parts: _Parts) -> None:
        self._client.complete_multipart_upload(
            Bucket=bucket,
            Key=blob,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]},
        )

    def _create_bucket(self, bucket: str) -> None:
        try:
            if self.settings.region == "us-east-1":
                self._client.create_bucket(Bucket=bucket)  # S3 refuses us-east-1 as a constraint
            else:
                # Any: the stubs list AWS's regions only; S3-compatible stores have their own.
                location: Any = {"LocationConstraint": self.settings.region}
                self._client.create_bucket(Bucket=bucket, CreateBucketConfiguration=location)
        except botocore.exceptions.ClientError as exc:
            code = _error_code(exc)
            if code == "BucketAlreadyOwnedByYou":
                return  # another put created it first
            if code == "BucketAlreadyExists":
                _log.error(
                    "S3 backend: bucket %s belongs to another account; choose a bucket_prefix",
                    bucket,
                )
                raise BackendUnavailable(f"bucket {bucket} is owned by another account") from exc
            raise

    def _open(self, bucket: str, blob: str, start: int, end: int | None) -> _Reader:
        """Send the GET and read the first block."""
        extra: dict[str, Any] = {}
        if start or end is not None:
            last = "" if end is None else str(end - 1)
            extra["Range"] = f"bytes={start}-{last}"
        try:
            response = self._client.get_object(Bucket=bucket, Key=blob, **extra)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) == "InvalidRange":
                return _Reader(None, 0, 0, exact=False)  # starts at or past the end
            raise
        length = response["ContentLength"]
        if not extra or response.get("ContentRange"):
            reader = _Reader(response["Body"], 0, length, exact=True)
        else:
            # The store ignored Range and sent the whole object: skip and clip here.
            stop = length if end is None else min(end, length)
            reader = _Reader(response["Body"], start, max(0, stop - start), exact=stop == length)
        try:
            reader.first = reader.read_next()
        except BaseException:
            reader.close()
            raise
        return reader

    def _list_page(
        self, container: str, bucket: str, token: str | None
    ) -> tuple[_Infos, str | None]:
        extra: dict[str, Any] = {} if token is None else {"ContinuationToken": token}
        page = self._client.list_objects_v2(
            Bucket=bucket, MaxKeys=self.settings.list_page_size, **extra
        )
        infos = [
            BlobInfo(container, item["Key"], item["Size"], item["LastModified"].timestamp())
            for item in page.get("Contents", [])
            if BLOB_PATTERN.fullmatch(item["Key"])  # anything else was not written by us
        ]
        following = page.get("NextContinuationToken") if page.get("IsTruncated") else None
        return infos, following

    # ------------------------------------------------------------------ plumbing

    def _bucket(self, container: str) -> str:
        check_container(container)
        bucket = self.settings.bucket_prefix + container
        if len(bucket) > _MAX_BUCKET_NAME:
            raise BlindstoreError("Invalid container name: too long with the bucket prefix.")
        return bucket

    async def _with_bucket(self, bucket: str, work: Callable[[], T]) -> T:
        """Run ``work``; if the bucket does not exist, create it and run ``work`` again."""
        try:
            return await self._call(work, retry=True)
        except _BucketMissing:
            await self._call(functools.partial(self._create_bucket, bucket), retry=True)
        try:
            return await self._call(work, retry=True)
        except _BucketMissing as exc:
            # Not a missing blob: the bucket vanished again (deleted by someone else?).
            raise BackendUnavailable(f"bucket {bucket} missing right after creation") from exc

    async def _call(self, work: Callable[[], T], *, retry: bool) -> T:
        """Run a blocking botocore call in a worker thread, errors translated, maybe retried."""
        try:
            if not retry:
                return await anyio.to_thread.run_sync(_mapped, work, limiter=self._limiter)
            return await call_with_retries(
                partial(_mapped, work),
                transient=_Transient,
                attempts=self.settings.retry_attempts,
                timeout=self.settings.retry_timeout_seconds,
                limiter=self._limiter,
            )
        except _Transient as exc:
            _log.warning("S3 backend unavailable: %s", exc.message)
            # The public class only: "retry me" means nothing outside this module.
            raise BackendUnavailable(exc.message) from exc
        raise AssertionError("unreachable")  # the loop returns or raises


class _PartPipeline:
    """Uploads one part in the background while the caller fills the next one.

    ``send`` waits for the previous part first, so at most one part is in flight. The
    background task never raises: its error is kept and re-raised by the next ``send`` or by
    ``finish``, in the caller's task.
    """

    def __init__(self, tg: TaskGroup, upload: Callable[[int, bytes], Awaitable[str]]) -> None:
        self._tg = tg
        self._upload = upload
        self._parts: _Parts = []
        self._idle = anyio.Event()
        self._idle.set()
        self._error: Exception | None = None

    async def send(self, buffer: bytearray) -> None:
        """Start uploading ``buffer`` as the next part once the previous one is uploaded."""
        await self._wait()
        # Copied only now, with the previous part gone: memory stays at two parts.
        data = bytes(buffer)
        del buffer[:]
        self._idle = anyio.Event()
        self._tg.start_soon(self._run, len(self._parts) + 1, data)

    async def finish(self) -> _Parts:
        """Every part's (number, ETag), once the last one is uploaded."""
        await self._wait()
        return self._parts

    async def _wait(self) -> None:
        await self._idle.wait()
        if self._error is not None:
            raise self._error

    async def _run(self, number: int, data: bytes) -> None:
        try:
            self._parts.append((number, await self._upload(number, data)))
        except Exception as exc:
            self._error = exc
        finally:
            self._idle.set()


class _Body:
    """The bytes of one request body, dropped by ``release`` as soon as the call is over.

    A worker thread may keep the arguments of its last call alive for a while after it
    returns; they hold this wrapper, not the part, so memory stays at two parts.
    """

    __slots__ = ("data", "size")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def release(self) -> None:
        self.data = b""


@dataclass(slots=True)
class _Reader:
    """A GET response body and what is left to read of it (reads run in worker threads).

    ``exact``: the body ends where our range ends. Reading it to its end then hands the
    connection back to botocore's pool (and checks Content-Length), where closing a body with
    bytes left would drop the connection.
    """

    body: Any
    skip: int
    remaining: int
    exact: bool
    first: bytes = b""

    @property
    def done(self) -> bool:
        return self.body is None

    def read_next(self) -> bytes:
        """The next block; the body is released once the range is read."""
        while self.skip:
            skipped = self.body.read(min(self.skip, READ_SIZE))
            if not skipped:
                break
            self.skip -= len(skipped)
        data: bytes = self.body.read(min(READ_SIZE, self.remaining)) if self.remaining else b""
        self.remaining -= len(data)
        if not data and self.remaining:
            raise _Transient("S3 backend: the response body ended early")
        if not self.remaining:
            self.close()
        return data

    def close(self) -> None:
        if self.body is None:
            return
        body, self.body = self.body, None
        try:
            if self.exact and not self.remaining:
                body.read()  # at the end already: returns b"" and releases the connection
        finally:
            body.close()


def _mapped(work: Callable[[], T]) -> T:
    with _map_errors():
        return work()


@contextmanager
def _map_errors() -> Iterator[None]:
    """The one translation point from botocore exceptions to the blindstore error tree."""
    try:
        yield
    except BlindstoreError:
        raise
    except botocore.exceptions.ClientError as exc:
        code, status = _error_code(exc), _status(exc)
        if code in _NO_BUCKET:
            raise _BucketMissing() from exc
        if code in _NOT_FOUND or code == "NoSuchUpload" or status == 404:
            raise BlobNotFound() from exc
        if code in _DENIED or status in (401, 403):
            _log.error(
                "S3 backend refused the request (%s): check the credentials, their permissions "
                "and the clock",
                code,
            )
            raise BackendUnavailable(f"S3 backend refused access: {code}") from exc
        if code in _TRANSIENT or status >= 500 or status == 429:
            raise _Transient(f"S3 backend error {code} (HTTP {status})") from exc
        _log.error("S3 backend rejected a request: %s (HTTP %s)", code, status)
        raise BlindstoreError(f"S3 backend rejected a request: {code}") from exc
    except _NO_CREDENTIALS as exc:
        _log.error("S3 backend: no usable credentials: %s", exc)
        raise BackendUnavailable("S3 backend: no usable credentials") from exc
    except _UNREACHABLE as exc:
        raise _Transient(f"S3 backend unreachable: {type(exc).__name__}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        _log.error("S3 backend call failed: %s", exc)
        raise BlindstoreError(f"S3 backend call failed: {type(exc).__name__}") from exc


def _error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _make_client(settings: S3BackendSettings) -> S3Client:
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    token = settings.session_token.get_secret_value() if settings.session_token else None
    try:
        with _SESSION_LOCK:
            session = _session(settings.profile)
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigError(f"S3 backend: AWS profile {settings.profile!r} not found") from exc
    options: dict[str, Any] = {}
    if settings.addressing_style != "auto":
        options["s3"] = {"addressing_style": settings.addressing_style}
    if settings.checksums == "when_required":
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    config = Config(
        region_name=settings.region,
        signature_version="s3v4",
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        # One attempt: retries happen in S3Backend._call, for idempotent calls only.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=settings.max_concurrency,
        tcp_keepalive=True,
        **options,
    )
    verify: bool | str = str(settings.ca_bundle) if settings.ca_bundle else settings.verify_tls
    with _SESSION_LOCK:  # a boto3 session is not thread-safe, even to make clients
        client: S3Client = session.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=config,
            verify=verify,
        )
    return client


@functools.cache
def _session(profile: str | None) -> boto3.session.Session:
    """One boto3 session per profile, shared: a session loads botocore's S3 model (~50 ms)
    once for every client made from it. Explicit keys are given to each client instead."""
    return boto3.session.Session(profile_name=profile)


__all__ = ["READ_SIZE", "S3Backend", "S3BackendSettings"]
