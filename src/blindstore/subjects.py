"""Data subjects (patients): objects written with a subject id are wrapped under that subject's
own Transit key, so that one patient's data can be crypto-shredded alone.

A client names the subject in the ``x-blindstore-data-subject`` request header (PutObject,
CreateMultipartUpload, CopyObject). The id is never stored, logged, sent to Vault or to a
backend: the catalog keeps ``subject_digest`` (SHA-256 over a label, the tenant id and the id) and
the Transit key is named ``<prefix>p-<tenant id hex>-<random hex>``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable

from blindstore.errors import InvalidArgument

#: The request header that names an object's data subject.
SUBJECT_HEADER = "x-blindstore-data-subject"
SUBJECT_MAX_LENGTH = 256
_DIGEST_LABEL = b"hgw/v1/subject\x00"
_SUBJECT_KEY = re.compile(r"p-[0-9a-f]{32}-[0-9a-f]{32}\Z")


def check_subject_id(subject: str) -> str:
    """The subject id, stripped; ``InvalidArgument`` if empty, too long or not printable."""
    subject = subject.strip()
    if not subject or len(subject) > SUBJECT_MAX_LENGTH or not subject.isprintable():
        raise InvalidArgument(
            f"{SUBJECT_HEADER} must be 1 to {SUBJECT_MAX_LENGTH} printable characters."
        )
    return subject


def subject_digest(tenant_id: bytes, subject: str) -> bytes:
    """What the catalog stores to find a subject's key again (the id itself is not stored)."""
    return hashlib.sha256(_DIGEST_LABEL + tenant_id + subject.encode("utf-8")).digest()


def subject_key_name(
    prefix: str, tenant_id: bytes, rng: Callable[[int], bytes] = secrets.token_bytes
) -> str:
    """A new subject key name: ``<prefix>p-<tenant id hex>-<32 random hex>``."""
    return f"{prefix}p-{tenant_id.hex()}-{rng(16).hex()}"


def is_subject_key(key_name: str) -> bool:
    """Whether a key name is a data subject's (such keys are never pooled)."""
    return _SUBJECT_KEY.search(key_name) is not None
