"""Decrypting one HGW-1 segment, with every length taken from the trusted catalog.

Order of checks, before any chunk is decrypted: the stored length (one-shot), the header bytes
(magic, suite, flags, reserved, object id must equal what the catalog implies), then the key
commitment. Then each chunk is authenticated before any of its bytes is released.
"""

from __future__ import annotations

from functools import partial

from blindstore.crypto._aead import BytesLike
from blindstore.crypto._cobblestone import ChunkCipher, ChunkStream, open_all, open_message_prefix
from blindstore.crypto._envelope import (
    check_header,
    check_identity,
    encode_header,
    segment_context,
)
from blindstore.crypto._failure import integrity_failure
from blindstore.crypto.sizes import (
    CHUNK,
    HEADER_SIZE,
    PREFIX_SIZE,
    SALT_SIZE,
    TAG_SIZE,
    chunk_count,
    segment_size,
)


def _open_prefix(
    dek: BytesLike, tenant_id: BytesLike, object_id: BytesLike, part_number: int, prefix: BytesLike
) -> ChunkCipher:
    """Check a stored 80-byte prefix (header, then commitment); return the chunk cipher."""
    if len(prefix) != PREFIX_SIZE:
        raise integrity_failure("segment prefix is truncated")
    view = memoryview(prefix)
    header = encode_header(object_id, part_number)
    check_header(view[:HEADER_SIZE], header)
    context = segment_context(header, tenant_id, part_number)
    return open_message_prefix(dek, context, view[HEADER_SIZE:])


class SegmentOpener:
    """Random-access reader of one segment whose prefix has been verified.

    ``plaintext_size`` comes from the catalog, never from the blob: it fixes where the segment
    ends and how long its final chunk is.
    """

    __slots__ = ("_cipher", "_final", "_prefix", "plaintext_size")

    def __init__(
        self,
        dek: BytesLike,
        tenant_id: BytesLike,
        object_id: BytesLike,
        part_number: int,
        *,
        plaintext_size: int,
        prefix: BytesLike,
    ) -> None:
        """Verify the stored ``prefix`` (bytes 0..80 of the blob); ``IntegrityError`` if wrong."""
        check_identity(tenant_id, object_id, part_number)
        #: Plaintext length of the segment, as the catalog recorded it.
        self.plaintext_size = plaintext_size
        self._final = chunk_count(plaintext_size) - 1
        self._cipher = _open_prefix(dek, tenant_id, object_id, part_number, prefix)
        self._prefix = bytes(prefix)

    @classmethod
    def from_salt(
        cls,
        dek: BytesLike,
        tenant_id: BytesLike,
        object_id: BytesLike,
        part_number: int,
        *,
        plaintext_size: int,
        salt: BytesLike,
        commitment: BytesLike,
    ) -> SegmentOpener:
        """Open from the salt and commitment kept in the catalog, without fetching the prefix.

        The blob's stored header is then not read; chunks still only verify under the keys the
        catalog's identifiers imply.
        """
        header = encode_header(object_id, part_number)
        prefix = header + salt + commitment
        return cls(
            dek, tenant_id, object_id, part_number, plaintext_size=plaintext_size, prefix=prefix
        )

    @property
    def salt(self) -> bytes:
        """The segment's salt (24 bytes)."""
        return self._prefix[HEADER_SIZE : HEADER_SIZE + SALT_SIZE]

    @property
    def commitment(self) -> bytes:
        """The segment's key commitment (32 bytes)."""
        return self._prefix[HEADER_SIZE + SALT_SIZE :]

    @property
    def final_chunk(self) -> int:
        """Index of the segment's final (short, possibly empty) chunk."""
        return self._final

    def stream(self, first_chunk: int = 0, last_chunk: int | None = None) -> ChunkStream:
        """A verified stream over chunks ``first_chunk..last_chunk`` (default: to the end).

        Feed it the blob bytes ``chunk_span(...).ct_start`` onwards, then call ``finish``.
        """
        last = self._final if last_chunk is None else last_chunk
        if not 0 <= first_chunk <= last <= self._final:
            raise ValueError(f"chunks {first_chunk}..{last} outside 0..{self._final}")
        return ChunkStream(
            self._cipher,
            first_chunk=first_chunk,
            last_chunk=last,
            final_chunk=self._final,
            final_size=self.plaintext_size % CHUNK + TAG_SIZE,
        )

    def open_chunks(self, first_chunk: int, last_chunk: int, ciphertext: BytesLike) -> bytes:
        """Decrypt exactly chunks ``first_chunk..last_chunk`` (e.g. a ``chunk_span``).

        ``ciphertext`` must be exactly those chunks: full ones, then the short final chunk if the
        run reaches it. A missing, cut or extra byte is an ``IntegrityError``, so a backend that
        returns less than was asked for can never pass for a shorter range.
        """
        return open_all(self.stream(first_chunk, last_chunk), ciphertext)


def segment_reader(
    dek: BytesLike,
    tenant_id: BytesLike,
    object_id: BytesLike,
    part_number: int,
    *,
    plaintext_size: int,
) -> ChunkStream:
    """A verified stream over a whole stored segment, fed from its first byte (the prefix)."""
    check_identity(tenant_id, object_id, part_number)
    final = chunk_count(plaintext_size) - 1
    return ChunkStream(
        partial(_open_prefix, dek, tenant_id, object_id, part_number),
        prefix_size=PREFIX_SIZE,
        last_chunk=final,
        final_chunk=final,
        final_size=plaintext_size % CHUNK + TAG_SIZE,
    )


def open_segment(
    dek: BytesLike,
    tenant_id: BytesLike,
    object_id: BytesLike,
    part_number: int,
    segment: BytesLike,
    *,
    plaintext_size: int,
) -> bytes:
    """Verify and decrypt a whole stored segment in one call; ``IntegrityError`` on any fault."""
    if len(segment) != segment_size(plaintext_size):
        raise integrity_failure("stored length does not match the catalog")
    view = memoryview(segment)
    prefix = view[:PREFIX_SIZE]
    opener = SegmentOpener(
        dek, tenant_id, object_id, part_number, plaintext_size=plaintext_size, prefix=prefix
    )
    return open_all(opener.stream(), view[PREFIX_SIZE:])
