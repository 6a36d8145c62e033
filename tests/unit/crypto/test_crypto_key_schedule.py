"""Key derivations and the catalog row MAC, checked against an independent HKDF-Expand."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from blindstore.crypto import (
    IntegrityError,
    part_mac,
    row_mac,
    upload_mac,
    verify_part_mac,
    verify_row_mac,
    verify_upload_mac,
)

GOLDEN = Path(__file__).resolve().parents[2] / "vectors" / "hgw1.json"
DEK = bytes(range(32))
OBJECT = bytes(range(0x80, 0x90))
ROW = b"canonical row bytes"


def _hkdf_expand_sha512(prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 section 2.3, written out with the standard library."""
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), "sha512")
        okm += block
        counter += 1
    return okm[:length]


def test_the_golden_key_schedule_matches_an_independent_hkdf() -> None:
    golden = json.loads(GOLDEN.read_text())
    dek = bytes.fromhex(golden["dek"])
    for vector in golden["vectors"]:
        info = (
            b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\x00"
            + bytes.fromhex(vector["salt"])
            + bytes.fromhex(vector["context"])
        )
        okm = _hkdf_expand_sha512(dek, info, 76)
        assert okm.hex() == vector["aead_key"] + vector["base_nonce"] + vector["commitment"]


def test_the_golden_contexts_are_label_header_tenant_and_part() -> None:
    golden = json.loads(GOLDEN.read_text())
    tenant = bytes.fromhex(golden["tenant_id"])
    for vector in golden["vectors"]:
        header = bytes.fromhex(vector["header"])
        part = vector["part_number"]
        assert header == b"HGW1\x01" + bytes([1 if part else 0]) + b"\x00\x00" + OBJECT
        assert bytes.fromhex(vector["context"]) == (
            b"hgw/v1\x00" + header + tenant + part.to_bytes(4, "big")
        )


def test_the_row_mac_is_hmac_sha256_under_a_key_derived_from_the_dek() -> None:
    row_key = _hkdf_expand_sha512(DEK, b"hgw/v1/catalog-row" + OBJECT, 32)
    assert row_mac(DEK, OBJECT, ROW) == hmac.digest(row_key, ROW, hashlib.sha256)


def test_a_matching_row_mac_verifies() -> None:
    verify_row_mac(DEK, OBJECT, ROW, row_mac(DEK, OBJECT, ROW))


@pytest.mark.parametrize(
    ("dek", "object_id", "row", "mac_edit"),
    [
        (DEK, OBJECT, ROW + b" ", None),
        (DEK, bytes(16), ROW, None),
        (bytes(32), OBJECT, ROW, None),
        (DEK, OBJECT, ROW, "flip"),
        (DEK, OBJECT, ROW, "truncate"),
        (DEK[:31], OBJECT, ROW, None),
    ],
    ids=["edited row", "other object", "other dek", "flipped mac", "short mac", "short dek"],
)
def test_an_edited_row_or_mac_fails_verification(
    dek: bytes, object_id: bytes, row: bytes, mac_edit: str | None
) -> None:
    mac = bytearray(row_mac(DEK, OBJECT, ROW))
    if mac_edit == "flip":
        mac[0] ^= 1
    elif mac_edit == "truncate":
        del mac[-1]
    with pytest.raises(IntegrityError):
        verify_row_mac(dek, object_id, row, bytes(mac))


def test_row_mac_refuses_malformed_arguments() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        row_mac(DEK[:16], OBJECT, ROW)
    with pytest.raises(ValueError, match="16 bytes"):
        row_mac(DEK, OBJECT[:8], ROW)


def test_upload_and_part_macs_are_hmac_sha256_under_keys_with_their_own_labels() -> None:
    upload_key = _hkdf_expand_sha512(DEK, b"hgw/v1/catalog-upload" + OBJECT, 32)
    part_key = _hkdf_expand_sha512(DEK, b"hgw/v1/catalog-part" + OBJECT, 32)
    assert upload_mac(DEK, OBJECT, ROW) == hmac.digest(upload_key, ROW, hashlib.sha256)
    assert part_mac(DEK, OBJECT, ROW) == hmac.digest(part_key, ROW, hashlib.sha256)
    verify_upload_mac(DEK, OBJECT, ROW, upload_mac(DEK, OBJECT, ROW))
    verify_part_mac(DEK, OBJECT, ROW, part_mac(DEK, OBJECT, ROW))


def test_a_mac_of_one_kind_of_row_never_verifies_as_another() -> None:
    # A part row copied over an upload row (or an object row) must not pass for it.
    macs = {
        "row": row_mac(DEK, OBJECT, ROW),
        "upload": upload_mac(DEK, OBJECT, ROW),
        "part": part_mac(DEK, OBJECT, ROW),
    }
    verifiers = {"row": verify_row_mac, "upload": verify_upload_mac, "part": verify_part_mac}
    for kind, verify in verifiers.items():
        for other, mac in macs.items():
            if other != kind:
                with pytest.raises(IntegrityError):
                    verify(DEK, OBJECT, ROW, mac)
