"""ListObjectsV2 and ListObjects through boto3: prefixes, delimiters, pages, encodings, order."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from tests.gwserver import RunningGateway
from tests.integration import rawhttp
from tests.integration.rawhttp import object_path, virtual_client

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
TREE = ["a/1", "a/2", "a/b/3", "a/b/c/4", "b/5", "c", "d/"]


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _fill(s3: Any, bucket: str, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


def _keys(page: dict[str, Any]) -> list[str]:
    return [o["Key"] for o in page.get("Contents", [])]


def _prefixes(page: dict[str, Any]) -> list[str]:
    return [p["Prefix"] for p in page.get("CommonPrefixes", [])]


def test_list_v2_with_prefix(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, TREE)
    page = s3.list_objects_v2(Bucket=bucket, Prefix="a/b")
    assert _keys(page) == ["a/b/3", "a/b/c/4"]
    assert page["KeyCount"] == 2
    assert page["Prefix"] == "a/b"
    assert page["IsTruncated"] is False
    assert _keys(s3.list_objects_v2(Bucket=bucket, Prefix="zzz")) == []


def test_list_v2_with_delimiter_rolls_up_common_prefixes(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, TREE)
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert _keys(top) == ["c"]
    assert _prefixes(top) == ["a/", "b/", "d/"]
    assert top["KeyCount"] == 4
    inner = s3.list_objects_v2(Bucket=bucket, Delimiter="/", Prefix="a/")
    assert _keys(inner) == ["a/1", "a/2"]
    assert _prefixes(inner) == ["a/b/"]


def test_list_v2_with_a_multi_character_delimiter(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, ["x--1", "x--2--3", "y"])
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="--")
    assert _keys(page) == ["y"]
    assert _prefixes(page) == ["x--"]


def test_list_v2_max_keys_truncates(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, TREE)
    page = s3.list_objects_v2(Bucket=bucket, MaxKeys=2)
    assert _keys(page) == ["a/1", "a/2"]
    assert page["IsTruncated"] is True
    assert page["MaxKeys"] == 2
    assert page["KeyCount"] == 2
    rest = s3.list_objects_v2(Bucket=bucket, ContinuationToken=page["NextContinuationToken"])
    assert _keys(rest) == TREE[2:]
    assert rest["ContinuationToken"] == page["NextContinuationToken"]
    assert rest["IsTruncated"] is False
    assert "NextContinuationToken" not in rest


def test_list_v2_max_keys_zero_returns_nothing(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, ["k"])
    page = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert _keys(page) == []
    assert page["KeyCount"] == 0


def test_list_v2_paginator_visits_every_key_once_in_order(s3: Any, bucket: str) -> None:
    keys = [f"key-{i:03d}" for i in range(25)]
    _fill(s3, bucket, keys[::-1])
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 7}
        )
    )
    assert [len(_keys(p)) for p in pages] == [7, 7, 7, 4]
    assert [k for p in pages for k in _keys(p)] == keys
    assert [p["IsTruncated"] for p in pages] == [True, True, True, False]


def test_list_v2_paginator_with_delimiter_counts_prefixes_toward_max_keys(
    gw: RunningGateway, bucket: str
) -> None:
    client = virtual_client(gw)
    keys = [f"dir{i}/file" for i in range(5)] + [f"top{i}" for i in range(4)]
    _fill(client, bucket, keys)
    pages = list(
        client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 3}
        )
    )
    assert [p["KeyCount"] for p in pages] == [3, 3, 3]
    assert [x for p in pages for x in _prefixes(p)] == [f"dir{i}/" for i in range(5)]
    assert [k for p in pages for k in _keys(p)] == [f"top{i}" for i in range(4)]


def test_list_v2_start_after(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, TREE)
    assert _keys(s3.list_objects_v2(Bucket=bucket, StartAfter="a/b/3")) == TREE[3:]
    assert _keys(s3.list_objects_v2(Bucket=bucket, StartAfter="a/b")) == TREE[2:]
    page = s3.list_objects_v2(Bucket=bucket, StartAfter="zzz")
    assert _keys(page) == []
    assert page["StartAfter"] == "zzz"


def test_list_v2_fetch_owner(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, ["owned"])
    without = s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    assert "Owner" not in without
    owner = s3.list_buckets()["Owner"]
    with_owner = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"][0]
    assert with_owner["Owner"]["ID"] == owner["ID"]
    assert with_owner["Owner"]["DisplayName"] == owner["DisplayName"]


def test_listed_entries_describe_the_objects(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="sized", Body=b"12345")
    entry = s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    head = s3.head_object(Bucket=bucket, Key="sized")
    assert entry["Size"] == 5
    assert entry["ETag"] == head["ETag"]
    # The listing carries milliseconds, Last-Modified whole seconds.
    assert entry["LastModified"].replace(microsecond=0) == head["LastModified"]
    assert entry["StorageClass"] == "STANDARD"


ODD_KEYS = ["a b", "tab\tkey", "new\nline", "ctl\x01char", "del\x7f", "amp&lt;", "plus+"]


def test_list_v2_url_encoding_round_trips_control_characters(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, ODD_KEYS)
    # boto3 asks for EncodingType=url by itself and decodes what comes back.
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="|")
    assert _keys(page) == sorted(ODD_KEYS)
    # Asked for explicitly, the keys come back encoded, as S3 sends them.
    encoded = s3.list_objects_v2(Bucket=bucket, EncodingType="url")
    assert _keys(encoded) == [quote(k) for k in sorted(ODD_KEYS)]


def test_list_v2_url_encoding_on_the_wire(gw: RunningGateway, s3: Any, bucket: str) -> None:
    _fill(s3, bucket, ["a b/c", "ctl\x01char", "plus+"])
    raw = rawhttp.signed(
        gw,
        "GET",
        object_path(bucket),
        query="delimiter=%2F&encoding-type=url&list-type=2&prefix=",
    )
    assert raw.status == 200
    root = ET.fromstring(raw.body)
    assert root.findtext(f"{NS}EncodingType") == "url"
    assert [e.text for e in root.iter(f"{NS}Key")] == ["ctl%01char", "plus%2B"]
    prefixes = [e.findtext(f"{NS}Prefix") for e in root.iter(f"{NS}CommonPrefixes")]
    assert prefixes == ["a%20b/"]


def test_list_with_an_unknown_encoding_type_is_invalid_argument(
    gw: RunningGateway, bucket: str
) -> None:
    raw = rawhttp.signed(gw, "GET", object_path(bucket), query="encoding-type=base64&list-type=2")
    assert (raw.status, raw.code) == (400, "InvalidArgument")


def test_keys_are_listed_in_utf8_byte_order(s3: Any, bucket: str) -> None:
    """U+FF21 sorts before U+1F600 in UTF-8 (and code points), after it in UTF-16."""
    keys = ["\uff21", "\U0001f600", "z", "é", "\u00ff", "A", "\ue000"]
    _fill(s3, bucket, keys)
    expected = sorted(keys, key=lambda k: k.encode("utf-8"))
    assert expected.index("\uff21") < expected.index("\U0001f600")
    assert _keys(s3.list_objects_v2(Bucket=bucket)) == expected
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 2}
    )
    assert [k for p in pages for k in _keys(p)] == expected


def test_list_v1_with_marker(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, TREE)
    page = s3.list_objects(Bucket=bucket, Marker="a/b/3")
    assert _keys(page) == TREE[3:]
    assert page["Marker"] == "a/b/3"
    truncated = s3.list_objects(Bucket=bucket, MaxKeys=3)
    assert _keys(truncated) == TREE[:3]
    assert truncated["IsTruncated"] is True
    # Without a delimiter S3 sends no NextMarker: the client continues from the last key.
    assert "NextMarker" not in truncated


def test_list_v1_with_delimiter_sends_next_marker(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, TREE)
    first = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=2)
    assert _prefixes(first) == ["a/", "b/"]
    assert first["IsTruncated"] is True
    assert first["NextMarker"] == "b/"
    second = s3.list_objects(Bucket=bucket, Delimiter="/", Marker=first["NextMarker"])
    assert _keys(second) == ["c"]
    assert _prefixes(second) == ["d/"]
    assert second["IsTruncated"] is False


def test_list_v1_paginator_visits_every_key_once(gw: RunningGateway, bucket: str) -> None:
    client = virtual_client(gw)
    keys = [f"v1-{i:02d}" for i in range(25)]
    _fill(client, bucket, keys)
    pages = list(
        client.get_paginator("list_objects").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 7}
        )
    )
    assert [k for p in pages for k in _keys(p)] == keys
    assert len(pages) == 4


def test_list_v1_owner_is_always_present(s3: Any, bucket: str) -> None:
    _fill(s3, bucket, ["k"])
    assert s3.list_objects(Bucket=bucket)["Contents"][0]["Owner"]["ID"]


def test_listing_a_missing_bucket_is_no_such_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket="no-such-bucket-for-listing")
    assert _error(exc) == ("NoSuchBucket", 404)


def test_bad_continuation_token_is_invalid_argument(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="%%%not-a-token")
    assert _error(exc) == ("InvalidArgument", 400)


def test_negative_max_keys_is_invalid_argument(gw: RunningGateway, bucket: str) -> None:
    raw = rawhttp.signed(gw, "GET", object_path(bucket), query="list-type=2&max-keys=-1")
    assert (raw.status, raw.code) == (400, "InvalidArgument")
