"""Multipart uploads through boto3: parts, completion rules, abort, listings, s3transfer."""

from __future__ import annotations

import hashlib
import io
import secrets
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.gwserver import RunningGateway
from tests.integration.rawhttp import virtual_client

MiB = 1024 * 1024
PART = 5 * MiB


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _multipart_etag(*parts: bytes) -> str:
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def _blobs(gw: RunningGateway) -> set[str]:
    return {str(p) for p in gw.blob_dir.rglob("*") if p.is_file()}


def _upload(s3: Any, bucket: str, key: str, upload_id: str, number: int, data: bytes) -> str:
    etag: str = s3.upload_part(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
    )["ETag"]
    assert etag == f'"{hashlib.md5(data).hexdigest()}"'
    return etag


def test_out_of_order_and_retried_parts_complete_into_one_object(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    blobs_before = _blobs(gw)
    first_try, retried, last = (secrets.token_bytes(n) for n in (PART, PART + 3, 1234))
    upload = s3.create_multipart_upload(
        Bucket=bucket,
        Key="mp",
        ContentType="application/x-ndjson",
        Metadata={"study": "s-42"},
        Tagging="phase=2",
    )
    uid = upload["UploadId"]
    assert (upload["Bucket"], upload["Key"]) == (bucket, "mp")
    etag2 = _upload(s3, bucket, "mp", uid, 2, last)
    _upload(s3, bucket, "mp", uid, 1, first_try)
    etag1 = _upload(s3, bucket, "mp", uid, 1, retried)  # a retried part: the last one wins
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=uid,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": etag1}, {"PartNumber": 2, "ETag": etag2}]
        },
    )
    expected_etag = _multipart_etag(retried, last)
    assert done["ETag"] == expected_etag
    assert (done["Bucket"], done["Key"]) == (bucket, "mp")

    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["ETag"] == expected_etag
    assert got["ContentLength"] == len(retried) + len(last)
    assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(retried + last).digest()
    assert got["ContentType"] == "application/x-ndjson"
    assert got["Metadata"] == {"study": "s-42"}
    assert got["TagCount"] == 1
    # The replaced first try left no blob behind: one blob per part of the object.
    assert len(_blobs(gw) - blobs_before) == 2
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)
    assert _error(exc) == ("NoSuchUpload", 404)


@pytest.fixture
def two_part_object(s3: Any, bucket: str) -> tuple[str, bytes, bytes]:
    """A completed two-part object: its key, part 1 (5 MiB) and part 2."""
    one, two = secrets.token_bytes(PART), secrets.token_bytes(70_000)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="two")["UploadId"]
    parts = [
        {"PartNumber": n, "ETag": _upload(s3, bucket, "two", uid, n, data)}
        for n, data in ((1, one), (2, two))
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="two", UploadId=uid, MultipartUpload={"Parts": parts}
    )
    return "two", one, two


def test_part_number_reads_one_part_of_a_multipart_object(
    s3: Any, bucket: str, two_part_object: tuple[str, bytes, bytes]
) -> None:
    key, one, two = two_part_object
    total = len(one) + len(two)
    first = s3.get_object(Bucket=bucket, Key=key, PartNumber=1)
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert first["PartsCount"] == 2
    assert first["ContentRange"] == f"bytes 0-{len(one) - 1}/{total}"
    assert first["Body"].read() == one
    second = s3.get_object(Bucket=bucket, Key=key, PartNumber=2)
    assert second["ContentRange"] == f"bytes {len(one)}-{total - 1}/{total}"
    assert second["Body"].read() == two
    head = s3.head_object(Bucket=bucket, Key=key, PartNumber=2)
    assert (head["ContentLength"], head["PartsCount"]) == (len(two), 2)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key, PartNumber=3)
    assert _error(exc) == ("InvalidPartNumber", 416)


@pytest.mark.parametrize(
    ("start", "end"),
    [(PART - 10, PART + 10), (PART - 1, PART), (PART, PART), (PART - 16384, PART + 16384)],
)
def test_range_across_a_part_boundary(
    s3: Any, bucket: str, two_part_object: tuple[str, bytes, bytes], start: int, end: int
) -> None:
    key, one, two = two_part_object
    got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")
    assert got["Body"].read() == (one + two)[start : end + 1]


def test_suffix_range_of_a_multipart_object(
    s3: Any, bucket: str, two_part_object: tuple[str, bytes, bytes]
) -> None:
    key, one, two = two_part_object
    got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{len(two) + 5}")
    assert got["Body"].read() == one[-5:] + two


@pytest.fixture
def three_parts(s3: Any, bucket: str) -> tuple[str, dict[int, bytes], dict[int, str]]:
    """An open upload with part 1 of 5 MiB and small parts 2 and 3: id, data, ETags."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key="three")["UploadId"]
    data = {1: secrets.token_bytes(PART), 2: b"second" * 100, 3: b"third" * 100}
    etags = {n: _upload(s3, bucket, "three", uid, n, d) for n, d in data.items()}
    return uid, data, etags


def _complete(s3: Any, bucket: str, uid: str, parts: list[tuple[int, str]]) -> Any:
    return s3.complete_multipart_upload(
        Bucket=bucket,
        Key="three",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
    )


def test_completion_rules(
    s3: Any, bucket: str, three_parts: tuple[str, dict[int, bytes], dict[int, str]]
) -> None:
    uid, _data, etags = three_parts
    refusals = {
        "InvalidPart": [(1, etags[1]), (3, etags[2])],  # wrong ETag
        "InvalidPartOrder": [(3, etags[3]), (1, etags[1])],
        "EntityTooSmall": [(1, etags[1]), (2, etags[2]), (3, etags[3])],
    }
    for code, parts in refusals.items():
        with pytest.raises(ClientError) as exc:
            _complete(s3, bucket, uid, parts)
        assert _error(exc) == (code, 400)
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, uid, [(1, etags[1]), (4, etags[3])])  # never uploaded
    assert _error(exc) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as exc:
        _complete(s3, bucket, uid, [(1, etags[1]), (1, etags[1])])  # repeated
    assert _error(exc) == ("InvalidPartOrder", 400)
    # None of the refusals consumed the upload or made an object.
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="three")
    assert _error(exc) == ("404", 404)
    assert len(s3.list_parts(Bucket=bucket, Key="three", UploadId=uid)["Parts"]) == 3


def test_completing_with_an_ordered_subset_of_parts(
    gw: RunningGateway, bucket: str, three_parts: tuple[str, dict[int, bytes], dict[int, str]]
) -> None:
    uid, data, etags = three_parts
    client = virtual_client(gw)
    done = _complete(client, bucket, uid, [(1, etags[1]), (3, etags[3])])
    assert done["ETag"] == _multipart_etag(data[1], data[3])
    got = client.get_object(Bucket=bucket, Key="three")
    assert got["Body"].read() == data[1] + data[3]
    assert got["ETag"] == done["ETag"]


def test_quoted_and_unquoted_etags_both_complete(
    s3: Any, bucket: str, three_parts: tuple[str, dict[int, bytes], dict[int, str]]
) -> None:
    uid, data, etags = three_parts
    _complete(s3, bucket, uid, [(1, etags[1].strip('"')), (2, etags[2])])
    assert s3.get_object(Bucket=bucket, Key="three")["Body"].read() == data[1] + data[2]


def test_abort_removes_the_upload_and_its_parts(gw: RunningGateway, s3: Any, bucket: str) -> None:
    blobs_before = _blobs(gw)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="aborted")["UploadId"]
    etag = _upload(s3, bucket, "aborted", uid, 1, b"part")
    assert len(_blobs(gw) - blobs_before) == 1
    aborted = s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=uid)
    assert aborted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _blobs(gw) - blobs_before == set()
    for call in (
        lambda: s3.upload_part(
            Bucket=bucket, Key="aborted", UploadId=uid, PartNumber=2, Body=b"late"
        ),
        lambda: s3.list_parts(Bucket=bucket, Key="aborted", UploadId=uid),
        lambda: s3.complete_multipart_upload(
            Bucket=bucket,
            Key="aborted",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        ),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=uid),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _error(exc) == ("NoSuchUpload", 404)
    assert _blobs(gw) - blobs_before == set()


def test_upload_id_of_another_key_is_no_such_upload(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="right")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="wrong", UploadId=uid, PartNumber=1, Body=b"x")
    assert _error(exc) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="right", UploadId="made-up", PartNumber=1, Body=b"x")
    assert _error(exc) == ("NoSuchUpload", 404)


@pytest.mark.parametrize("number", [0, 10001])
def test_part_number_outside_1_to_10000_is_invalid_argument(
    s3: Any, bucket: str, number: int
) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="numbers")["UploadId"]
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="numbers", UploadId=uid, PartNumber=number, Body=b"x")
    assert _error(exc) == ("InvalidArgument", 400)
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key="numbers", UploadId=uid)


def test_list_parts_pages_with_max_parts(s3: Any, bucket: str) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="listed")["UploadId"]
    data = {n: f"part {n}".encode() * n for n in range(1, 6)}
    etags = {n: _upload(s3, bucket, "listed", uid, n, d) for n, d in data.items()}
    first = s3.list_parts(Bucket=bucket, Key="listed", UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    assert first["IsTruncated"] is True
    assert first["NextPartNumberMarker"] == 2
    assert first["MaxParts"] == 2
    second = s3.list_parts(
        Bucket=bucket, Key="listed", UploadId=uid, MaxParts=2, PartNumberMarker=2
    )
    assert [p["PartNumber"] for p in second["Parts"]] == [3, 4]
    pages = s3.get_paginator("list_parts").paginate(
        Bucket=bucket, Key="listed", UploadId=uid, PaginationConfig={"PageSize": 2}
    )
    parts = [p for page in pages for p in page["Parts"]]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [
        (n, etags[n], len(data[n])) for n in range(1, 6)
    ]


def test_list_multipart_uploads(gw: RunningGateway, bucket: str) -> None:
    client = virtual_client(gw)
    ids = {
        key: client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        for key in ("u/a", "u/b", "v/c")
    }
    listed = client.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in listed["Uploads"]] == sorted(ids.items())
    assert listed["IsTruncated"] is False
    prefixed = client.list_multipart_uploads(Bucket=bucket, Prefix="u/")
    assert [u["Key"] for u in prefixed["Uploads"]] == ["u/a", "u/b"]
    page = client.list_multipart_uploads(Bucket=bucket, MaxUploads=1)
    assert [u["Key"] for u in page["Uploads"]] == ["u/a"]
    assert page["IsTruncated"] is True
    assert page["NextKeyMarker"] == "u/a"
    pages = client.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 1}
    )
    assert [u["Key"] for p in pages for u in p.get("Uploads", [])] == ["u/a", "u/b", "v/c"]
    client.abort_multipart_upload(Bucket=bucket, Key="u/b", UploadId=ids["u/b"])
    after = client.list_multipart_uploads(Bucket=bucket)
    assert [u["Key"] for u in after["Uploads"]] == ["u/a", "v/c"]


def test_transfer_manager_multipart_round_trip(s3: Any, bucket: str) -> None:
    data = secrets.token_bytes(20 * MiB + 12345)
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4)
    s3.upload_fileobj(io.BytesIO(data), bucket, "big.bin", Config=config)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    chunks = [data[i : i + PART] for i in range(0, len(data), PART)]
    assert head["ETag"] == _multipart_etag(*chunks)
    out = io.BytesIO()
    s3.download_fileobj(bucket, "big.bin", out, Config=config)
    assert hashlib.sha256(out.getvalue()).digest() == hashlib.sha256(data).digest()
