"""Find and damage the stored blobs of an object (tamper, blindness and GC tests).

Offsets follow docs/format.md: a segment is header (24 B), salt (24 B), commitment (32 B), then
chunks of 16384 plaintext bytes + a 16-byte tag; the final chunk is shorter (possibly empty).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from blindstore.catalog.base import ObjectRecord
from tests.gwserver import RunningGateway

HEADER = 24
SALT = 24
COMMITMENT = 32
PREFIX = HEADER + SALT + COMMITMENT
CHUNK = 16384
TAG = 16
CHUNK_CT = CHUNK + TAG


def segment_size(plaintext: int) -> int:
    """Stored size of a segment of ``plaintext`` bytes (docs/format.md §6)."""
    return plaintext + 96 + TAG * (plaintext // CHUNK)


def record(gw: RunningGateway, bucket: str, key: str) -> ObjectRecord:
    """The catalog row of an object (it must exist)."""
    found = gw.run(gw.gateway.catalog.get_object(bucket, key))
    assert found is not None, f"no catalog row for {bucket}/{key}"
    return found


def blob_path(gw: RunningGateway, bucket: str, key: str, part: int = 0) -> Path:
    """The file holding the ``part``-th segment (0-based index in the manifest) of an object."""
    row = record(gw, bucket, key)
    return gw.blob_dir / row.container / row.parts[part].blob


def chunk_offset(index: int) -> int:
    """Offset, within a segment, of chunk ``index``."""
    return PREFIX + index * CHUNK_CT


def flip_byte(path: Path, offset: int) -> None:
    """Invert every bit of one byte, in place (``offset`` < 0 counts from the end)."""
    size = path.stat().st_size
    where = offset if offset >= 0 else size + offset
    assert 0 <= where < size
    with path.open("r+b") as f:
        f.seek(where)
        byte = f.read(1)
        f.seek(where)
        f.write(bytes([byte[0] ^ 0xFF]))


def truncate(path: Path, length: int) -> None:
    os.truncate(path, length)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def swap_files(a: Path, b: Path) -> None:
    """Exchange the contents of two blob files."""
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)


def blob_files(gw: RunningGateway) -> set[Path]:
    """Every file under the gateway's blob directory, temporary files included."""
    return {p for p in gw.blob_dir.rglob("*") if p.is_file()}


def temp_files(gw: RunningGateway) -> set[Path]:
    return {p for p in blob_files(gw) if p.name.startswith(".tmp-")}


def read_until_failure(body: Any, piece: int = 64 * 1024) -> tuple[bytes, Exception | None]:
    """Read a botocore streaming body to its end; return the bytes received and the error
    that stopped it (None if the body was complete)."""
    from botocore.exceptions import IncompleteReadError, ResponseStreamingError

    received = bytearray()
    try:
        while True:
            data = body.read(piece)
            if not data:
                break
            received += data
    except (IncompleteReadError, ResponseStreamingError) as exc:
        return bytes(received), exc
    return bytes(received), None
