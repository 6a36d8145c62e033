"""Crypto-shredding certificates: signed in Transit's form, verified offline, any change refused."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from blindstore.lifecycle.certificates import (
    CERTIFICATE_TYPE,
    CertificateInvalid,
    attach_signature,
    canonical_bytes,
    public_key_from_pem,
    public_key_pem,
    verify,
)

SIGNING_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def unsigned() -> dict[str, Any]:
    return {
        "type": CERTIFICATE_TYPE,
        "shred_id": "0f" * 16,
        "scope": "subject",
        "tenant": {"id": "ab" * 16, "name": "Clinique Saint-Éloi"},
        "keys": [{"name": "hgw-p-x", "existed": True, "versions": [1, 2]}],
        "destroyed": {"objects": 3, "bytes": 4096, "pending_uploads": 0, "blobs_deleted": 3},
        "grace_seconds": 0,
        "operator": "dpo@example.org",
    }


def signed(
    certificate: dict[str, Any] | None = None,
    *,
    key: Ed25519PrivateKey = SIGNING_KEY,
    version: int = 2,
) -> dict[str, Any]:
    """The certificate signed like Transit does: ``vault:vN:<base64 of 64 bytes>``."""
    body = unsigned() if certificate is None else certificate
    raw = key.sign(canonical_bytes(body))
    value = f"vault:v{version}:{base64.b64encode(raw).decode()}"
    return attach_signature(body, key_name="hgw-sign", key_version=version, signature=value)


PUBLIC_KEYS = {1: raw_public(OTHER_KEY), 2: raw_public(SIGNING_KEY)}


def test_a_certificate_signed_in_transit_form_verifies_with_its_key_version() -> None:
    certificate = signed()

    assert verify(certificate, PUBLIC_KEYS) == 2
    assert certificate["signature"] == {
        "algorithm": "ed25519",
        "transit_key": "hgw-sign",
        "key_version": 2,
        "value": certificate["signature"]["value"],
    }


def test_key_order_and_whitespace_of_the_file_do_not_matter() -> None:
    text = json.dumps(signed(), indent=4, ensure_ascii=True)
    reordered = dict(reversed(list(json.loads(text).items())))

    assert verify(reordered, PUBLIC_KEYS) == 2
    assert verify(json.loads(json.dumps(signed(), sort_keys=True)), PUBLIC_KEYS) == 2


def test_canonical_bytes_ignore_the_signature_and_sort_keys_without_whitespace() -> None:
    certificate = signed({"type": "t", "b": [1, "é"], "a": {"y": 1, "x": 2}})

    assert canonical_bytes(certificate) == '{"a":{"x":2,"y":1},"b":[1,"é"],"type":"t"}'.encode()


def _alter_count(c: dict[str, Any]) -> None:
    c["destroyed"]["objects"] = 2


def _add_key(c: dict[str, Any]) -> None:
    c["keys"].append({"name": "hgw-p-y", "existed": True, "versions": [1]})


def _add_member(c: dict[str, Any]) -> None:
    c["note"] = "nothing happened"


def _remove_member(c: dict[str, Any]) -> None:
    del c["operator"]


def _rename_tenant(c: dict[str, Any]) -> None:
    c["tenant"]["name"] = "Clinique Saint-Eloi"


@pytest.mark.parametrize(
    "alter", [_alter_count, _add_key, _add_member, _remove_member, _rename_tenant]
)
def test_any_change_to_the_signed_content_is_refused(alter: Any) -> None:
    certificate = copy.deepcopy(signed())
    alter(certificate)

    with pytest.raises(CertificateInvalid, match="altered or signed by another key"):
        verify(certificate, PUBLIC_KEYS)


def test_an_altered_signature_value_is_refused() -> None:
    certificate = signed()
    raw = bytearray(base64.b64decode(certificate["signature"]["value"].split(":")[2]))
    raw[10] ^= 1
    certificate["signature"]["value"] = f"vault:v2:{base64.b64encode(raw).decode()}"

    with pytest.raises(CertificateInvalid, match="does not match"):
        verify(certificate, PUBLIC_KEYS)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "vault:vN:<base64>"),
        ("v2:abc", "vault:vN:<base64>"),
        ("vault:v2:not base64!", "not valid base64"),
        (f"vault:v2:{base64.b64encode(bytes(63)).decode()}", "64 bytes"),
        (f"vault:vx:{base64.b64encode(bytes(64)).decode()}", "vault:vN:<base64>"),
        (None, "vault:vN:<base64>"),
    ],
)
def test_a_malformed_signature_value_is_refused_with_its_reason(value: object, reason: str) -> None:
    certificate = signed()
    certificate["signature"]["value"] = value

    with pytest.raises(CertificateInvalid, match=reason.replace("<", ".").replace(">", ".")):
        verify(certificate, PUBLIC_KEYS)


def test_a_signature_claiming_another_key_version_is_refused() -> None:
    certificate = signed()
    certificate["signature"]["key_version"] = 1

    with pytest.raises(CertificateInvalid):
        verify(certificate, PUBLIC_KEYS)


@pytest.mark.parametrize("version", [3, "1", None, True, 1.0])
def test_a_key_version_without_a_public_key_is_refused(version: object) -> None:
    certificate = signed(version=1)
    certificate["signature"]["key_version"] = version

    with pytest.raises(CertificateInvalid, match="no public key for signing key version"):
        verify(certificate, {1: raw_public(SIGNING_KEY)})


def test_a_signature_value_naming_another_version_than_key_version_is_refused() -> None:
    certificate = signed(version=2)
    certificate["signature"]["value"] = certificate["signature"]["value"].replace(
        "vault:v2:", "vault:v7:"
    )

    with pytest.raises(CertificateInvalid, match="key version 7 but key_version says 2"):
        verify(certificate, PUBLIC_KEYS)


def test_a_certificate_signed_by_another_key_is_refused() -> None:
    certificate = signed(key=OTHER_KEY)

    with pytest.raises(CertificateInvalid, match="signed by another key"):
        verify(certificate, PUBLIC_KEYS)


def test_a_document_of_another_type_is_refused() -> None:
    certificate = signed({**unsigned(), "type": "something/else"})

    with pytest.raises(CertificateInvalid, match="not a blindstore crypto-shredding certificate"):
        verify(certificate, PUBLIC_KEYS)


@pytest.mark.parametrize(
    "signature", [None, "vault:v2:abc", {"algorithm": "rsa-pss", "key_version": 2}]
)
def test_a_certificate_without_an_ed25519_signature_is_refused(signature: object) -> None:
    certificate = signed()
    certificate["signature"] = signature

    with pytest.raises(CertificateInvalid, match="no ed25519 signature"):
        verify(certificate, PUBLIC_KEYS)


def test_the_public_key_round_trips_through_pem() -> None:
    pem = public_key_pem(raw_public(SIGNING_KEY))

    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert public_key_from_pem(pem.encode()) == raw_public(SIGNING_KEY)


def test_a_pem_that_is_not_an_ed25519_key_is_refused() -> None:
    ec_pem = (
        generate_private_key(SECP256R1())
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )

    with pytest.raises(CertificateInvalid, match="not an ed25519 key"):
        public_key_from_pem(ec_pem)
    with pytest.raises(CertificateInvalid, match="not a PEM public key"):
        public_key_from_pem(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(CertificateInvalid, match="not a PEM public key"):
        public_key_from_pem(b"")
