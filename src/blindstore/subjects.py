"""Data subjects (patients): objects written with a subject id are wrapped under that subject's
own Transit key, so that one patient's data can be crypto-shredded alone.

A client names the subject in the ``x-blindstore-data-subject`` request header (PutObject,
CreateMultipartUpload, CopyObject). The id is never stored, logged, sent to Vault or to a
backend: the catalog keeps ``subject_digest`` and the Transit key is named
``<prefix>p-<tenant id hex>-<random hex>``.

The digest is **keyed**: ``HMAC_transit(SHA-256(label || tenant id || id))``, the HMAC computed by
OpenBao Transit (``transit/hmac/<prefix>subjects``, key version 1) with a key that never leaves
it. An unkeyed digest of a small identifier space (a French NIR has 13 digits) is reversed by
brute force from a copy of the catalog; the keyed one needs a call to OpenBao per guess. The
inner SHA-256 is the digest rows held before catalog revision 0009: the gateway converts them
without knowing the ids (``convert_unkeyed_digests``, at every start; a no-op once done).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable

import structlog

from blindstore.catalog.base import Catalog
from blindstore.errors import InvalidArgument

log = structlog.get_logger("blindstore.subjects")

#: The request header that names an object's data subject.
SUBJECT_HEADER = "x-blindstore-data-subject"
SUBJECT_MAX_LENGTH = 256
_DIGEST_LABEL = b"hgw/v1/subject\x00"
_SUBJECT_KEY = re.compile(r"p-[0-9a-f]{32}-[0-9a-f]{32}\Z")

#: Keys an unkeyed digest: the Transit HMAC of the subject digest key (never a local key in
#: production: the point is that the key stays on the sovereign side).
Keying = Callable[[bytes], Awaitable[bytes]]


def check_subject_id(subject: str) -> str:
    """The subject id, stripped; ``InvalidArgument`` if empty, too long or not printable."""
    subject = subject.strip()
    if not subject or len(subject) > SUBJECT_MAX_LENGTH or not subject.isprintable():
        raise InvalidArgument(
            f"{SUBJECT_HEADER} must be 1 to {SUBJECT_MAX_LENGTH} printable characters."
        )
    return subject


def unkeyed_digest(tenant_id: bytes, subject: str) -> bytes:
    """SHA-256 over a label, the tenant id and the id: the HMAC's input (and the digest rows
    held before catalog revision 0009). Never stored as such any more."""
    return hashlib.sha256(_DIGEST_LABEL + tenant_id + subject.encode("utf-8")).digest()


async def subject_digest(tenant_id: bytes, subject: str, keyed: Keying) -> bytes:
    """What the catalog stores to find a subject's key again (the id itself is not stored)."""
    return await keyed(unkeyed_digest(tenant_id, subject))


def digest_key_name(prefix: str) -> str:
    """The Transit key that keys subject digests: ``<prefix>subjects`` (type ``hmac``)."""
    return f"{prefix}subjects"


async def convert_unkeyed_digests(catalog: Catalog, keyed: Keying, *, batch: int = 200) -> int:
    """Replace every unkeyed digest in the catalog by its keyed form; how many were converted.

    Needs no subject id: the keyed digest is computed over the unkeyed one. Safe to run
    concurrently (compare and set per row) and again (nothing left: one query).
    """
    converted = 0
    skipped: set[str] = set()
    while rows := [
        key
        for key in await catalog.unkeyed_subject_keys(limit=batch + len(skipped))
        if key.key_name not in skipped
    ]:
        for key in rows:
            if await catalog.set_keyed_subject_digest(
                key.key_name, key.subject_digest, await keyed(key.subject_digest)
            ):
                converted += 1
            else:
                # Converted by another gateway meanwhile: not listed again.
                skipped.add(key.key_name)
    if converted:
        log.info("subjects.digests_keyed", converted=converted)
    return converted


def subject_key_name(
    prefix: str, tenant_id: bytes, rng: Callable[[int], bytes] = secrets.token_bytes
) -> str:
    """A new subject key name: ``<prefix>p-<tenant id hex>-<32 random hex>``."""
    return f"{prefix}p-{tenant_id.hex()}-{rng(16).hex()}"


def is_subject_key(key_name: str) -> bool:
    """Whether a key name is a data subject's (such keys are never pooled)."""
    return _SUBJECT_KEY.search(key_name) is not None
