"""The shipped OpenBao policies, applied by deploy/openbao/provision.sh to a real OpenBao 2.7.

Each identity logs in through its AppRole and is held to its job: the gateway wraps and unwraps
(and upserts data-subject keys only), the rewrap job rewraps without ever seeing a DEK, the key
administrator manages keys without letting key material out, the auditor only verifies
(SECURITY-NOTES §2.6, §5.3 case 24).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from blindstore.devtools.openbao import OpenBaoServer, start_openbao
from blindstore.errors import KeyServiceError
from blindstore.keys.base import WrappedDek, dek_context
from blindstore.keys.credentials import seal_secret, unseal_secret
from blindstore.keys.service import KeyService
from blindstore.keys.transit import KEY_SETTINGS, TransitKeyWrapper
from tests.gwserver import start_gateway
from tests.integration.provisioned import ROLES, call, login, run_provision

MiB = 1024 * 1024
TENANT_ID = secrets.token_bytes(16)
SIGN_KEY = "hgw-sign"
AUDIT_KEY = "hgw-audit"
CREDS_KEY = "hgw-creds"
S3_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUBJECTS_KEY = "hgw-subjects"


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    with start_openbao(workdir=tmp_path_factory.mktemp("lp-openbao"), audit=True) as server:
        yield server


@pytest.fixture(scope="module")
def credentials(bao: OpenBaoServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lp") / "credentials"
    run_provision(bao, "--out", str(out))
    return out


@pytest.fixture(scope="module")
def tokens(bao: OpenBaoServer, credentials: Path) -> dict[str, str]:
    return {role.removeprefix("blindstore-"): login(bao, credentials, role) for role in ROLES}


@pytest.fixture(scope="module")
def tenant_key(bao: OpenBaoServer, tokens: dict[str, str]) -> str:
    """A tenant key created by the key administrator, with the settings blindstore sends."""
    name = _tenant_key_name()
    status, body = call(bao, tokens["kms-admin"], "POST", f"transit/keys/{name}", {**KEY_SETTINGS})
    assert status == 200, body
    return name


def _tenant_key_name() -> str:
    return f"hgw-t-{secrets.token_hex(16)}"


def _subject_key_name() -> str:
    return f"hgw-p-{TENANT_ID.hex()}-{secrets.token_hex(16)}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _context(object_id: bytes | None = None) -> str:
    return _b64(dek_context(TENANT_ID, object_id or secrets.token_bytes(16)))


def _wrap_item() -> dict[str, str]:
    return {"plaintext": _b64(secrets.token_bytes(32)), "context": _context()}


def _wrapper(bao: OpenBaoServer, token: str) -> TransitKeyWrapper:
    return TransitKeyWrapper(url=bao.addr, token=token)


def _wrap(bao: OpenBaoServer, token: str, key: str, count: int = 1) -> list[Any]:
    async def main() -> list[Any]:
        wrapper = _wrapper(bao, token)
        try:
            return await wrapper.wrap_batch(key, TENANT_ID, count)
        finally:
            await wrapper.close()

    return anyio.run(main)


def _root_key(bao: OpenBaoServer, key: str) -> tuple[int, dict[str, Any]]:
    return call(bao, bao.token, "GET", f"transit/keys/{key}")


# --------------------------------------------------------------------------- provisioning


def test_provisioning_configures_upsert_the_audit_header_the_roles_and_the_signing_key(
    bao: OpenBaoServer, credentials: Path, tmp_path: Path
) -> None:
    again = run_provision(bao, "--no-secret-ids")  # idempotent: a second run changes nothing
    assert "secret_id" not in again.stdout
    assert call(bao, bao.token, "GET", "transit/config/keys")[1]["data"]["disable_upsert"] is False
    status, headers = call(
        bao, bao.token, "GET", "sys/config/auditing/request-headers/x-blindstore-justification"
    )
    assert status == 200
    assert headers["data"]["x-blindstore-justification"]["hmac"] is False
    assert _root_key(bao, SIGN_KEY)[1]["data"]["type"] == "ed25519"
    audit_key = _root_key(bao, AUDIT_KEY)[1]["data"]
    assert (audit_key["type"], audit_key["deletion_allowed"]) == ("ed25519", False)
    creds_key = _root_key(bao, CREDS_KEY)[1]["data"]
    assert {name: creds_key[name] for name in KEY_SETTINGS} == dict(KEY_SETTINGS)
    subjects_key = _root_key(bao, SUBJECTS_KEY)[1]["data"]
    assert (subjects_key["type"], subjects_key["exportable"]) == ("hmac", False)
    role = call(bao, bao.token, "GET", "auth/approle/role/blindstore-gateway")[1]["data"]
    assert role["token_policies"] == ["blindstore-gateway"]
    assert role["token_no_default_policy"] is True
    assert role["token_ttl"] == 3600
    for name in ROLES:
        assert (credentials / f"{name}.secret_id").stat().st_mode & 0o077 == 0


def test_secret_ids_can_be_response_wrapped(bao: OpenBaoServer, tmp_path: Path) -> None:
    run_provision(bao, "--out", str(tmp_path), "--wrap-ttl", "2m")
    wrapping_token = (tmp_path / "blindstore-gateway.secret_id.wrapped").read_text().strip()
    status, unwrapped = call(bao, wrapping_token, "POST", "sys/wrapping/unwrap")
    assert status == 200
    assert unwrapped["data"]["secret_id"]
    # Single use: a second unwrap (an interceptor's, or ours) is refused.
    assert call(bao, wrapping_token, "POST", "sys/wrapping/unwrap")[0] in (400, 403)


# --------------------------------------------------------------------------- gateway


def _refused_requests(key: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    ciphertext = "vault:v1:" + _b64(secrets.token_bytes(60))
    return [
        ("POST", f"transit/keys/{_tenant_key_name()}", dict(KEY_SETTINGS)),  # create
        ("GET", f"transit/keys/{key}", None),  # read
        ("LIST", "transit/keys", None),
        ("POST", f"transit/keys/{key}/rotate", {}),
        ("POST", f"transit/keys/{key}/config", {"deletion_allowed": True}),
        ("POST", f"transit/keys/{key}/config", {"min_decryption_version": 1}),
        ("POST", f"transit/keys/{key}/trim", {"min_available_version": 1}),
        ("DELETE", f"transit/keys/{key}", None),
        ("DELETE", f"transit/keys/{key}/soft-delete", None),
        ("GET", f"transit/export/encryption-key/{key}", None),
        ("GET", f"transit/backup/{key}", None),
        ("POST", f"transit/restore/{key}", {"backup": _b64(b"x")}),
        ("POST", "transit/restore", {"backup": _b64(b"x")}),
        ("POST", f"transit/datakey/plaintext/{key}", {"context": _context()}),
        ("POST", f"transit/datakey/wrapped/{key}", {"context": _context()}),
        ("POST", f"transit/rewrap/{key}", {"ciphertext": ciphertext, "context": _context()}),
        ("POST", f"transit/sign/{SIGN_KEY}", {"input": _b64(b"certificate")}),
        ("POST", f"transit/sign/{key}", {"input": _b64(b"x")}),
        ("POST", "transit/sign/other-key", {"input": _b64(b"x")}),
        ("POST", f"transit/sign/{AUDIT_KEY}/sha2-256", {"input": _b64(b"x")}),
        ("POST", f"transit/sign/{AUDIT_KEY}", {"input": _b64(b"x"), "key_version": 1}),
        ("POST", f"transit/keys/{AUDIT_KEY}/rotate", {}),
        ("GET", f"transit/keys/{AUDIT_KEY}", None),
        ("POST", "transit/config/keys", {"disable_upsert": True}),
        # HMAC: with the subject digest key only, its default algorithm, no other parameter.
        ("POST", f"transit/hmac/{key}", {"input": _b64(b"x")}),
        ("POST", f"transit/hmac/{AUDIT_KEY}", {"input": _b64(b"x")}),
        ("POST", f"transit/hmac/{SUBJECTS_KEY}/sha2-512", {"input": _b64(b"x")}),
        ("POST", f"transit/hmac/{SUBJECTS_KEY}", {"input": _b64(b"x"), "algorithm": "sha1"}),
        ("POST", f"transit/keys/{SUBJECTS_KEY}/rotate", {}),
        ("GET", f"transit/keys/{SUBJECTS_KEY}", None),
        ("POST", "sys/policies/acl/blindstore-gateway", {"policy": 'path "*" {}'}),
        # Encrypt beyond what the gateway sends: an older key version, associated data.
        ("POST", f"transit/encrypt/{key}", {"batch_input": [_wrap_item()], "key_version": 1}),
        ("POST", f"transit/encrypt/{key}", {**_wrap_item(), "associated_data": _b64(b"x")}),
    ]


def test_gateway_identity_is_refused_all_key_administration_and_key_material(
    bao: OpenBaoServer, tokens: dict[str, str], tenant_key: str
) -> None:
    refused = {
        f"{method} {path.replace(tenant_key, '<key>')}": call(
            bao, tokens["gateway"], method, path, body
        )[0]
        for method, path, body in _refused_requests(tenant_key)
    }
    assert refused == dict.fromkeys(refused, 403)


def test_gateway_identity_signs_audit_checkpoints_with_hgw_audit_and_the_auditor_verifies(
    bao: OpenBaoServer, tokens: dict[str, str]
) -> None:
    checkpoint = {"input": _b64(b'["blindstore-audit-checkpoint/v1",1,"00",1.0]')}
    status, body = call(bao, tokens["gateway"], "POST", f"transit/sign/{AUDIT_KEY}", checkpoint)
    assert status == 200, body
    signature = body["data"]["signature"]
    status, body = call(
        bao,
        tokens["auditor"],
        "POST",
        f"transit/verify/{AUDIT_KEY}",
        {**checkpoint, "signature": signature},
    )
    assert (status, body["data"]["valid"]) == (200, True)
    assert call(bao, tokens["auditor"], "GET", f"transit/keys/{AUDIT_KEY}")[0] == 200
    refused = {
        "auditor signs": call(
            bao, tokens["auditor"], "POST", f"transit/sign/{AUDIT_KEY}", checkpoint
        )[0],
        "admin signs": call(
            bao, tokens["kms-admin"], "POST", f"transit/sign/{AUDIT_KEY}", checkpoint
        )[0],
        "admin deletes": call(bao, tokens["kms-admin"], "DELETE", f"transit/keys/{AUDIT_KEY}")[0],
    }
    assert refused == dict.fromkeys(refused, 403)


def test_gateway_identity_cannot_upsert_a_missing_tenant_key(
    bao: OpenBaoServer, tokens: dict[str, str]
) -> None:
    missing = _tenant_key_name()
    body = {"batch_input": [_wrap_item()]}
    assert call(bao, tokens["gateway"], "POST", f"transit/encrypt/{missing}", body)[0] == 403
    assert _root_key(bao, missing)[0] == 404


def test_gateway_identity_wraps_and_unwraps_under_an_existing_tenant_key(
    bao: OpenBaoServer, tokens: dict[str, str], tenant_key: str
) -> None:
    async def main() -> None:
        wrapper = _wrapper(bao, tokens["gateway"])
        try:
            keys = await wrapper.wrap_batch(tenant_key, TENANT_ID, 3)
            items = [WrappedDek(TENANT_ID, k.object_id, k.wrapped) for k in keys]
            # A wrapped DEK moved onto another object fails alone in its batch.
            moved = WrappedDek(TENANT_ID, secrets.token_bytes(16), keys[0].wrapped)
            outcomes = await wrapper.unwrap_batch(tenant_key, [*items, moved])
            assert outcomes[:3] == [k.dek for k in keys]
            assert isinstance(outcomes[3], Exception)
        finally:
            await wrapper.close()

    anyio.run(main)


def _seal(bao: OpenBaoServer, token: str, access_key_id: str = "BSLEASTPRIVILEGE0001") -> str:
    async def main() -> str:
        wrapper = _wrapper(bao, token)
        try:
            return await seal_secret(wrapper, CREDS_KEY, TENANT_ID, access_key_id, S3_SECRET)
        finally:
            await wrapper.close()

    return anyio.run(main)


def _unseal(bao: OpenBaoServer, token: str, sealed: str) -> str:
    async def main() -> str:
        wrapper = _wrapper(bao, token)
        try:
            return await unseal_secret(
                wrapper, CREDS_KEY, TENANT_ID, "BSLEASTPRIVILEGE0001", sealed
            )
        finally:
            await wrapper.close()

    return anyio.run(main)


def test_gateway_identity_seals_and_unseals_s3_secrets_but_cannot_create_the_key(
    bao: OpenBaoServer, tokens: dict[str, str]
) -> None:
    sealed = _seal(bao, tokens["gateway"])
    assert _unseal(bao, tokens["gateway"], sealed) == S3_SECRET
    gateway = tokens["gateway"]
    refused = {
        "create": call(bao, gateway, "POST", f"transit/keys/{CREDS_KEY}", {**KEY_SETTINGS})[0],
        "read": call(bao, gateway, "GET", f"transit/keys/{CREDS_KEY}")[0],
        "rotate": call(bao, gateway, "POST", f"transit/keys/{CREDS_KEY}/rotate", {})[0],
        "sign": call(bao, gateway, "POST", f"transit/sign/{CREDS_KEY}", {"input": "AA=="})[0],
        "upsert another prefix key": call(
            bao, gateway, "POST", "transit/encrypt/hgw-credsx", {"batch_input": [_wrap_item()]}
        )[0],
    }
    assert refused == dict.fromkeys(refused, 403)


def test_kms_admin_seals_s3_secrets_but_never_unseals_them(
    bao: OpenBaoServer, tokens: dict[str, str]
) -> None:
    sealed = _seal(bao, tokens["kms-admin"])
    with pytest.raises(KeyServiceError):
        _unseal(bao, tokens["kms-admin"], sealed)
    # What the administrator sealed, the gateway opens.
    assert _unseal(bao, tokens["gateway"], sealed) == S3_SECRET
    refused = {
        "rewrap job unseals": call(
            bao, tokens["rewrap"], "POST", f"transit/decrypt/{CREDS_KEY}", {"ciphertext": "x"}
        )[0],
        "auditor unseals": call(
            bao, tokens["auditor"], "POST", f"transit/decrypt/{CREDS_KEY}", {"ciphertext": "x"}
        )[0],
    }
    assert refused == dict.fromkeys(refused, 403)


def test_gateway_identity_upserts_a_subject_key_derived_and_never_exportable(
    bao: OpenBaoServer, tokens: dict[str, str]
) -> None:
    subject_key = _subject_key_name()
    keys = _wrap(bao, tokens["gateway"], subject_key, count=2)

    async def unwrap() -> list[bytes | Exception]:
        wrapper = _wrapper(bao, tokens["gateway"])
        try:
            items = [WrappedDek(TENANT_ID, k.object_id, k.wrapped) for k in keys]
            return list(await wrapper.unwrap_batch(subject_key, items))
        finally:
            await wrapper.close()

    assert anyio.run(unwrap) == [k.dek for k in keys]
    status, body = _root_key(bao, subject_key)
    assert status == 200
    settings = {name: body["data"][name] for name in KEY_SETTINGS}
    assert settings == dict(KEY_SETTINGS)
    assert body["data"]["convergent_encryption"] is False
    assert body["data"]["deletion_allowed"] is False


@pytest.mark.parametrize(
    "extra",
    [
        {"type": "chacha20-poly1305"},
        {"type": "aes128-gcm96"},
        {"convergent_encryption": True},
        {"key_version": 1},
    ],
    ids=["type", "weaker-type", "convergent", "key_version"],
)
def test_gateway_identity_cannot_choose_the_settings_of_an_upserted_key(
    bao: OpenBaoServer, tokens: dict[str, str], extra: dict[str, Any]
) -> None:
    subject_key = _subject_key_name()
    body = {"batch_input": [_wrap_item()], **extra}
    assert call(bao, tokens["gateway"], "POST", f"transit/encrypt/{subject_key}", body)[0] == 403
    assert _root_key(bao, subject_key)[0] == 404


def test_gateway_identity_keys_subject_digests_with_hgw_subjects(
    bao: OpenBaoServer, tokens: dict[str, str]
) -> None:
    digest = secrets.token_bytes(32)

    async def keyed() -> bytes:
        wrapper = _wrapper(bao, tokens["gateway"])
        try:
            return await wrapper.hmac(SUBJECTS_KEY, digest)
        finally:
            await wrapper.close()

    first = anyio.run(keyed)
    assert len(first) == 32
    assert first != digest
    assert anyio.run(keyed) == first


def test_the_gateway_serves_s3_with_its_least_privilege_identity(
    bao: OpenBaoServer, tokens: dict[str, str], tmp_path: Path
) -> None:
    # Tenant keys are created by the key administrator (`blindstore tenants create` under the
    # blindstore-kms-admin identity): the gateway's identity may not create them.
    running = start_gateway(
        tmp_path,
        vault_addr=bao.addr,
        vault_token=tokens["gateway"],
        admin_token=tokens["kms-admin"],
        tenants=("demo",),
    )
    try:
        s3 = running.client("demo")
        s3.create_bucket(Bucket="records")
        s3.put_object(Bucket="records", Key="scan.dcm", Body=b"radiology" * 1000)
        assert s3.get_object(Bucket="records", Key="scan.dcm")["Body"].read() == (
            b"radiology" * 1000
        )
        parts = [secrets.token_bytes(5 * MiB), secrets.token_bytes(1000)]
        upload = s3.create_multipart_upload(Bucket="records", Key="big.bin")["UploadId"]
        etags = [
            s3.upload_part(
                Bucket="records", Key="big.bin", UploadId=upload, PartNumber=n, Body=part
            )["ETag"]
            for n, part in enumerate(parts, start=1)
        ]
        s3.complete_multipart_upload(
            Bucket="records",
            Key="big.bin",
            UploadId=upload,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]
            },
        )
        # Past the unwrap cache: the GET below reaches Transit with the gateway's token.
        cast(KeyService, running.gateway.keys).cache.clear()
        assert s3.get_object(Bucket="records", Key="big.bin")["Body"].read() == b"".join(parts)
    finally:
        running.stop()


# --------------------------------------------------------------------------- rewrap job


def test_rewrap_identity_rewraps_to_the_latest_version_but_never_decrypts(
    bao: OpenBaoServer, tokens: dict[str, str]
) -> None:
    key = _tenant_key_name()
    created = call(bao, tokens["kms-admin"], "POST", f"transit/keys/{key}", {**KEY_SETTINGS})
    assert created[0] == 200
    (data_key,) = _wrap(bao, tokens["gateway"], key)
    assert call(bao, tokens["kms-admin"], "POST", f"transit/keys/{key}/rotate", {})[0] == 200
    rewrap = tokens["rewrap"]
    context = _b64(dek_context(TENANT_ID, data_key.object_id))

    status, body = call(bao, rewrap, "GET", f"transit/keys/{key}")
    assert (status, body["data"]["latest_version"]) == (200, 2)
    status, body = call(
        bao,
        rewrap,
        "POST",
        f"transit/rewrap/{key}",
        {"batch_input": [{"ciphertext": data_key.wrapped, "context": context}]},
    )
    assert status == 200, body
    rewrapped = body["data"]["batch_results"][0]["ciphertext"]
    assert rewrapped.startswith("vault:v2:")
    # The rewrapped DEK is the same DEK, as the gateway sees it.
    status, body = call(
        bao,
        tokens["gateway"],
        "POST",
        f"transit/decrypt/{key}",
        {"batch_input": [{"ciphertext": rewrapped, "context": context}]},
    )
    assert base64.b64decode(body["data"]["batch_results"][0]["plaintext"]) == data_key.dek

    decrypt = {"ciphertext": rewrapped, "context": context}
    refused = {
        "decrypt": call(bao, rewrap, "POST", f"transit/decrypt/{key}", decrypt)[0],
        "encrypt": call(bao, rewrap, "POST", f"transit/encrypt/{key}", _wrap_item())[0],
        "datakey": call(bao, rewrap, "POST", f"transit/datakey/plaintext/{key}", {})[0],
        "rotate": call(bao, rewrap, "POST", f"transit/keys/{key}/rotate", {})[0],
        "downgrade": call(
            bao, rewrap, "POST", f"transit/rewrap/{key}", {**decrypt, "key_version": 1}
        )[0],
        "export": call(bao, rewrap, "GET", f"transit/export/encryption-key/{key}")[0],
    }
    assert refused == dict.fromkeys(refused, 403)


# --------------------------------------------------------------------------- administration


def test_kms_admin_manages_the_key_lifecycle(bao: OpenBaoServer, tokens: dict[str, str]) -> None:
    admin = tokens["kms-admin"]
    key = _tenant_key_name()
    steps: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", f"transit/keys/{key}", dict(KEY_SETTINGS)),
        ("POST", f"transit/keys/{key}", {"type": "aes256-gcm96", "derived": "true"}),  # CLI form
        ("GET", f"transit/keys/{key}", None),
        ("LIST", "transit/keys", None),
        ("POST", f"transit/keys/{key}/rotate", {}),
        (
            "POST",
            f"transit/keys/{key}/config",
            {"min_decryption_version": 2, "min_encryption_version": 2},
        ),
        ("POST", f"transit/keys/{key}/trim", {"min_available_version": 2}),
        ("DELETE", f"transit/keys/{key}/soft-delete", None),
        ("POST", f"transit/keys/{key}/soft-delete-restore", {}),
        ("POST", f"transit/keys/{key}/config", {"deletion_allowed": True}),
        ("DELETE", f"transit/keys/{key}", None),
    ]
    statuses = [call(bao, admin, method, path, body)[0] for method, path, body in steps]
    assert statuses == [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 204]
    assert _root_key(bao, key)[0] == 404


def test_kms_admin_signs_with_hgw_sign_and_the_auditor_verifies(
    bao: OpenBaoServer, tokens: dict[str, str]
) -> None:
    certificate = {"input": _b64(b"tenant demo shredded at 2025-01-01T00:00:00Z")}
    status, body = call(bao, tokens["kms-admin"], "POST", f"transit/sign/{SIGN_KEY}", certificate)
    assert status == 200, body
    signature = body["data"]["signature"]
    status, body = call(
        bao,
        tokens["auditor"],
        "POST",
        f"transit/verify/{SIGN_KEY}",
        {**certificate, "signature": signature},
    )
    assert (status, body["data"]["valid"]) == (200, True)
    status, body = call(bao, tokens["auditor"], "GET", f"transit/keys/{SIGN_KEY}")
    assert status == 200
    assert body["data"]["keys"]["1"]["public_key"]
    refused = {
        "sign": call(bao, tokens["auditor"], "POST", f"transit/sign/{SIGN_KEY}", certificate)[0],
        "rotate": call(bao, tokens["auditor"], "POST", f"transit/keys/{SIGN_KEY}/rotate", {})[0],
        "delete-by-admin": call(bao, tokens["kms-admin"], "DELETE", f"transit/keys/{SIGN_KEY}")[0],
    }
    assert refused == dict.fromkeys(refused, 403)


def test_kms_admin_cannot_let_key_material_out_or_use_data_keys(
    bao: OpenBaoServer, tokens: dict[str, str], tenant_key: str
) -> None:
    admin = tokens["kms-admin"]
    new = _tenant_key_name()
    attempts: dict[str, tuple[str, str, dict[str, Any] | None]] = {
        "exportable key": ("POST", f"transit/keys/{new}", {**KEY_SETTINGS, "exportable": True}),
        "backupable key": (
            "POST",
            f"transit/keys/{new}",
            {**KEY_SETTINGS, "allow_plaintext_backup": True},
        ),
        "other key type": ("POST", f"transit/keys/{new}", {**KEY_SETTINGS, "type": "rsa-2048"}),
        "ed25519 tenant key": ("POST", f"transit/keys/{new}", {"type": "ed25519"}),
        "make exportable": ("POST", f"transit/keys/{tenant_key}/config", {"exportable": True}),
        "make backupable": (
            "POST",
            f"transit/keys/{tenant_key}/config",
            {"allow_plaintext_backup": True},
        ),
        "export": ("GET", f"transit/export/encryption-key/{tenant_key}", None),
        "backup": ("GET", f"transit/backup/{tenant_key}", None),
        "decrypt": ("POST", f"transit/decrypt/{tenant_key}", {"ciphertext": "vault:v1:AAAA"}),
        "encrypt": ("POST", f"transit/encrypt/{tenant_key}", _wrap_item()),
        "datakey": ("POST", f"transit/datakey/plaintext/{tenant_key}", {"context": _context()}),
        "upsert switch": ("POST", "transit/config/keys", {"disable_upsert": True}),
        "sign with a tenant key": ("POST", f"transit/sign/{tenant_key}", {"input": "AA=="}),
    }
    refused = {name: call(bao, admin, *attempt)[0] for name, attempt in attempts.items()}
    assert refused == dict.fromkeys(refused, 403)
    assert _root_key(bao, new)[0] == 404
