"""A Transit stand-in with state, for the rotation and shredding jobs (no OpenBao, no mocks)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from blindstore.errors import KeyServiceError
from blindstore.keys.admin import KeyInfo, RewrapItem
from blindstore.keys.base import dek_context


@dataclass
class FakeKey:
    type: str
    #: Version → creation time.
    versions: dict[int, float]
    min_decryption_version: int = 1
    soft_deleted: bool = False
    signers: dict[int, Ed25519PrivateKey] = field(default_factory=dict)


class FakeTransitAdmin:
    """What ``TransitAdmin`` does, on keys held in a dict.

    ``rewrap`` moves a wrapped DEK to the latest version by rewriting its ``vault:vN:`` prefix,
    and refuses the wrapped values put in ``refuse``. ``before_floor`` runs inside
    ``set_min_decryption_version`` (to simulate a gateway committing meanwhile); ``during_rewrap``
    runs inside ``rewrap`` (a client overwriting rows meanwhile).
    """

    def __init__(self, clock: Callable[[], float] = lambda: 1000.0) -> None:
        self.clock = clock
        self.keys: dict[str, FakeKey] = {}
        self.refuse: set[str] = set()
        self.floor_calls: list[tuple[str, int]] = []
        self.rewrap_calls: list[int] = []
        self.soft_deleted: list[str] = []
        self.restored: list[str] = []
        self.destroyed: list[str] = []
        self.before_floor: Callable[[int], Awaitable[None]] | None = None
        self.during_rewrap: Callable[[], Awaitable[None]] | None = None
        self.contexts: list[bytes] = []

    # -- set-up ---------------------------------------------------------------------------------

    def add_key(self, name: str, *, versions: int = 1, created: float | None = None) -> None:
        when = self.clock() if created is None else created
        self.keys[name] = FakeKey("aes256-gcm96", dict.fromkeys(range(1, versions + 1), when))

    def add_signing_key(self, name: str) -> Ed25519PrivateKey:
        private = Ed25519PrivateKey.generate()
        self.keys[name] = FakeKey("ed25519", {1: self.clock()}, signers={1: private})
        return private

    def public_keys(self, name: str) -> dict[int, bytes]:
        return {
            version: private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            for version, private in self.keys[name].signers.items()
        }

    # -- TransitAdmin ---------------------------------------------------------------------------

    async def key_info(self, name: str) -> KeyInfo | None:
        key = self.keys.get(name)
        if key is None:
            return None
        return KeyInfo(
            name=name,
            type=key.type,
            latest_version=max(key.versions),
            min_decryption_version=key.min_decryption_version,
            versions=dict(key.versions),
            deletion_allowed=False,
            soft_deleted=key.soft_deleted,
            public_keys=self.public_keys(name),
        )

    async def rotate(self, name: str) -> int:
        key = self.keys[name]
        key.versions[max(key.versions) + 1] = self.clock()
        return max(key.versions)

    async def set_min_decryption_version(self, name: str, version: int) -> None:
        self.floor_calls.append((name, version))
        if self.before_floor is not None:
            await self.before_floor(version)
        self.keys[name].min_decryption_version = version

    async def rewrap(self, name: str, items: Sequence[RewrapItem]) -> list[str | KeyServiceError]:
        self.rewrap_calls.append(len(items))
        if self.during_rewrap is not None:
            await self.during_rewrap()
        latest = max(self.keys[name].versions)
        outcomes: list[str | KeyServiceError] = []
        for item in items:
            self.contexts.append(item.context)
            if item.wrapped in self.refuse:
                outcomes.append(KeyServiceError("Transit refused to rewrap: cipher: bad input"))
            else:
                outcomes.append(f"vault:v{latest}:{item.wrapped.split(':', 2)[2]}")
        return outcomes

    async def soft_delete(self, name: str) -> None:
        self.soft_deleted.append(name)
        self.keys[name].soft_deleted = True

    async def restore(self, name: str) -> None:
        self.restored.append(name)
        self.keys[name].soft_deleted = False

    async def destroy(self, name: str) -> None:
        self.destroyed.append(name)
        self.keys.pop(name, None)

    async def sign(self, name: str, message: bytes) -> tuple[str, int]:
        key = self.keys[name]
        version = max(key.signers)
        raw = key.signers[version].sign(message)
        return f"vault:v{version}:{base64.b64encode(raw).decode()}", version


def context_of(tenant_id: bytes, object_id: bytes) -> bytes:
    return dek_context(tenant_id, object_id)
