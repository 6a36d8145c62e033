"""Object reads and writes through boto3: conditions, ranges, parts, deletes and copies."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gwserver import RunningGateway
from tests.integration.rawhttp import virtual_client

CHUNK = 16 * 1024
#: Three full 16 KiB chunks and a partial one.
SIZE = 3 * CHUNK + 1000
DATA = secrets.token_bytes(SIZE)


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


@pytest.fixture
def obj(s3: Any, bucket: str) -> str:
    """The key of a ``SIZE``-byte object holding ``DATA`` in ``bucket``."""
    s3.put_object(Bucket=bucket, Key="obj", Body=DATA)
    return "obj"


# ---------------------------------------------------------------------------- conditional writes


def test_put_if_none_match_star_creates_only_when_absent(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert _error(exc) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def test_put_if_match_replaces_only_the_expected_version(s3: Any, bucket: str) -> None:
    first = s3.put_object(Bucket=bucket, Key="cas", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="cas", Body=b"v2", IfMatch=_etag(b"other"))
    assert _error(exc) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key="cas")["Body"].read() == b"v1"
    second = s3.put_object(Bucket=bucket, Key="cas", Body=b"v2", IfMatch=first)["ETag"]
    assert second == _etag(b"v2")
    assert s3.get_object(Bucket=bucket, Key="cas")["Body"].read() == b"v2"


def test_put_if_match_on_a_missing_key_is_no_such_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"x", IfMatch=_etag(b"x"))
    assert _error(exc) == ("NoSuchKey", 404)


# ---------------------------------------------------------------------------- ranges

RANGES = {
    "first byte": ("bytes=0-0", 0, 0),
    "suffix of one": ("bytes=-1", SIZE - 1, SIZE - 1),
    "suffix": ("bytes=-20000", SIZE - 20000, SIZE - 1),
    "suffix longer than the object": ("bytes=-999999", 0, SIZE - 1),
    "open ended": ("bytes=40000-", 40000, SIZE - 1),
    "last byte": (f"bytes={SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE - 1),
    "end past the object": (f"bytes=100-{SIZE + 5000}", 100, SIZE - 1),
    "across one chunk boundary": (f"bytes={CHUNK - 5}-{CHUNK + 5}", CHUNK - 5, CHUNK + 5),
    "exactly one chunk": (f"bytes={CHUNK}-{2 * CHUNK - 1}", CHUNK, 2 * CHUNK - 1),
    "across three chunks": (f"bytes={CHUNK - 1}-{3 * CHUNK}", CHUNK - 1, 3 * CHUNK),
    "the final partial chunk": (f"bytes={3 * CHUNK}-", 3 * CHUNK, SIZE - 1),
    "inside one chunk": ("bytes=20000-20010", 20000, 20010),
}


@pytest.mark.parametrize("case", sorted(RANGES))
def test_single_range_get_returns_exactly_the_bytes(
    s3: Any, bucket: str, obj: str, case: str
) -> None:
    header, start, end = RANGES[case]
    got = s3.get_object(Bucket=bucket, Key=obj, Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {start}-{end}/{SIZE}"
    assert got["ContentLength"] == end - start + 1
    assert got["Body"].read() == DATA[start : end + 1]


def test_range_head_describes_the_range(s3: Any, bucket: str, obj: str) -> None:
    head = s3.head_object(Bucket=bucket, Key=obj, Range="bytes=10-19")
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert head["ContentLength"] == 10
    assert head["ContentRange"] == f"bytes 10-19/{SIZE}"


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"])
def test_unsatisfiable_range_is_invalid_range(s3: Any, bucket: str, obj: str, header: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=obj, Range=header)
    assert _error(exc) == ("InvalidRange", 416)


def test_range_on_an_empty_object_is_invalid_range(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-0")
    assert _error(exc) == ("InvalidRange", 416)


@pytest.mark.parametrize("header", ["bytes=10-5", "bytes=0-1,5-6", "items=0-5", "bytes=x-y"])
def test_invalid_range_header_is_ignored(s3: Any, bucket: str, obj: str, header: str) -> None:
    got = s3.get_object(Bucket=bucket, Key=obj, Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == DATA


def test_range_get_works_virtual_hosted(gw: RunningGateway, bucket: str, obj: str) -> None:
    got = virtual_client(gw).get_object(Bucket=bucket, Key=obj, Range="bytes=-100")
    assert got["Body"].read() == DATA[-100:]


# ---------------------------------------------------------------------------- conditional reads


def _last_modified(s3: Any, bucket: str, key: str) -> datetime:
    modified: datetime = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
    return modified


def test_get_if_match(s3: Any, bucket: str, obj: str) -> None:
    assert s3.get_object(Bucket=bucket, Key=obj, IfMatch=_etag(DATA))["Body"].read() == DATA
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=obj, IfMatch=_etag(b"other"))
    assert _error(exc) == ("PreconditionFailed", 412)


def test_get_if_none_match_is_not_modified_when_it_matches(s3: Any, bucket: str, obj: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=obj, IfNoneMatch=_etag(DATA))
    assert _error(exc) == ("304", 304)
    got = s3.get_object(Bucket=bucket, Key=obj, IfNoneMatch=_etag(b"other"))
    assert got["Body"].read() == DATA


def test_get_if_modified_since(s3: Any, bucket: str, obj: str) -> None:
    modified = _last_modified(s3, bucket, obj)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=obj, IfModifiedSince=modified)
    assert _error(exc) == ("304", 304)
    earlier = modified - timedelta(hours=1)
    assert s3.get_object(Bucket=bucket, Key=obj, IfModifiedSince=earlier)["Body"].read() == DATA


def test_get_if_unmodified_since(s3: Any, bucket: str, obj: str) -> None:
    modified = _last_modified(s3, bucket, obj)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=obj, IfUnmodifiedSince=modified - timedelta(hours=1))
    assert _error(exc) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key=obj, IfUnmodifiedSince=modified)["Body"].read() == DATA


def test_if_match_that_holds_overrides_a_failing_if_unmodified_since(
    s3: Any, bucket: str, obj: str
) -> None:
    modified = _last_modified(s3, bucket, obj)
    got = s3.get_object(
        Bucket=bucket,
        Key=obj,
        IfMatch=_etag(DATA),
        IfUnmodifiedSince=modified - timedelta(hours=1),
    )
    assert got["Body"].read() == DATA


def test_failing_if_none_match_wins_over_a_passing_if_modified_since(
    s3: Any, bucket: str, obj: str
) -> None:
    modified = _last_modified(s3, bucket, obj)
    with pytest.raises(ClientError) as exc:
        s3.get_object(
            Bucket=bucket,
            Key=obj,
            IfNoneMatch=_etag(DATA),
            IfModifiedSince=modified - timedelta(hours=1),
        )
    assert _error(exc) == ("304", 304)


def test_head_conditions_answer_without_a_body(s3: Any, bucket: str, obj: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=obj, IfMatch=_etag(b"other"))
    assert _error(exc) == ("412", 412)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=obj, IfNoneMatch="*")
    assert _error(exc) == ("304", 304)


# ---------------------------------------------------------------------------- response overrides


def test_response_header_overrides(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="doc", Body=b"{}", ContentType="application/json")
    expires = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    got = s3.get_object(
        Bucket=bucket,
        Key="doc",
        ResponseContentType="text/plain; charset=utf-8",
        ResponseContentDisposition='attachment; filename="report.json"',
        ResponseContentLanguage="de-CH",
        ResponseContentEncoding="identity",
        ResponseCacheControl="no-store",
        ResponseExpires=expires,
    )
    assert got["Body"].read() == b"{}"
    assert got["ContentType"] == "text/plain; charset=utf-8"
    assert got["ContentDisposition"] == 'attachment; filename="report.json"'
    assert got["ContentLanguage"] == "de-CH"
    assert got["ContentEncoding"] == "identity"
    assert got["CacheControl"] == "no-store"
    assert got["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Thu, 02 Jan 2031 03:04:05 GMT"
    # The override is per request: the object keeps its own type.
    assert s3.head_object(Bucket=bucket, Key="doc")["ContentType"] == "application/json"


# ---------------------------------------------------------------------------- part numbers


def test_part_number_one_of_a_single_part_object_is_the_whole_object(
    s3: Any, bucket: str, obj: str
) -> None:
    got = s3.get_object(Bucket=bucket, Key=obj, PartNumber=1)
    assert got["ContentLength"] == SIZE
    assert got["Body"].read() == DATA
    assert s3.head_object(Bucket=bucket, Key=obj, PartNumber=1)["ContentLength"] == SIZE


def test_part_number_past_a_single_part_object_is_invalid_part_number(
    s3: Any, bucket: str, obj: str
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=obj, PartNumber=2)
    assert _error(exc) == ("InvalidPartNumber", 416)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=obj, PartNumber=2)
    assert _error(exc) == ("416", 416)


@pytest.mark.parametrize("number", [0, 10001])
def test_part_number_outside_1_to_10000_is_invalid_argument(
    s3: Any, bucket: str, obj: str, number: int
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=obj, PartNumber=number)
    assert _error(exc) == ("InvalidArgument", 400)


def test_part_number_with_a_range_is_invalid_request(s3: Any, bucket: str, obj: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=obj, PartNumber=1, Range="bytes=0-1")
    assert _error(exc) == ("InvalidRequest", 400)


# ---------------------------------------------------------------------------- head, delete


def test_head_object_describes_the_object(s3: Any, bucket: str, obj: str) -> None:
    head = s3.head_object(Bucket=bucket, Key=obj)
    assert head["ContentLength"] == SIZE
    assert head["ETag"] == _etag(DATA)
    assert head["ContentType"] == "binary/octet-stream"
    assert head["AcceptRanges"] == "bytes"
    assert head["ResponseMetadata"]["HTTPHeaders"]["content-length"] == str(SIZE)


def test_head_of_a_missing_key_is_404(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="missing")
    assert _error(exc) == ("404", 404)


def test_get_of_a_missing_key_is_no_such_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="missing")
    assert _error(exc) == ("NoSuchKey", 404)
    assert exc.value.response["Error"]["Key"] == "missing"


def test_get_in_a_missing_bucket_is_no_such_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=f"missing-{secrets.token_hex(4)}", Key="k")
    assert _error(exc) == ("NoSuchBucket", 404)


def test_delete_object_is_idempotent(s3: Any, bucket: str, obj: str) -> None:
    first = s3.delete_object(Bucket=bucket, Key=obj)
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 204
    second = s3.delete_object(Bucket=bucket, Key=obj)
    assert second["ResponseMetadata"]["HTTPStatusCode"] == 204
    never = s3.delete_object(Bucket=bucket, Key="never-existed")
    assert never["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=obj)
    assert _error(exc) == ("404", 404)


def test_delete_objects_reports_existing_and_missing_keys_as_deleted(s3: Any, bucket: str) -> None:
    for key in ("a", "b/c", "d e"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    keys = ["a", "b/c", "d e", "not-there"]
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert sorted(d["Key"] for d in result["Deleted"]) == sorted(keys)
    assert "Errors" not in result
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_delete_objects_quiet_reports_only_errors(gw: RunningGateway, bucket: str) -> None:
    client = virtual_client(gw)
    client.put_object(Bucket=bucket, Key="q1", Body=b"1")
    result = client.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "q1"}, {"Key": "q2"}, {"Key": "k" * 1025}], "Quiet": True},
    )
    assert "Deleted" not in result
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("k" * 1025, "KeyTooLongError")]
    assert "Contents" not in client.list_objects_v2(Bucket=bucket)


# ---------------------------------------------------------------------------- copy


@pytest.fixture
def dst_bucket(s3: Any) -> Iterator[str]:
    name = f"dst-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


def _put_source(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="src/ä b+c",
        Body=DATA,
        ContentType="text/csv",
        CacheControl="max-age=60",
        Metadata={"origin": "lab-7"},
        Tagging="class=phi",
    )


def test_copy_within_a_bucket_keeps_bytes_and_metadata(s3: Any, bucket: str) -> None:
    _put_source(s3, bucket)
    copied = s3.copy_object(
        Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src/ä b+c"}
    )
    assert copied["CopyObjectResult"]["ETag"] == _etag(DATA)
    got = s3.get_object(Bucket=bucket, Key="copy")
    assert got["Body"].read() == DATA
    assert got["ContentType"] == "text/csv"
    assert got["CacheControl"] == "max-age=60"
    assert got["Metadata"] == {"origin": "lab-7"}
    tags = s3.get_object_tagging(Bucket=bucket, Key="copy")["TagSet"]
    assert tags == [{"Key": "class", "Value": "phi"}]


def test_copy_across_buckets_with_replace_directive(
    gw: RunningGateway, s3: Any, bucket: str, dst_bucket: str
) -> None:
    _put_source(s3, bucket)
    virtual_client(gw).copy_object(
        Bucket=dst_bucket,
        Key="replaced",
        CopySource={"Bucket": bucket, "Key": "src/ä b+c"},
        MetadataDirective="REPLACE",
        ContentType="application/octet-stream",
        Metadata={"new": "yes"},
    )
    got = s3.get_object(Bucket=dst_bucket, Key="replaced")
    assert got["Body"].read() == DATA
    assert got["ContentType"] == "application/octet-stream"
    assert got["Metadata"] == {"new": "yes"}
    assert "CacheControl" not in got
    # The source is untouched.
    assert s3.head_object(Bucket=bucket, Key="src/ä b+c")["Metadata"] == {"origin": "lab-7"}


def test_copy_with_copy_directive_ignores_new_metadata(
    s3: Any, bucket: str, dst_bucket: str
) -> None:
    _put_source(s3, bucket)
    s3.copy_object(
        Bucket=dst_bucket,
        Key="kept",
        CopySource={"Bucket": bucket, "Key": "src/ä b+c"},
        MetadataDirective="COPY",
        Metadata={"ignored": "yes"},
    )
    assert s3.head_object(Bucket=dst_bucket, Key="kept")["Metadata"] == {"origin": "lab-7"}


def test_copy_source_conditions(s3: Any, bucket: str) -> None:
    _put_source(s3, bucket)
    source = {"Bucket": bucket, "Key": "src/ä b+c"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="c1", CopySource=source, CopySourceIfMatch=_etag(b"x"))
    assert _error(exc) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="c2", CopySource=source, CopySourceIfNoneMatch=_etag(DATA)
        )
    assert _error(exc) == ("PreconditionFailed", 412)
    s3.copy_object(Bucket=bucket, Key="c3", CopySource=source, CopySourceIfMatch=_etag(DATA))
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == ["c3", "src/ä b+c"]


def test_copy_onto_itself_needs_replace(s3: Any, bucket: str) -> None:
    _put_source(s3, bucket)
    source = {"Bucket": bucket, "Key": "src/ä b+c"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="src/ä b+c", CopySource=source)
    assert _error(exc) == ("InvalidRequest", 400)
    s3.copy_object(
        Bucket=bucket,
        Key="src/ä b+c",
        CopySource=source,
        MetadataDirective="REPLACE",
        Metadata={"origin": "lab-8"},
    )
    got = s3.get_object(Bucket=bucket, Key="src/ä b+c")
    assert got["Body"].read() == DATA
    assert got["Metadata"] == {"origin": "lab-8"}


def test_copy_of_a_missing_source_is_no_such_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "nope"})
    assert _error(exc) == ("NoSuchKey", 404)
