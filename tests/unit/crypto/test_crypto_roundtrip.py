"""Round trips: whatever is sealed, streamed or not, opens to the same bytes, whole or by range."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blindstore.crypto import (
    CHUNK,
    IntegrityError,
    SegmentOpener,
    SegmentSealer,
    chunk_span,
    open_segment,
    seal_segment,
    segment_reader,
    segment_size,
)
from blindstore.crypto.sizes import PREFIX_SIZE

DEK = bytes(range(32))
TENANT = bytes(range(0x40, 0x50))
OBJECT = bytes(range(0x80, 0x90))

BOUNDARY_SIZES = [0, 1, 16383, 16384, 16385, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1, 3 * CHUNK]
sizes_near_boundaries = st.sampled_from(BOUNDARY_SIZES) | st.integers(0, 4 * CHUNK + 20)
part_numbers = st.sampled_from([0, 1, 2, 9999, 10000])


def _plaintext(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _fixed_salt(salt: bytes) -> Callable[[int], bytes]:
    def rng(size: int) -> bytes:
        assert size == len(salt)
        return salt

    return rng


def _cuts(data: st.DataObject, size: int) -> list[int]:
    points = data.draw(st.lists(st.integers(0, size), max_size=6))
    return sorted({0, size, *points})


@settings(deadline=None)
@given(size=sizes_near_boundaries, part=part_numbers, data=st.data())
def test_streamed_sealing_equals_one_shot_sealing(
    size: int, part: int, data: st.DataObject
) -> None:
    plaintext = _plaintext(size)
    salt = data.draw(st.binary(min_size=24, max_size=24))
    one_shot = seal_segment(DEK, TENANT, OBJECT, part, plaintext, rng=_fixed_salt(salt))
    sealer = SegmentSealer(DEK, TENANT, OBJECT, part, rng=_fixed_salt(salt))
    cuts = _cuts(data, size)
    pieces = [sealer.prefix()]
    pieces += [sealer.update(memoryview(plaintext)[a:b]) for a, b in itertools.pairwise(cuts)]
    pieces.append(sealer.finalize())
    assert b"".join(pieces) == one_shot
    assert len(one_shot) == segment_size(size)
    assert (sealer.salt, len(sealer.commitment)) == (salt, 32)


@settings(deadline=None)
@given(size=sizes_near_boundaries, part=part_numbers, data=st.data())
def test_a_sealed_segment_opens_whole_and_streamed(
    size: int, part: int, data: st.DataObject
) -> None:
    plaintext = _plaintext(size, seed=size)
    segment = seal_segment(DEK, TENANT, OBJECT, part, plaintext)
    assert open_segment(DEK, TENANT, OBJECT, part, segment, plaintext_size=size) == plaintext
    reader = segment_reader(DEK, TENANT, OBJECT, part, plaintext_size=size)
    cuts = _cuts(data, len(segment))
    released = b"".join(reader.feed(segment[a:b]) for a, b in itertools.pairwise(cuts))
    assert released + reader.finish() == plaintext


@st.composite
def _object_and_range(draw: st.DrawFn) -> tuple[int, int, int]:
    size = draw(sizes_near_boundaries.filter(lambda n: n > 0))
    start = draw(st.integers(0, size - 1))
    end = draw(st.integers(start, size - 1))
    return size, start, end


@settings(deadline=None)
@given(case=_object_and_range())
def test_a_range_read_fetches_only_covering_chunks_and_returns_the_slice(
    case: tuple[int, int, int],
) -> None:
    size, start, end = case
    plaintext = _plaintext(size, seed=1)
    segment = seal_segment(DEK, TENANT, OBJECT, 0, plaintext)
    span = chunk_span(size, start, end)
    opener = SegmentOpener(
        DEK, TENANT, OBJECT, 0, plaintext_size=size, prefix=segment[:PREFIX_SIZE]
    )
    fetched = segment[span.ct_start : span.ct_end]
    offset = span.first_chunk * CHUNK
    chunks = opener.open_chunks(span.first_chunk, span.last_chunk, fetched)
    assert chunks[start - offset : end + 1 - offset] == plaintext[start : end + 1]
    stream = opener.stream(span.first_chunk, span.last_chunk)
    assert stream.feed(fetched) + stream.finish() == chunks


@pytest.mark.parametrize("size", [5 * 1024 * 1024 - 1, 5 * 1024 * 1024, 5 * 1024 * 1024 + 1])
def test_multi_megabyte_segments_round_trip(size: int) -> None:
    plaintext = os.urandom(size)
    segment = seal_segment(DEK, TENANT, OBJECT, 3, plaintext)
    assert open_segment(DEK, TENANT, OBJECT, 3, segment, plaintext_size=size) == plaintext
    span = chunk_span(size, size - 5, size - 1)
    opener = SegmentOpener(DEK, TENANT, OBJECT, 3, plaintext_size=size, prefix=segment[:80])
    tail = opener.open_chunks(
        span.first_chunk, span.last_chunk, segment[span.ct_start : span.ct_end]
    )
    assert tail[-5:] == plaintext[-5:]


def test_a_multipart_object_opens_part_by_part_from_the_manifest() -> None:
    """Segments of parts 1..3 concatenated; the catalog's sizes locate each one."""
    parts = {1: _plaintext(20000, 1), 2: _plaintext(CHUNK, 2), 3: _plaintext(5, 3)}
    stored = b"".join(seal_segment(DEK, TENANT, OBJECT, k, pt) for k, pt in parts.items())
    offset = 0
    for number, plaintext in parts.items():
        length = segment_size(len(plaintext))
        segment = stored[offset : offset + length]
        opened = open_segment(DEK, TENANT, OBJECT, number, segment, plaintext_size=len(plaintext))
        assert opened == plaintext
        offset += length
    assert offset == len(stored)


def test_an_opener_built_from_the_catalog_salt_reads_without_the_prefix() -> None:
    plaintext = _plaintext(40000)
    sealer = SegmentSealer(DEK, TENANT, OBJECT, 4)
    segment = sealer.prefix() + sealer.update(plaintext) + sealer.finalize()
    opener = SegmentOpener.from_salt(
        DEK, TENANT, OBJECT, 4, plaintext_size=40000, salt=sealer.salt, commitment=sealer.commitment
    )
    span = chunk_span(40000, 20000, 39999)
    chunks = opener.open_chunks(
        span.first_chunk, span.last_chunk, segment[span.ct_start : span.ct_end]
    )
    assert chunks[20000 - CHUNK :] == plaintext[20000:]
    assert (opener.salt, opener.commitment) == (sealer.salt, sealer.commitment)


def test_an_opener_from_a_wrong_catalog_commitment_is_refused() -> None:
    sealer = SegmentSealer(DEK, TENANT, OBJECT, 0)
    with pytest.raises(IntegrityError):
        SegmentOpener.from_salt(
            DEK, TENANT, OBJECT, 0, plaintext_size=0, salt=sealer.salt, commitment=bytes(32)
        )


def test_each_sealer_draws_a_fresh_salt_so_a_retried_part_gets_new_keys() -> None:
    first = seal_segment(DEK, TENANT, OBJECT, 5, b"same part")
    retry = seal_segment(DEK, TENANT, OBJECT, 5, b"same part")
    assert first[:24] == retry[:24]
    assert first[24:48] != retry[24:48]
    assert first[80:] != retry[80:]


def test_sealing_accepts_any_bytes_like_input() -> None:
    plaintext = _plaintext(CHUNK + 7)
    salt = bytes(24)
    expected = seal_segment(DEK, TENANT, OBJECT, 0, plaintext, rng=_fixed_salt(salt))
    for form in (bytearray(plaintext), memoryview(plaintext)):
        assert seal_segment(DEK, TENANT, OBJECT, 0, form, rng=_fixed_salt(salt)) == expected
