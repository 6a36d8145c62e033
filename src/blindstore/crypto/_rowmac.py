"""The catalog row MAC: binds a row's names, sizes and manifest to the object's DEK.

    K_row   = HKDF-Expand(SHA-512, prk = DEK, info = "hgw/v1/catalog-row" || object_id, L = 32)
    row_mac = HMAC-SHA-256(K_row, canonical row bytes)

An insider who can edit catalog rows but cannot unwrap DEKs cannot repoint a name to another
object or change its sizes, ETag or manifest without the MAC failing.
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
ROW_MAC_SIZE = 32


def _row_key(dek: BytesLike, object_id: BytesLike) -> bytes:
    if len(object_id) != ID_SIZE:
        raise ValueError("object id must be 16 bytes")
    return HKDFExpand(hashes.SHA512(), KEY_SIZE, ROW_KEY_LABEL + object_id).derive(dek)


def row_mac(dek: BytesLike, object_id: BytesLike, canonical: BytesLike) -> bytes:
    """The 32-byte MAC of a canonical catalog row."""
    if len(dek) != KEY_SIZE:
        raise ValueError("DEK must be 32 bytes")
    return hmac.digest(_row_key(dek, object_id), canonical, "sha256")


def verify_row_mac(
    dek: BytesLike, object_id: BytesLike, canonical: BytesLike, mac: BytesLike
) -> None:
    """Raise ``IntegrityError`` unless ``mac`` is the row's MAC (constant-time comparison)."""
    if len(dek) != KEY_SIZE:
        raise integrity_failure("DEK has the wrong size")
    expected = hmac.digest(_row_key(dek, object_id), canonical, "sha256")
    if not hmac.compare_digest(expected, mac):
        raise integrity_failure("catalog row MAC mismatch")
