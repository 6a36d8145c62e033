"""``blindstore.Client``: the S3 data plane (thin over boto3) and the admin plane, in one object.

Importing this module is cheap: boto3 is imported when the first S3 call needs it, so an
admin-only script (or the CLI, which imports ``blindstore``) never loads it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, overload
from urllib.parse import urlencode

from blindstore.sdk.admin import AdminOperations
from blindstore.sdk.errors import APIError, from_botocore
from blindstore.sdk.types import (
    SUBJECT_HEADER,
    ListedObject,
    ObjectInfo,
    ObjectPage,
    Provenance,
)

if TYPE_CHECKING:
    import ssl

    from mypy_boto3_s3 import S3Client

#: Part size and parallelism of ``upload_file``/``download_file`` (boto3's transfer manager).
PART_SIZE = 16 * 1024 * 1024
MAX_CONCURRENCY = 4
#: Chunk size when streaming a GET to a file.
CHUNK = 1024 * 1024

ProvenanceLike = Provenance | Mapping[str, Any]
Data = bytes | bytearray | memoryview | str | IO[bytes]

#: Extra request headers of the S3 call being made in this context (subject, provenance):
#: added just before signing, so that they are signed like any header.
_extra_headers: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "blindstore_extra_headers", default=None
)


def _add_extra_headers(request: Any, **_kwargs: Any) -> None:
    for name, value in (_extra_headers.get() or {}).items():
        request.headers[name] = value


class Client(AdminOperations):
    """A blindstore gateway: its S3 endpoint with a tenant's keys, and optionally its admin
    plane with the admin token.

    >>> client = Client("http://127.0.0.1:9000", "BS...", "secret", admin_token="...")
    >>> client.put_object("scans", "DUPONT/IRM.dcm", b"...", subject="patient-8c1f")

    ``verify``: TLS certificate verification (False: off, a path: that CA bundle). Retries
    (standard mode, ``max_attempts``) and timeouts apply to the S3 calls; admin calls are not
    retried (they change state).
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        *,
        region: str = "us-east-1",
        admin_token: str | None = None,
        verify: bool | str = True,
        timeout: float = 60.0,
        max_attempts: int = 5,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self.admin_token = admin_token
        self.verify = verify
        self.timeout = timeout
        self._access_key = access_key
        self._secret_key = secret_key
        self._max_attempts = max_attempts
        self._s3: S3Client | None = None

    def __repr__(self) -> str:
        return f"Client({self.endpoint!r}, access_key={self._access_key!r})"

    # -- the boto3 client --------------------------------------------------------------------

    @property
    def s3(self) -> S3Client:
        """The underlying boto3 S3 client (path-style, SigV4), for anything not wrapped here."""
        if self._s3 is None:
            self._s3 = self._new_s3()
            self._s3.meta.events.register_first("before-sign.s3", _add_extra_headers)
        return self._s3

    def _new_s3(self) -> S3Client:
        if self._access_key is None or self._secret_key is None:
            raise ValueError("S3 calls need an access key and a secret key")
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self._access_key,
            aws_secret_access_key=self._secret_key,
            region_name=self.region,
            verify=self.verify,
            config=Config(
                signature_version="s3v4",
                # Bucket names are not DNS names of the gateway.
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "max_attempts": self._max_attempts},
                connect_timeout=min(self.timeout, 10.0),
                read_timeout=self.timeout,
                # CRC checksums on uploads (aws-chunked trailers) and checked on downloads:
                # the gateway verifies and stores them, end to end.
                request_checksum_calculation="when_supported",
                response_checksum_validation="when_supported",
            ),
        )

    @contextlib.contextmanager
    def _calling(self, headers: Mapping[str, str] | None = None) -> Iterator[None]:
        """Translate boto3's errors; add ``headers`` to the requests made inside."""
        from botocore.exceptions import BotoCoreError, ClientError

        token = _extra_headers.set(dict(headers or {}))
        try:
            yield
        except ClientError as exc:
            raise from_botocore(exc) from exc
        except BotoCoreError as exc:
            raise from_botocore(exc) from exc
        finally:
            _extra_headers.reset(token)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.endpoint.startswith("https:"):
            return None
        import ssl

        if self.verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if isinstance(self.verify, str):
            return ssl.create_default_context(cafile=self.verify)
        return ssl.create_default_context()

    # -- buckets -----------------------------------------------------------------------------

    def create_bucket(self, bucket: str) -> None:
        with self._calling():
            self.s3.create_bucket(Bucket=bucket)

    def delete_bucket(self, bucket: str) -> None:
        """Delete an empty bucket (``ConflictError`` BucketNotEmpty otherwise)."""
        with self._calling():
            self.s3.delete_bucket(Bucket=bucket)

    def list_buckets(self) -> list[str]:
        with self._calling():
            return [b["Name"] for b in self.s3.list_buckets().get("Buckets", [])]

    # -- objects -----------------------------------------------------------------------------

    def put_object(
        self,
        bucket: str,
        key: str,
        data: Data,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        subject: str | None = None,
        provenance: ProvenanceLike | None = None,
    ) -> str:
        """Store an object (bytes, text as UTF-8, or a binary file object read to its end);
        its ETag. ``subject`` names the data subject (patient): the object is then wrapped
        under that subject's own key, so it can be crypto-shredded alone. ``provenance``:
        origin system, consent reference, legal basis, retention date."""
        body = data.encode() if isinstance(data, str) else data
        args: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body}
        args.update(_object_args(content_type, metadata, tags))
        with self._calling(_write_headers(subject, provenance)):
            answer = self.s3.put_object(**args)
        return answer["ETag"].strip('"')

    @overload
    def get_object(self, bucket: str, key: str, *, range: str | None = None) -> bytes: ...

    @overload
    def get_object(
        self,
        bucket: str,
        key: str,
        *,
        to: str | os.PathLike[str] | IO[bytes],
        range: str | None = None,
    ) -> ObjectInfo: ...

    def get_object(
        self,
        bucket: str,
        key: str,
        *,
        to: str | os.PathLike[str] | IO[bytes] | None = None,
        range: str | None = None,
    ) -> bytes | ObjectInfo:
        """The object's bytes; or, with ``to`` (a path or a binary file object), stream them
        there and return the object's metadata. ``range``: an HTTP range (``bytes=0-99``)."""
        args: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if range is not None:
            args["Range"] = range
        with self._calling():
            answer = self.s3.get_object(**args)
            stream = answer["Body"]
            try:
                if to is None:
                    return stream.read()
                if isinstance(to, str | os.PathLike):
                    with open(to, "wb") as sink:
                        for chunk in stream.iter_chunks(CHUNK):
                            sink.write(chunk)
                else:
                    for chunk in stream.iter_chunks(CHUNK):
                        to.write(chunk)
            finally:
                stream.close()
        return _info(bucket, key, answer, size=answer.get("ContentLength", 0))

    def head_object(self, bucket: str, key: str) -> ObjectInfo:
        """An object's metadata, provenance included; ``NotFoundError`` if absent."""
        with self._calling():
            answer = self.s3.head_object(Bucket=bucket, Key=key)
        return _info(bucket, key, answer, size=answer.get("ContentLength", 0))

    def delete_object(self, bucket: str, key: str) -> None:
        """Delete an object (no error if it is already gone, as in S3)."""
        with self._calling():
            self.s3.delete_object(Bucket=bucket, Key=key)

    def list_objects(
        self, bucket: str, *, prefix: str = "", delimiter: str = "", page_size: int = 1000
    ) -> Iterator[ObjectPage]:
        """The bucket's objects in key order, a page at a time (ListObjectsV2)."""
        args: dict[str, Any] = {"Bucket": bucket, "MaxKeys": page_size}
        if prefix:
            args["Prefix"] = prefix
        if delimiter:
            args["Delimiter"] = delimiter
        while True:
            with self._calling():
                answer = self.s3.list_objects_v2(**args)
            yield ObjectPage(
                objects=[
                    ListedObject(
                        key=o["Key"],
                        size=o.get("Size", 0),
                        etag=o.get("ETag", "").strip('"'),
                        last_modified=o.get("LastModified"),
                    )
                    for o in answer.get("Contents", [])
                ],
                prefixes=[p["Prefix"] for p in answer.get("CommonPrefixes", [])],
            )
            if not answer.get("IsTruncated"):
                return
            args["ContinuationToken"] = answer["NextContinuationToken"]

    # -- files (multipart through boto3's transfer manager) ----------------------------------

    def upload_file(
        self,
        path: str | os.PathLike[str],
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        subject: str | None = None,
        provenance: ProvenanceLike | None = None,
        part_size: int = PART_SIZE,
        max_concurrency: int = MAX_CONCURRENCY,
    ) -> None:
        """Upload a file; multipart, parts in parallel, above ``part_size``."""
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig

        headers = _write_headers(subject, provenance)
        # The transfer manager calls S3 from its own threads, where this context's headers
        # are not visible: a client of its own carries them on every write instead.
        client = self._client_with(headers) if headers else self.s3
        config = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=max_concurrency,
        )
        try:
            with self._calling():
                client.upload_file(
                    str(Path(path)),
                    bucket,
                    key,
                    ExtraArgs=_object_args(content_type, metadata, tags),
                    Config=config,
                )
        except S3UploadFailedError as exc:
            cause = exc.__cause__
            raise from_botocore(cause if isinstance(cause, Exception) else exc) from exc

    def download_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike[str],
        *,
        part_size: int = PART_SIZE,
        max_concurrency: int = MAX_CONCURRENCY,
    ) -> None:
        """Download an object to a file; ranged GETs in parallel above ``part_size``."""
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=max_concurrency,
        )
        with self._calling():
            self.s3.download_file(bucket, key, str(Path(path)), Config=config)

    def _client_with(self, headers: Mapping[str, str]) -> S3Client:
        client = self._new_s3()
        fixed = dict(headers)

        def add(request: Any, **_kwargs: Any) -> None:
            for name, value in fixed.items():
                request.headers[name] = value

        for operation in ("PutObject", "CreateMultipartUpload"):
            client.meta.events.register_first(f"before-sign.s3.{operation}", add)
        return client


def _object_args(
    content_type: str | None, metadata: Mapping[str, str] | None, tags: Mapping[str, str] | None
) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if content_type is not None:
        args["ContentType"] = content_type
    if metadata:
        args["Metadata"] = dict(metadata)
    if tags:
        args["Tagging"] = urlencode(dict(tags))
    return args


def _write_headers(subject: str | None, provenance: ProvenanceLike | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if subject is not None:
        headers[SUBJECT_HEADER] = subject
    if provenance is not None:
        stated = provenance if isinstance(provenance, Provenance) else Provenance(**provenance)
        headers.update(stated.headers())
    return headers


def _info(bucket: str, key: str, answer: Mapping[str, Any], *, size: int) -> ObjectInfo:
    http_headers: Mapping[str, str] = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=int(size),
        etag=str(answer.get("ETag", "")).strip('"'),
        last_modified=answer.get("LastModified"),
        content_type=answer.get("ContentType"),
        metadata=dict(answer.get("Metadata", {})),
        provenance=Provenance.from_headers(http_headers),
    )


__all__ = ["APIError", "Client"]
