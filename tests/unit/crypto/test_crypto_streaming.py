"""Streaming semantics: verified prefix only, sticky failure, bounded buffering."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blindstore.crypto import (
    CHUNK,
    IntegrityError,
    SegmentOpener,
    SegmentSealer,
    seal_segment,
    segment_reader,
)
from blindstore.crypto.sizes import CHUNK_CIPHERTEXT, PREFIX_SIZE

DEK = bytes(range(32))
TENANT = bytes(range(0x40, 0x50))
OBJECT = bytes(range(0x80, 0x90))
SIZE = 10 * CHUNK + 123
PLAINTEXT = random.Random(11).randbytes(SIZE)
SEGMENT = seal_segment(DEK, TENANT, OBJECT, 0, PLAINTEXT)


@pytest.mark.parametrize("piece", [1000, CHUNK_CIPHERTEXT, 3 * CHUNK_CIPHERTEXT + 7, len(SEGMENT)])
@pytest.mark.parametrize("bad_chunk", [0, 6, 10])
def test_a_bad_chunk_n_releases_exactly_n_verified_chunks(piece: int, bad_chunk: int) -> None:
    tampered = bytearray(SEGMENT)
    tampered[PREFIX_SIZE + bad_chunk * CHUNK_CIPHERTEXT + 5] ^= 0x40
    reader = segment_reader(DEK, TENANT, OBJECT, 0, plaintext_size=SIZE)
    released = bytearray()
    failed = False
    try:
        for offset in range(0, len(tampered), piece):
            released += reader.feed(tampered[offset : offset + piece])
        reader.finish()
    except IntegrityError:
        failed = True
    assert failed
    assert released == PLAINTEXT[: bad_chunk * CHUNK]


def test_a_failed_stream_keeps_failing() -> None:
    tampered = bytearray(SEGMENT)
    tampered[PREFIX_SIZE + 2 * CHUNK_CIPHERTEXT] ^= 1
    reader = segment_reader(DEK, TENANT, OBJECT, 0, plaintext_size=SIZE)
    assert reader.feed(tampered) == PLAINTEXT[: 2 * CHUNK]  # the error comes on the next call
    for _ in range(3):
        with pytest.raises(IntegrityError):
            reader.feed(SEGMENT[-10:])
        with pytest.raises(IntegrityError):
            reader.finish()


def test_a_stream_ended_early_fails_at_finish() -> None:
    for cut in (0, 50, PREFIX_SIZE, PREFIX_SIZE + CHUNK_CIPHERTEXT, len(SEGMENT) - 1):
        reader = segment_reader(DEK, TENANT, OBJECT, 0, plaintext_size=SIZE)
        reader.feed(SEGMENT[:cut])
        with pytest.raises(IntegrityError):
            reader.finish()


def test_streams_and_sealers_refuse_use_after_the_end() -> None:
    reader = segment_reader(DEK, TENANT, OBJECT, 0, plaintext_size=SIZE)
    reader.feed(SEGMENT)
    assert reader.finish() == b""
    with pytest.raises(ValueError, match="finished"):
        reader.feed(b"")
    sealer = SegmentSealer(DEK, TENANT, OBJECT, 0)
    sealer.finalize()
    with pytest.raises(ValueError, match="finalized"):
        sealer.update(b"more")
    with pytest.raises(ValueError, match="finalized"):
        sealer.finalize()


@settings(deadline=None)
@given(pieces=st.lists(st.integers(0, 3 * CHUNK), max_size=12))
def test_the_sealer_buffers_less_than_one_chunk(pieces: list[int]) -> None:
    sealer = SegmentSealer(DEK, TENANT, OBJECT, 0)
    for size in pieces:
        sealer.update(bytes(size))
        assert sealer.buffered < CHUNK


@settings(deadline=None)
@given(pieces=st.lists(st.integers(1, 3 * CHUNK_CIPHERTEXT), min_size=1, max_size=12))
def test_the_reader_buffers_less_than_one_chunk(pieces: list[int]) -> None:
    reader = segment_reader(DEK, TENANT, OBJECT, 0, plaintext_size=SIZE)
    opener = SegmentOpener(DEK, TENANT, OBJECT, 0, plaintext_size=SIZE, prefix=SEGMENT[:80])
    stream = opener.stream()
    offset = 0
    for size in pieces:
        reader.feed(SEGMENT[offset : offset + size])
        stream.feed(SEGMENT[PREFIX_SIZE + offset : PREFIX_SIZE + offset + size])
        assert reader.buffered < CHUNK_CIPHERTEXT
        assert stream.buffered < CHUNK_CIPHERTEXT
        offset += size
        if offset >= len(SEGMENT) - PREFIX_SIZE:
            break


def test_streaming_memory_does_not_grow_with_the_object() -> None:
    """8 MiB through the sealer and the reader in 1000-byte pieces: peak stays near 2 chunks."""
    plaintext = bytes(8 * 1024 * 1024)
    segment = seal_segment(DEK, TENANT, OBJECT, 0, plaintext)
    source, stored = memoryview(plaintext), memoryview(segment)
    tracemalloc.start()
    try:
        sealer = SegmentSealer(DEK, TENANT, OBJECT, 0)
        for offset in range(0, len(source), 1000):
            sealer.update(source[offset : offset + 1000])
        sealer.finalize()
        reader = segment_reader(DEK, TENANT, OBJECT, 0, plaintext_size=len(plaintext))
        for offset in range(0, len(stored), 1000):
            reader.feed(stored[offset : offset + 1000])
        reader.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * CHUNK_CIPHERTEXT


def test_the_log_reason_names_the_chunk_that_failed() -> None:
    tampered = bytearray(SEGMENT)
    tampered[PREFIX_SIZE + 6 * CHUNK_CIPHERTEXT] ^= 1
    reader = segment_reader(DEK, TENANT, OBJECT, 0, plaintext_size=SIZE)
    reader.feed(tampered)
    with pytest.raises(IntegrityError) as excinfo:
        reader.finish()
    assert getattr(excinfo.value, "reason", "") == "chunk 6 failed authentication"
