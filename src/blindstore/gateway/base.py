"""The state every part of the gateway shares, plus identity, buckets and blob cleanup.

``GatewayBase`` holds the constructor (the protocols and tunables); the write, read and
multipart mixins inherit it, and ``Gateway`` (``core``) composes them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog

from blindstore.audit.events import AuditSink
from blindstore.backends.base import Backend
from blindstore.catalog.base import AccessKey, Bucket, Catalog, ObjectRecord, Tenant
from blindstore.errors import (
    AccessDenied,
    BlindstoreError,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    KeyServiceError,
    KeyShredded,
    NoSuchBucket,
)
from blindstore.gateway.leases import BlobLeases
from blindstore.gateway.records import Principal
from blindstore.keys.base import KeyWrapper
from blindstore.metrics import Metrics
from blindstore.policy.model import ObjectFacts, Placement, Policy
from blindstore.subjects import Keying, is_subject_key

log = structlog.get_logger("blindstore.gateway")


class GatewayBase:
    """What every part of ``Gateway`` shares: the protocols, tunables and caches."""

    def __init__(
        self,
        catalog: Catalog,
        keys: KeyWrapper,
        backends: Mapping[str, Backend],
        *,
        default_backend: str,
        verify_whole_below: int = 4 * 1024 * 1024,
        io_buffer_bytes: int = 1024 * 1024,
        clock: Callable[[], float] = time.time,
        rng: Callable[[int], bytes] = secrets.token_bytes,
        bucket_cache_seconds: float = 1.0,
        placement: Callable[[ObjectFacts], Placement] | None = None,
    ) -> None:
        self.catalog = catalog
        self.keys = keys
        self.backends = dict(backends)
        self.default_backend = default_backend
        #: Where an object goes; None: the default backend alone, quorum 1.
        self.placement = placement
        #: Re-reads the placement policy (set by the composition root when there is one).
        self.reload_placement: Callable[[], bool] | None = None
        #: The placement policy in force (for the admin plane's explain), if any.
        self.current_policy: Callable[[], Policy | None] = lambda: None
        self.verify_whole_below = verify_whole_below
        self.io_buffer_bytes = io_buffer_bytes
        self.clock = clock
        self.rng = rng
        self._bucket_cache: dict[str, tuple[Bucket, float]] = {}
        #: Where audit records go (``blindstore.audit``); None: not audited (unit tests).
        self.audit: AuditSink | None = None
        #: Keys of crypto-shredded tenants and subjects (``refresh_revocations``): reads and
        #: writes under them are refused even while a DEK is still cached.
        self.revoked_keys: frozenset[str] = frozenset()
        #: Blobs that reads of this process are streaming (the deferred deleter skips them).
        self.leases = BlobLeases()
        #: Keys data-subject digests (Transit HMAC; set by the composition root, see
        #: ``blindstore.subjects``). None: writes naming a data subject are refused.
        self.subject_keying: Keying | None = None
        #: This gateway's Prometheus counters (``GET /-/metrics``).
        self.metrics = Metrics()
        #: What readiness probes, by dependency name (the composition root adds ``vault``).
        self.dependency_probes: dict[str, Callable[[], Awaitable[None]]] = {"catalog": catalog.ping}
        self._bucket_cache_seconds = bucket_cache_seconds
        self._mono = time.monotonic

    async def close(self) -> None:
        await self.keys.close()
        for backend in self.backends.values():
            await backend.close()
        await self.catalog.close()

    # ------------------------------------------------------------------ identity

    async def lookup_access_key(self, access_key_id: str) -> tuple[AccessKey, Tenant] | None:
        key = await self.catalog.get_access_key(access_key_id)
        if key is None:
            return None
        tenant = await self.catalog.get_tenant(key.tenant_id)
        if tenant is None:
            return None
        return key, tenant

    async def refresh_revocations(self) -> None:
        """Re-read which keys were crypto-shredded (by ``blindstore keys shred``, any process)."""
        self.revoked_keys = await self.catalog.revoked_key_names()

    async def keyed_subject(self, digest: bytes) -> bytes:
        """``digest`` keyed by the data-subject digest key (``blindstore.subjects``)."""
        if self.subject_keying is None:
            raise KeyServiceError("no data-subject digest key is configured")
        return await self.subject_keying(digest)

    def check_not_revoked(self, key_name: str) -> None:
        """``KeyShredded`` if ``key_name`` was crypto-shredded."""
        if key_name in self.revoked_keys:
            scope = "data subject" if is_subject_key(key_name) else "tenant"
            raise KeyShredded(
                f"The {scope} key of this data was destroyed (crypto-shredding); "
                "it can never be read or written again."
            )

    # ------------------------------------------------------------------ buckets

    async def _bucket(self, name: str, *, fresh: bool = False) -> Bucket | None:
        cached = self._bucket_cache.get(name)
        now = self._mono()
        if cached is not None and cached[1] > now and not fresh:
            return cached[0]
        self._bucket_cache.pop(name, None)
        bucket = await self.catalog.get_bucket(name)
        if bucket is not None:
            self._bucket_cache[name] = (bucket, now + self._bucket_cache_seconds)
        return bucket

    async def owned_bucket(self, principal: Principal, name: str, *, fresh: bool = False) -> Bucket:
        """The bucket if the caller's tenant owns it; AccessDenied if another tenant does.

        The answer may be up to ``bucket_cache_seconds`` old (``fresh``: read the catalog now):
        writes re-check ownership in their catalog transaction, reads check each row's tenant.
        """
        bucket = await self._bucket(name, fresh=fresh)
        if bucket is None:
            raise NoSuchBucket(BucketName=name)
        if bucket.tenant_id != principal.tenant.tenant_id:
            raise AccessDenied()
        return bucket

    async def create_bucket(self, principal: Principal, name: str, region: str) -> None:
        bucket = Bucket(
            name=name, tenant_id=principal.tenant.tenant_id, created=self.clock(), region=region
        )
        try:
            await self.catalog.create_bucket(bucket)
        except BucketAlreadyExists:
            existing = await self.catalog.get_bucket(name)
            if existing is not None and existing.tenant_id == principal.tenant.tenant_id:
                raise BucketAlreadyOwnedByYou(BucketName=name) from None
            raise BucketAlreadyExists(BucketName=name) from None

    async def delete_bucket(self, principal: Principal, name: str) -> None:
        await self.owned_bucket(principal, name)
        parts = await self.catalog.delete_bucket(name)
        self._bucket_cache.pop(name, None)
        for part in parts:
            await self._delete_copies(part.backends, principal.tenant.container, part.blob)

    async def list_buckets(self, principal: Principal) -> list[Bucket]:
        return await self.catalog.list_buckets(principal.tenant.tenant_id)

    # ------------------------------------------------------------------ blob cleanup

    def _retired(self, record: ObjectRecord) -> None:
        """A committed row was replaced or deleted: forget its DEK. Its blobs stay until the
        catalog's deferred deletion is due (recorded in the same transaction), since reads
        that found the row may still be streaming them; a read that already unwrapped the DEK
        carries on, while the wrapped DEK, gone with the row, can no longer be unwrapped."""
        self.keys.forget(record.tenant_id, record.object_id)

    async def _discard(self, record: ObjectRecord) -> None:
        """Delete the blobs of a row that was never committed (nothing can be reading them)."""
        self.keys.forget(record.tenant_id, record.object_id)
        # Repair targets too: an interrupted repair may have copied some parts there.
        names = (*record.backends, *record.repairs)
        for part in record.parts:
            await self._delete_copies(names, record.container, part.blob)

    async def _delete_copies(self, names: Sequence[str], container: str, blob: str) -> None:
        """Delete ``blob`` from each named backend this gateway knows."""
        for name in names:
            backend = self.backends.get(name)
            if backend is not None:
                await self._delete_blob(backend, container, blob)

    async def _delete_blob(self, backend: Backend, container: str, blob: str) -> None:
        # Best effort: a blob left behind is an orphan that `blindstore gc` removes.
        try:
            await backend.delete(container, blob)
        except BlindstoreError as exc:
            log.warning("blob_delete_failed", backend=backend.name, error=type(exc).__name__)

    def _now_ms(self) -> float:
        return round(self.clock(), 3)
