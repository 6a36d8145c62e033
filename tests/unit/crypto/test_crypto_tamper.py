"""Tampering with a stored segment is always an IntegrityError, never wrong plaintext."""

from __future__ import annotations

import random

import pytest

from blindstore.crypto import (
    CHUNK,
    IntegrityError,
    SegmentOpener,
    chunk_span,
    open_segment,
    seal_segment,
    segment_reader,
)
from blindstore.crypto.sizes import CHUNK_CIPHERTEXT, PREFIX_SIZE

DEK = bytes(range(32))
TENANT = bytes(range(0x40, 0x50))
OBJECT = bytes(range(0x80, 0x90))
SIZE = 2 * CHUNK + 7232  # three chunks: two full, one short
PLAINTEXT = random.Random(7).randbytes(SIZE)
SEGMENT = seal_segment(DEK, TENANT, OBJECT, 0, PLAINTEXT)


def _open(segment: bytes, *, size: int = SIZE, part: int = 0) -> bytes:
    return open_segment(DEK, TENANT, OBJECT, part, segment, plaintext_size=size)


def _stream(segment: bytes, *, size: int = SIZE, piece: int = 4096) -> tuple[bytes, bool]:
    """Feed a segment to the streaming reader; return the released bytes and whether it failed."""
    reader = segment_reader(DEK, TENANT, OBJECT, 0, plaintext_size=size)
    released = bytearray()
    try:
        for offset in range(0, len(segment), piece):
            released += reader.feed(segment[offset : offset + piece])
        released += reader.finish()
    except IntegrityError:
        return bytes(released), True
    return bytes(released), False


def _reason(excinfo: pytest.ExceptionInfo[IntegrityError]) -> str:
    reason: str = getattr(excinfo.value, "reason", "")
    return reason


def _flip(segment: bytes, offset: int) -> bytes:
    tampered = bytearray(segment)
    tampered[offset] ^= 0x01
    return bytes(tampered)


def _chunk(index: int, segment: bytes = SEGMENT) -> bytes:
    start = PREFIX_SIZE + index * CHUNK_CIPHERTEXT
    return segment[start : start + CHUNK_CIPHERTEXT]


def test_flipping_any_byte_of_a_small_segment_is_rejected() -> None:
    segment = seal_segment(DEK, TENANT, OBJECT, 0, b"patient record 0042")
    for offset in range(len(segment)):
        with pytest.raises(IntegrityError):
            _open(_flip(segment, offset), size=19)


REGIONS = {
    "header": range(24),
    "salt": range(24, 48),
    "commitment": range(48, 80),
    "chunk 0 body": range(80, 80 + CHUNK),
    "chunk 0 tag": range(80 + CHUNK, 80 + CHUNK_CIPHERTEXT),
    "chunk 1 body": range(80 + CHUNK_CIPHERTEXT, 80 + CHUNK_CIPHERTEXT + CHUNK),
    "chunk 2 body": range(80 + 2 * CHUNK_CIPHERTEXT, len(SEGMENT) - 16),
    "final tag": range(len(SEGMENT) - 16, len(SEGMENT)),
}


@pytest.mark.parametrize("region", REGIONS)
def test_flipping_bytes_in_each_region_is_rejected_whole_and_streamed(region: str) -> None:
    """One-shot: nothing released. Streamed: exactly the chunks before the damaged one."""
    offsets = REGIONS[region]
    for offset in random.Random(region).sample(offsets, min(len(offsets), 64)):
        tampered = _flip(SEGMENT, offset)
        with pytest.raises(IntegrityError):
            _open(tampered)
        released, failed = _stream(tampered)
        assert failed
        damaged_chunk = max(0, (offset - PREFIX_SIZE) // CHUNK_CIPHERTEXT)
        assert released == PLAINTEXT[: damaged_chunk * CHUNK]


@pytest.mark.parametrize(
    "cut",
    [
        0,
        23,
        PREFIX_SIZE - 1,
        PREFIX_SIZE,
        PREFIX_SIZE + 1,
        PREFIX_SIZE + CHUNK_CIPHERTEXT - 16,
        PREFIX_SIZE + CHUNK_CIPHERTEXT,
        PREFIX_SIZE + CHUNK_CIPHERTEXT + 5000,
        PREFIX_SIZE + 2 * CHUNK_CIPHERTEXT,
        len(SEGMENT) - 1,
    ],
)
def test_a_truncated_segment_is_rejected(cut: int) -> None:
    truncated = SEGMENT[:cut]
    with pytest.raises(IntegrityError):
        _open(truncated)
    released, failed = _stream(truncated)
    assert failed
    assert PLAINTEXT.startswith(released)
    if cut >= PREFIX_SIZE:
        opener = SegmentOpener(DEK, TENANT, OBJECT, 0, plaintext_size=SIZE, prefix=SEGMENT[:80])
        with pytest.raises(IntegrityError):
            opener.open_chunks(0, opener.final_chunk, truncated[PREFIX_SIZE:])


def test_dropping_the_empty_final_chunk_of_a_chunk_multiple_is_rejected() -> None:
    plaintext = random.Random(3).randbytes(2 * CHUNK)
    segment = seal_segment(DEK, TENANT, OBJECT, 0, plaintext)
    without_final = segment[:-16]
    with pytest.raises(IntegrityError):
        _open(without_final, size=2 * CHUNK)
    released, failed = _stream(without_final, size=2 * CHUNK)
    assert failed
    assert released == plaintext
    opener = SegmentOpener(DEK, TENANT, OBJECT, 0, plaintext_size=2 * CHUNK, prefix=segment[:80])
    stream = opener.stream(0)
    stream.feed(without_final[PREFIX_SIZE:])
    with pytest.raises(IntegrityError):
        stream.finish()


@pytest.mark.parametrize(
    "suffix",
    [b"\x00", b"garbage" * 3, _chunk(0), SEGMENT[-(len(SEGMENT) - 80 - 2 * CHUNK_CIPHERTEXT) :]],
    ids=["one byte", "garbage", "copy of chunk 0", "copy of the final chunk"],
)
def test_bytes_appended_after_the_final_chunk_are_rejected(suffix: bytes) -> None:
    extended = SEGMENT + suffix
    with pytest.raises(IntegrityError):
        _open(extended)
    released, failed = _stream(extended)
    assert failed
    assert released in (PLAINTEXT, PLAINTEXT[: 2 * CHUNK])
    opener = SegmentOpener(DEK, TENANT, OBJECT, 0, plaintext_size=SIZE, prefix=SEGMENT[:80])
    with pytest.raises(IntegrityError):
        opener.open_chunks(0, 2, extended[PREFIX_SIZE:])


@pytest.mark.parametrize(
    "order",
    [(1, 0, 2), (0, 0, 2), (0, 1, 1), (0, 2), (1, 2), (2, 1, 0)],
    ids=["swap 0-1", "duplicate 0", "duplicate 1 over final", "delete 1", "delete 0", "reverse"],
)
def test_reordered_duplicated_or_deleted_chunks_are_rejected(order: tuple[int, ...]) -> None:
    final = SEGMENT[PREFIX_SIZE + 2 * CHUNK_CIPHERTEXT :]
    pieces = {0: _chunk(0), 1: _chunk(1), 2: final}
    reordered = SEGMENT[:PREFIX_SIZE] + b"".join(pieces[i] for i in order)
    with pytest.raises(IntegrityError):
        _open(reordered)
    released, failed = _stream(reordered)
    assert failed
    assert PLAINTEXT.startswith(released)


@pytest.mark.parametrize(
    ("dek", "tenant", "object_id", "part", "reason"),
    [
        (bytes(32), TENANT, OBJECT, 0, "commitment"),
        (DEK, bytes(16), OBJECT, 0, "commitment"),
        (DEK, TENANT, bytes(16), 0, "object id"),
        (DEK, TENANT, OBJECT, 1, "multipart flag"),
    ],
    ids=["wrong dek", "wrong tenant", "wrong object id", "wrong part number"],
)
def test_opening_under_other_identifiers_is_rejected_before_any_chunk(
    dek: bytes, tenant: bytes, object_id: bytes, part: int, reason: str
) -> None:
    with pytest.raises(IntegrityError) as excinfo:
        open_segment(dek, tenant, object_id, part, SEGMENT, plaintext_size=SIZE)
    assert reason in _reason(excinfo)


def test_a_part_opened_under_another_part_number_is_rejected() -> None:
    part_two = seal_segment(DEK, TENANT, OBJECT, 2, PLAINTEXT)
    with pytest.raises(IntegrityError) as excinfo:
        _open(part_two, part=3)
    assert "commitment" in _reason(excinfo)


def test_swapping_parts_inside_an_object_or_between_objects_is_rejected() -> None:
    other_object = bytes(range(0xA0, 0xB0))
    part_two = seal_segment(DEK, TENANT, OBJECT, 2, b"part two")
    part_three = seal_segment(DEK, TENANT, OBJECT, 3, b"part 3!!")
    foreign_two = seal_segment(DEK, TENANT, other_object, 2, b"part two")
    for stored, number in [(part_three, 2), (part_two, 3), (foreign_two, 2)]:
        with pytest.raises(IntegrityError):
            open_segment(DEK, TENANT, OBJECT, number, stored, plaintext_size=8)


def test_another_objects_blob_under_this_name_is_rejected() -> None:
    """Backend object A overwritten with B's bytes (same tenant, B's own DEK and id)."""
    other = seal_segment(bytes(range(1, 33)), TENANT, bytes(range(0xA0, 0xB0)), 0, PLAINTEXT)
    with pytest.raises(IntegrityError):
        _open(other)
    released, failed = _stream(other)
    assert (released, failed) == (b"", True)


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        (0, ord("X"), "magic"),
        (4, 0x02, "unknown suite"),
        (5, 0x02, "unknown flags"),
        (5, 0x80, "unknown flags"),
        (6, 0x01, "reserved"),
        (7, 0x01, "reserved"),
        (5, 0x01, "multipart flag"),
        (23, 0x00, "object id"),
    ],
)
def test_header_tampering_is_rejected_before_any_decryption(
    offset: int, value: int, reason: str
) -> None:
    tampered = bytearray(SEGMENT)
    tampered[offset] = value
    with pytest.raises(IntegrityError) as excinfo:
        _open(bytes(tampered))
    assert reason in _reason(excinfo)


def test_a_damaged_chunk_outside_the_requested_range_does_not_fail_the_range() -> None:
    tampered = _flip(SEGMENT, PREFIX_SIZE + 100)  # inside chunk 0
    opener = SegmentOpener(DEK, TENANT, OBJECT, 0, plaintext_size=SIZE, prefix=tampered[:80])
    outside = chunk_span(SIZE, CHUNK, SIZE - 1)
    fetched = tampered[outside.ct_start : outside.ct_end]
    chunks = opener.open_chunks(outside.first_chunk, outside.last_chunk, fetched)
    assert chunks == PLAINTEXT[CHUNK:]
    inside = chunk_span(SIZE, 0, 10)
    with pytest.raises(IntegrityError):
        opener.open_chunks(
            inside.first_chunk, inside.last_chunk, tampered[inside.ct_start : inside.ct_end]
        )


def test_a_short_backend_response_to_a_range_read_is_rejected() -> None:
    opener = SegmentOpener(DEK, TENANT, OBJECT, 0, plaintext_size=SIZE, prefix=SEGMENT[:80])
    span = chunk_span(SIZE, 10, CHUNK + 10)
    fetched = SEGMENT[span.ct_start : span.ct_end]
    for cut in (0, 1, CHUNK_CIPHERTEXT, len(fetched) - 1):
        with pytest.raises(IntegrityError):
            opener.open_chunks(span.first_chunk, span.last_chunk, fetched[:cut])
        stream = opener.stream(span.first_chunk, span.last_chunk)
        stream.feed(fetched[:cut])
        with pytest.raises(IntegrityError):
            stream.finish()
