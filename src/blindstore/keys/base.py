"""The KeyWrapper protocol: data keys (DEKs) wrapped by a key that never leaves the key service.

Every object version has its own 32-byte DEK, generated locally and wrapped by the tenant's Transit
key with a derivation ``context`` that binds the tenant id and the object id
(``dek_context(tenant_id, object_id)``). A wrapped DEK moved onto another object or tenant cannot be
unwrapped. Errors: ``KeyServiceUnavailable`` (Vault unreachable: fail closed, 503) and
``KeyServiceError`` (Vault refused: wrong context, missing key, permission denied).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from blindstore.errors import KeyServiceError

#: Versioned label of the Transit derivation context; a later format changes it.
DEK_CONTEXT_LABEL = b"hgw/v1/dek"

#: ``vault:v<N>:<base64>``, the ciphertext form shared by Vault and OpenBao Transit. A wrapped
#: 32-byte DEK is ~90 characters; the cap rejects junk before it reaches the key service.
_WRAPPED_FORM = re.compile(r"vault:v([1-9][0-9]{0,9}):[A-Za-z0-9+/]{4,1024}={0,2}")
#: ``bk1:<bucket key id hex>:<base64 of 76 bytes>``: a DEK wrapped locally under a bucket key
#: (``keys.bucketkeys``, docs/format.md).
BUCKET_WRAPPED_FORM = re.compile(r"bk1:([0-9a-f]{32}):([A-Za-z0-9+/]{102}==)")


def dek_context(tenant_id: bytes, object_id: bytes) -> bytes:
    """The Transit ``context`` for one object's DEK: fixed-length, hence injective."""
    if len(tenant_id) != 16 or len(object_id) != 16:
        raise ValueError("tenant_id and object_id are 16 bytes")
    return DEK_CONTEXT_LABEL + tenant_id + object_id


def parse_key_version(wrapped: str) -> int:
    """The key version N of a ``vault:vN:...`` wrapped DEK; malformed → ``KeyServiceError``.

    A ``bk1:`` value (bucket-key mode) gives 0: its DEK is wrapped by a bucket key, not by
    Transit, and the Transit version that matters is the bucket key's (its ``bucket_keys`` row;
    the object row's ``key_version`` copies it at write time).
    """
    match = _WRAPPED_FORM.fullmatch(wrapped)
    if match is None:
        if BUCKET_WRAPPED_FORM.fullmatch(wrapped) is not None:
            return 0
        raise KeyServiceError("wrapped data key is not of the form vault:vN:<base64>")
    return int(match.group(1))


@dataclass(frozen=True, slots=True)
class DataKey:
    """A fresh DEK for a new object version, with its wrapped form (``vault:vN:...``)."""

    object_id: bytes
    dek: bytes = field(repr=False)
    wrapped: str
    key_name: str
    key_version: int


@runtime_checkable
class KeyWrapper(Protocol):
    async def new_data_key(
        self,
        key_name: str,
        tenant_id: bytes,
        *,
        bucket: str | None = None,
        size: int | None = None,
        pooled: bool = True,
    ) -> DataKey:
        """A never-used DEK wrapped under ``key_name`` for a new object id chosen here.

        ``bucket`` and ``size`` (if known) describe the object: bucket-key mode uses them.
        ``pooled=False``: wrap it now, in its own call (for keys that wrap few objects, such as
        a data subject's: a pool of pre-wrapped DEKs per subject would waste Vault calls).
        """
        ...

    async def unwrap(
        self, key_name: str, tenant_id: bytes, object_id: bytes, wrapped: str
    ) -> bytes:
        """The plaintext DEK of one object. Wrong context or key → ``KeyServiceError``."""
        ...

    async def create_key(self, key_name: str) -> None:
        """Create a tenant key (idempotent). Administrative: not used on the request path."""
        ...

    def forget(self, tenant_id: bytes, object_id: bytes) -> None:
        """Drop any cached DEK of an object (on delete/overwrite/shred)."""
        ...

    def remember(
        self,
        key_name: str,
        tenant_id: bytes,
        object_id: bytes,
        wrapped: str,
        dek: bytes,
        *,
        size: int | None = None,
    ) -> None:
        """Cache a DEK the caller just used to write (a read soon after needs no unwrap).

        ``size``: the committed object's size (bucket-key mode counts it if it was not known
        when the DEK was issued).
        """
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WrappedDek:
    """One item of a batch unwrap: the object it belongs to and its wrapped DEK."""

    tenant_id: bytes
    object_id: bytes
    wrapped: str


class BatchKeyWrapper(KeyWrapper, Protocol):
    """A key service that wraps and unwraps many DEKs per round trip (the pool and batcher use it).

    ``vault_calls`` counts round trips to the key service, for metrics and tests.
    """

    @property
    def vault_calls(self) -> int: ...

    async def wrap_batch(self, key_name: str, tenant_id: bytes, count: int) -> list[DataKey]:
        """``count`` fresh DEKs for new object ids, wrapped in one call (or as few as the key
        service's request limits allow); all or nothing."""
        ...

    async def unwrap_batch(
        self, key_name: str, items: Sequence[WrappedDek]
    ) -> list[bytes | KeyServiceError]:
        """Unwrap many DEKs in one call (or as few as the service allows); a refused item yields
        its error in its slot.

        A failure of the whole call (unreachable, permission denied) is raised instead.
        """
        ...
