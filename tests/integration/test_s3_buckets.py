"""Bucket operations through boto3: create, list, head, delete, location; names and owners."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.gwserver import RunningGateway
from tests.integration import rawhttp
from tests.integration.rawhttp import virtual_client


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _name() -> str:
    return f"bk-{secrets.token_hex(6)}"


@pytest.fixture
def other_bucket(s3_other: Any) -> Iterator[str]:
    """A bucket of tenant "other"."""
    name = _name()
    s3_other.create_bucket(Bucket=name)
    yield name
    s3_other.delete_bucket(Bucket=name)


def test_created_bucket_is_listed_with_its_creation_date(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    try:
        listed = {b["Name"]: b for b in s3.list_buckets()["Buckets"]}
        assert name in listed
        assert listed[name]["CreationDate"].year >= 2024
    finally:
        s3.delete_bucket(Bucket=name)
    assert name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_list_buckets_shows_only_the_callers_buckets(
    s3: Any, s3_other: Any, bucket: str, other_bucket: str
) -> None:
    mine = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    theirs = {b["Name"] for b in s3_other.list_buckets()["Buckets"]}
    assert bucket in mine
    assert other_bucket not in mine
    assert other_bucket in theirs
    assert bucket not in theirs
    assert s3.list_buckets()["Owner"]["ID"] != s3_other.list_buckets()["Owner"]["ID"]


def test_buckets_work_virtual_hosted(gw: RunningGateway) -> None:
    client = virtual_client(gw)
    name = _name()
    client.create_bucket(Bucket=name)
    client.head_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="k", Body=b"v")
    assert [o["Key"] for o in client.list_objects_v2(Bucket=name)["Contents"]] == ["k"]
    client.delete_object(Bucket=name, Key="k")
    client.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        client.head_bucket(Bucket=name)
    assert _error(exc) == ("404", 404)


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "a" * 64,
        "Upper-case",
        "under_score",
        "-leading-dash",
        "trailing-dash-",
        "double..dot",
        "dash-.dot",
        "192.168.10.1",
        "xn--punycode",
        "sthree-reserved",
        "name-s3alias",
        "name--ol-s3",
    ],
)
def test_invalid_bucket_names_are_refused(s3: Any, name: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert _error(exc) == ("InvalidBucketName", 400)
    assert name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_bucket_name_boto3_will_not_send_is_refused(gw: RunningGateway) -> None:
    """Characters botocore refuses client-side (``!``, ``%``) are refused by the gateway too."""
    response = rawhttp.signed(gw, "PUT", "/bad%21name")
    assert (response.status, response.code) == (400, "InvalidBucketName")


VALID_NAMES = {
    "three-chars": lambda t: f"a{t[:2]}",
    "63-chars": lambda t: (t * 6)[:63],
    "dotted": lambda t: f"my.dotted.{t}",
    "digits": lambda t: f"0-{t}-9",
}


@pytest.mark.parametrize("shape", sorted(VALID_NAMES))
def test_valid_bucket_names_are_accepted(s3: Any, shape: str) -> None:
    name = VALID_NAMES[shape](secrets.token_hex(6))
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name)


def test_creating_an_owned_bucket_again_is_already_owned_by_you(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=bucket)
    assert _error(exc) == ("BucketAlreadyOwnedByYou", 409)


def test_creating_another_tenants_bucket_is_already_exists(s3_other: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3_other.create_bucket(Bucket=bucket)
    assert _error(exc) == ("BucketAlreadyExists", 409)


def test_head_bucket_is_404_for_a_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=_name())
    assert _error(exc) == ("404", 404)


def test_head_bucket_is_403_for_another_tenants_bucket(s3_other: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3_other.head_bucket(Bucket=bucket)
    assert _error(exc) == ("403", 403)


def test_head_bucket_answers_the_region(s3: Any, bucket: str) -> None:
    head = s3.head_bucket(Bucket=bucket)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"


def test_deleting_a_non_empty_bucket_is_bucket_not_empty(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert _error(exc) == ("BucketNotEmpty", 409)
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"x"


def test_deleting_a_missing_bucket_is_no_such_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=_name())
    assert _error(exc) == ("NoSuchBucket", 404)


def test_deleting_another_tenants_bucket_is_access_denied(
    s3: Any, s3_other: Any, bucket: str
) -> None:
    with pytest.raises(ClientError) as exc:
        s3_other.delete_bucket(Bucket=bucket)
    assert _error(exc) == ("AccessDenied", 403)
    s3.head_bucket(Bucket=bucket)


def test_deleted_bucket_name_can_be_created_again(s3: Any, s3_other: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name)
    s3_other.create_bucket(Bucket=name)
    try:
        with pytest.raises(ClientError) as exc:
            s3.head_bucket(Bucket=name)
        assert _error(exc) == ("403", 403)
    finally:
        s3_other.delete_bucket(Bucket=name)


def test_bucket_location_of_a_us_east_1_bucket_is_empty(s3: Any, bucket: str) -> None:
    """S3 answers an empty LocationConstraint for us-east-1, which boto3 reads as None."""
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None


def test_bucket_location_is_the_one_created_with(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    try:
        assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-central-1"
    finally:
        s3.delete_bucket(Bucket=name)


def test_bucket_location_of_a_missing_bucket_is_no_such_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_location(Bucket=_name())
    assert _error(exc) == ("NoSuchBucket", 404)
