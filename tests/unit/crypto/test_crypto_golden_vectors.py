"""HGW-1 golden vectors: tests/vectors/hgw1.json pins the format byte for byte.

A change to the format must change that file on purpose. After such a change, regenerate it with
``.venv/bin/python tests/unit/crypto/test_crypto_golden_vectors.py`` and review the diff.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.cobblestone import Cobblestone256Decryptor

from blindstore.crypto import (
    CHUNK,
    open_segment,
    part_mac,
    row_mac,
    seal_segment,
    upload_mac,
    verify_part_mac,
    verify_row_mac,
    verify_upload_mac,
)
from blindstore.crypto._cobblestone import derive
from blindstore.crypto._envelope import encode_header, segment_context

GOLDEN = Path(__file__).resolve().parents[2] / "vectors" / "hgw1.json"

DEK = bytes(range(0x20))
TENANT = bytes(range(0x40, 0x50))
OBJECT = bytes(range(0x80, 0x90))
#: (name, part number, plaintext size); each vector gets its own salt, so no two share keys.
CASES = [
    ("empty", 0, 0),
    ("one byte", 0, 1),
    ("one byte short of a chunk", 0, CHUNK - 1),
    ("exactly one chunk, empty final chunk", 0, CHUNK),
    ("one byte past a chunk", 0, CHUNK + 1),
    ("three chunks", 0, 40000),
    ("multipart part 7", 7, 20000),
]
#: Segments up to this size are stored whole; larger ones by SHA-256.
FULL_HEX_LIMIT = 256
ROW = b'{"bucket":"radiology","key":"2024/scan-0001.dcm","size":40000}'


def _plaintext(size: int) -> bytes:
    """Byte i is i mod 251 (a prime, so chunks differ from one another)."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def _salt(index: int) -> bytes:
    return bytes((0xC0 + index * 24 + i) % 256 for i in range(24))


def _segment(index: int, part: int, size: int) -> bytes:
    def rng(length: int) -> bytes:
        return _salt(index)[:length]

    return seal_segment(DEK, TENANT, OBJECT, part, _plaintext(size), rng=rng)


def build() -> dict[str, Any]:
    """Every value below is computed by the current code from the fixed inputs above."""
    vectors = []
    for index, (name, part, size) in enumerate(CASES):
        header = encode_header(OBJECT, part)
        context = segment_context(header, TENANT, part)
        aead_key, base_nonce, commitment = derive(DEK, _salt(index), context)
        segment = _segment(index, part, size)
        vector: dict[str, Any] = {
            "name": name,
            "part_number": part,
            "plaintext_size": size,
            "salt": _salt(index).hex(),
            "header": header.hex(),
            "context": context.hex(),
            "aead_key": aead_key.hex(),
            "base_nonce": base_nonce.hex(),
            "commitment": commitment.hex(),
            "segment_size": len(segment),
            "segment_sha256": hashlib.sha256(segment).hexdigest(),
        }
        if len(segment) <= FULL_HEX_LIMIT:
            vector["segment"] = segment.hex()
        vectors.append(vector)
    return {
        "format": "HGW-1",
        "suite_id": 1,
        "description": "Golden vectors of blindstore's stored format; see docs/format.md.",
        "plaintext": "byte i of an n-byte plaintext is i mod 251",
        "dek": DEK.hex(),
        "tenant_id": TENANT.hex(),
        "object_id": OBJECT.hex(),
        "vectors": vectors,
        "row_mac": {"canonical": ROW.hex(), "mac": row_mac(DEK, OBJECT, ROW).hex()},
        "upload_mac": {"canonical": ROW.hex(), "mac": upload_mac(DEK, OBJECT, ROW).hex()},
        "part_mac": {"canonical": ROW.hex(), "mac": part_mac(DEK, OBJECT, ROW).hex()},
    }


def _golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GOLDEN.read_text())
    return data


def test_the_current_code_reproduces_the_golden_vectors_exactly() -> None:
    assert build() == _golden()


def test_the_golden_vectors_cover_the_required_sizes_and_a_multipart_part() -> None:
    vectors = _golden()["vectors"]
    assert {v["plaintext_size"] for v in vectors} >= {0, 1, 16383, 16384, 16385, 40000}
    assert any(v["part_number"] > 0 for v in vectors)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[name for name, _, _ in CASES])
def test_the_golden_segments_decrypt_to_their_plaintext(index: int) -> None:
    golden = _golden()["vectors"][index]
    if "segment" in golden:
        segment = bytes.fromhex(golden["segment"])
    else:  # regenerated, and proven to be the golden bytes by its hash
        segment = _segment(index, golden["part_number"], golden["plaintext_size"])
    assert hashlib.sha256(segment).hexdigest() == golden["segment_sha256"]
    plaintext = _plaintext(golden["plaintext_size"])
    opened = open_segment(
        DEK, TENANT, OBJECT, golden["part_number"], segment, plaintext_size=len(plaintext)
    )
    assert opened == plaintext
    decryptor = Cobblestone256Decryptor(DEK, bytes.fromhex(golden["context"]))
    assert decryptor.update(segment[24:]) + decryptor.finalize() == plaintext


def test_the_golden_row_mac_verifies() -> None:
    golden = _golden()["row_mac"]
    verify_row_mac(DEK, OBJECT, bytes.fromhex(golden["canonical"]), bytes.fromhex(golden["mac"]))


def test_the_golden_upload_and_part_macs_verify() -> None:
    for name, verify in (("upload_mac", verify_upload_mac), ("part_mac", verify_part_mac)):
        golden = _golden()[name]
        verify(DEK, OBJECT, bytes.fromhex(golden["canonical"]), bytes.fromhex(golden["mac"]))


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {GOLDEN}")
