"""OpenBao unreachable (SECURITY-NOTES §5.3 cases 17 and 18; DESIGN.md §4).

The documented availability choices, exercised against a real OpenBao that the test stops:

* PUT needs a fresh pre-wrapped DEK. While the tenant's pool still holds one, a PUT succeeds
  during the outage; once the pool is empty, PUT (and CreateMultipartUpload) fail closed with
  503 ServiceUnavailable and write nothing: no catalog row, no blob, no temporary file.
* GET needs the object's DEK. If it was written or unwrapped within the cache TTL (60 s at
  most) the GET is served from the cache (200); otherwise it fails closed with 503 and no object
  byte. Once the TTL has run out a cached object fails the same way (unit-tested with a fake
  clock in tests/unit/keys; here the expiry is stood for by evicting the entry).
* HEAD and LIST read only the catalog: they keep working.
* Authentication: a client whose secret this gateway already unsealed keeps working (its sealed
  row is re-read, not re-opened); an access key not unsealed yet answers 503, not AccessDenied.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from blindstore.devtools.openbao import OpenBaoServer
from tests.gwserver import RunningGateway, start_gateway
from tests.integration import blobs, rawhttp

BUCKET = "outage"


def _assert_unavailable(call: Any, **kwargs: Any) -> None:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    assert info.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_a_vault_outage_fails_closed_except_for_pooled_and_cached_keys(
    disposable_openbao: OpenBaoServer, tmp_path: Path
) -> None:
    gw = start_gateway(
        tmp_path / "gateway",
        vault_addr=disposable_openbao.addr,
        vault_token=disposable_openbao.token,
        tenants=("demo",),
        overrides={"keys": {"pool_size": 1}},
    )
    try:
        _outage(gw, disposable_openbao)
    finally:
        gw.stop()


def _evict(gw: RunningGateway, key: str) -> None:
    """Drop an object's DEK from the gateway's cache (what the TTL does after 60 s)."""
    record = gw.run(gw.gateway.catalog.get_object(BUCKET, key))
    assert record is not None

    async def forget() -> None:
        gw.gateway.keys.forget(record.tenant_id, record.object_id)

    gw.run(forget())


def _outage(gw: RunningGateway, openbao: OpenBaoServer) -> None:
    s3 = gw.client("demo")
    s3.create_bucket(Bucket=BUCKET)
    read_before = os.urandom(50_000)
    never_read = os.urandom(50_000)
    s3.put_object(Bucket=BUCKET, Key="read-before", Body=read_before)
    assert s3.get_object(Bucket=BUCKET, Key="read-before")["Body"].read() == read_before
    s3.put_object(Bucket=BUCKET, Key="never-read", Body=never_read)
    # Its DEK was cached by the write; evicting it stands for the TTL running out.
    _evict(gw, "never-read")

    # Credentials never used on this gateway: their sealed secret needs Transit.
    late = gw.add_tenant("late")

    # Exactly one pre-wrapped DEK left in the pool when Vault goes away.
    tenant = gw.run(gw.gateway.catalog.get_tenant_by_name("demo"))
    assert tenant is not None
    pool = gw.gateway.keys.pool  # type: ignore[attr-defined]
    gw.run(pool.fill(tenant.key_name, tenant.tenant_id))
    assert pool.available(tenant.key_name, tenant.tenant_id) == 1
    openbao.stop()
    assert not openbao.running

    # Non-empty pool: the PUT is served from it (documented availability choice).
    during = os.urandom(1000)
    s3.put_object(Bucket=BUCKET, Key="written-during-outage", Body=during)
    assert pool.available(tenant.key_name, tenant.tenant_id) == 0
    # Written moments ago: its DEK is cached, so it reads back during the outage.
    assert s3.get_object(Bucket=BUCKET, Key="written-during-outage")["Body"].read() == during
    _evict(gw, "written-during-outage")

    # Empty pool: fail closed, nothing written anywhere.
    files_before = blobs.blob_files(gw)
    _assert_unavailable(s3.put_object, Bucket=BUCKET, Key="refused", Body=os.urandom(200_000))
    _assert_unavailable(s3.create_multipart_upload, Bucket=BUCKET, Key="refused-mp")
    assert gw.run(gw.gateway.catalog.get_object(BUCKET, "refused")) is None
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert blobs.blob_files(gw) == files_before
    assert not blobs.temp_files(gw)

    # No cached DEK: 503, and the answer holds no object byte.
    _assert_unavailable(s3.get_object, Bucket=BUCKET, Key="never-read")
    _assert_unavailable(s3.get_object, Bucket=BUCKET, Key="never-read", Range="bytes=0-9")
    _assert_unavailable(s3.get_object, Bucket=BUCKET, Key="written-during-outage")
    raw = rawhttp.signed(gw, "GET", rawhttp.object_path(BUCKET, "never-read"))
    assert raw.status == 503
    assert raw.code == "ServiceUnavailable"
    assert raw.headers["retry-after"] == "1"
    assert never_read[:16] not in raw.body

    # Copy needs the source's DEK (and a fresh one): refused too, and nothing is written.
    _assert_unavailable(
        s3.copy_object,
        Bucket=BUCKET,
        Key="copy",
        CopySource={"Bucket": BUCKET, "Key": "read-before"},
    )
    assert blobs.blob_files(gw) == files_before

    # DEK unwrapped within the cache TTL: still readable (documented availability choice).
    got = s3.get_object(Bucket=BUCKET, Key="read-before")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == read_before
    ranged = s3.get_object(Bucket=BUCKET, Key="read-before", Range="bytes=100-199")
    assert ranged["Body"].read() == read_before[100:200]

    # Metadata is answered only once the row MAC verified, which needs the DEK: a HEAD fails
    # closed without a cached one, and answers within the cache TTL.
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=BUCKET, Key="never-read")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503  # HEAD: no body
    head = s3.head_object(Bucket=BUCKET, Key="read-before")
    assert head["ContentLength"] == len(read_before)
    # Listing is catalog-only: it needs no key.
    listed = s3.list_objects_v2(Bucket=BUCKET)
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "never-read",
        "read-before",
        "written-during-outage",
    ]

    # An access key this gateway has not unsealed yet: 503, not AccessDenied (it is valid).
    _assert_unavailable(gw.client(late.tenant).list_buckets)
    raw = rawhttp.signed(gw, "GET", "/", creds=Credentials(late.access_key, late.secret_key))
    assert (raw.status, raw.code) == (503, "ServiceUnavailable")
