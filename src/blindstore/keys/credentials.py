"""S3 secret keys sealed under the credentials Transit key: what the catalog stores, not secrets.

SigV4 needs the secret itself (it cannot be hashed like a password), so the catalog keeps it
encrypted: AES-256-GCM under a one-off 32-byte key that Transit wraps under ``<prefix>creds``
exactly as it wraps a DEK (``dek_context(tenant id, random id)``). The associated data binds the
access key id and the tenant id: a sealed secret copied onto another access key or tenant row
does not open. Whoever reads the catalog or a backup gets ciphertext; opening one needs the
gateway's Vault identity (``decrypt`` on the credentials key), and each opening is a Transit call
in OpenBao's audit log, with its justification.

Sealed form: ``cs1:<32 hex: random id>:<vault:vN:... wrapped key>:<base64 nonce || ciphertext>``.

Errors: a malformed or tampered value, or one moved to another key id or tenant →
``KeyServiceError``; Vault unreachable → ``KeyServiceUnavailable`` (the S3 plane answers 503).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from blindstore.errors import KeyServiceError
from blindstore.keys.base import KeyWrapper

#: Versioned label of the associated data; a later format changes it (and the ``cs1:`` tag).
_AAD_LABEL = b"hgw/v1/s3-secret\x00"
_NONCE_SIZE = 12
_SEALED_FORM = re.compile(
    r"cs1:([0-9a-f]{32}):(vault:v[1-9][0-9]{0,9}:[A-Za-z0-9+/]{4,1024}={0,2}):"
    r"([A-Za-z0-9+/]{20,1024}={0,2})"
)
#: A secret is printable ASCII of reasonable size (AWS's are 40 characters).
_MAX_SECRET_BYTES = 512


def credentials_key_name(prefix: str) -> str:
    """The Transit key that seals every tenant's S3 secrets: ``<prefix>creds``."""
    return f"{prefix}creds"


def is_sealed(value: str) -> bool:
    """Whether ``value`` has the sealed form (says nothing of whether it opens)."""
    return _SEALED_FORM.fullmatch(value) is not None


def _associated_data(tenant_id: bytes, access_key_id: str) -> bytes:
    if len(tenant_id) != 16:
        raise ValueError("tenant_id is 16 bytes")
    return _AAD_LABEL + tenant_id + access_key_id.encode("utf-8")


async def seal_secret(
    keys: KeyWrapper, key_name: str, tenant_id: bytes, access_key_id: str, secret: str
) -> str:
    """The sealed form of ``secret`` for this access key (one Transit encrypt call)."""
    plaintext = secret.encode("utf-8")
    if not plaintext or len(plaintext) > _MAX_SECRET_BYTES:
        raise ValueError("a secret key is 1-512 bytes")
    aad = _associated_data(tenant_id, access_key_id)
    # Not pooled: a pre-wrapped pool per credentials key would waste Vault calls.
    data_key = await keys.new_data_key(key_name, tenant_id, pooled=False)
    nonce = secrets.token_bytes(_NONCE_SIZE)
    sealed = AESGCM(data_key.dek).encrypt(nonce, plaintext, aad)
    body = base64.b64encode(nonce + sealed).decode("ascii")
    return f"cs1:{data_key.object_id.hex()}:{data_key.wrapped}:{body}"


async def unseal_secret(
    keys: KeyWrapper, key_name: str, tenant_id: bytes, access_key_id: str, sealed: str
) -> str:
    """The secret of a sealed value (one Transit decrypt call, or none if its key is cached)."""
    match = _SEALED_FORM.fullmatch(sealed)
    if match is None:
        raise KeyServiceError("sealed secret key is malformed")
    seal_id = bytes.fromhex(match.group(1))
    try:
        raw = base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise KeyServiceError("sealed secret key is malformed") from None
    key = await keys.unwrap(key_name, tenant_id, seal_id, match.group(2))
    try:
        plaintext = AESGCM(key).decrypt(
            raw[:_NONCE_SIZE], raw[_NONCE_SIZE:], _associated_data(tenant_id, access_key_id)
        )
    except (InvalidTag, ValueError):
        raise KeyServiceError("sealed secret key does not open for this access key") from None
    return plaintext.decode("utf-8")
