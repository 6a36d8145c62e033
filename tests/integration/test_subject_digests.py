"""Data-subject digests are keyed by OpenBao Transit (HMAC), so a patient id cannot be recovered
from the catalog by brute force; digests written before catalog revision 0009 are converted."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import anyio

from blindstore import runtime
from blindstore.catalog.base import SubjectKey
from blindstore.devtools.openbao import OpenBaoServer
from blindstore.lifecycle.shred import new_subject_shred
from blindstore.subjects import SUBJECT_HEADER
from tests.gwserver import start_gateway

NIR = "1 85 05 78 006 084 36"


def unkeyed_digest(tenant_id: bytes, subject: str) -> bytes:
    """The digest the catalog held before revision 0009 (spelled out: what a brute force
    of a catalog copy would test guesses against)."""
    return hashlib.sha256(b"hgw/v1/subject\x00" + tenant_id + subject.encode()).digest()


def _transit_hmac(openbao: OpenBaoServer, data: bytes) -> bytes:
    answer = openbao.request(
        "POST",
        "transit/hmac/hgw-subjects",
        {"input": base64.b64encode(data).decode(), "key_version": 1},
    )
    value = answer["data"]["hmac"]  # type: ignore[index]
    return base64.b64decode(value.removeprefix("vault:v1:"))


def test_the_stored_digest_is_the_transit_hmac_not_a_hash_of_the_id(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    gw = start_gateway(
        tmp_path / "gw", vault_addr=openbao.addr, vault_token=openbao.token, tenants=("demo",)
    )
    try:
        s3 = gw.client("demo")
        s3.create_bucket(Bucket="records")

        def add_subject(request: object, **_: object) -> None:
            request.headers[SUBJECT_HEADER] = NIR  # type: ignore[attr-defined]

        s3.meta.events.register("before-sign.s3.PutObject", add_subject)
        try:
            s3.put_object(Bucket="records", Key="scan.dcm", Body=b"scan")
        finally:
            s3.meta.events.unregister("before-sign.s3.PutObject", add_subject)
        tenant = gw.run(gw.gateway.catalog.get_tenant_by_name("demo"))
        assert tenant is not None
        [key] = gw.run(gw.gateway.catalog.list_subject_keys(tenant.tenant_id))
    finally:
        gw.stop()

    unkeyed = unkeyed_digest(tenant.tenant_id, NIR)
    # Whoever reads the catalog can no longer test guesses offline against the stored digest.
    assert key.subject_digest != unkeyed
    assert key.subject_digest == _transit_hmac(openbao, unkeyed)
    assert key.digest_keyed


def test_unkeyed_digests_are_converted_at_start_and_shredding_still_finds_the_subject(
    openbao: OpenBaoServer, tmp_path: Path
) -> None:
    gw = start_gateway(
        tmp_path / "gw", vault_addr=openbao.addr, vault_token=openbao.token, tenants=("demo",)
    )
    tenant = gw.run(gw.gateway.catalog.get_tenant_by_name("demo"))
    assert tenant is not None
    name = f"hgw-p-{tenant.tenant_id.hex()}-{'5a' * 16}"
    unkeyed = unkeyed_digest(tenant.tenant_id, NIR)
    # A row as catalog revisions before 0009 wrote it.
    gw.run(
        gw.gateway.catalog.add_subject_key(
            SubjectKey(name, tenant.tenant_id, unkeyed, 1.0, digest_keyed=False)
        )
    )
    settings = gw.settings
    gw.stop()

    async def restart_and_shred() -> tuple[list[SubjectKey], tuple[str, ...], int]:
        async with runtime.open_gateway(settings) as gateway:
            keys = await gateway.catalog.list_subject_keys(tenant.tenant_id)
            shred = await new_subject_shred(
                gateway.catalog, tenant, NIR, grace=0, operator="dpo", keyed=gateway.keyed_subject
            )
            left = len(await gateway.catalog.unkeyed_subject_keys())
        return keys, shred.key_names, left

    keys, shredded, left = anyio.run(restart_and_shred)
    assert [(k.key_name, k.subject_digest, k.digest_keyed) for k in keys] == [
        (name, _transit_hmac(openbao, unkeyed), True)
    ]
    assert shredded == (name,)
    assert left == 0
