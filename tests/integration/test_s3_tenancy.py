"""Tenant isolation: tenant "other" can do nothing to a bucket of tenant "demo"."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gwserver import RunningGateway
from tests.integration import rawhttp
from tests.integration.rawhttp import object_path, virtual_client

SECRET = b"demo's patient record"


@pytest.fixture
def victim(s3: Any, bucket: str) -> tuple[str, str]:
    """Demo's bucket holding one tagged object, plus an open multipart upload on it."""
    s3.put_object(Bucket=bucket, Key="record", Body=SECRET, Tagging="owner=demo")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="upload")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="upload", UploadId=uid, PartNumber=1, Body=b"part")
    return bucket, uid


@pytest.fixture
def other_bucket(s3_other: Any) -> Iterator[str]:
    name = f"other-{secrets.token_hex(6)}"
    s3_other.create_bucket(Bucket=name)
    yield name
    for item in s3_other.list_objects_v2(Bucket=name).get("Contents", []):
        s3_other.delete_object(Bucket=name, Key=item["Key"])
    s3_other.delete_bucket(Bucket=name)


def _attempts(c: Any, bucket: str, uid: str, other_bucket: str) -> dict[str, Callable[[], object]]:
    etag = f'"{hashlib.md5(b"part").hexdigest()}"'
    tags = {"TagSet": [{"Key": "owner", "Value": "other"}]}
    return {
        "GetObject": lambda: c.get_object(Bucket=bucket, Key="record"),
        "GetObject range": lambda: c.get_object(Bucket=bucket, Key="record", Range="bytes=0-3"),
        "PutObject": lambda: c.put_object(Bucket=bucket, Key="record", Body=b"overwritten"),
        "PutObject new key": lambda: c.put_object(Bucket=bucket, Key="planted", Body=b"x"),
        "HeadObject": lambda: c.head_object(Bucket=bucket, Key="record"),
        "HeadBucket": lambda: c.head_bucket(Bucket=bucket),
        "ListObjectsV2": lambda: c.list_objects_v2(Bucket=bucket),
        "ListObjects": lambda: c.list_objects(Bucket=bucket),
        "GetBucketLocation": lambda: c.get_bucket_location(Bucket=bucket),
        "DeleteObject": lambda: c.delete_object(Bucket=bucket, Key="record"),
        "DeleteObjects": lambda: c.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": "record"}]}
        ),
        "DeleteBucket": lambda: c.delete_bucket(Bucket=bucket),
        "CreateMultipartUpload": lambda: c.create_multipart_upload(Bucket=bucket, Key="mp"),
        "UploadPart": lambda: c.upload_part(
            Bucket=bucket, Key="upload", UploadId=uid, PartNumber=2, Body=b"evil"
        ),
        "CompleteMultipartUpload": lambda: c.complete_multipart_upload(
            Bucket=bucket,
            Key="upload",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        ),
        "AbortMultipartUpload": lambda: c.abort_multipart_upload(
            Bucket=bucket, Key="upload", UploadId=uid
        ),
        "ListParts": lambda: c.list_parts(Bucket=bucket, Key="upload", UploadId=uid),
        "ListMultipartUploads": lambda: c.list_multipart_uploads(Bucket=bucket),
        "GetObjectTagging": lambda: c.get_object_tagging(Bucket=bucket, Key="record"),
        "PutObjectTagging": lambda: c.put_object_tagging(Bucket=bucket, Key="record", Tagging=tags),
        "DeleteObjectTagging": lambda: c.delete_object_tagging(Bucket=bucket, Key="record"),
        "CopyObject from it": lambda: c.copy_object(
            Bucket=other_bucket, Key="stolen", CopySource={"Bucket": bucket, "Key": "record"}
        ),
        "CopyObject into it": lambda: c.copy_object(
            Bucket=bucket, Key="planted", CopySource={"Bucket": other_bucket, "Key": "bait"}
        ),
    }


OPERATIONS = sorted(_attempts(None, "b", "u", "o"))


@pytest.mark.parametrize("addressing", ["path", "virtual"])
@pytest.mark.parametrize("operation", OPERATIONS)
def test_other_tenant_is_denied(
    gw: RunningGateway,
    s3: Any,
    s3_other: Any,
    victim: tuple[str, str],
    other_bucket: str,
    operation: str,
    addressing: str,
) -> None:
    bucket, uid = victim
    s3_other.put_object(Bucket=other_bucket, Key="bait", Body=b"bait")
    client = s3_other if addressing == "path" else virtual_client(gw, "other")
    with pytest.raises(ClientError) as exc:
        _attempts(client, bucket, uid, other_bucket)[operation]()
    status = exc.value.response["ResponseMetadata"]["HTTPStatusCode"]
    code = exc.value.response["Error"]["Code"]
    # HEAD answers carry no body, so boto3 reports the status as the code.
    expected = "403" if operation in ("HeadObject", "HeadBucket") else "AccessDenied"
    assert (code, status) == (expected, 403)
    # Nothing changed on demo's side.
    got = s3.get_object(Bucket=bucket, Key="record")
    assert got["Body"].read() == SECRET
    assert s3.get_object_tagging(Bucket=bucket, Key="record")["TagSet"] == [
        {"Key": "owner", "Value": "demo"}
    ]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["record"]
    parts = s3.list_parts(Bucket=bucket, Key="upload", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1]
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == ["upload"]
    assert "Contents" not in s3_other.list_objects_v2(Bucket=other_bucket, Prefix="stolen")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_presigned_url_of_another_tenant_is_denied(
    gw: RunningGateway, s3: Any, victim: tuple[str, str], method: str
) -> None:
    bucket, _uid = victim
    url = rawhttp.presign(
        gw, method, object_path(bucket, "record"), creds=rawhttp.credentials(gw, "other")
    )
    response = rawhttp.fetch(gw, url, method, body=b"overwritten" if method == "PUT" else b"")
    assert (response.status, response.code) == (403, "AccessDenied")
    assert s3.get_object(Bucket=bucket, Key="record")["Body"].read() == SECRET


def test_list_buckets_shows_only_own_buckets(
    s3: Any, s3_other: Any, victim: tuple[str, str], other_bucket: str
) -> None:
    bucket, _uid = victim
    theirs = [b["Name"] for b in s3_other.list_buckets()["Buckets"]]
    assert other_bucket in theirs
    assert bucket not in theirs
    assert other_bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
