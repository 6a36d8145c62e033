"""Someone with write access to the catalog database only (no Vault token, no backend access)
plants a pending upload in tenant B's bucket that points at tenant A's object: its id, wrapped
DEK, key and part blobs (issue 9, H1). B's CompleteMultipartUpload must be refused, and A's
plaintext never returned to B; A's object stays intact (its blobs are not deleted either)."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import create_engine, delete

from blindstore.catalog.base import ObjectRecord, Upload, UploadPart
from blindstore.catalog.records import part_values, upload_values
from blindstore.catalog.schema import upload_parts, uploads
from blindstore.catalog.sql import SqlCatalog
from tests.gwserver import RunningGateway
from tests.integration import blobs

MiB = 1024 * 1024
SECRET = os.urandom(5 * MiB) + b"the rest of demo's patient record"


def _sql(gw: RunningGateway) -> Any:
    return create_engine(gw.settings.catalog.url)


@pytest.fixture
def victim(s3: Any, bucket: str, gw: RunningGateway) -> ObjectRecord:
    """Tenant demo's (A's) two-part object."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key="record")["UploadId"]
    etags = [
        s3.upload_part(Bucket=bucket, Key="record", UploadId=uid, PartNumber=n, Body=body)["ETag"]
        for n, body in ((1, SECRET[: 5 * MiB]), (2, SECRET[5 * MiB :]))
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="record",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    return blobs.record(gw, bucket, "record")


@pytest.fixture
def theirs(s3_other: Any, gw: RunningGateway) -> Iterator[str]:
    """A bucket of tenant other (B); planted rows are removed afterwards."""
    name = f"other-{secrets.token_hex(6)}"
    s3_other.create_bucket(Bucket=name)
    yield name
    engine = _sql(gw)
    try:
        with engine.begin() as conn:
            planted = [
                row.upload_id for row in conn.execute(uploads.select()) if row.bucket == name
            ]
            conn.execute(delete(upload_parts).where(upload_parts.c.upload_id.in_(planted)))
            conn.execute(delete(uploads).where(uploads.c.bucket == name))
    finally:
        engine.dispose()
    for item in s3_other.list_objects_v2(Bucket=name).get("Contents", []):
        s3_other.delete_object(Bucket=name, Key=item["Key"])
    s3_other.delete_bucket(Bucket=name)


def _plant(gw: RunningGateway, upload: Upload, victim: ObjectRecord, mac: bytes | None) -> None:
    """INSERT the upload and one part row per part of the victim, as an insider would."""
    values = upload_values(upload)
    if mac is not None:
        values["row_mac"] = mac
    engine = _sql(gw)
    try:
        with engine.begin() as conn:
            conn.execute(uploads.insert(), values)
            for p in victim.parts:
                part = UploadPart(
                    upload.upload_id,
                    p.part_number,
                    p.blob,
                    p.size,
                    p.stored_size,
                    p.etag,
                    time.time(),
                    backends=victim.backends,
                )
                conn.execute(upload_parts.insert(), part_values(part))
    finally:
        engine.dispose()


def _tenant(gw: RunningGateway, name: str) -> Any:
    return gw.run(gw.gateway.catalog.get_tenant_by_name(name))


@pytest.mark.parametrize("disguise", ["as the victim", "as the caller"])
def test_an_upload_planted_in_another_tenants_bucket_never_completes_into_a_read(
    gw: RunningGateway,
    s3: Any,
    s3_other: Any,
    bucket: str,
    victim: ObjectRecord,
    theirs: str,
    disguise: str,
) -> None:
    caller = _tenant(gw, "other")
    upload = Upload(
        upload_id=f"planted-{secrets.token_hex(8)}",
        bucket=theirs,
        key="loot",
        # "as the victim": the row keeps A's tenant and container, so the DEK unwraps in A's
        # Transit context. "as the caller": B's tenant and container, and a made-up MAC.
        tenant_id=victim.tenant_id if disguise == "as the victim" else caller.tenant_id,
        object_id=victim.object_id,
        backends=victim.backends,
        container=victim.container if disguise == "as the victim" else caller.container,
        wrapped_dek=victim.wrapped_dek,
        key_name=victim.key_name,
        key_version=victim.key_version,
        initiated=time.time(),
    )
    _plant(gw, upload, victim, None if disguise == "as the victim" else os.urandom(32))
    parts = [{"PartNumber": p.part_number, "ETag": f'"{p.etag}"'} for p in victim.parts]

    with pytest.raises(ClientError) as info:
        s3_other.complete_multipart_upload(
            Bucket=theirs, Key="loot", UploadId=upload.upload_id, MultipartUpload={"Parts": parts}
        )

    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert info.value.response["Error"]["Code"] == "InternalError"
    assert gw.run(gw.gateway.catalog.get_object(theirs, "loot")) is None
    with pytest.raises(ClientError) as read:
        s3_other.get_object(Bucket=theirs, Key="loot")
    assert read.value.response["Error"]["Code"] == "NoSuchKey"
    # A's object is intact: aborting the planted upload deletes none of its blobs (refused when
    # the row names another tenant; otherwise its unauthenticated parts are left to gc).
    if disguise == "as the victim":
        with pytest.raises(ClientError):
            s3_other.abort_multipart_upload(Bucket=theirs, Key="loot", UploadId=upload.upload_id)
    else:
        s3_other.abort_multipart_upload(Bucket=theirs, Key="loot", UploadId=upload.upload_id)
    got = s3.get_object(Bucket=bucket, Key="record")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(SECRET).digest()


def test_the_object_id_of_a_live_object_is_refused_to_any_other_row(
    gw: RunningGateway, victim: ObjectRecord, theirs: str
) -> None:
    """Even if the MACs were somehow right, a completion may not reuse a live object's id."""
    catalog: SqlCatalog = gw.gateway.catalog  # type: ignore[assignment]
    caller = _tenant(gw, "other")
    clone = ObjectRecord(
        **{
            **{f: getattr(victim, f) for f in victim.__dataclass_fields__},
            "bucket": theirs,
            "key": "loot",
            "tenant_id": caller.tenant_id,
            "container": caller.container,
        }
    )
    with pytest.raises(Exception, match="object id already used"):
        gw.run(catalog.put_object(clone))
