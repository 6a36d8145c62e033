"""Catalog row MACs: bind a row's names, sizes and manifest to the object's DEK.

    K_row    = HKDF-Expand(SHA-512, prk = DEK, info = "hgw/v1/catalog-row"    || object_id, L = 32)
    K_upload = HKDF-Expand(SHA-512, prk = DEK, info = "hgw/v1/catalog-upload" || object_id, L = 32)
    K_part   = HKDF-Expand(SHA-512, prk = DEK, info = "hgw/v1/catalog-part"   || object_id, L = 32)
    mac      = HMAC-SHA-256(K, canonical row bytes)

An insider who can edit catalog rows but cannot unwrap DEKs cannot repoint a name to another
object, or change its sizes, ETag or manifest, without the MAC failing. Pending multipart uploads
and their parts get MACs of their own (distinct labels, so that one kind of row can never stand
in for another): completion builds the object row from them, so they must be as trustworthy.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from blindstore.crypto._aead import BytesLike
from blindstore.crypto._cobblestone import KEY_SIZE
from blindstore.crypto._envelope import ID_SIZE
from blindstore.crypto._failure import integrity_failure

ROW_KEY_LABEL = b"hgw/v1/catalog-row"
UPLOAD_KEY_LABEL = b"hgw/v1/catalog-upload"
PART_KEY_LABEL = b"hgw/v1/catalog-part"
ROW_MAC_SIZE = 32


def _mac_key(label: bytes, dek: BytesLike, object_id: BytesLike) -> bytes:
    if len(object_id) != ID_SIZE:
        raise ValueError("object id must be 16 bytes")
    return HKDFExpand(hashes.SHA512(), KEY_SIZE, label + object_id).derive(dek)


def _mac(label: bytes, dek: BytesLike, object_id: BytesLike, canonical: BytesLike) -> bytes:
    if len(dek) != KEY_SIZE:
        raise ValueError("DEK must be 32 bytes")
    return hmac.digest(_mac_key(label, dek, object_id), canonical, "sha256")


def _verify(
    label: bytes, dek: BytesLike, object_id: BytesLike, canonical: BytesLike, mac: BytesLike
) -> None:
    if len(dek) != KEY_SIZE:
        raise integrity_failure("DEK has the wrong size")
    expected = hmac.digest(_mac_key(label, dek, object_id), canonical, "sha256")
    if not hmac.compare_digest(expected, mac):
        kind = label.decode().rsplit("/", 1)[-1]
        raise integrity_failure(f"{kind} MAC mismatch")


def row_mac(dek: BytesLike, object_id: BytesLike, canonical: BytesLike) -> bytes:
    """The 32-byte MAC of a canonical object row."""
    return _mac(ROW_KEY_LABEL, dek, object_id, canonical)


def verify_row_mac(
    dek: BytesLike, object_id: BytesLike, canonical: BytesLike, mac: BytesLike
) -> None:
    """Raise ``IntegrityError`` unless ``mac`` is the row's MAC (constant-time comparison)."""
    _verify(ROW_KEY_LABEL, dek, object_id, canonical, mac)


def upload_mac(dek: BytesLike, object_id: BytesLike, canonical: BytesLike) -> bytes:
    """The 32-byte MAC of a canonical pending-upload row."""
    return _mac(UPLOAD_KEY_LABEL, dek, object_id, canonical)


def verify_upload_mac(
    dek: BytesLike, object_id: BytesLike, canonical: BytesLike, mac: BytesLike
) -> None:
    """Raise ``IntegrityError`` unless ``mac`` is the upload row's MAC."""
    _verify(UPLOAD_KEY_LABEL, dek, object_id, canonical, mac)


def part_mac(dek: BytesLike, object_id: BytesLike, canonical: BytesLike) -> bytes:
    """The 32-byte MAC of a canonical upload-part row."""
    return _mac(PART_KEY_LABEL, dek, object_id, canonical)


def verify_part_mac(
    dek: BytesLike, object_id: BytesLike, canonical: BytesLike, mac: BytesLike
) -> None:
    """Raise ``IntegrityError`` unless ``mac`` is the part row's MAC."""
    _verify(PART_KEY_LABEL, dek, object_id, canonical, mac)
