"""Cross-check with an independent Cobblestone-256 implementation (cryptography's, in Rust)."""

from __future__ import annotations

import os

from cryptography.cobblestone import Cobblestone256Decryptor, Cobblestone256Encryptor
from hypothesis import given, settings
from hypothesis import strategies as st

from blindstore.crypto import CHUNK, seal_segment
from blindstore.crypto._cobblestone import cobblestone_decrypt, cobblestone_encrypt
from blindstore.crypto._envelope import encode_header, segment_context

sizes = st.sampled_from([0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK]) | st.integers(0, 3 * CHUNK)


@settings(deadline=None)
@given(size=sizes, context=st.binary(max_size=80), salt=st.binary(min_size=24, max_size=24))
def test_our_messages_open_with_the_reference_implementation(
    size: int, context: bytes, salt: bytes
) -> None:
    key, plaintext = os.urandom(32), os.urandom(size)
    decryptor = Cobblestone256Decryptor(key, context)
    ciphertext = cobblestone_encrypt(key, context, plaintext, salt=salt)
    assert decryptor.update(ciphertext) + decryptor.finalize() == plaintext


@settings(deadline=None)
@given(size=sizes, context=st.binary(max_size=80))
def test_reference_messages_open_with_ours(size: int, context: bytes) -> None:
    key, plaintext = os.urandom(32), os.urandom(size)
    encryptor = Cobblestone256Encryptor(key, context)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    assert cobblestone_decrypt(key, context, ciphertext) == plaintext


@settings(deadline=None)
@given(size=sizes, part=st.sampled_from([0, 1, 10000]))
def test_a_segment_body_is_a_standard_cobblestone_message_under_the_hgw_context(
    size: int, part: int
) -> None:
    """Anyone holding the DEK and the catalog identifiers can read a segment with a stock
    Cobblestone-256 library: the envelope adds a header, nothing else."""
    dek, tenant, object_id, plaintext = os.urandom(32), os.urandom(16), os.urandom(16), b"x" * size
    segment = seal_segment(dek, tenant, object_id, part, plaintext)
    header = encode_header(object_id, part)
    assert segment[:24] == header
    decryptor = Cobblestone256Decryptor(dek, segment_context(header, tenant, part))
    assert decryptor.update(segment[24:]) + decryptor.finalize() == plaintext
