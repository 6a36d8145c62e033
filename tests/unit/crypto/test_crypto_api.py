"""The public surface of blindstore.crypto and its error contract."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import blindstore.crypto as crypto
from blindstore.crypto import (
    IntegrityError,
    SegmentOpener,
    SegmentSealer,
    open_segment,
    seal_segment,
    segment_reader,
)
from blindstore.errors import IntegrityError as ErrorsIntegrityError

DEK = bytes(range(32))
TENANT = bytes(range(0x40, 0x50))
OBJECT = bytes(range(0x80, 0x90))


def test_the_public_names_are_exactly_the_documented_ones() -> None:
    assert sorted(crypto.__all__) == sorted(
        [
            "CHUNK",
            "DEK_SIZE",
            "ID_SIZE",
            "MAX_PART_NUMBER",
            "PREFIX_SIZE",
            "ROW_MAC_SIZE",
            "SEGMENT_OVERHEAD",
            "ChunkSpan",
            "ChunkStream",
            "IntegrityError",
            "SegmentOpener",
            "SegmentSealer",
            "chunk_count",
            "chunk_span",
            "open_segment",
            "part_mac",
            "plaintext_length",
            "row_mac",
            "seal_segment",
            "segment_reader",
            "segment_size",
            "sizes",
            "upload_mac",
            "verify_part_mac",
            "verify_row_mac",
            "verify_upload_mac",
        ]
    )
    assert all(hasattr(crypto, name) for name in crypto.__all__)
    assert IntegrityError is ErrorsIntegrityError


def _failures() -> list[IntegrityError]:
    segment = seal_segment(DEK, TENANT, OBJECT, 0, b"0123456789")
    tampered = bytearray(segment)
    tampered[-1] ^= 1
    attempts: list[Callable[[], object]] = [
        lambda: open_segment(DEK, TENANT, OBJECT, 0, segment[:-1], plaintext_size=10),
        lambda: open_segment(DEK, TENANT, OBJECT, 0, bytes(tampered), plaintext_size=10),
        lambda: open_segment(DEK, TENANT, bytes(16), 0, segment, plaintext_size=10),
        lambda: open_segment(bytes(32), TENANT, OBJECT, 0, segment, plaintext_size=10),
        lambda: open_segment(DEK[:16], TENANT, OBJECT, 0, segment, plaintext_size=10),
        lambda: crypto.verify_row_mac(DEK, OBJECT, b"row", bytes(32)),
        lambda: crypto.verify_upload_mac(DEK, OBJECT, b"row", bytes(32)),
        lambda: crypto.verify_part_mac(DEK, OBJECT, b"row", bytes(32)),
    ]
    errors = []
    for attempt in attempts:
        with pytest.raises(IntegrityError) as excinfo:
            attempt()
        errors.append(excinfo.value)
    return errors


def test_every_failure_is_the_same_opaque_error_with_a_private_reason() -> None:
    errors = _failures()
    assert {str(error) for error in errors} == {IntegrityError.default_message}
    assert {error.public_message for error in errors} == {IntegrityError.default_message}
    assert all(error.status == 500 and error.code == "InternalError" for error in errors)
    reasons = [getattr(error, "reason", "") for error in errors]
    assert all(reasons)
    assert len(set(reasons)) == len(reasons)


@pytest.mark.parametrize(
    ("tenant", "object_id", "part", "message"),
    [
        (TENANT[:15], OBJECT, 0, "tenant id"),
        (TENANT, OBJECT + b"\x00", 0, "object id"),
        (TENANT, OBJECT, -1, "part number"),
        (TENANT, OBJECT, 10001, "part number"),
    ],
)
def test_malformed_identifiers_are_caller_errors(
    tenant: bytes, object_id: bytes, part: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentSealer(DEK, tenant, object_id, part)
    with pytest.raises(ValueError, match=message):
        segment_reader(DEK, tenant, object_id, part, plaintext_size=0)
    with pytest.raises(ValueError, match=message):
        SegmentOpener(DEK, tenant, object_id, part, plaintext_size=0, prefix=bytes(80))


def test_sealing_refuses_a_wrong_size_dek_or_salt() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SegmentSealer(DEK[:16], TENANT, OBJECT, 0)
    with pytest.raises(ValueError, match="24 bytes"):
        seal_segment(DEK, TENANT, OBJECT, 0, b"", rng=lambda n: bytes(n - 1))


def test_a_stream_over_chunks_outside_the_segment_is_a_caller_error() -> None:
    segment = seal_segment(DEK, TENANT, OBJECT, 0, bytes(40000))
    opener = SegmentOpener(DEK, TENANT, OBJECT, 0, plaintext_size=40000, prefix=segment[:80])
    assert opener.final_chunk == 2
    for first, last in [(-1, 0), (1, 0), (0, 3), (3, 3)]:
        with pytest.raises(ValueError, match="outside"):
            opener.stream(first, last)
