"""Sizes and offsets of HGW-1 segments: pure arithmetic, shared with the S3 range code.

A segment (one stored part) is ``header(24) || salt(24) || commitment(32) || chunk_0 || ... ||
chunk_m``. Every chunk holds ``CHUNK`` plaintext bytes plus a 16-byte tag, except the final one,
which holds ``pt_len % CHUNK`` bytes (possibly none) plus its tag. So a segment's length depends
only on its plaintext length, and every plaintext offset maps to a ciphertext offset in closed form.
Every function here raises ``ValueError`` on impossible arguments; none reads attacker bytes.
"""

from __future__ import annotations

from typing import NamedTuple

#: Plaintext bytes per chunk (C2SP chunked-encryption v1).
CHUNK = 16384
#: AES-GCM tag bytes per chunk.
TAG_SIZE = 16
#: Stored bytes of every chunk except the final one.
CHUNK_CIPHERTEXT = CHUNK + TAG_SIZE
#: The HGW-1 envelope header: magic, suite, flags, reserved, object id.
HEADER_SIZE = 24
#: Random per-segment salt of the Cobblestone message.
SALT_SIZE = 24
#: Key commitment of the Cobblestone message.
COMMITMENT_SIZE = 32
#: Bytes before chunk 0: header, salt and commitment.
PREFIX_SIZE = HEADER_SIZE + SALT_SIZE + COMMITMENT_SIZE
#: Fixed bytes a segment adds to its plaintext: the prefix and the final chunk's tag.
SEGMENT_OVERHEAD = PREFIX_SIZE + TAG_SIZE
#: The chunk counter must stay below 2**38 (4 PiB per segment).
MAX_CHUNKS = 2**38
#: Largest plaintext one segment can hold.
MAX_PLAINTEXT = MAX_CHUNKS * CHUNK - 1


class ChunkSpan(NamedTuple):
    """The chunks covering a plaintext range, and where they sit in the segment blob."""

    first_chunk: int
    last_chunk: int
    #: Offset of ``first_chunk`` in the segment (the 80-byte prefix included).
    ct_start: int
    #: End (exclusive) of ``last_chunk`` in the segment.
    ct_end: int


def _check_length(pt_len: int) -> None:
    if not 0 <= pt_len <= MAX_PLAINTEXT:
        raise ValueError(f"plaintext length out of range: {pt_len}")


def chunk_count(pt_len: int) -> int:
    """Chunks in a segment of ``pt_len`` plaintext bytes, the short final one included."""
    _check_length(pt_len)
    return pt_len // CHUNK + 1


def segment_size(pt_len: int) -> int:
    """Stored length of a ``pt_len``-byte segment: ``pt_len + 96 + 16 * (pt_len // 16384)``."""
    _check_length(pt_len)
    return pt_len + SEGMENT_OVERHEAD + TAG_SIZE * (pt_len // CHUNK)


def plaintext_length(seg_len: int) -> int:
    """Inverse of ``segment_size``; ``ValueError`` for a length no segment can have."""
    body = seg_len - PREFIX_SIZE
    full, final = divmod(body, CHUNK_CIPHERTEXT)
    if body < TAG_SIZE or final < TAG_SIZE:
        raise ValueError(f"not a segment length: {seg_len}")
    pt_len = full * CHUNK + final - TAG_SIZE
    _check_length(pt_len)
    return pt_len


def chunk_offset(index: int) -> int:
    """Offset of chunk ``index`` in its segment blob."""
    if not 0 <= index < MAX_CHUNKS:
        raise ValueError(f"chunk index out of range: {index}")
    return PREFIX_SIZE + index * CHUNK_CIPHERTEXT


def chunk_span(pt_len: int, start: int, end_inclusive: int) -> ChunkSpan:
    """The chunks holding plaintext bytes ``[start, end_inclusive]`` of a ``pt_len``-byte segment.

    ``ct_start:ct_end`` is exactly the blob byte range to fetch: nothing outside those chunks.
    """
    _check_length(pt_len)
    if not 0 <= start <= end_inclusive < pt_len:
        raise ValueError(f"range [{start}, {end_inclusive}] outside a {pt_len}-byte plaintext")
    first = start // CHUNK
    last = end_inclusive // CHUNK
    final = pt_len // CHUNK
    last_len = pt_len % CHUNK + TAG_SIZE if last == final else CHUNK_CIPHERTEXT
    return ChunkSpan(
        first_chunk=first,
        last_chunk=last,
        ct_start=PREFIX_SIZE + first * CHUNK_CIPHERTEXT,
        ct_end=PREFIX_SIZE + last * CHUNK_CIPHERTEXT + last_len,
    )
