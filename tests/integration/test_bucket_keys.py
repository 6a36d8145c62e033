"""Bucket-key mode and the no-pool/no-cache mode, through a real gateway and a real OpenBao.

Transit calls are counted in OpenBao's own audit log, per tenant key: what Vault saw, not what
the gateway believes it did.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from blindstore.catalog.base import Tenant
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.keys.admin import TransitAdmin
from blindstore.keys.bucketkeys import bucket_key_id_of
from blindstore.keys.transit import make_client
from blindstore.lifecycle.rewrap import rewrap_key
from tests.gwserver import RunningGateway, start_gateway
from tests.integration import blobs

BUCKET = "scans"
SMALL = 4096
BUCKET_KEYS = {"enabled": True, "buckets": [BUCKET]}


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[list[RunningGateway]]:
    """Gateways a test starts (appended to this list) are stopped after it."""
    started: list[RunningGateway] = []
    yield started
    for gw in started:
        gw.stop()


def _start(
    gateways: list[RunningGateway],
    openbao: OpenBaoServer,
    data_dir: Path,
    *,
    keys: dict[str, Any],
    previous: RunningGateway | None = None,
) -> RunningGateway:
    """A gateway on ``data_dir``; with ``previous``: a restart of it (same catalog and tenants)."""
    gw = start_gateway(
        data_dir,
        vault_addr=openbao.addr,
        vault_token=openbao.token,
        tenants=() if previous is not None else ("demo", "other"),
        overrides={"keys": keys},
    )
    gateways.append(gw)
    if previous is not None:
        gw.tenants = previous.tenants
    return gw


def _restart(
    gateways: list[RunningGateway], openbao: OpenBaoServer, gw: RunningGateway
) -> RunningGateway:
    gw.stop()
    gw._thread.join(30)
    return _start(
        gateways,
        openbao,
        gw.data_dir,
        keys=gw.settings.keys.model_dump(mode="json"),
        previous=gw,
    )


def _tenant(gw: RunningGateway, name: str) -> Tenant:
    tenant = gw.run(gw.gateway.catalog.get_tenant_by_name(name))
    assert tenant is not None
    return tenant


def _transit_calls(openbao: OpenBaoServer, key_name: str) -> dict[str, int]:
    """Requests OpenBao audited on this key, by operation (encrypt, decrypt)."""
    assert openbao.audit_log_path is not None
    counts = {"encrypt": 0, "decrypt": 0}
    for entry in map(json.loads, openbao.audit_log_path.read_text().splitlines()):
        if entry["type"] != "request":
            continue
        for operation in counts:
            if entry["request"].get("path") == f"transit/{operation}/{key_name}":
                counts[operation] += 1
    return counts


def _put_many(s3: Any, bucket: str, count: int, size: int = SMALL) -> dict[str, bytes]:
    objects = {f"obj-{i:03d}": os.urandom(size) for i in range(count)}
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    return objects


def _assert_refused(s3: Any, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key=key)
    assert info.value.response["Error"]["Code"] == "InternalError"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_many_small_objects_cost_one_transit_call_per_bucket_key_across_a_restart(
    openbao: OpenBaoServer, gateways: list[RunningGateway], tmp_path: Path
) -> None:
    gw = _start(gateways, openbao, tmp_path / "gw", keys={"bucket_keys": BUCKET_KEYS})
    s3 = gw.client("demo")
    s3.create_bucket(Bucket=BUCKET)
    key_name = _tenant(gw, "demo").key_name
    objects = _put_many(s3, BUCKET, 40)

    assert _transit_calls(openbao, key_name) == {"encrypt": 1, "decrypt": 0}
    rows = [blobs.record(gw, BUCKET, key) for key in objects]
    assert all(row.wrapped_dek.startswith("bk1:") for row in rows)
    assert {bucket_key_id_of(row.wrapped_dek) for row in rows} == {
        bucket_key_id_of(rows[0].wrapped_dek)
    }
    assert {row.key_version for row in rows} == {1}

    gw = _restart(gateways, openbao, gw)  # the bucket key is no longer in RAM
    s3 = gw.client("demo")
    for key, data in objects.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    assert _transit_calls(openbao, key_name) == {"encrypt": 1, "decrypt": 1}
    stats = gw.gateway.keys.stats()  # type: ignore[attr-defined]
    assert stats["bucket_keys_unwrapped"] == 1
    assert stats["bucket_keys_deks_unwrapped"] == 40


def test_buckets_outside_the_list_keep_one_transit_wrapped_dek_per_object(
    openbao: OpenBaoServer, gateways: list[RunningGateway], tmp_path: Path
) -> None:
    gw = _start(gateways, openbao, tmp_path / "gw", keys={"bucket_keys": BUCKET_KEYS})
    s3 = gw.client("demo")
    s3.create_bucket(Bucket="reports")
    objects = _put_many(s3, "reports", 3)
    assert all(blobs.record(gw, "reports", k).wrapped_dek.startswith("vault:v1:") for k in objects)


@pytest.mark.parametrize(
    ("bounds", "size", "expected_keys"),
    [({"max_uses": 4}, SMALL, 3), ({"max_bytes": 3 * SMALL}, SMALL, 4)],
    ids=["max_uses", "max_bytes"],
)
def test_a_new_bucket_key_is_created_when_a_bound_is_reached(
    openbao: OpenBaoServer,
    gateways: list[RunningGateway],
    tmp_path: Path,
    bounds: dict[str, int],
    size: int,
    expected_keys: int,
) -> None:
    gw = _start(gateways, openbao, tmp_path / "gw", keys={"bucket_keys": BUCKET_KEYS | bounds})
    s3 = gw.client("demo")
    s3.create_bucket(Bucket=BUCKET)
    objects = _put_many(s3, BUCKET, 10, size)

    ids = [bucket_key_id_of(blobs.record(gw, BUCKET, key).wrapped_dek) for key in objects]
    # In order: a key is retired once it reached its bound (the object crossing it is its last).
    assert len(set(ids)) == expected_keys
    assert ids == sorted(ids, key=ids.index)
    assert _transit_calls(openbao, _tenant(gw, "demo").key_name)["encrypt"] == expected_keys
    for kid in set(ids):
        row = gw.run(gw.gateway.catalog.get_bucket_key(kid))
        assert row is not None
        assert (row.tenant_id, row.bucket, row.key_version) == (
            _tenant(gw, "demo").tenant_id,
            BUCKET,
            1,
        )
    for key, data in objects.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data


def test_multipart_uploads_use_the_bucket_key_and_read_back(
    openbao: OpenBaoServer, gateways: list[RunningGateway], tmp_path: Path
) -> None:
    gw = _start(gateways, openbao, tmp_path / "gw", keys={"bucket_keys": BUCKET_KEYS})
    s3 = gw.client("demo")
    s3.create_bucket(Bucket=BUCKET)
    first, last = os.urandom(5 * 1024 * 1024), os.urandom(1000)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="mp")["UploadId"]
    etags = [
        s3.upload_part(Bucket=BUCKET, Key="mp", UploadId=upload, PartNumber=n, Body=body)["ETag"]
        for n, body in ((1, first), (2, last))
    ]
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
    )
    assert blobs.record(gw, BUCKET, "mp").wrapped_dek.startswith("bk1:")

    gw = _restart(gateways, openbao, gw)
    assert gw.client("demo").get_object(Bucket=BUCKET, Key="mp")["Body"].read() == first + last


def test_a_tampered_or_transplanted_bk1_value_fails_closed(
    openbao: OpenBaoServer, gateways: list[RunningGateway], tmp_path: Path
) -> None:
    gw = _start(gateways, openbao, tmp_path / "gw", keys={"bucket_keys": BUCKET_KEYS})
    s3, s3_other = gw.client("demo"), gw.client("other")
    s3.create_bucket(Bucket=BUCKET)
    _put_many(s3, BUCKET, 3)
    s3_other.create_bucket(Bucket="theirs")
    s3_other.put_object(Bucket="theirs", Key="x", Body=b"other tenant")
    a, b = blobs.record(gw, BUCKET, "obj-000"), blobs.record(gw, BUCKET, "obj-001")

    # One character of the sealed DEK changed; a DEK moved onto a sibling object.
    blob = a.wrapped_dek.rsplit(":", 1)[1]
    flipped = a.wrapped_dek[: -len(blob)] + ("B" if blob[10] == "A" else "A") + blob[11:]
    gw.run(gw.gateway.catalog.put_object(dataclasses.replace(a, wrapped_dek=flipped)))
    _assert_refused(s3, BUCKET, "obj-000")
    gw.run(gw.gateway.catalog.put_object(dataclasses.replace(b, wrapped_dek=a.wrapped_dek)))
    _assert_refused(s3, BUCKET, "obj-001")
    # Demo's DEK (and so its bucket key) claimed by the other tenant's object.
    theirs = blobs.record(gw, "theirs", "x")
    gw.run(gw.gateway.catalog.put_object(dataclasses.replace(theirs, wrapped_dek=a.wrapped_dek)))
    _assert_refused(s3_other, "theirs", "x")
    assert s3.get_object(Bucket=BUCKET, Key="obj-002")["Body"].read()


def test_a_bucket_key_row_moved_to_another_tenant_fails_closed(
    openbao: OpenBaoServer, gateways: list[RunningGateway], tmp_path: Path
) -> None:
    gw = _start(gateways, openbao, tmp_path / "gw", keys={"bucket_keys": BUCKET_KEYS})
    s3 = gw.client("demo")
    s3.create_bucket(Bucket=BUCKET)
    _put_many(s3, BUCKET, 2)
    kid = bucket_key_id_of(blobs.record(gw, BUCKET, "obj-000").wrapped_dek)
    other = _tenant(gw, "other")
    gw.stop()
    gw._thread.join(30)
    database = gw.settings.catalog.url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as conn:
        conn.execute(
            "UPDATE bucket_keys SET tenant_id = ?, key_name = ? WHERE bucket_key_id = ?",
            (other.tenant_id, other.key_name, kid),
        )
    conn.close()

    gw = _restart(gateways, openbao, gw)
    _assert_refused(gw.client("demo"), BUCKET, "obj-000")
    _assert_refused(gw.client("demo"), BUCKET, "obj-001")


def test_shredding_the_tenant_key_makes_bucket_key_objects_unreadable(
    openbao: OpenBaoServer, gateways: list[RunningGateway], tmp_path: Path
) -> None:
    gw = _start(gateways, openbao, tmp_path / "gw", keys={"bucket_keys": BUCKET_KEYS})
    s3 = gw.client("demo")
    s3.create_bucket(Bucket=BUCKET)
    objects = _put_many(s3, BUCKET, 3)
    key_name = _tenant(gw, "demo").key_name
    openbao.request("POST", f"transit/keys/{key_name}/config", {"deletion_allowed": True})
    openbao.request("DELETE", f"transit/keys/{key_name}")

    # The documented window: a bucket key already in RAM opens its objects until it expires.
    assert s3.get_object(Bucket=BUCKET, Key="obj-000")["Body"].read() == objects["obj-000"]
    gw = _restart(gateways, openbao, gw)
    s3 = gw.client("demo")
    for key in objects:
        _assert_refused(s3, BUCKET, key)
    # (A PUT would re-create the key here: this gateway runs on OpenBao's root token, and upsert
    # is on for data-subject keys. The gateway's real identity may not create tenant keys:
    # test_least_privilege.py proves that refusal.)


def test_without_pool_and_cache_every_put_and_get_is_one_transit_call(
    openbao: OpenBaoServer, gateways: list[RunningGateway], tmp_path: Path
) -> None:
    gw = _start(gateways, openbao, tmp_path / "gw", keys={"pool_size": 0, "cache_ttl_seconds": 0})
    s3 = gw.client("demo")
    s3.create_bucket(Bucket=BUCKET)
    objects = _put_many(s3, BUCKET, 5)
    for _ in range(2):
        for key, data in objects.items():
            assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    assert _transit_calls(openbao, _tenant(gw, "demo").key_name) == {"encrypt": 5, "decrypt": 10}


def test_rewrap_moves_bucket_keys_and_their_objects_stay_readable(
    openbao: OpenBaoServer, gateways: list[RunningGateway], tmp_path: Path
) -> None:
    gw = _start(gateways, openbao, tmp_path / "gw", keys={"bucket_keys": BUCKET_KEYS})
    s3 = gw.client("demo")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket="direct")  # not in bucket-key mode: Transit-wrapped DEKs
    objects = _put_many(s3, BUCKET, 5)
    s3.put_object(Bucket="direct", Key="k", Body=b"direct")
    tenant = _tenant(gw, "demo")
    (bucket_key,) = gw.run(gw.gateway.catalog.bucket_keys_below(tenant.key_name, 2))
    openbao.request("POST", f"transit/keys/{tenant.key_name}/rotate", {})
    admin = TransitAdmin(make_client(openbao.addr, openbao.token))

    report = gw.run(rewrap_key(gw.gateway.catalog, admin, tenant.key_name, settle=0))

    assert report.rewrapped == 2  # the bucket key and the one direct object, not 5 objects
    assert (report.remaining, report.failed, report.min_decryption_version) == (0, 0, 2)
    moved = gw.run(gw.gateway.catalog.get_bucket_key(bucket_key.bucket_key_id))
    assert moved is not None
    assert moved.key_version == 2
    assert moved.wrapped != bucket_key.wrapped
    gw = _restart(gateways, openbao, gw)  # nothing cached: the bucket key unwraps under v2
    s3 = gw.client("demo")
    for key, data in objects.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data
    assert s3.get_object(Bucket="direct", Key="k")["Body"].read() == b"direct"
