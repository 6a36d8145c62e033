"""One function per S3 operation: request → gateway call → Response. No business logic here."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING

from blindstore import provenance
from blindstore.catalog.base import ObjectRecord
from blindstore.config import Settings
from blindstore.errors import (
    BlindstoreError,
    InvalidArgument,
    InvalidEncodingType,
    InvalidRequest,
    MalformedXML,
    NotImplementedOperation,
)
from blindstore.gateway import Gateway, Principal, WriteMeta
from blindstore.s3 import ranges, validate, xml
from blindstore.s3.conditions import Conditions, parse_http_date
from blindstore.server.body import drain
from blindstore.server.responses import Response
from blindstore.server.wire import AuthContext, request_body
from blindstore.subjects import SUBJECT_HEADER, check_subject_id

if TYPE_CHECKING:
    from blindstore.server.request import S3Request
    from blindstore.server.s3app import Receive

MAX_KEYS = 1000
#: Integer parameters are read up to this; a part number past 10000 must reach the range check,
#: not be clamped onto part 10000.
_INT_MAX = 2**31 - 1
#: The largest object a single PUT may carry (S3's limit).
MAX_PUT_SIZE = 5 * 1024**3

_RESPONSE_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}


@dataclass(slots=True)
class Context:
    request: S3Request
    principal: Principal
    auth: AuthContext
    gateway: Gateway
    settings: Settings
    receive: Receive
    request_id: str

    @property
    def bucket(self) -> str:
        return self.request.bucket

    @property
    def key(self) -> str:
        return self.request.key

    def query(self, name: str, default: str = "") -> str:
        return self.request.query.get(name, default)


def http_date(epoch: float) -> str:
    return formatdate(int(epoch), usegmt=True)


def _int_param(ctx: Context, name: str, default: int, *, lo: int = 0, hi: int = MAX_KEYS) -> int:
    raw = ctx.request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(
            f"Provided {name} not an integer or within integer range",
            ArgumentName=name,
            ArgumentValue=raw[:64],
        ) from None
    if value < lo:
        raise InvalidArgument(
            f"Argument {name} must be an integer between {lo} and 2147483647",
            ArgumentName=name,
            ArgumentValue=raw[:64],
        )
    return min(value, hi)


async def _document(ctx: Context, limit: int) -> bytes:
    """A request's XML document, read whole (at most ``limit`` bytes) and digest-checked.

    The caps are the XML module's (``xml.MAX_*_BODY``). A declared Content-Length over the cap
    is refused before the body is read, so a client waiting for 100 Continue never sends it.
    """
    declared = ctx.request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise MalformedXML()
    body = await drain(
        ctx.receive, limit, idle_timeout=ctx.settings.limits.body_idle_timeout_seconds
    )
    ctx.auth.check_small_body(body, ctx.request.headers)
    return body


def _write_conditions(ctx: Context) -> tuple[str | None, bool]:
    if_none_match = ctx.request.header("if-none-match")
    if if_none_match is not None and if_none_match.strip() != "*":
        raise NotImplementedOperation("If-None-Match on writes supports only '*'.")
    if_match = ctx.request.header("if-match")
    return (if_match.strip().strip('"') if if_match else None), if_none_match is not None


def _write_meta(ctx: Context) -> WriteMeta:
    headers = ctx.request.headers
    tagging = headers.get("x-amz-tagging")
    return WriteMeta(
        headers=validate.collect_system_headers(headers.items()),
        user_metadata=validate.collect_user_metadata(headers.items()),
        tags=validate.parse_tagging_header(tagging) if tagging else {},
        subject=_subject(ctx),
        provenance=provenance.parse_headers(ctx.request.headers.items()),
    )


def _subject(ctx: Context) -> str | None:
    """The data subject named by the request (never stored or echoed: see ``subjects``)."""
    subject = ctx.request.headers.get(SUBJECT_HEADER)
    return None if subject is None else check_subject_id(subject)


def _object_headers(
    record: ObjectRecord, ctx: Context, *, whole: bool = True
) -> list[tuple[str, str]]:
    """Headers of a GET/HEAD; checksums only when ``whole`` (S3 has none for a range or part)."""
    headers = [
        ("etag", f'"{record.etag}"'),
        ("last-modified", http_date(record.last_modified)),
        ("accept-ranges", "bytes"),
    ]
    system = dict(record.headers)
    system.setdefault("content-type", "binary/octet-stream")
    for param, header in _RESPONSE_OVERRIDES.items():
        override = ctx.request.query.get(param)
        if override is not None:
            system[header] = override
    headers.extend(system.items())
    headers.extend((f"x-amz-meta-{k}", v) for k, v in record.user_metadata.items())
    if record.tags:
        headers.append(("x-amz-tagging-count", str(len(record.tags))))
    headers.extend(provenance.response_headers(record.provenance, record.retention_until))
    if whole and ctx.request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        headers.extend((f"x-amz-checksum-{alg}", value) for alg, value in record.checksums.items())
    return headers


# ---------------------------------------------------------------------------- service, buckets


async def list_buckets(ctx: Context) -> Response:
    buckets = await ctx.gateway.list_buckets(ctx.principal)
    return Response.xml(
        xml.render_list_buckets(_owner(ctx), [xml.BucketEntry(b.name, b.created) for b in buckets])
    )


async def create_bucket(ctx: Context) -> Response:
    validate.check_bucket_name(ctx.bucket)
    body = await _document(ctx, xml.MAX_SMALL_BODY)
    location = xml.parse_create_bucket(body) or ctx.settings.s3.region
    await ctx.gateway.create_bucket(ctx.principal, ctx.bucket, location)
    return Response(headers=[("location", f"/{ctx.bucket}")])


async def head_bucket(ctx: Context) -> Response:
    bucket = await ctx.gateway.owned_bucket(ctx.principal, ctx.bucket)
    return Response(headers=[("x-amz-bucket-region", bucket.region)], head=True)


async def delete_bucket(ctx: Context) -> Response:
    await ctx.gateway.delete_bucket(ctx.principal, ctx.bucket)
    return Response(status=204)


async def get_bucket_location(ctx: Context) -> Response:
    bucket = await ctx.gateway.owned_bucket(ctx.principal, ctx.bucket)
    return Response.xml(xml.render_location_constraint(bucket.region))


async def get_bucket_versioning(ctx: Context) -> Response:
    await ctx.gateway.owned_bucket(ctx.principal, ctx.bucket)
    return Response.xml(_VERSIONING_UNSET)


async def list_objects(ctx: Context) -> Response:
    v2 = ctx.query("list-type") == "2"
    encoding = ctx.request.query.get("encoding-type")
    if encoding not in (None, "url"):
        raise InvalidEncodingType(ArgumentName="encoding-type", ArgumentValue=encoding[:64])
    prefix = ctx.query("prefix")
    delimiter = ctx.query("delimiter")
    max_keys = _int_param(ctx, "max-keys", MAX_KEYS)
    token = ctx.request.query.get("continuation-token")
    start_after = ctx.request.query.get("start-after")
    if v2:
        marker = _decode_token(token) if token is not None else (start_after or "")
        # A start-after past the continuation point still applies, as in S3.
        if start_after and start_after > marker:
            marker = start_after
    else:
        marker = ctx.query("marker")
    page = await ctx.gateway.list_objects(
        ctx.principal,
        ctx.bucket,
        prefix=prefix,
        delimiter=delimiter,
        start_after=marker,
        max_keys=max_keys,
    )
    contents = [xml.ObjectEntry(r.key, r.last_modified, r.etag, r.size) for r in page.objects]
    if v2:
        next_token = (
            _encode_token(page.next_marker) if page.truncated and page.next_marker else None
        )
        body = xml.render_list_objects_v2(
            bucket=ctx.bucket,
            prefix=prefix,
            max_keys=max_keys,
            is_truncated=page.truncated,
            contents=contents,
            common_prefixes=page.common_prefixes,
            delimiter=delimiter or None,
            continuation_token=token,
            next_continuation_token=next_token,
            start_after=start_after,
            encoding_url=encoding == "url",
            owner=_owner(ctx) if ctx.query("fetch-owner") == "true" else None,
        )
    else:
        body = xml.render_list_objects_v1(
            bucket=ctx.bucket,
            prefix=prefix,
            marker=marker,
            max_keys=max_keys,
            is_truncated=page.truncated,
            contents=contents,
            common_prefixes=page.common_prefixes,
            delimiter=delimiter or None,
            next_marker=page.next_marker if page.truncated and delimiter else None,
            encoding_url=encoding == "url",
            owner=_owner(ctx),
        )
    return Response.xml(body)


async def list_uploads(ctx: Context) -> Response:
    max_uploads = _int_param(ctx, "max-uploads", MAX_KEYS)
    prefix = ctx.query("prefix")
    key_marker = ctx.query("key-marker")
    upload_id_marker = ctx.query("upload-id-marker")
    page = await ctx.gateway.list_uploads(
        ctx.principal,
        ctx.bucket,
        prefix=prefix,
        key_marker=key_marker,
        upload_id_marker=upload_id_marker,
        max_uploads=max_uploads,
    )
    owner = _owner(ctx)
    last = page.uploads[-1] if page.uploads and page.truncated else None
    return Response.xml(
        xml.render_list_multipart_uploads(
            bucket=ctx.bucket,
            key_marker=key_marker,
            upload_id_marker=upload_id_marker,
            next_key_marker=last.key if last else "",
            next_upload_id_marker=last.upload_id if last else "",
            max_uploads=max_uploads,
            is_truncated=page.truncated,
            uploads=[
                xml.UploadEntry(u.key, u.upload_id, u.initiated, owner, owner) for u in page.uploads
            ],
            prefix=prefix,
            encoding_url=ctx.request.query.get("encoding-type") == "url",
        )
    )


async def delete_objects(ctx: Context) -> Response:
    body = await _document(ctx, xml.MAX_DELETE_BODY)
    quiet, keys = xml.parse_delete(body)
    validate.require_body_digest(ctx.request.headers)
    deleted: list[xml.Deleted] = []
    errors: list[xml.DeleteError] = []
    for key, _version in keys:
        try:
            validate.check_key(key)
            await ctx.gateway.delete_object(ctx.principal, ctx.bucket, key)
            deleted.append(xml.Deleted(key))
        except BlindstoreError as exc:
            if exc.status >= 500 or exc.code in ("NoSuchBucket", "AccessDenied"):
                raise
            errors.append(xml.DeleteError(key, exc.code, exc.public_message))
    return Response.xml(xml.render_delete_result([] if quiet else deleted, errors))


# ---------------------------------------------------------------------------- objects


async def put_object(ctx: Context) -> Response:
    validate.check_key(ctx.key)
    meta = _write_meta(ctx)
    if_match, if_none_match = _write_conditions(ctx)
    body, check = request_body(ctx, max_size=MAX_PUT_SIZE)
    record = await ctx.gateway.put_object(
        ctx.principal,
        ctx.bucket,
        ctx.key,
        body,
        check,
        meta,
        if_match=if_match,
        if_none_match=if_none_match,
        size=_declared_size(ctx),
    )
    headers = [("etag", f'"{record.etag}"')]
    headers.extend((f"x-amz-checksum-{alg}", v) for alg, v in record.checksums.items())
    return Response(headers=headers)


def _declared_size(ctx: Context) -> int | None:
    """The plaintext size the client declared (for the placement policy), if it did."""
    headers = ctx.request.headers
    if ctx.auth.result.payload_mode.is_aws_chunked:
        value = headers.get("x-amz-decoded-content-length")
    else:
        value = headers.get("content-length")
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


async def copy_object(ctx: Context) -> Response:
    validate.check_key(ctx.key)
    src_bucket, src_key, _version = validate.parse_copy_source(
        ctx.request.headers["x-amz-copy-source"]
    )
    headers = ctx.request.headers
    directive = headers.get("x-amz-metadata-directive", "COPY").upper()
    tagging_directive = headers.get("x-amz-tagging-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE") or tagging_directive not in ("COPY", "REPLACE"):
        raise InvalidArgument("Unknown metadata directive.")
    meta = _write_meta(ctx) if directive == "REPLACE" else None
    tags = (
        validate.parse_tagging_header(headers.get("x-amz-tagging", ""))
        if tagging_directive == "REPLACE"
        else None
    )
    source_conditions = Conditions(
        if_match=headers.get("x-amz-copy-source-if-match"),
        if_none_match=headers.get("x-amz-copy-source-if-none-match"),
        if_modified_since=parse_http_date(headers.get("x-amz-copy-source-if-modified-since")),
        if_unmodified_since=parse_http_date(headers.get("x-amz-copy-source-if-unmodified-since")),
    )
    if_match, if_none_match = _write_conditions(ctx)
    # CopyObject has no body; one that is announced must still arrive promptly.
    await drain(ctx.receive, 0, idle_timeout=ctx.settings.limits.body_idle_timeout_seconds)
    record = await ctx.gateway.copy_object(
        ctx.principal,
        src_bucket,
        src_key,
        ctx.bucket,
        ctx.key,
        ctx.auth.copy_check(),
        source_conditions=source_conditions,
        meta=meta,
        tags=tags,
        subject=_subject(ctx),
        if_match=if_match,
        if_none_match=if_none_match,
    )
    return Response.xml(xml.render_copy_object_result(record.etag, record.last_modified))


def _read_conditions(ctx: Context) -> Conditions:
    headers = ctx.request.headers
    return Conditions(
        if_match=headers.get("if-match"),
        if_none_match=headers.get("if-none-match"),
        if_modified_since=parse_http_date(headers.get("if-modified-since")),
        if_unmodified_since=parse_http_date(headers.get("if-unmodified-since")),
    )


async def _read(ctx: Context, *, head: bool) -> Response:
    validate.check_key(ctx.key)
    range_header = ctx.request.header("range")
    part_raw = ctx.request.query.get("partNumber")
    part_number = None
    if part_raw is not None:
        if range_header:
            raise InvalidRequest("Cannot specify both Range header and partNumber query parameter")
        part_number = _int_param(ctx, "partNumber", 1, lo=1, hi=_INT_MAX)
    result = await ctx.gateway.get_object(
        ctx.principal,
        ctx.bucket,
        ctx.key,
        conditions=_read_conditions(ctx),
        part_number=part_number,
        range_parser=(lambda size: ranges.parse_range(range_header, size))
        if range_header
        else None,
        head=head,
    )
    record = result.record
    headers = _object_headers(record, ctx, whole=not result.partial)
    length = result.end - result.start + 1 if record.size else 0
    headers.append(("content-length", str(length)))
    if part_number is not None:
        headers.append(("x-amz-mp-parts-count", str(len(record.parts))))
    status = 200
    if result.partial:
        status = 206
        headers.append(
            ("content-range", ranges.content_range(result.start, result.end, record.size))
        )
    return Response(status=status, headers=headers, stream=result.body, head=head)


async def get_object(ctx: Context) -> Response:
    return await _read(ctx, head=False)


async def head_object(ctx: Context) -> Response:
    return await _read(ctx, head=True)


async def delete_object(ctx: Context) -> Response:
    validate.check_key(ctx.key)
    await ctx.gateway.delete_object(ctx.principal, ctx.bucket, ctx.key)
    return Response(status=204)


async def get_object_tagging(ctx: Context) -> Response:
    tags = await ctx.gateway.get_tags(ctx.principal, ctx.bucket, ctx.key)
    return Response.xml(xml.render_tagging(tags))


async def put_object_tagging(ctx: Context) -> Response:
    body = await _document(ctx, xml.MAX_SMALL_BODY)
    tags = xml.parse_tagging(body)
    await ctx.gateway.put_tags(ctx.principal, ctx.bucket, ctx.key, tags)
    return Response()


async def delete_object_tagging(ctx: Context) -> Response:
    await ctx.gateway.put_tags(ctx.principal, ctx.bucket, ctx.key, {})
    return Response(status=204)


# ---------------------------------------------------------------------------- multipart


async def create_multipart_upload(ctx: Context) -> Response:
    validate.check_key(ctx.key)
    algorithm = ctx.request.header("x-amz-checksum-algorithm")
    upload = await ctx.gateway.create_upload(
        ctx.principal,
        ctx.bucket,
        ctx.key,
        _write_meta(ctx),
        checksum_algorithm=algorithm.lower() if algorithm else None,
    )
    response = Response.xml(
        xml.render_initiate_multipart_upload(ctx.bucket, ctx.key, upload.upload_id)
    )
    if algorithm:
        response.headers.append(("x-amz-checksum-algorithm", algorithm.upper()))
    return response


async def upload_part(ctx: Context) -> Response:
    if "x-amz-copy-source" in ctx.request.headers:
        raise NotImplementedOperation("UploadPartCopy is not implemented yet.")
    part_number = _int_param(ctx, "partNumber", 0, lo=1, hi=_INT_MAX)
    body, check = request_body(ctx, max_size=MAX_PUT_SIZE)
    part = await ctx.gateway.upload_part(
        ctx.principal, ctx.bucket, ctx.key, ctx.query("uploadId"), part_number, body, check
    )
    headers = [("etag", f'"{part.etag}"')]
    headers.extend((f"x-amz-checksum-{alg}", v) for alg, v in part.checksums.items())
    return Response(headers=headers)


async def complete_multipart_upload(ctx: Context) -> Response:
    body = await _document(ctx, xml.MAX_COMPLETE_MULTIPART_BODY)
    parts = xml.parse_complete_multipart(body)
    if_match, if_none_match = _write_conditions(ctx)
    record = await ctx.gateway.complete_upload(
        ctx.principal,
        ctx.bucket,
        ctx.key,
        ctx.query("uploadId"),
        [(number, etag) for number, etag, _checksums in parts],
        if_match=if_match,
        if_none_match=if_none_match,
    )
    location = f"http://{ctx.request.host}/{ctx.bucket}/{ctx.key}"
    return Response.xml(
        xml.render_complete_multipart_upload(
            location=location, bucket=ctx.bucket, key=ctx.key, etag=record.etag
        )
    )


async def abort_multipart_upload(ctx: Context) -> Response:
    await ctx.gateway.abort_upload(ctx.principal, ctx.bucket, ctx.key, ctx.query("uploadId"))
    return Response(status=204)


async def list_parts(ctx: Context) -> Response:
    marker = _int_param(ctx, "part-number-marker", 0, hi=10_000)
    max_parts = _int_param(ctx, "max-parts", MAX_KEYS)
    upload, parts, truncated = await ctx.gateway.list_parts(
        ctx.principal,
        ctx.bucket,
        ctx.key,
        ctx.query("uploadId"),
        part_number_marker=marker,
        max_parts=max_parts,
    )
    owner = _owner(ctx)
    return Response.xml(
        xml.render_list_parts(
            bucket=ctx.bucket,
            key=ctx.key,
            upload_id=upload.upload_id,
            part_number_marker=marker,
            next_part_number_marker=parts[-1].part_number if parts else None,
            max_parts=max_parts,
            is_truncated=truncated,
            initiator=owner,
            owner=owner,
            parts=[xml.PartEntry(p.part_number, p.last_modified, p.etag, p.size) for p in parts],
        )
    )


_VERSIONING_UNSET = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>'
)


def _owner(ctx: Context) -> xml.Owner:
    return xml.Owner(ctx.principal.tenant.tenant_id.hex(), ctx.principal.tenant.name)


def _encode_token(marker: str) -> str:
    """Continuation tokens are opaque to clients: the last key returned, encoded."""
    return base64.urlsafe_b64encode(marker.encode("utf-8", "surrogatepass")).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeError):
        raise InvalidArgument(
            "The continuation token provided is incorrect", ArgumentName="continuation-token"
        ) from None
