"""Wycheproof conformance: AES-GCM through the AEAD wrapper, Cobblestone-256 in every mode."""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from blindstore.crypto._aead import AesGcm
from blindstore.crypto._cobblestone import (
    MESSAGE_PREFIX_SIZE,
    ChunkCipher,
    ChunkStream,
    cobblestone_decrypt,
    cobblestone_decryptor,
    open_all,
    open_message_prefix,
)
from blindstore.crypto.sizes import CHUNK, CHUNK_CIPHERTEXT, TAG_SIZE
from blindstore.errors import IntegrityError

WYCHEPROOF = Path(__file__).resolve().parents[2] / "vectors" / "wycheproof"

Vector = dict[str, Any]


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WYCHEPROOF / name).read_text())
    return data


AES_GCM = _load("aes_gcm_test.json")
COBBLESTONE = _load("c2sp_chunked_encryption_aes_256_gcm_test.json")

GCM_CASES = [(group, test) for group in AES_GCM["testGroups"] for test in group["tests"]]
GCM_96 = [
    pytest.param(test, id=f"tc{test['tcId']}") for group, test in GCM_CASES if group["ivSize"] == 96
]
GCM_OTHER = [
    pytest.param(test, id=f"tc{test['tcId']}") for group, test in GCM_CASES if group["ivSize"] != 96
]
C2SP_CASES = [test for group in COBBLESTONE["testGroups"] for test in group["tests"]]


def _c2sp_params(cases: list[Vector]) -> list[Any]:
    return [
        pytest.param(test, id=f"tc{test['tcId']}-{'-'.join(test['flags']) or 'Valid'}")
        for test in cases
    ]


def _hex(test: Vector, field: str) -> bytes:
    return bytes.fromhex(test[field])


def _ciphertext(test: Vector) -> bytes:
    return zlib.decompress(_hex(test, "ct"))


def _is_message(test: Vector, plaintext: bytes | bytearray) -> bool:
    expected: tuple[int, str] = (test["msgLength"], test["msgSha512"])
    return (len(plaintext), hashlib.sha512(plaintext).hexdigest()) == expected


def test_every_aes_gcm_vector_is_run() -> None:
    assert len(GCM_96) + len(GCM_OTHER) == AES_GCM["numberOfTests"]


def test_every_cobblestone_vector_is_run() -> None:
    assert len(C2SP_CASES) == COBBLESTONE["numberOfTests"]
    assert all(group["aead"] == "AEAD_AES_256_GCM" for group in COBBLESTONE["testGroups"])
    assert all(group["sha"] == "SHA-512" for group in COBBLESTONE["testGroups"])


@pytest.mark.parametrize("test", GCM_96)
def test_aes_gcm_with_96_bit_nonces_matches_wycheproof(test: Vector) -> None:
    aead = AesGcm(_hex(test, "key"))
    iv, aad, sealed = _hex(test, "iv"), _hex(test, "aad"), _hex(test, "ct") + _hex(test, "tag")
    if test["result"] == "valid":
        assert aead.encrypt(iv, _hex(test, "msg"), aad) == sealed
        assert aead.decrypt(iv, sealed, aad) == _hex(test, "msg")
    else:
        with pytest.raises(IntegrityError):
            aead.decrypt(iv, sealed, aad)


@pytest.mark.parametrize("test", GCM_OTHER)
def test_aes_gcm_wrapper_refuses_nonces_other_than_96_bits(test: Vector) -> None:
    aead = AesGcm(_hex(test, "key"))
    iv, aad = _hex(test, "iv"), _hex(test, "aad")
    with pytest.raises(ValueError, match="12 bytes"):
        aead.encrypt(iv, _hex(test, "msg"), aad)
    with pytest.raises(ValueError, match="12 bytes"):
        aead.decrypt(iv, _hex(test, "ct") + _hex(test, "tag"), aad)


@pytest.mark.parametrize("test", _c2sp_params(C2SP_CASES))
def test_cobblestone_one_shot_decryption_matches_wycheproof(test: Vector) -> None:
    key, context, ciphertext = _hex(test, "key"), _hex(test, "ctx"), _ciphertext(test)
    if test["result"] == "valid":
        assert _is_message(test, cobblestone_decrypt(key, context, ciphertext))
    else:
        with pytest.raises(IntegrityError):
            cobblestone_decrypt(key, context, ciphertext)


@pytest.mark.parametrize("piece", [13, CHUNK_CIPHERTEXT - 1, CHUNK_CIPHERTEXT + 1, 1 << 30])
@pytest.mark.parametrize("test", _c2sp_params(C2SP_CASES))
def test_cobblestone_streaming_releases_only_a_verified_prefix(test: Vector, piece: int) -> None:
    """Valid messages stream whole; invalid ones release at most the valid prefix, then fail
    and keep failing."""
    stream = cobblestone_decryptor(_hex(test, "key"), _hex(test, "ctx"))
    ciphertext = _ciphertext(test)
    released = bytearray()
    try:
        for offset in range(0, len(ciphertext), piece):
            released += stream.feed(ciphertext[offset : offset + piece])
        released += stream.finish()
    except IntegrityError:
        failed = True
    else:
        failed = False
    if test["result"] == "valid":
        assert not failed
        assert _is_message(test, released)
        return
    assert failed
    assert not released or _is_message(test, released)
    assert len(released) <= test.get("msgLength", 0)
    with pytest.raises(IntegrityError):
        stream.feed(b"")
    with pytest.raises(IntegrityError):
        stream.finish()


RAW_CASES = [test for test in C2SP_CASES if "aeadKey" in test]


@pytest.mark.parametrize("test", _c2sp_params(RAW_CASES))
def test_cobblestone_raw_mode_matches_wycheproof(test: Vector) -> None:
    """The chunk layer alone, keyed with the vector's derived AEAD key and base nonce."""
    cipher = ChunkCipher(_hex(test, "aeadKey"), _hex(test, "baseNonce"))
    body = _ciphertext(test)[MESSAGE_PREFIX_SIZE:]
    if test["result"] == "valid":
        assert _is_message(test, open_all(ChunkStream(cipher), body))
    else:
        with pytest.raises(IntegrityError):
            open_all(ChunkStream(cipher), body)


def _open_final_chunk(test: Vector) -> bytes:
    """Seek to the end: authenticate the message length by decrypting only the final chunk."""
    ciphertext = _ciphertext(test)
    cipher = open_message_prefix(
        _hex(test, "key"), _hex(test, "ctx"), ciphertext[:MESSAGE_PREFIX_SIZE]
    )
    body = ciphertext[MESSAGE_PREFIX_SIZE:]
    final, final_size = divmod(len(body), CHUNK_CIPHERTEXT)
    if final_size < TAG_SIZE:
        raise IntegrityError
    return cipher.open(final, body[final * CHUNK_CIPHERTEXT :])


@pytest.mark.parametrize("test", _c2sp_params(C2SP_CASES))
def test_cobblestone_seeking_to_the_final_chunk_authenticates_the_length(test: Vector) -> None:
    if test["result"] == "valid" or "ValidFinalChunk" in test["flags"]:
        assert len(_open_final_chunk(test)) < CHUNK
    else:
        with pytest.raises(IntegrityError):
            _open_final_chunk(test)


VALID_CASES = [test for test in C2SP_CASES if test["result"] == "valid"]


@pytest.mark.parametrize("test", _c2sp_params(VALID_CASES))
def test_cobblestone_random_access_reads_chunks_in_any_order(test: Vector) -> None:
    ciphertext = _ciphertext(test)
    cipher = open_message_prefix(
        _hex(test, "key"), _hex(test, "ctx"), ciphertext[:MESSAGE_PREFIX_SIZE]
    )
    body = memoryview(ciphertext)[MESSAGE_PREFIX_SIZE:]
    starts = range(0, len(body), CHUNK_CIPHERTEXT)
    chunks = {
        index: cipher.open(index, body[start : start + CHUNK_CIPHERTEXT])
        for index, start in reversed(list(enumerate(starts)))
    }
    assert _is_message(test, b"".join(chunks[index] for index in sorted(chunks)))
