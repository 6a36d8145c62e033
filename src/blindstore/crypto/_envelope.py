"""The HGW-1 envelope: the 24-byte header in front of each segment, and the context it binds.

    off len field
    0   4   magic      "HGW1"
    4   1   suite_id   0x01 = Cobblestone-256 (HKDF-Expand-SHA-512, AES-256-GCM, 16 KiB chunks)
    5   1   flags      bit 0 = client multipart part; other bits must be 0
    6   2   reserved   must be 0x0000
    8   16  object_id

    context = "hgw/v1" || 0x00 || header(24) || tenant_id(16) || BE32(part_number)

Every field of the context has a fixed length, so distinct (header, tenant, part) triples give
distinct contexts; a segment copied onto another object, tenant or part number fails to open.
"""

from __future__ import annotations

import struct

from blindstore.crypto._aead import BytesLike
from blindstore.crypto._failure import integrity_failure
from blindstore.crypto.sizes import HEADER_SIZE

MAGIC = b"HGW1"
SUITE_COBBLESTONE_256 = 0x01
FLAG_CLIENT_MULTIPART = 0x01
#: 0 is a single PUT; 1..10000 are client multipart parts (the S3 range).
MAX_PART_NUMBER = 10_000
ID_SIZE = 16
CONTEXT_LABEL = b"hgw/v1\x00"

_HEADER = struct.Struct(">4sBBH16s")


def check_identity(tenant_id: BytesLike, object_id: BytesLike, part_number: int) -> None:
    """Reject identifiers that are not the right shape (a caller bug, not an attack)."""
    if len(tenant_id) != ID_SIZE:
        raise ValueError("tenant id must be 16 bytes")
    if len(object_id) != ID_SIZE:
        raise ValueError("object id must be 16 bytes")
    if not 0 <= part_number <= MAX_PART_NUMBER:
        raise ValueError(f"part number must be 0..{MAX_PART_NUMBER}")


def encode_header(object_id: BytesLike, part_number: int) -> bytes:
    """The header of ``object_id``'s segment ``part_number`` (flags follow the part number)."""
    flags = FLAG_CLIENT_MULTIPART if part_number else 0
    return _HEADER.pack(MAGIC, SUITE_COBBLESTONE_256, flags, 0, bytes(object_id))


def segment_context(header: bytes, tenant_id: BytesLike, part_number: int) -> bytes:
    """The Cobblestone context of one segment (51 bytes)."""
    return CONTEXT_LABEL + header + tenant_id + part_number.to_bytes(4, "big")


def check_header(stored: BytesLike, expected: bytes) -> None:
    """Raise ``IntegrityError`` unless the stored header is exactly the one the catalog implies."""
    if stored != expected:
        raise integrity_failure(_mismatch(memoryview(stored), expected))


def _mismatch(stored: memoryview, expected: bytes) -> str:
    """Name the first rule the stored header breaks, for the audit log."""
    if len(stored) != HEADER_SIZE:
        return "header is truncated"
    magic, suite, flags, reserved, _object_id = _HEADER.unpack(stored)
    if magic != MAGIC:
        return "header has a wrong magic"
    if suite != SUITE_COBBLESTONE_256:
        return f"header names unknown suite {suite:#04x}"
    if flags & ~FLAG_CLIENT_MULTIPART:
        return f"header sets unknown flags {flags:#04x}"
    if reserved:
        return "header reserved field is not zero"
    if flags != expected[5]:
        return "header multipart flag does not match the part number"
    return "header object id does not match the catalog"
