"""Sizes and offsets: closed forms checked against an explicit chunk-by-chunk model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blindstore.crypto import sizes
from blindstore.crypto.sizes import (
    CHUNK,
    CHUNK_CIPHERTEXT,
    MAX_PLAINTEXT,
    PREFIX_SIZE,
    SEGMENT_OVERHEAD,
    TAG_SIZE,
    ChunkSpan,
    chunk_count,
    chunk_offset,
    chunk_span,
    plaintext_length,
    segment_size,
)


def _model_chunks(pt_len: int) -> list[tuple[int, int, int, int]]:
    """(pt_start, pt_end, ct_start, ct_end) of every chunk, built one chunk at a time."""
    chunks = []
    pt, ct = 0, PREFIX_SIZE
    while True:
        take = min(CHUNK, pt_len - pt)
        final = take < CHUNK
        chunks.append((pt, pt + take, ct, ct + take + TAG_SIZE))
        pt, ct = pt + take, ct + take + TAG_SIZE
        if final:
            return chunks


def test_constants_follow_the_format() -> None:
    assert (CHUNK, CHUNK_CIPHERTEXT, PREFIX_SIZE, SEGMENT_OVERHEAD) == (16384, 16400, 80, 96)


@pytest.mark.parametrize(
    ("pt_len", "chunks", "stored"),
    [
        (0, 1, 96),
        (1, 1, 97),
        (16383, 1, 16479),
        (16384, 2, 16496),
        (16385, 2, 16497),
        (40000, 3, 40128),
        (5 * 1024 * 1024, 321, 5 * 1024 * 1024 + 96 + 16 * 320),
    ],
)
def test_segment_size_and_chunk_count_match_worked_examples(
    pt_len: int, chunks: int, stored: int
) -> None:
    assert chunk_count(pt_len) == chunks
    assert segment_size(pt_len) == stored


@given(st.integers(0, 40 * CHUNK))
def test_segment_size_equals_the_chunk_model(pt_len: int) -> None:
    model = _model_chunks(pt_len)
    assert chunk_count(pt_len) == len(model)
    assert segment_size(pt_len) == model[-1][3]
    assert [chunk_offset(index) for index in range(len(model))] == [c[2] for c in model]


@given(st.integers(0, MAX_PLAINTEXT))
def test_plaintext_length_inverts_segment_size(pt_len: int) -> None:
    assert plaintext_length(segment_size(pt_len)) == pt_len


@given(st.integers(-10, 40 * CHUNK_CIPHERTEXT))
def test_plaintext_length_accepts_only_lengths_a_segment_can_have(seg_len: int) -> None:
    try:
        pt_len = plaintext_length(seg_len)
    except ValueError:
        body = seg_len - PREFIX_SIZE
        assert body < TAG_SIZE or body % CHUNK_CIPHERTEXT < TAG_SIZE
    else:
        assert segment_size(pt_len) == seg_len


def test_a_segment_cut_after_a_full_chunk_has_no_plaintext_length() -> None:
    with pytest.raises(ValueError, match="not a segment length"):
        plaintext_length(PREFIX_SIZE + CHUNK_CIPHERTEXT)


@st.composite
def _ranges(draw: st.DrawFn, max_len: int = 40 * CHUNK) -> tuple[int, int, int]:
    pt_len = draw(st.integers(1, max_len))
    start = draw(st.integers(0, pt_len - 1))
    end = draw(st.integers(start, pt_len - 1))
    return pt_len, start, end


@given(_ranges())
def test_chunk_span_is_exactly_the_chunks_holding_the_range(case: tuple[int, int, int]) -> None:
    pt_len, start, end = case
    model = _model_chunks(pt_len)
    needed = [i for i, (lo, hi, _, _) in enumerate(model) if lo <= end and start < hi]
    first, last = needed[0], needed[-1]
    assert chunk_span(pt_len, start, end) == ChunkSpan(
        first_chunk=first, last_chunk=last, ct_start=model[first][2], ct_end=model[last][3]
    )


@given(_ranges(max_len=MAX_PLAINTEXT))
def test_chunk_span_stays_inside_the_segment_for_any_size(case: tuple[int, int, int]) -> None:
    pt_len, start, end = case
    span = chunk_span(pt_len, start, end)
    assert PREFIX_SIZE <= span.ct_start < span.ct_end <= segment_size(pt_len)
    assert span.first_chunk * CHUNK <= start
    assert end < (span.last_chunk + 1) * CHUNK
    assert (span.ct_end == segment_size(pt_len)) == (span.last_chunk == pt_len // CHUNK)


@pytest.mark.parametrize(
    ("pt_len", "start", "end"),
    [(0, 0, 0), (10, 5, 4), (10, -1, 3), (10, 0, 10), (10, 10, 10)],
)
def test_chunk_span_rejects_ranges_outside_the_plaintext(pt_len: int, start: int, end: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        chunk_span(pt_len, start, end)


@pytest.mark.parametrize("pt_len", [-1, MAX_PLAINTEXT + 1])
def test_lengths_beyond_2_to_the_38_chunks_are_refused(pt_len: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        segment_size(pt_len)
    with pytest.raises(ValueError, match="out of range"):
        chunk_count(pt_len)


@pytest.mark.parametrize("index", [-1, sizes.MAX_CHUNKS])
def test_chunk_offset_refuses_indexes_beyond_the_counter(index: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        chunk_offset(index)
