"""An in-process stand-in for Transit, for pure unit tests only (it keeps its KEKs in RAM).

It behaves like a derived ``aes256-gcm96`` Transit key where the tests can see it: ``vault:vN:``
wrapped forms with key versions (``rotate_key``), the ``context`` binding (a DEK moved to another
tenant or object fails with ``KeyServiceError``), keys that must be created first (Vault with
``disable_upsert``), per-item failures in batches, and a ``vault_calls`` counter. The binding is
AES-GCM associated data here rather than Transit's HKDF key derivation: same observable contract.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence

import anyio.lowlevel
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from blindstore.errors import KeyServiceError
from blindstore.keys.base import DataKey, WrappedDek, dek_context, parse_key_version

_NONCE_SIZE = 12


class InMemoryKeyWrapper:
    """``BatchKeyWrapper`` with an AES-256-GCM KEK per key name and version, in this process."""

    def __init__(
        self, *, rng: Callable[[int], bytes] = secrets.token_bytes, upsert: bool = False
    ) -> None:
        self._rng = rng
        #: Like Transit with ``create`` capability on encrypt: wrapping under a missing key
        #: creates it (how the gateway makes data-subject keys).
        self._upsert = upsert
        self._versions: dict[str, list[AESGCM]] = {}
        self._hmac_keys: dict[str, bytes] = {}
        self._vault_calls = 0

    @property
    def vault_calls(self) -> int:
        """Batch calls served so far (what would have been Vault round trips)."""
        return self._vault_calls

    async def create_key(self, key_name: str) -> None:
        """Create ``key_name`` at version 1 unless it exists."""
        await anyio.lowlevel.checkpoint()
        if key_name not in self._versions:
            self._versions[key_name] = [AESGCM(self._rng(32))]

    async def hmac(self, key_name: str, data: bytes) -> bytes:
        """HMAC-SHA-256 of ``data`` under ``key_name``'s (made on first use) HMAC key, as
        ``TransitKeyWrapper.hmac`` (which Transit computes)."""
        await anyio.lowlevel.checkpoint()
        key = self._hmac_keys.setdefault(key_name, self._rng(32))
        return hmac.new(key, data, hashlib.sha256).digest()

    def rotate_key(self, key_name: str) -> int:
        """Add a key version (new wraps use it; old ones still unwrap) and return its number."""
        versions = self._kek_versions(key_name)
        versions.append(AESGCM(self._rng(32)))
        return len(versions)

    async def wrap_batch(self, key_name: str, tenant_id: bytes, count: int) -> list[DataKey]:
        """``count`` fresh DEKs under fresh object ids, wrapped by the latest key version."""
        await self._round_trip()
        if self._upsert and key_name not in self._versions:
            self._versions[key_name] = [AESGCM(self._rng(32))]
        versions = self._kek_versions(key_name)
        version = len(versions)
        kek = versions[-1]
        keys: list[DataKey] = []
        for _ in range(count):
            object_id = self._rng(16)
            dek = self._rng(32)
            nonce = self._rng(_NONCE_SIZE)
            sealed = kek.encrypt(nonce, dek, dek_context(tenant_id, object_id))
            wrapped = f"vault:v{version}:{base64.b64encode(nonce + sealed).decode('ascii')}"
            keys.append(DataKey(object_id, dek, wrapped, key_name, version))
        return keys

    async def unwrap_batch(
        self, key_name: str, items: Sequence[WrappedDek]
    ) -> list[bytes | KeyServiceError]:
        """Unwrap each item; a wrong context, version or form fails that item only."""
        await self._round_trip()
        versions = self._kek_versions(key_name)
        return [self._unwrap_one(versions, item) for item in items]

    async def new_data_key(
        self,
        key_name: str,
        tenant_id: bytes,
        *,
        bucket: str | None = None,
        size: int | None = None,
        pooled: bool = True,
    ) -> DataKey:
        """One fresh wrapped DEK (``bucket``, ``size`` and ``pooled`` are ignored)."""
        return (await self.wrap_batch(key_name, tenant_id, 1))[0]

    async def unwrap(
        self, key_name: str, tenant_id: bytes, object_id: bytes, wrapped: str
    ) -> bytes:
        """One DEK; refused → ``KeyServiceError``."""
        outcome = (await self.unwrap_batch(key_name, [WrappedDek(tenant_id, object_id, wrapped)]))[
            0
        ]
        if isinstance(outcome, KeyServiceError):
            raise outcome
        return outcome

    def forget(self, tenant_id: bytes, object_id: bytes) -> None:
        """Nothing is cached at this layer."""

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
        """Nothing is cached at this layer."""

    def delete_key(self, key_name: str) -> None:
        """Destroy a key (crypto-shredding): everything it wrapped is unreadable."""
        self._versions.pop(key_name, None)

    async def close(self) -> None:
        """Drop the KEKs."""
        self._versions.clear()

    async def _round_trip(self) -> None:
        # Yield like real I/O would, so concurrency tests interleave as they do against Vault.
        self._vault_calls += 1
        await anyio.lowlevel.checkpoint()

    def _kek_versions(self, key_name: str) -> list[AESGCM]:
        try:
            return self._versions[key_name]
        except KeyError:
            raise KeyServiceError("key service refused: encryption key not found") from None

    @staticmethod
    def _unwrap_one(versions: list[AESGCM], item: WrappedDek) -> bytes | KeyServiceError:
        try:
            version = parse_key_version(item.wrapped)
        except KeyServiceError as exc:
            return exc
        if version > len(versions):
            return KeyServiceError("invalid ciphertext: version is too new")
        try:
            raw = base64.b64decode(item.wrapped.split(":", 2)[2], validate=True)
            context = dek_context(item.tenant_id, item.object_id)
            return versions[version - 1].decrypt(raw[:_NONCE_SIZE], raw[_NONCE_SIZE:], context)
        except (InvalidTag, binascii.Error, ValueError):
            return KeyServiceError("cipher: message authentication failed")
