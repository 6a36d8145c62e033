"""Rotation without re-encryption, against a real OpenBao: rotate, rewrap, raise the floor."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from blindstore.devtools.openbao import OpenBaoServer
from blindstore.errors import KeyServiceError
from blindstore.keys.admin import TransitAdmin
from blindstore.keys.transit import TransitKeyWrapper, make_client
from blindstore.lifecycle.rewrap import rewrap_key
from tests.gwserver import RunningGateway
from tests.integration.keycli import (
    forget_cached_keys,
    fresh_tenant,
    keys_cli,
    record,
)

pytestmark = pytest.mark.usefixtures("lifecycle_gw")


def _blob_digests(root: Path) -> dict[str, tuple[str, int]]:
    """Every blob file under ``root``: content digest and modification time."""
    return {
        str(path.relative_to(root)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in root.rglob("*")
        if path.is_file()
    }


def _key_config(openbao: OpenBaoServer, name: str) -> dict[str, Any]:
    data = openbao.request("GET", f"transit/keys/{name}")["data"]
    assert isinstance(data, dict)
    return data


async def _unwrap(openbao: OpenBaoServer, key_name: str, tenant_id: bytes, rec: Any) -> bytes:
    wrapper = TransitKeyWrapper(url=openbao.addr, token=openbao.token)
    try:
        return await wrapper.unwrap(key_name, tenant_id, rec.object_id, rec.wrapped_dek)
    finally:
        await wrapper.close()


def test_rotate_then_rewrap_moves_every_wrapped_key_and_never_touches_the_data(
    lifecycle_gw: RunningGateway, openbao: OpenBaoServer
) -> None:
    gw = lifecycle_gw
    name, s3, bucket = fresh_tenant(gw)
    bodies = {f"scan-{i}.dcm": f"image {i} ".encode() * (i + 1) for i in range(5)}
    for key, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    pending = s3.create_multipart_upload(Bucket=bucket, Key="big.dcm")["UploadId"]
    part = s3.upload_part(
        Bucket=bucket, Key="big.dcm", UploadId=pending, PartNumber=1, Body=b"last part"
    )
    tenant = gw.run(gw.gateway.catalog.get_tenant_by_name(name))
    assert tenant is not None
    old = {key: record(gw, bucket, key) for key in bodies}
    assert {r.key_version for r in old.values()} == {1}
    blobs_before = _blob_digests(gw.blob_dir / tenant.container)

    rotated = keys_cli(gw, "rotate", "--tenant", name)
    assert rotated == {"rotated": [{"key": tenant.key_name, "latest_version": 2}]}
    # Old objects stay readable while nothing is rewrapped yet.
    for key, body in bodies.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    # New writes move to version 2 once the (small) pool of pre-wrapped version-1 keys is used.
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"new-{i}", Body=b"after rotation")
    assert record(gw, bucket, "new-3").key_version == 2

    below = gw.run(gw.gateway.catalog.count_wrapped_below(tenant.key_name, 2))
    assert below >= len(bodies) + 1  # the objects and the pending upload, at least
    summary = keys_cli(gw, "rewrap", "--tenant", name, "--settle", "0")
    assert summary["rewrapped"] == below
    assert summary["remaining"] == 0
    assert summary["details"][0]["min_decryption_version"] == 2
    assert _key_config(openbao, tenant.key_name)["min_decryption_version"] == 2

    # The ciphertext was not re-encrypted, moved or rewritten.
    blobs_after = _blob_digests(gw.blob_dir / tenant.container)
    assert {k: v for k, v in blobs_after.items() if k in blobs_before} == blobs_before
    for key in bodies:
        now = record(gw, bucket, key)
        assert now.key_version == 2
        assert now.wrapped_dek != old[key].wrapped_dek
        assert (now.object_id, now.parts, now.row_mac) == (
            old[key].object_id,
            old[key].parts,
            old[key].row_mac,
        )
    # Rewrapped DEKs unwrap through Transit (not just from the gateway's cache)...
    forget_cached_keys(gw)
    for key, body in bodies.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    # ...the upload started before the rotation completes...
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="big.dcm",
        UploadId=pending,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert s3.get_object(Bucket=bucket, Key="big.dcm")["Body"].read() == b"last part"
    # ...and a DEK still wrapped by version 1 is refused now that the floor is 2.
    with pytest.raises(KeyServiceError, match="version is disallowed by policy"):
        gw.run(_unwrap(openbao, tenant.key_name, tenant.tenant_id, old["scan-0.dcm"]))


def test_rewrap_is_resumable_after_an_interruption(
    lifecycle_gw: RunningGateway, openbao: OpenBaoServer
) -> None:
    gw = lifecycle_gw
    name, s3, bucket = fresh_tenant(gw)
    for i in range(7):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
    tenant = gw.run(gw.gateway.catalog.get_tenant_by_name(name))
    assert tenant is not None
    keys_cli(gw, "rotate", "--tenant", name)
    admin = TransitAdmin(make_client(openbao.addr, openbao.token))

    class Interrupted(Exception):
        pass

    def stop_after_first_batch(done: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        gw.run(
            rewrap_key(
                gw.gateway.catalog,
                admin,
                tenant.key_name,
                batch_size=3,
                settle=0,
                progress=stop_after_first_batch,
            )
        )
    assert gw.run(gw.gateway.catalog.count_wrapped_below(tenant.key_name, 2)) == 4

    summary = keys_cli(gw, "rewrap", "--tenant", name, "--settle", "0", "--batch-size", "3")
    assert summary["rewrapped"] == 4
    assert summary["remaining"] == 0
    assert summary["details"][0]["min_decryption_version"] == 2


def test_rewrap_keeps_old_versions_until_the_settle_time_has_passed(
    lifecycle_gw: RunningGateway, openbao: OpenBaoServer
) -> None:
    gw = lifecycle_gw
    name, s3, bucket = fresh_tenant(gw)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    tenant = gw.run(gw.gateway.catalog.get_tenant_by_name(name))
    assert tenant is not None
    keys_cli(gw, "rotate", "--tenant", name)

    summary = keys_cli(gw, "rewrap", "--tenant", name, "--settle", "1h")

    detail = summary["details"][0]
    assert detail["remaining"] == 0
    assert detail["min_decryption_version"] == 1
    assert "settle time" in detail["not_raised"]
    assert _key_config(openbao, tenant.key_name)["min_decryption_version"] == 1


def test_the_gateway_identity_cannot_rotate(
    lifecycle_gw: RunningGateway, openbao: OpenBaoServer, tmp_path: Path
) -> None:
    gw = lifecycle_gw
    name, _s3, _bucket = fresh_tenant(gw)
    openbao.request(
        "POST",
        "sys/policies/acl/rotation-test-gateway",
        {"policy": 'path "transit/encrypt/*" { capabilities = ["update"] }'},
    )
    created = openbao.request(
        "POST", "auth/token/create", {"policies": ["rotation-test-gateway"], "ttl": "5m"}
    )
    token_file = tmp_path / "token"
    token_file.write_text(str(created["auth"]["client_token"]), encoding="utf-8")  # type: ignore[index]

    result = keys_cli(
        gw, "rotate", "--tenant", name, "--vault-token-file", str(token_file), expect=2
    )

    assert "permission denied" in result.output
