"""Guards of the private layers that the public API never lets a caller reach."""

from __future__ import annotations

import pytest

from blindstore.crypto import IntegrityError, SegmentOpener
from blindstore.crypto._aead import AesGcm
from blindstore.crypto._cobblestone import ChunkCipher
from blindstore.crypto._envelope import check_header, encode_header
from blindstore.crypto.sizes import MAX_CHUNKS

OBJECT = bytes(range(0x80, 0x90))


@pytest.mark.parametrize("size", [0, 15, 31, 33])
def test_the_aead_wrapper_refuses_keys_that_are_not_aes_keys(size: int) -> None:
    with pytest.raises(ValueError, match="16, 24 or 32"):
        AesGcm(bytes(size))


def test_the_chunk_cipher_refuses_a_base_nonce_that_is_not_96_bits() -> None:
    with pytest.raises(ValueError, match="12 bytes"):
        ChunkCipher(bytes(32), bytes(11))


def test_the_chunk_counter_stops_at_2_to_the_38() -> None:
    cipher = ChunkCipher(bytes(32), bytes(12))
    last = cipher.seal(MAX_CHUNKS - 1, b"")
    assert cipher.open(MAX_CHUNKS - 1, last) == b""
    with pytest.raises(ValueError, match="2\\*\\*38"):
        cipher.seal(MAX_CHUNKS, b"")
    with pytest.raises(IntegrityError):
        cipher.open(MAX_CHUNKS, last)


def test_a_short_header_is_rejected() -> None:
    with pytest.raises(IntegrityError) as excinfo:
        check_header(b"HGW1", encode_header(OBJECT, 0))
    assert getattr(excinfo.value, "reason", "") == "header is truncated"


@pytest.mark.parametrize("size", [0, 79, 81])
def test_a_prefix_that_is_not_80_bytes_is_rejected(size: int) -> None:
    with pytest.raises(IntegrityError):
        SegmentOpener(bytes(32), bytes(16), OBJECT, 0, plaintext_size=0, prefix=bytes(size))
