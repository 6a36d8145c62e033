"""Bucket-key mode (opt-in, SECURITY-NOTES §2.5-5): DEKs wrapped locally under a bucket key.

A **weaker model**, for tenants with very high small-object rates. A bucket key is 32 random bytes
wrapped by the tenant's Transit key exactly like a DEK (``context = dek_context(tenant_id,
bucket_key_id)``) and stored in the catalog (``bucket_keys``), so rotation, rewrap and shredding
treat it like any wrapped DEK. Each object still gets its own random DEK, but that DEK is wrapped
here, in the gateway, as ``bk1:`` (see ``seal_dek`` and docs/format.md). Transit then sees one
wrap per bucket key and one unwrap per bucket key per ``lifetime`` (per process), not one per
object; the price is a key that opens many objects sitting in gateway RAM, and the loss of a Vault
audit line per object. Shredding the tenant's Transit key still makes every object unreadable:
the bucket keys can no longer be unwrapped (once the ones in RAM have expired or the process
restarted).

The active bucket key of a (tenant, Transit key, bucket) wraps new DEKs until it reaches one of
its bounds: ``lifetime`` seconds since it was created, ``max_uses`` DEKs, or ``max_bytes`` of
object data (the object that crosses the bound is the last); the next PUT then creates a new one.
Unwrapped bucket keys, for reading, are kept ``lifetime`` seconds from their unwrap (or creation)
and dropped on close. Objects under a per-data-subject key (``-p-`` in the key name) never use
bucket keys: shredding one data subject must not depend on a key shared with others.

The first half of this module is pure (the ``bk1:`` format and the bounds); ``BucketKeys`` does
its I/O through what it is given: a ``BucketKeyStore`` (the catalog) and two Transit callables.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from blindstore.errors import KeyServiceError, KeyServiceUnavailable
from blindstore.keys._errors import copy_error
from blindstore.keys.base import BUCKET_WRAPPED_FORM, DataKey

#: Prefix of a DEK wrapped under a bucket key (``vault:`` is Transit's).
BK1_PREFIX = "bk1:"
#: HKDF ``info``: the derived key wraps one DEK under format bk1 and is used for nothing else.
BK1_INFO = b"hgw/v1/bucket-key-dek"
BUCKET_KEY_SIZE = 32
BUCKET_KEY_ID_SIZE = 16
DEK_SIZE = 32
SALT_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
#: salt ‖ nonce ‖ AES-256-GCM(DEK) ‖ tag.
_BLOB_SIZE = SALT_SIZE + NONCE_SIZE + DEK_SIZE + TAG_SIZE
_NONCE_END = SALT_SIZE + NONCE_SIZE
#: Marks a per-data-subject Transit key name (``hgw-p-<tenant>-<subject>``).
_SUBJECT_KEY_MARK = "-p-"


# ------------------------------------------------------------------ pure: the bk1 format


def is_bucket_wrapped(wrapped: str) -> bool:
    """Whether a wrapped DEK is of the ``bk1:`` form (else it is Transit's ``vault:vN:``)."""
    return wrapped.startswith(BK1_PREFIX)


def bucket_key_id_of(wrapped: str) -> bytes:
    """The bucket key id named by a ``bk1:`` value; malformed → ``KeyServiceError``."""
    return _parse(wrapped)[0]


def seal_dek(
    bucket_key: bytes,
    bucket_key_id: bytes,
    tenant_id: bytes,
    object_id: bytes,
    dek: bytes,
    *,
    salt: bytes,
    nonce: bytes,
) -> str:
    """``bk1:<bucket key id hex>:<base64(salt ‖ nonce ‖ AES-256-GCM(K, dek, aad) ‖ tag)>``, where
    ``K = HKDF-SHA256(bucket_key, salt, BK1_INFO)`` and ``aad = tenant_id ‖ object_id``.

    A fresh random salt per DEK gives each DEK its own wrapping key, so the GCM nonce limit of
    one bucket key never comes near; the aad ties the DEK to its object like Transit's context.
    """
    if len(bucket_key) != BUCKET_KEY_SIZE or len(bucket_key_id) != BUCKET_KEY_ID_SIZE:
        raise ValueError("bucket key is 32 bytes, its id 16")
    if len(dek) != DEK_SIZE or len(salt) != SALT_SIZE or len(nonce) != NONCE_SIZE:
        raise ValueError("DEK is 32 bytes, salt 16, nonce 12")
    sealed = AESGCM(_wrapping_key(bucket_key, salt)).encrypt(nonce, dek, _aad(tenant_id, object_id))
    blob = base64.b64encode(salt + nonce + sealed).decode("ascii")
    return f"{BK1_PREFIX}{bucket_key_id.hex()}:{blob}"


def open_dek(bucket_key: bytes, tenant_id: bytes, object_id: bytes, wrapped: str) -> bytes:
    """The DEK of a ``bk1:`` value; any mismatch (key, tenant, object, bytes) → ``KeyServiceError``.

    The caller must have picked ``bucket_key`` by the id in ``wrapped``.
    """
    _, blob = _parse(wrapped)
    salt, nonce, sealed = blob[:SALT_SIZE], blob[SALT_SIZE:_NONCE_END], blob[_NONCE_END:]
    try:
        return AESGCM(_wrapping_key(bucket_key, salt)).decrypt(
            nonce, sealed, _aad(tenant_id, object_id)
        )
    except InvalidTag:
        raise KeyServiceError("bucket-key wrapped DEK failed authentication") from None


def _parse(wrapped: str) -> tuple[bytes, bytes]:
    match = BUCKET_WRAPPED_FORM.fullmatch(wrapped)
    if match is None:
        raise KeyServiceError("wrapped data key is not of the form bk1:<id>:<base64>")
    try:
        blob = base64.b64decode(match.group(2), validate=True)
    except binascii.Error:
        raise KeyServiceError("wrapped data key is not of the form bk1:<id>:<base64>") from None
    if len(blob) != _BLOB_SIZE:
        raise KeyServiceError("wrapped data key is not of the form bk1:<id>:<base64>")
    return bytes.fromhex(match.group(1)), blob


def _wrapping_key(bucket_key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=salt, info=BK1_INFO).derive(bucket_key)


def _aad(tenant_id: bytes, object_id: bytes) -> bytes:
    if len(tenant_id) != 16 or len(object_id) != 16:
        raise ValueError("tenant_id and object_id are 16 bytes")
    return tenant_id + object_id


# ------------------------------------------------------------------ pure: the bounds


@dataclass(frozen=True, slots=True)
class BucketKeyPolicy:
    """When bucket keys are used and how long one lives. ``buckets`` empty: every bucket."""

    enabled: bool = False
    buckets: frozenset[str] = frozenset()
    lifetime: float = 300.0
    max_uses: int = 10_000
    max_bytes: int = 1 << 30
    #: Unwrapped bucket keys kept for reading (least recently used evicted first).
    max_cached: int = 1024

    def __post_init__(self) -> None:
        if self.lifetime <= 0 or self.max_uses < 1 or self.max_bytes < 1 or self.max_cached < 1:
            raise ValueError("bucket key lifetime, max_uses, max_bytes, max_cached must be > 0")

    def applies(self, key_name: str, bucket: str | None) -> bool:
        """Whether a new object under ``key_name`` in ``bucket`` gets a bucket-key wrapped DEK."""
        return (
            self.enabled
            and bucket is not None
            and _SUBJECT_KEY_MARK not in key_name
            and (not self.buckets or bucket in self.buckets)
        )


@dataclass(eq=False, slots=True)
class Usage:
    """What an active bucket key has wrapped so far."""

    expires_at: float
    uses: int = 0
    bytes: int = 0

    def exhausted(self, policy: BucketKeyPolicy, now: float) -> bool:
        return (
            now >= self.expires_at
            or self.uses >= policy.max_uses
            or (self.bytes >= policy.max_bytes)
        )


# ------------------------------------------------------------------ I/O through protocols


@dataclass(frozen=True, slots=True)
class StoredBucketKey:
    """A bucket key as the store keeps it: wrapped by Transit, never in plaintext."""

    bucket_key_id: bytes
    tenant_id: bytes
    bucket: str
    wrapped: str
    key_name: str
    key_version: int
    created: float


class BucketKeyStore(Protocol):
    """Where wrapped bucket keys live (the catalog's ``bucket_keys`` table)."""

    async def save(self, key: StoredBucketKey) -> None: ...
    async def load(self, bucket_key_id: bytes) -> StoredBucketKey | None: ...


#: One fresh DEK wrapped by Transit under ``(key_name, tenant_id)``: a new bucket key and its id.
WrapOne = Callable[[str, bytes], Awaitable[DataKey]]
#: Transit unwrap of ``(key_name, tenant_id, id, wrapped)``.
UnwrapOne = Callable[[str, bytes, bytes, str], Awaitable[bytes]]


@dataclass(slots=True)
class BucketKeyStats:
    """Counters for metrics."""

    #: Bucket keys created (one Transit wrap each) and unwrapped through Transit.
    created: int = 0
    unwrapped: int = 0
    #: DEKs wrapped / unwrapped locally.
    deks_wrapped: int = 0
    deks_unwrapped: int = 0
    #: Reads that found their bucket key in RAM.
    hits: int = 0


@dataclass(eq=False, slots=True)
class _Plain:
    key: bytes = field(repr=False)
    tenant_id: bytes
    key_name: str
    expires_at: float


@dataclass(eq=False, slots=True)
class _Active:
    bucket_key_id: bytes
    plain: _Plain
    key_version: int
    usage: Usage
    #: Objects issued without a size, charged when the caller reports it (``charge``).
    uncharged: set[bytes] = field(default_factory=set)


@dataclass(eq=False, slots=True)
class _Slot:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    active: _Active | None = None


@dataclass(eq=False, slots=True)
class _Load:
    done: anyio.Event = field(default_factory=anyio.Event)
    key: bytes | None = None
    error: BaseException | None = None


class BucketKeys:
    """Issues bucket-key wrapped DEKs and opens them, holding bucket keys within the policy."""

    def __init__(
        self,
        store: BucketKeyStore,
        policy: BucketKeyPolicy,
        *,
        wrap: WrapOne,
        unwrap: UnwrapOne,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.policy = policy
        self._store = store
        self._wrap = wrap
        self._unwrap = unwrap
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng
        self._slots: dict[tuple[bytes, str, str], _Slot] = {}
        self._plain: OrderedDict[bytes, _Plain] = OrderedDict()
        self._loading: dict[tuple[bytes, bytes, str], _Load] = {}
        self.stats = BucketKeyStats()

    def __len__(self) -> int:
        """Bucket keys currently held in RAM."""
        return len(self._plain)

    async def new_data_key(
        self, key_name: str, tenant_id: bytes, bucket: str, size: int | None = None
    ) -> DataKey:
        """A fresh DEK for a new object, wrapped under the bucket's active bucket key.

        ``size``: the object's size if known now; else report it later with ``charge``.
        """
        slot = self._slots.get((tenant_id, key_name, bucket))
        if slot is None:
            slot = self._slots[tenant_id, key_name, bucket] = _Slot()
        active = slot.active
        if active is None or active.usage.exhausted(self.policy, self._clock()):
            async with slot.lock:  # one creation per slot; the others wait and use it
                active = slot.active
                if active is None or active.usage.exhausted(self.policy, self._clock()):
                    slot.active = None  # retired: it wraps nothing more
                    active = slot.active = await self._create(key_name, tenant_id, bucket)
        # From the check above to here nothing awaits: the bounds hold under concurrency.
        rng = self._rng
        object_id, dek = rng(16), rng(DEK_SIZE)
        wrapped = seal_dek(
            active.plain.key,
            active.bucket_key_id,
            tenant_id,
            object_id,
            dek,
            salt=rng(SALT_SIZE),
            nonce=rng(NONCE_SIZE),
        )
        active.usage.uses += 1
        if size is None:
            active.uncharged.add(object_id)
        else:
            active.usage.bytes += size
        self.stats.deks_wrapped += 1
        return DataKey(object_id, dek, wrapped, key_name, active.key_version)

    def charge(self, tenant_id: bytes, object_id: bytes, wrapped: str, size: int) -> None:
        """Count the size of an object issued without one against its bucket key's byte bound
        (if that key is still active: a retired key wraps nothing more anyway)."""
        try:
            bucket_key_id = bucket_key_id_of(wrapped)
        except KeyServiceError:
            return
        for (slot_tenant, _, _), slot in self._slots.items():
            active = slot.active
            if (
                slot_tenant == tenant_id
                and active is not None
                and active.bucket_key_id == bucket_key_id
                and object_id in active.uncharged
            ):
                active.uncharged.discard(object_id)
                active.usage.bytes += size
                return

    async def unwrap(
        self, key_name: str, tenant_id: bytes, object_id: bytes, wrapped: str
    ) -> bytes:
        """The DEK of a ``bk1:`` object: its bucket key from RAM or, once per bucket key and
        lifetime, from the store and Transit; then a local decrypt. Fails closed."""
        bucket_key_id = bucket_key_id_of(wrapped)
        key = self._cached(key_name, tenant_id, bucket_key_id)
        if key is None:
            key = await self._load(key_name, tenant_id, bucket_key_id)
        else:
            self.stats.hits += 1
        dek = open_dek(key, tenant_id, object_id, wrapped)
        self.stats.deks_unwrapped += 1
        return dek

    def purge_expired(self) -> int:
        """Drop every expired bucket key from RAM (periodic sweep); the count."""
        now = self._clock()
        stale = [kid for kid, plain in self._plain.items() if plain.expires_at <= now]
        for kid in stale:
            del self._plain[kid]
        for slot in self._slots.values():
            if slot.active is not None and slot.active.usage.expires_at <= now:
                slot.active = None
        return len(stale)

    def clear(self) -> None:
        """Drop every bucket key (close, shred)."""
        self._plain.clear()
        for slot in self._slots.values():
            slot.active = None
        self._slots.clear()

    async def _create(self, key_name: str, tenant_id: bytes, bucket: str) -> _Active:
        fresh = await self._wrap(key_name, tenant_id)
        # Saved before any DEK is wrapped under it: no object can name a missing bucket key.
        await self._store.save(
            StoredBucketKey(
                bucket_key_id=fresh.object_id,
                tenant_id=tenant_id,
                bucket=bucket,
                wrapped=fresh.wrapped,
                key_name=fresh.key_name,
                key_version=fresh.key_version,
                created=self._wall_clock(),
            )
        )
        self.stats.created += 1
        expires_at = self._clock() + self.policy.lifetime
        plain = _Plain(fresh.dek, tenant_id, key_name, expires_at)
        self._keep(fresh.object_id, plain)
        return _Active(fresh.object_id, plain, fresh.key_version, Usage(expires_at))

    def _cached(self, key_name: str, tenant_id: bytes, bucket_key_id: bytes) -> bytes | None:
        plain = self._plain.get(bucket_key_id)
        if plain is None:
            return None
        if plain.expires_at <= self._clock():
            del self._plain[bucket_key_id]
            return None
        if plain.tenant_id != tenant_id or plain.key_name != key_name:
            # Another tenant's (or key's) bucket key: never hand it out, even from RAM.
            raise KeyServiceError("bucket key belongs to another tenant or key")
        self._plain.move_to_end(bucket_key_id)
        return plain.key

    async def _load(self, key_name: str, tenant_id: bytes, bucket_key_id: bytes) -> bytes:
        # Keyed by the asking tenant and key too: a caller joins only a load made for its own
        # tenant and key, whose checks it would have passed itself.
        loading = (bucket_key_id, tenant_id, key_name)
        load = self._loading.get(loading)
        if load is None:
            load = self._loading[loading] = _Load()
            # Shielded: concurrent readers of the same bucket key wait on this one load.
            with anyio.CancelScope(shield=True):
                try:
                    load.key = await self._fetch(key_name, tenant_id, bucket_key_id)
                except Exception as exc:
                    load.error = exc
                finally:
                    if load.key is None and load.error is None:
                        load.error = KeyServiceUnavailable("bucket key unwrap was cancelled")
                    del self._loading[loading]
                    load.done.set()
        await load.done.wait()
        if load.error is not None:
            raise copy_error(load.error) from load.error
        assert load.key is not None
        return load.key

    async def _fetch(self, key_name: str, tenant_id: bytes, bucket_key_id: bytes) -> bytes:
        stored = await self._store.load(bucket_key_id)
        if stored is None:
            raise KeyServiceError("unknown bucket key")
        if stored.tenant_id != tenant_id or stored.key_name != key_name:
            raise KeyServiceError("bucket key belongs to another tenant or key")
        # The object's own tenant and key are what Transit checks: a row moved to another
        # tenant does not unwrap under that tenant's context.
        key = await self._unwrap(key_name, tenant_id, bucket_key_id, stored.wrapped)
        if len(key) != BUCKET_KEY_SIZE:
            raise KeyServiceError("bucket key is not 32 bytes")
        self.stats.unwrapped += 1
        self._keep(
            bucket_key_id, _Plain(key, tenant_id, key_name, self._clock() + self.policy.lifetime)
        )
        return key

    def _keep(self, bucket_key_id: bytes, plain: _Plain) -> None:
        self._plain[bucket_key_id] = plain
        self._plain.move_to_end(bucket_key_id)
        while len(self._plain) > self.policy.max_cached:
            self._plain.popitem(last=False)
