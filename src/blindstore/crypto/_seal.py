"""Encrypting one HGW-1 segment: streamed (``SegmentSealer``) or in one call (``seal_segment``)."""

from __future__ import annotations

import os
from collections.abc import Callable

from blindstore.crypto._aead import BytesLike
from blindstore.crypto._cobblestone import (
    ChunkCipher,
    begin_message,
    join,
    seal_all,
    seal_full_chunks,
)
from blindstore.crypto._envelope import check_identity, encode_header, segment_context
from blindstore.crypto.sizes import CHUNK, COMMITMENT_SIZE, HEADER_SIZE, SALT_SIZE

Rng = Callable[[int], bytes]


def _begin(
    dek: BytesLike, tenant_id: BytesLike, object_id: BytesLike, part_number: int, rng: Rng
) -> tuple[ChunkCipher, bytes]:
    """Draw the salt, derive the segment keys; return the cipher and the 80-byte prefix."""
    check_identity(tenant_id, object_id, part_number)
    salt = rng(SALT_SIZE)
    header = encode_header(object_id, part_number)
    cipher, commitment = begin_message(dek, salt, segment_context(header, tenant_id, part_number))
    return cipher, header + salt + commitment


class SegmentSealer:
    """Encrypt one segment as a stream, holding less than one chunk (16 KiB) at a time.

    Write ``prefix()``, then every ``update(data)`` result, then ``finalize()``: their
    concatenation is the segment. A fresh random salt is drawn per sealer, so a retried part gets
    new keys even under the same DEK.
    """

    __slots__ = ("_buf", "_cipher", "_done", "_next", "_prefix")

    def __init__(
        self,
        dek: BytesLike,
        tenant_id: BytesLike,
        object_id: BytesLike,
        part_number: int,
        *,
        rng: Rng = os.urandom,
    ) -> None:
        """``part_number`` is 0 for a single PUT, 1..10000 for a client multipart part."""
        self._cipher, self._prefix = _begin(dek, tenant_id, object_id, part_number, rng)
        self._buf = bytearray()
        self._next = 0
        self._done = False

    def prefix(self) -> bytes:
        """Header, salt and commitment (80 bytes): the start of the segment."""
        return self._prefix

    @property
    def salt(self) -> bytes:
        """This segment's salt (24 bytes), for the catalog's part manifest."""
        return self._prefix[HEADER_SIZE : HEADER_SIZE + SALT_SIZE]

    @property
    def commitment(self) -> bytes:
        """This segment's key commitment (32 bytes), for the catalog's part manifest."""
        return self._prefix[HEADER_SIZE + SALT_SIZE : HEADER_SIZE + SALT_SIZE + COMMITMENT_SIZE]

    @property
    def buffered(self) -> int:
        """Plaintext bytes held for the next chunk: always less than 16384."""
        return len(self._buf)

    def update(self, data: BytesLike) -> bytes:
        """Take plaintext; return the ciphertext of every chunk it completes (maybe ``b""``)."""
        if self._done:
            raise ValueError("sealer already finalized")
        view = memoryview(data).cast("B")
        buf = self._buf
        out: list[bytes] = []
        if buf:
            need = CHUNK - len(buf)
            if len(view) < need:
                buf += view
                return b""
            buf += view[:need]
            view = view[need:]
            out.append(self._cipher.seal(self._next, buf))
            self._next += 1
            buf.clear()
        # Whole chunks are encrypted straight from the caller's buffer: no copy.
        self._next = seal_full_chunks(self._cipher, self._next, view, out)
        buf += view[len(view) - len(view) % CHUNK :]
        return join(out)

    def finalize(self) -> bytes:
        """Return the final chunk (the buffered bytes, possibly none); the sealer is then spent."""
        if self._done:
            raise ValueError("sealer already finalized")
        self._done = True
        final = self._cipher.seal(self._next, self._buf)
        self._buf = bytearray()
        return final


def seal_segment(
    dek: BytesLike,
    tenant_id: BytesLike,
    object_id: BytesLike,
    part_number: int,
    plaintext: BytesLike,
    *,
    rng: Rng = os.urandom,
) -> bytes:
    """Encrypt a whole segment in one call (small objects): ``prefix || chunks``."""
    cipher, prefix = _begin(dek, tenant_id, object_id, part_number, rng)
    out = [prefix]
    seal_all(cipher, plaintext, out)
    return b"".join(out)
