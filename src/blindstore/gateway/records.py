"""What the gateway's operations take and return, and the bytes its row MAC covers.

Pure: no I/O. ``canonical_row`` is shared by writes (the MAC is computed at the commit point),
reads (verified before any byte is served) and multipart completion.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from blindstore.catalog.base import ObjectRecord, Tenant, Upload, UploadPart
from blindstore.provenance import Provenance

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10_000


class BodyCheck(Protocol):
    """Digests of an incoming plaintext body, fed once per byte, verified at the end."""

    def update(self, data: bytes) -> None: ...

    def update_md5(self, data: bytes) -> None:
        """The MD5 part of ``update``; runs concurrently with ``update_others``."""
        ...

    def update_others(self, data: bytes) -> None:
        """The rest of ``update``: ``update_md5`` + ``update_others`` == ``update``."""
        ...

    def verify(self) -> None:
        """Raise BadDigest/XAmzContentSHA256Mismatch/... if any declared digest differs."""
        ...

    def md5_hex(self) -> str: ...

    def checksums(self) -> dict[str, str]:
        """Checksums the client declared (algorithm → base64), to return on request."""
        ...


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the access key and the tenant it belongs to."""

    access_key_id: str
    tenant: Tenant


@dataclass(frozen=True, slots=True)
class WriteMeta:
    """What a client sets on an object besides its bytes."""

    headers: dict[str, str] = field(default_factory=dict)
    user_metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: The data subject (``x-blindstore-data-subject``): the object is wrapped under its key.
    subject: str | None = field(default=None, repr=False)
    #: A data subject's key name, inherited by a copy of one of its objects.
    subject_key: str | None = None
    #: Origin system, consent reference, legal basis and retention date (``x-blindstore-*``).
    provenance: Provenance = field(default_factory=Provenance)


@dataclass(frozen=True, slots=True)
class ObjectRead:
    """A GET result: the row, the byte range served (inclusive) and the verified body."""

    record: ObjectRecord
    start: int
    end: int
    partial: bool
    body: AsyncIterator[bytes]
    #: True when every byte of the body was verified before this object was returned.
    verified: bool


def canonical_row(record: ObjectRecord, legacy_backend: str | None = None) -> bytes:
    """The row fields the row MAC covers.

    Excluded on purpose: the wrapped DEK and key version (a rewrap changes them; the Vault
    context already binds the wrapped DEK to tenant + object), tags (mutable without the DEK),
    and the replica lists ``backends``/``repairs``: a replica holds the same self-authenticating
    ciphertext, a row pointed at another backend can only be served bytes that verify under
    this object's keys, and repairs and moves must not need the DEK.
    """
    doc = {
        "bucket": record.bucket,
        "key": record.key,
        "tenant": record.tenant_id.hex(),
        "object": record.object_id.hex(),
        "container": record.container,
        "parts": [[p.part_number, p.blob, p.size, p.stored_size, p.etag] for p in record.parts],
        "size": record.size,
        "etag": record.etag,
        "last_modified": record.last_modified,
        "headers": record.headers,
        "meta": record.user_metadata,
        "checksums": record.checksums,
        "key_name": record.key_name,
    }
    # Provenance and retention (catalog revision 0005) are covered only when present, so that
    # every row MACed before them still verifies.
    if record.provenance:
        doc["provenance"] = record.provenance
    if record.retention_until is not None:
        doc["retention_until"] = record.retention_until
    if legacy_backend is not None:
        # Rows MACed before catalog revision 0002 also covered their one backend's name.
        doc["backend"] = legacy_backend
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_upload(upload: Upload) -> bytes:
    """The pending-upload row fields its MAC covers (docs/format.md §7).

    Everything completion copies into the object row, plus the upload id. Excluded, as for
    objects: the wrapped DEK and key version (a rewrap changes them) and the targets and quorum
    (replica placement, which must not need the DEK).
    """
    doc = {
        "upload": upload.upload_id,
        "bucket": upload.bucket,
        "key": upload.key,
        "tenant": upload.tenant_id.hex(),
        "object": upload.object_id.hex(),
        "container": upload.container,
        "key_name": upload.key_name,
        "initiated": upload.initiated,
        "headers": upload.headers,
        "meta": upload.user_metadata,
        "tags": upload.tags,
        "checksum_algorithm": upload.checksum_algorithm,
        "provenance": upload.provenance,
        "retention_until": upload.retention_until,
    }
    return _canonical(doc)


def canonical_part(upload: Upload, part: UploadPart) -> bytes:
    """The part row fields its MAC covers: which upload and object it belongs to, its number,
    blob, sizes, ETag and checksums (not the backends it landed on)."""
    doc = {
        "upload": part.upload_id,
        "object": upload.object_id.hex(),
        "part_number": part.part_number,
        "blob": part.blob,
        "size": part.size,
        "stored_size": part.stored_size,
        "etag": part.etag,
        "last_modified": part.last_modified,
        "checksums": part.checksums,
    }
    return _canonical(doc)


def _canonical(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def multipart_etag(part_md5s: list[str]) -> str:
    joined = b"".join(bytes.fromhex(m) for m in part_md5s)
    return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(part_md5s)}"
