"""What an object carries besides its bytes: headers, user metadata, tags, ETag, key names."""

from __future__ import annotations

import email.header
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.exceptions import ClientError

from blindstore.backends.ids import BLOB_PATTERN, CONTAINER_PATTERN
from tests.gwserver import RunningGateway
from tests.integration import rawhttp
from tests.integration.rawhttp import object_path, virtual_client


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


# ---------------------------------------------------------------------------- system metadata


def test_system_headers_round_trip(s3: Any, bucket: str) -> None:
    expires = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
    s3.put_object(
        Bucket=bucket,
        Key="report.csv.gz",
        Body=b"\x1f\x8b compressed",
        ContentType="text/csv; charset=utf-8",
        ContentEncoding="gzip",
        ContentDisposition='attachment; filename="report.csv"',
        ContentLanguage="fr-CH",
        CacheControl="private, max-age=300",
        Expires=expires,
    )
    for answer in (
        s3.get_object(Bucket=bucket, Key="report.csv.gz"),
        s3.head_object(Bucket=bucket, Key="report.csv.gz"),
    ):
        assert answer["ContentType"] == "text/csv; charset=utf-8"
        assert answer["ContentEncoding"] == "gzip"
        assert answer["ContentDisposition"] == 'attachment; filename="report.csv"'
        assert answer["ContentLanguage"] == "fr-CH"
        assert answer["CacheControl"] == "private, max-age=300"
        assert answer["ResponseMetadata"]["HTTPHeaders"]["expires"] == (
            "Sat, 01 Jun 2030 12:00:00 GMT"
        )


def test_object_without_a_content_type_is_binary_octet_stream(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="untyped", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="untyped")["ContentType"] == "binary/octet-stream"


def test_last_modified_is_the_time_of_the_write(s3: Any, bucket: str) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    s3.put_object(Bucket=bucket, Key="timed", Body=b"x")
    after = datetime.now(UTC)
    head = s3.head_object(Bucket=bucket, Key="timed")
    assert before <= head["LastModified"] <= after
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"][0]["LastModified"]
    assert abs(listed - head["LastModified"]) < timedelta(seconds=1)


def test_single_part_etag_is_the_hex_md5(s3: Any, bucket: str) -> None:
    data = b"the etag of a single-part object is the MD5 of its bytes" * 1000
    put = s3.put_object(Bucket=bucket, Key="etag", Body=data)
    expected = f'"{hashlib.md5(data).hexdigest()}"'
    assert put["ETag"] == expected
    assert s3.head_object(Bucket=bucket, Key="etag")["ETag"] == expected
    assert s3.list_objects_v2(Bucket=bucket)["Contents"][0]["ETag"] == expected


def test_empty_object_round_trips(s3: Any, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert (got["ContentLength"], got["Body"].read()) == (0, b"")


# ---------------------------------------------------------------------------- user metadata


def test_user_metadata_round_trips(s3: Any, bucket: str) -> None:
    meta = {"patient-cohort": "B-12", "Mixed-Case": "Value With Spaces", "empty": ""}
    s3.put_object(Bucket=bucket, Key="meta", Body=b"x", Metadata=meta)
    expected = {k.lower(): v for k, v in meta.items()}
    assert s3.head_object(Bucket=bucket, Key="meta")["Metadata"] == expected
    assert s3.get_object(Bucket=bucket, Key="meta")["Metadata"] == expected


def test_rfc2047_encoded_utf8_metadata_round_trips(gw: RunningGateway, bucket: str) -> None:
    """boto3 only sends ASCII metadata: UTF-8 values travel RFC 2047-encoded."""
    value = "Zürich ✓ 病歴"
    encoded = email.header.Header(value, "utf-8").encode()
    client = virtual_client(gw)
    client.put_object(Bucket=bucket, Key="utf8", Body=b"x", Metadata={"city": encoded})
    back = client.head_object(Bucket=bucket, Key="utf8")["Metadata"]["city"]
    assert str(email.header.make_header(email.header.decode_header(back))) == value


def test_raw_utf8_metadata_round_trips(gw: RunningGateway, bucket: str) -> None:
    value = "Zürich ✓ 病歴"
    put = rawhttp.signed(
        gw, "PUT", object_path(bucket, "raw-utf8"), body=b"x", headers={"x-amz-meta-city": value}
    )
    assert put.status == 200, put.body
    got = rawhttp.signed(gw, "GET", object_path(bucket, "raw-utf8"))
    assert got.status == 200
    # http.client reads header bytes as latin-1.
    assert got.headers["x-amz-meta-city"].encode("latin-1").decode("utf-8") == value


def test_user_metadata_up_to_2_kb_is_accepted(s3: Any, bucket: str) -> None:
    meta = {"big": "v" * (2048 - len("big"))}
    s3.put_object(Bucket=bucket, Key="meta-2k", Body=b"x", Metadata=meta)
    assert s3.head_object(Bucket=bucket, Key="meta-2k")["Metadata"] == meta


def test_user_metadata_over_2_kb_is_metadata_too_large(s3: Any, bucket: str) -> None:
    meta = {"big": "v" * (2049 - len("big"))}
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="meta-big", Body=b"x", Metadata=meta)
    assert _error(exc) == ("MetadataTooLarge", 400)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="meta-big")
    assert _error(exc) == ("404", 404)


# ---------------------------------------------------------------------------- tags


def test_tags_set_on_put_then_read_replaced_and_deleted(s3: Any, bucket: str) -> None:
    tagging = urlencode({"project": "blind store", "owner": "lab+7", "empty": ""})
    s3.put_object(Bucket=bucket, Key="tagged", Body=b"x", Tagging=tagging)
    tags = s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [
        ("empty", ""),
        ("owner", "lab+7"),
        ("project", "blind store"),
    ]
    assert s3.get_object(Bucket=bucket, Key="tagged")["TagCount"] == 3

    s3.put_object_tagging(
        Bucket=bucket, Key="tagged", Tagging={"TagSet": [{"Key": "état", "Value": "révisé"}]}
    )
    tags = s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"]
    assert tags == [{"Key": "état", "Value": "révisé"}]

    deleted = s3.delete_object_tagging(Bucket=bucket, Key="tagged")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == []
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="tagged")


def test_tagging_a_missing_key_is_no_such_key(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object_tagging(Bucket=bucket, Key="missing")
    assert _error(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(
            Bucket=bucket, Key="missing", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}
        )
    assert _error(exc) == ("NoSuchKey", 404)


def test_more_than_ten_tags_are_refused(s3: Any, bucket: str) -> None:
    tagging = urlencode({f"k{i}": "v" for i in range(11)})
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="many-tags", Body=b"x", Tagging=tagging)
    assert _error(exc) == ("BadRequest", 400)
    s3.put_object(Bucket=bucket, Key="many-tags", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(
            Bucket=bucket,
            Key="many-tags",
            Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]},
        )
    assert _error(exc) == ("BadRequest", 400)


def test_tags_work_virtual_hosted(gw: RunningGateway, bucket: str) -> None:
    client = virtual_client(gw)
    client.put_object(Bucket=bucket, Key="vt", Body=b"x")
    client.put_object_tagging(
        Bucket=bucket, Key="vt", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]}
    )
    assert client.get_object_tagging(Bucket=bucket, Key="vt")["TagSet"] == [
        {"Key": "a", "Value": "1"}
    ]


# ---------------------------------------------------------------------------- key names


def test_key_of_1024_bytes_is_accepted(s3: Any, bucket: str) -> None:
    key = "k" * 1000 + "é" * 12  # 1000 + 24 UTF-8 bytes
    assert len(key.encode()) == 1024
    s3.put_object(Bucket=bucket, Key=key, Body=b"long")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"long"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]


def test_key_of_1025_bytes_is_key_too_long(s3: Any, bucket: str) -> None:
    key = "k" * 1001 + "é" * 12
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key=key, Body=b"long")
    assert _error(exc) == ("KeyTooLongError", 400)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


HOSTILE_KEYS = [
    "../../../../etc/passwd",
    "..\\..\\windows\\system32",
    "%2e%2e/%2e%2e/escaped",
    "%2F..%2Fslash",
    "a//b///c",
    "/leading-slash",
    "trailing-slash/",
    "with space",
    "plus+sign",
    "question?mark#hash",
    "semi;colon&amp=eq",
    "percent%25literal",
    "unicodé/ключ/鍵",
    "emoji 😀🔐",
    "nul-like \u2400 and tab\tnewline\n",
    "~tilde*star'quote\"",
]


def _blob_names(gw: RunningGateway) -> set[str]:
    return {str(p.relative_to(gw.blob_dir)) for p in gw.blob_dir.rglob("*") if p.is_file()}


def test_hostile_keys_round_trip_and_never_name_a_file(gw: RunningGateway, bucket: str) -> None:
    before = _blob_names(gw)
    path, virtual = gw.client(), virtual_client(gw)
    for i, key in enumerate(HOSTILE_KEYS):
        # urllib3 resolves dot segments in the absolute URLs sent to a proxy, which is how
        # virtual_client reaches the gateway: those keys go path-style (the path is sent as is).
        writer, reader = (path, virtual) if i % 2 else (virtual, path)
        if "../" in key:
            writer = reader = path
        writer.put_object(Bucket=bucket, Key=key, Body=key.encode())
        assert reader.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = [
        o["Key"]
        for page in gw.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    assert listed == sorted(HOSTILE_KEYS, key=lambda k: k.encode())
    new = _blob_names(gw) - before
    assert len(new) == len(HOSTILE_KEYS)
    for name in new:
        container, blob = name.split("/", 1)
        assert CONTAINER_PATTERN.fullmatch(container), name
        assert BLOB_PATTERN.fullmatch(blob), name
    # Nothing outside the blob directory was created either.
    escaped = gw.blob_dir.parent / "etc"
    assert not escaped.exists()


def test_dot_segment_keys_are_kept_verbatim(gw: RunningGateway, s3: Any, bucket: str) -> None:
    """Keys ``.``/``..`` travel unnormalised (raw request paths): S3 treats them as names."""
    for key in ("..", ".", "a/./b", "a/../b"):
        path = object_path(bucket, key)
        put = rawhttp.signed(gw, "PUT", path, body=key.encode())
        assert put.status == 200, (key, put.body)
        got = rawhttp.signed(gw, "GET", path)
        assert (got.status, got.body) == (200, key.encode())
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted([".", "..", "a/../b", "a/./b"])
