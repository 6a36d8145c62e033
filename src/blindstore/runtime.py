"""Composition root: settings → concrete catalog, key service, backends → Gateway, and serving.

The only place (with the CLI) that names concrete implementations.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import asdict
from functools import partial
from pathlib import Path

import structlog
import uvicorn
from pydantic import SecretStr

from blindstore.audit.log import CatalogAuditLog
from blindstore.backends.registry import build_backend
from blindstore.background import running
from blindstore.catalog.base import BucketKey, Catalog
from blindstore.catalog.sql import SqlCatalog
from blindstore.config import (
    AppRoleAuthSettings,
    KubernetesAuthSettings,
    Settings,
    VaultSettings,
)
from blindstore.errors import BlindstoreError, ConfigError, KeyServiceError, ServiceUnavailable
from blindstore.gateway import Gateway
from blindstore.keys.bucketkeys import BucketKeyPolicy, StoredBucketKey
from blindstore.keys.service import KeyService
from blindstore.keys.transit import TransitKeyWrapper, make_client, resolve_token
from blindstore.keys.vaultauth import (
    AppRoleLogin,
    HvacAuthApi,
    KubernetesLogin,
    LoginMethod,
    Secret,
    StaticToken,
    VaultSession,
)
from blindstore.placement import PolicyHolder, build_declared
from blindstore.policy import load_file
from blindstore.provision import seal_stored_secrets
from blindstore.server.protocol import ConnectionLimits, protocol_class
from blindstore.server.s3app import S3App
from blindstore.subjects import convert_unkeyed_digests, digest_key_name

log = structlog.get_logger("blindstore.runtime")


def tune_allocator() -> None:
    """Tune glibc's allocator for streaming ~1 MiB blocks through worker threads.

    The streaming paths allocate ~1 MiB buffers per block; with glibc's default mmap threshold
    each one is a fresh mmap/munmap pair, which measured 5x slower sealing (291 vs 1656 MB/s at
    1 MiB blocks). Raising the thresholds makes them reuse the heap. No effect off glibc.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    mallopt(m_trim_threshold, 16 * 1024 * 1024)
    # One arena per worker thread (glibc's default, up to 8 per core) kept ~100 MiB of freed
    # 1 MiB blocks resident after a multipart upload; two arenas measured 196 → 151 MiB peak.
    mallopt(m_arena_max, 2)


def open_catalog(settings: Settings) -> SqlCatalog:
    if settings.catalog.url.startswith("sqlite:///"):
        path = settings.catalog.url.removeprefix("sqlite:///")
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return SqlCatalog(settings.catalog.url, delete_delay=settings.storage.delete_delay_seconds)


class CatalogBucketKeyStore:
    """The keys' ``BucketKeyStore`` over the catalog (keys and catalog do not import each
    other: this adapter is where they meet)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def save(self, key: StoredBucketKey) -> None:
        await self._catalog.put_bucket_key(BucketKey(**asdict(key)))

    async def load(self, bucket_key_id: bytes) -> StoredBucketKey | None:
        row = await self._catalog.get_bucket_key(bucket_key_id)
        return None if row is None else StoredBucketKey(**asdict(row))


#: Concurrent Transit calls (worker threads and keep-alive connections to Vault).
VAULT_CONCURRENCY = 16


def login_method(vault: VaultSettings) -> LoginMethod:
    """How the gateway obtains its Vault token, from ``vault.auth``."""
    auth = vault.auth
    if isinstance(auth, AppRoleAuthSettings):
        return AppRoleLogin(
            role_id=_secret("AppRole role id", auth.role_id, auth.role_id_file),
            secret_id=(
                _secret("AppRole secret id", auth.secret_id, auth.secret_id_file)
                if auth.secret_id is not None or auth.secret_id_file is not None
                else None
            ),
            wrapped_secret_id=(
                _secret(
                    "response-wrapped AppRole secret id",
                    auth.wrapped_secret_id,
                    auth.wrapped_secret_id_file,
                )
                if auth.wrapped_secret_id is not None or auth.wrapped_secret_id_file is not None
                else None
            ),
            mount=auth.mount,
        )
    if isinstance(auth, KubernetesAuthSettings):
        return KubernetesLogin(
            role=auth.role,
            jwt=Secret("Kubernetes service-account token", file=auth.jwt_file),
            mount=auth.mount,
        )
    token = resolve_token(vault.token.get_secret_value() if vault.token else None, vault.token_file)
    return StaticToken(Secret("Vault token", value=token))


def _secret(what: str, value: SecretStr | None, file: Path | None) -> Secret:
    return Secret(what, value=value.get_secret_value() if value is not None else None, file=file)


def vault_session(settings: Settings) -> VaultSession:
    """The gateway's Vault identity: a client (TLS from ``vault.ca_cert``/``client_cert``), its
    login method, and the renewal loop (``async with``)."""
    vault = settings.vault
    for name in ("ca_cert", "client_cert", "client_key"):
        path: Path | None = getattr(vault, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"vault.{name}: {path} is not a readable file")
    method = login_method(vault)
    client = make_client(
        vault.addr,
        method.known_token() or "",
        read_timeout=vault.timeout_seconds,
        verify=str(vault.ca_cert) if vault.ca_cert else True,
        cert=(str(vault.client_cert), str(vault.client_key))
        if vault.client_cert is not None and vault.client_key is not None
        else None,
        pool_size=VAULT_CONCURRENCY,
    )
    # Logins and renewals go through a client of their own (never sending a stale token) over
    # the same connections and TLS settings.
    login_client = make_client(
        vault.addr, "", read_timeout=vault.timeout_seconds, session=client.session
    )
    return VaultSession(client, method, HvacAuthApi(login_client, addr=vault.addr))


def transit_wrapper(settings: Settings, session: VaultSession | None = None) -> TransitKeyWrapper:
    """The Transit wrapper over ``session``'s client (a new session if none).

    Enter the session (``async with``) for the startup login and renewals. Without it the
    wrapper still works: a static token is set from the start, and AppRole/Kubernetes log in
    at the first call (refused with 403 for want of a token), but nothing renews the token.
    """
    vault = settings.vault
    session = session if session is not None else vault_session(settings)
    return TransitKeyWrapper(
        lambda: session.client,
        mount=vault.mount,
        max_concurrency=VAULT_CONCURRENCY,
        auth=session,
    )


@asynccontextmanager
async def open_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """A ready gateway over the configured services; everything is closed on exit."""
    catalog = open_catalog(settings)
    bucket_keys = settings.keys.bucket_keys
    session = vault_session(settings)
    transit = transit_wrapper(settings, session)
    keys = KeyService(
        transit,
        pool_size=settings.keys.pool_size,
        pool_ttl=settings.keys.pool_ttl_seconds,
        cache_ttl=settings.keys.cache_ttl_seconds,
        cache_max_entries=settings.keys.cache_entries,
        # Always given, enabled or not: objects written in bucket-key mode stay readable.
        bucket_key_store=CatalogBucketKeyStore(catalog),
        bucket_key_policy=BucketKeyPolicy(
            enabled=bucket_keys.enabled,
            buckets=frozenset(bucket_keys.buckets),
            lifetime=bucket_keys.lifetime_seconds,
            max_uses=bucket_keys.max_uses,
            max_bytes=bucket_keys.max_bytes,
        ),
    )
    storage = settings.storage
    policy_path = settings.placement.policy
    # Loaded (and validated) before any backend is built: a bad policy is a startup error.
    policy = load_file(policy_path) if policy_path is not None else None
    backends = build_declared(policy) if policy is not None else {}
    if storage.name not in backends:
        # Objects written before the policy was enabled stay readable.
        backends[storage.name] = build_backend(
            storage.name,
            storage.backend,
            {"path": storage.path} if storage.backend == "local" else storage.settings,
        )
    gateway = Gateway(
        catalog,
        keys,
        backends,
        default_backend=storage.name,
        verify_whole_below=settings.limits.verify_whole_below,
        io_buffer_bytes=settings.limits.io_buffer_bytes,
    )
    if policy_path is not None and policy is not None:
        holder = PolicyHolder(policy_path, policy, gateway.backends)
        gateway.placement = holder.place
        gateway.reload_placement = holder.reload
        gateway.current_policy = lambda: holder.policy
    gateway.dependency_probes["vault"] = transit.check_health
    subjects_key = digest_key_name(settings.vault.key_prefix)
    gateway.subject_keying = partial(transit.hmac, subjects_key)
    audit = audit_log(settings, catalog, session)
    gateway.audit = audit
    try:
        # The session logs in first and stops renewing last; the audit log signs its last
        # checkpoint before the session goes.
        async with (
            session,
            keys,
            watch_revocations(gateway, settings.keys.revocation_refresh_seconds),
            delete_deferred_blobs(gateway, storage.delete_delay_seconds),
            audit if audit is not None else nullcontext(),
        ):
            await _key_subject_digests(catalog, gateway, subjects_key)
            yield gateway
    finally:
        await gateway.close()


async def _key_subject_digests(catalog: Catalog, gateway: Gateway, key_name: str) -> None:
    """Convert data-subject digests written before catalog revision 0009 (unkeyed SHA-256) to
    keyed ones, once: a subject whose row stayed unkeyed would not be found by shredding."""
    try:
        await convert_unkeyed_digests(catalog, gateway.keyed_subject)
    except KeyServiceError as exc:
        raise ConfigError(
            f"cannot key the data-subject digests ({exc}): create the Transit HMAC key "
            f"{key_name} (deploy/openbao/provision.sh) and allow the gateway transit/hmac on it"
        ) from exc


class TransitCheckpointSigner:
    """Signs audit checkpoints with the gateway's own Vault identity (its policy allows
    ``transit/sign/<audit key>`` and no other signing)."""

    def __init__(self, session: VaultSession, *, mount: str, key_name: str) -> None:
        self._session = session
        self._mount = mount
        self.key_name = key_name

    async def sign(self, message: bytes) -> tuple[str, int]:
        from blindstore.keys.admin import TransitAdmin

        return await TransitAdmin(self._session.client, mount=self._mount).sign(
            self.key_name, message
        )


def audit_log(
    settings: Settings, catalog: Catalog, session: VaultSession | None
) -> CatalogAuditLog | None:
    """The audit sink (None when ``audit.enabled`` is off: requests are then not recorded)."""
    audit = settings.audit
    if not audit.enabled:
        log.warning("audit.disabled")
        return None
    signer = (
        TransitCheckpointSigner(
            session, mount=settings.vault.mount, key_name=audit.key_name(settings.vault)
        )
        if session is not None
        else None
    )
    return CatalogAuditLog(
        catalog,
        signer=signer,
        checkpoint_every=audit.checkpoint_every,
        checkpoint_seconds=audit.checkpoint_seconds,
    )


@asynccontextmanager
async def watch_revocations(gateway: Gateway, interval: float) -> AsyncIterator[None]:
    """Keep ``gateway.revoked_keys`` current while the body runs.

    ``blindstore keys shred`` runs in another process: every gateway re-reads the shredding
    records every ``interval`` seconds, so reads stop within that time even while DEKs are still
    cached. A failed refresh keeps the last known set (the catalog being down fails requests
    anyway) and is retried at the next tick.
    """
    import anyio

    await gateway.refresh_revocations()

    async def refresh_forever() -> None:
        while True:
            await anyio.sleep(interval)
            try:
                await gateway.refresh_revocations()
            except ServiceUnavailable:
                log.warning("revocations.refresh_failed")

    async with running(refresh_forever):
        yield


def deletion_interval(delay: float) -> float:
    """How often due deferred deletions are looked for: a tenth of the delay (so a blob goes at
    most 10 % late), at least every 30 s, at most 20 times a second."""
    return min(max(delay / 10, 0.05), 30.0)


@asynccontextmanager
async def delete_deferred_blobs(gateway: Gateway, delay: float) -> AsyncIterator[None]:
    """Delete the blobs of replaced and deleted objects once due, while the body runs.

    Every gateway sharing the catalog runs this; two deleting the same blob is harmless (the
    delete is idempotent). A blob a read of this process still streams is retried at the next
    tick; one on a backend that fails, after ``delay``. A failed pass (catalog down) is retried
    at the next tick.
    """
    import anyio

    from blindstore.maintenance import delete_due_blobs

    interval = deletion_interval(delay)

    async def delete_forever() -> None:
        while True:
            await anyio.sleep(interval)
            try:
                done = await delete_due_blobs(
                    gateway, retry_seconds=interval, failed_retry_seconds=max(delay, interval)
                )
            except BlindstoreError as exc:
                log.warning("deferred_delete.failed", error=type(exc).__name__)
                continue
            except Exception as exc:
                # A failing housekeeping task must not take the S3 plane down with it (a task
                # group cancels its host): log the type only and try again at the next tick.
                log.error("deferred_delete.crashed", error=type(exc).__name__)
                continue
            if done.deleted or done.failed:
                # Counts only (no blob id): enough to see the deleter keep up.
                log.info("deferred_delete.done", deleted=done.deleted, failed=done.failed)

    async with running(delete_forever):
        yield


def connection_limits(settings: Settings) -> ConnectionLimits:
    limits = settings.limits
    return ConnectionLimits(
        header_timeout=limits.header_timeout_seconds,
        max_header_bytes=limits.max_header_bytes,
        max_url_bytes=limits.max_url_bytes,
        max_connections=limits.max_connections,
        max_concurrent_requests=limits.max_concurrent_requests,
        send_timeout=limits.send_timeout_seconds,
    )


def make_server(settings: Settings, gateway: Gateway) -> uvicorn.Server:
    config = uvicorn.Config(
        S3App(gateway, settings),
        host=settings.listen.host,
        port=settings.listen.port,
        http=protocol_class(connection_limits(settings)),
        ws="none",  # S3 has no upgrades: an Upgrade header is not honoured
        loop="none",  # the caller's loop (uvloop under `blindstore serve`)
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=settings.limits.keep_alive_timeout_seconds,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


async def serve(
    settings: Settings,
    *,
    prepare: Callable[[Gateway], Awaitable[None]] | None = None,
    on_ready: Callable[[Gateway, int], Awaitable[None] | None] | None = None,
    return_on_signal: bool = False,
) -> None:
    """Run the S3 plane until SIGINT/SIGTERM.

    ``prepare`` runs once the gateway is open, before it listens; ``on_ready`` once it listens,
    with the bound port. uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the
    signal to the handler it found: with ``return_on_signal`` that handler is a quiet one, so
    this returns normally and the caller can stop what it started (dev and demo services).
    """
    import anyio

    tune_allocator()
    async with open_gateway(settings) as gateway:
        if prepare is not None:
            await prepare(gateway)
        # Before listening: no secret of a catalog from before sealed secrets stays in clear.
        sealed = await seal_stored_secrets(
            gateway.catalog, gateway.keys, key_prefix=settings.vault.key_prefix
        )
        if sealed:
            log.info("credentials.sealed", access_keys=sealed)
        server = make_server(settings, gateway)
        if gateway.reload_placement is not None:
            # SIGHUP re-reads the placement policy; uvicorn handles only SIGINT/SIGTERM.
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, gateway.reload_placement)
        if return_on_signal:
            signal.signal(signal.SIGINT, _quiet)
            signal.signal(signal.SIGTERM, _quiet)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            while not server.started:
                if server.should_exit:
                    return
                await anyio.sleep(0.02)
            if on_ready is not None:
                pending = on_ready(gateway, server.servers[0].sockets[0].getsockname()[1])
                if pending is not None:
                    await pending


def _quiet(_signum: int, _frame: object) -> None:
    return
