"""HGW-1, blindstore's stored format: a Cobblestone-256 body behind a 24-byte envelope header.

Pure and sans-IO: bytes in, bytes out; no sockets, files, clock or logging. The server runs the
loop (``SegmentSealer.prefix/update/finalize`` on PUT, ``ChunkStream.feed/finish`` on GET).

Error contract: every decryption or verification failure raises ``blindstore.errors.IntegrityError``
with the same generic message, whatever the cause; its ``reason`` attribute (a string) says why,
for server logs only. Arguments of the wrong shape (an id that is not 16 bytes, a part number
outside 0..10000, a range outside the object) are caller bugs and raise ``ValueError``; a DEK of
the wrong size raises ``ValueError`` when sealing and ``IntegrityError`` when opening.

The byte-level specification is ``docs/format.md``.
"""

from blindstore.crypto import sizes
from blindstore.crypto._cobblestone import ChunkStream
from blindstore.crypto._envelope import ID_SIZE, MAX_PART_NUMBER
from blindstore.crypto._open import SegmentOpener, open_segment, segment_reader
from blindstore.crypto._rowmac import (
    ROW_MAC_SIZE,
    part_mac,
    row_mac,
    upload_mac,
    verify_part_mac,
    verify_row_mac,
    verify_upload_mac,
)
from blindstore.crypto._seal import SegmentSealer, seal_segment
from blindstore.crypto.sizes import (
    CHUNK,
    PREFIX_SIZE,
    SEGMENT_OVERHEAD,
    ChunkSpan,
    chunk_count,
    chunk_span,
    plaintext_length,
    segment_size,
)
from blindstore.errors import IntegrityError

#: Bytes of a data encryption key (AES-256).
DEK_SIZE = 32

__all__ = [
    "CHUNK",
    "DEK_SIZE",
    "ID_SIZE",
    "MAX_PART_NUMBER",
    "PREFIX_SIZE",
    "ROW_MAC_SIZE",
    "SEGMENT_OVERHEAD",
    "ChunkSpan",
    "ChunkStream",
    "IntegrityError",
    "SegmentOpener",
    "SegmentSealer",
    "chunk_count",
    "chunk_span",
    "open_segment",
    "part_mac",
    "plaintext_length",
    "row_mac",
    "seal_segment",
    "segment_reader",
    "segment_size",
    "sizes",
    "upload_mac",
    "verify_part_mac",
    "verify_row_mac",
    "verify_upload_mac",
]
