"""Cobblestone-256: c2sp.org/chunked-encryption v1 with HKDF-Expand-SHA-512 and AES-256-GCM.

This is the body of every HGW-1 segment, with no HGW-specific knowledge: the envelope layer gives
it an input key (the DEK) and a context. A message is ``salt(24) || commitment(32) || chunks``:

    key || base_nonce || commitment = HKDF-Expand(SHA-512, prk = input key,
        info = "c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM" || 0x00 || salt || context, L = 76)
    chunk_i = AES-256-GCM(key, nonce = base_nonce XOR BE96(i), plaintext_i, aad = empty)

Every chunk holds 16384 plaintext bytes except the final one, which holds fewer (possibly none):
a short chunk marks the end, so a message cut at a chunk boundary fails to open.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from blindstore.crypto._aead import NONCE_SIZE, AesGcm, BytesLike
from blindstore.crypto._failure import IntegrityFailure, integrity_failure
from blindstore.crypto.sizes import (
    CHUNK,
    CHUNK_CIPHERTEXT,
    COMMITMENT_SIZE,
    MAX_CHUNKS,
    SALT_SIZE,
    TAG_SIZE,
)
from blindstore.errors import IntegrityError

INFO_PREFIX = b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\x00"
KEY_SIZE = 32
#: ``salt || commitment``: what precedes chunk 0 in a bare Cobblestone message.
MESSAGE_PREFIX_SIZE = SALT_SIZE + COMMITMENT_SIZE
_DERIVED_SIZE = KEY_SIZE + NONCE_SIZE + COMMITMENT_SIZE


def derive(input_key: BytesLike, salt: BytesLike, context: BytesLike) -> tuple[bytes, bytes, bytes]:
    """Return ``(aead_key, base_nonce, commitment)`` for one message."""
    info = INFO_PREFIX + salt + context
    okm = HKDFExpand(hashes.SHA512(), _DERIVED_SIZE, info).derive(input_key)
    return okm[:KEY_SIZE], okm[KEY_SIZE : KEY_SIZE + NONCE_SIZE], okm[KEY_SIZE + NONCE_SIZE :]


class ChunkCipher:
    """Raw mode: the chunk AEAD of one message (one key, nonces from the chunk index)."""

    __slots__ = ("_aead", "_base_nonce")

    def __init__(self, aead_key: BytesLike, base_nonce: BytesLike) -> None:
        if len(base_nonce) != NONCE_SIZE:
            raise ValueError("base nonce must be 12 bytes")
        self._aead = AesGcm(aead_key)
        self._base_nonce = int.from_bytes(base_nonce, "big")

    def seal(self, index: int, plaintext: BytesLike) -> bytes:
        """Encrypt chunk ``index``."""
        if index >= MAX_CHUNKS:
            raise ValueError("a message holds at most 2**38 chunks")
        return self._aead.encrypt(self._nonce(index), plaintext)

    def open(self, index: int, ciphertext: BytesLike) -> bytes:
        """Verify and decrypt chunk ``index``; ``IntegrityError`` if it is not that chunk."""
        if index >= MAX_CHUNKS:
            raise integrity_failure("chunk counter reached 2**38")
        try:
            return self._aead.decrypt(self._nonce(index), ciphertext)
        except IntegrityFailure:
            raise integrity_failure(f"chunk {index} failed authentication") from None

    def _nonce(self, index: int) -> bytes:
        return (self._base_nonce ^ index).to_bytes(NONCE_SIZE, "big")


def begin_message(
    input_key: BytesLike, salt: BytesLike, context: BytesLike
) -> tuple[ChunkCipher, bytes]:
    """Encrypt side: return the chunk cipher and the commitment to write after the salt."""
    if len(input_key) != KEY_SIZE:
        raise ValueError("Cobblestone-256 input key must be 32 bytes")
    if len(salt) != SALT_SIZE:
        raise ValueError("salt must be 24 bytes")
    aead_key, base_nonce, commitment = derive(input_key, salt, context)
    return ChunkCipher(aead_key, base_nonce), commitment


def open_message_prefix(input_key: BytesLike, context: BytesLike, prefix: BytesLike) -> ChunkCipher:
    """Decrypt side: check ``salt || commitment`` against the key and context, before any chunk."""
    if len(input_key) != KEY_SIZE:
        raise integrity_failure("input key has the wrong size")
    if len(prefix) != MESSAGE_PREFIX_SIZE:
        raise integrity_failure("message prefix is truncated")
    view = memoryview(prefix)
    aead_key, base_nonce, commitment = derive(input_key, view[:SALT_SIZE], context)
    if not hmac.compare_digest(commitment, view[SALT_SIZE:]):
        raise integrity_failure("commitment mismatch: wrong key, context or salt")
    return ChunkCipher(aead_key, base_nonce)


def seal_full_chunks(cipher: ChunkCipher, index: int, view: memoryview, out: list[bytes]) -> int:
    """Append the ciphertext of every complete chunk of ``view``, numbered from ``index``.

    Returns the next chunk index; the caller keeps the ``len(view) % CHUNK`` bytes left over.
    """
    full = len(view) - len(view) % CHUNK
    for offset in range(0, full, CHUNK):
        out.append(cipher.seal(index, view[offset : offset + CHUNK]))
        index += 1
    return index


def seal_all(cipher: ChunkCipher, plaintext: BytesLike, out: list[bytes]) -> None:
    """Append the ciphertext of a whole message body: its full chunks, then the short final one."""
    view = memoryview(plaintext).cast("B")
    index = seal_full_chunks(cipher, 0, view, out)
    out.append(cipher.seal(index, view[len(view) - len(view) % CHUNK :]))


def join(parts: list[bytes]) -> bytes:
    """Concatenate, without a copy when there is a single part."""
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


class ChunkStream:
    """Verified streaming decryption: feed ciphertext as it arrives, get plaintext chunk by chunk.

    No byte of a chunk is returned before the chunk's tag is verified, and at most one
    incomplete chunk (or prefix) is buffered. Two ways to know where the message ends:

    * trusted layout (``final_chunk`` given): the final chunk's index and length come from the
      catalog, so a short, long or cut stream is caught from lengths alone;
    * end of input (``final_chunk=None``, bare Cobblestone): the bytes left at ``finish`` are the
      final chunk, which must hold a tag and fewer than 16384 plaintext bytes.

    On a failure, ``feed`` still returns the chunks it verified before the bad one (so the caller
    holds exactly the verified prefix), then this call or the next raises ``IntegrityError``, and
    every later call raises it again. ``finish`` raises if the stream ended early.
    """

    __slots__ = (
        "_buf",
        "_check_prefix",
        "_cipher",
        "_failure",
        "_final",
        "_final_size",
        "_finished",
        "_last",
        "_next",
        "_prefix_size",
    )

    def __init__(
        self,
        cipher: ChunkCipher | Callable[[bytes], ChunkCipher],
        *,
        prefix_size: int = 0,
        first_chunk: int = 0,
        last_chunk: int | None = None,
        final_chunk: int | None = None,
        final_size: int = TAG_SIZE,
    ) -> None:
        """Internal: build streams with ``SegmentOpener.stream`` or ``segment_reader``.

        ``cipher`` is the chunk cipher, or a function that verifies the stream's
        ``prefix_size``-byte prefix and returns it. ``final_size`` is the final chunk's stored
        length (tag included); ``last_chunk`` is where this stream stops reading.
        """
        if isinstance(cipher, ChunkCipher):
            known = cipher
            self._cipher: ChunkCipher | None = known
            self._check_prefix: Callable[[bytes], ChunkCipher] = lambda _prefix: known
        else:
            self._cipher = None
            self._check_prefix = cipher
        self._prefix_size = prefix_size
        self._next = first_chunk
        self._final = -1 if final_chunk is None else final_chunk
        self._last = MAX_CHUNKS - 1 if last_chunk is None else last_chunk
        self._final_size = final_size
        self._buf = bytearray()
        self._failure: str | None = None
        self._finished = False

    @property
    def buffered(self) -> int:
        """Bytes held until their chunk (or the prefix) is complete: always less than one chunk."""
        return len(self._buf)

    def feed(self, data: BytesLike) -> bytes:
        """Take the next ciphertext bytes; return the plaintext of every chunk they complete."""
        self._check_usable()
        out: list[bytes] = []
        try:
            self._consume(memoryview(data).cast("B"), out)
        except IntegrityFailure as exc:
            self._failure = exc.reason
            if not out:
                raise
        return join(out)

    def finish(self) -> bytes:
        """End of input: return the final chunk's plaintext if still held; raise if cut short."""
        self._check_usable()
        self._finished = True
        if self._cipher is None:
            raise self._fail("stream ended inside the prefix")
        if self._final >= 0:
            if self._next <= self._last or self._buf:
                raise self._fail("stream ended before the last expected chunk")
            return b""
        if len(self._buf) < TAG_SIZE:
            raise self._fail("stream ended without its short final chunk")
        try:
            return self._cipher.open(self._next, self._buf)
        except IntegrityFailure as exc:
            raise self._fail(exc.reason) from None

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise integrity_failure(self._failure)
        if self._finished:
            raise ValueError("stream already finished")

    def _fail(self, reason: str) -> IntegrityError:
        self._failure = reason
        return integrity_failure(reason)

    def _chunk_size(self, index: int) -> int:
        return self._final_size if index == self._final else CHUNK_CIPHERTEXT

    def _consume(self, view: memoryview, out: list[bytes]) -> None:
        buf = self._buf
        if self._cipher is None:
            need = self._prefix_size - len(buf)
            buf += view[:need]
            if len(buf) < self._prefix_size:
                return
            self._cipher = self._check_prefix(bytes(buf))
            buf.clear()
            view = view[need:]
        cipher = self._cipher
        if buf:
            need = self._chunk_size(self._next) - len(buf)
            if len(view) < need:
                buf += view
                return
            buf += view[:need]
            view = view[need:]
            out.append(cipher.open(self._next, buf))
            buf.clear()
            self._next += 1
        size = self._chunk_size(self._next)
        # Whole chunks are decrypted straight from the caller's buffer: no copy.
        while self._next <= self._last and len(view) >= size:
            out.append(cipher.open(self._next, view[:size]))
            view = view[size:]
            self._next += 1
            size = self._chunk_size(self._next)
        if view:
            if self._next > self._last:
                raise integrity_failure("trailing data after the last chunk")
            buf += view


def open_all(stream: ChunkStream, ciphertext: BytesLike) -> bytes:
    """One-shot use of a stream: all of ``ciphertext``, then the end-of-input checks."""
    head = stream.feed(ciphertext)
    tail = stream.finish()
    return head + tail if tail else head


def cobblestone_encrypt(
    input_key: BytesLike, context: BytesLike, plaintext: BytesLike, *, salt: BytesLike
) -> bytes:
    """Encrypt one bare Cobblestone-256 message (``salt`` must never repeat for a key)."""
    cipher, commitment = begin_message(input_key, salt, context)
    out = [bytes(salt), commitment]
    seal_all(cipher, plaintext, out)
    return b"".join(out)


def cobblestone_decryptor(input_key: BytesLike, context: BytesLike) -> ChunkStream:
    """Streaming decryption of one bare message whose end is the end of input."""

    def check_prefix(prefix: bytes) -> ChunkCipher:
        return open_message_prefix(input_key, context, prefix)

    return ChunkStream(check_prefix, prefix_size=MESSAGE_PREFIX_SIZE)


def cobblestone_decrypt(input_key: BytesLike, context: BytesLike, ciphertext: BytesLike) -> bytes:
    """Decrypt one bare Cobblestone-256 message, or raise ``IntegrityError``."""
    return open_all(cobblestone_decryptor(input_key, context), ciphertext)
