"""Housekeeping that needs the catalog and the backends together: deferred deletion, orphan GC,
replica repair."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import structlog

from blindstore import crypto
from blindstore.backends.base import Backend
from blindstore.catalog.base import DeferredDelete, ObjectRecord, StoredPart
from blindstore.errors import BlindstoreError, IntegrityError
from blindstore.gateway import Gateway

log = structlog.get_logger("blindstore.maintenance")


@dataclass(slots=True)
class DeferredReport:
    """What one pass over the due deferred deletions did."""

    #: Blobs deleted from their backend (and forgotten by the catalog).
    deleted: int = 0
    #: Blobs still being read by this process: retried at the next pass.
    leased: int = 0
    #: Blobs on a backend this process does not know or that failed: retried after the delay.
    failed: int = 0
    #: Blobs a catalog row points at again (never deleted; only their record is dropped).
    referenced: int = 0


async def delete_due_blobs(
    gateway: Gateway,
    *,
    retry_seconds: float,
    failed_retry_seconds: float,
    referenced: Mapping[str, set[tuple[str, str]]] | None = None,
    now: float | None = None,
    batch: int = 500,
) -> DeferredReport:
    """Delete the blobs of replaced and deleted rows whose delay has passed.

    Blob first, record last: a crash in between repeats an idempotent delete. A blob a read of
    this process still streams is postponed by ``retry_seconds``, one whose backend is unknown
    here or fails by ``failed_retry_seconds``. ``referenced`` (per backend, from a catalog scan
    taken earlier): blobs never to delete, should a row point at one (``blindstore gc``).
    ``now``: the time deletions are due by (default: the gateway's clock).
    """
    report = DeferredReport()
    while due := await gateway.catalog.due_deletions(
        gateway.clock() if now is None else now, limit=batch
    ):
        done: list[DeferredDelete] = []
        leased: list[DeferredDelete] = []
        failed: list[DeferredDelete] = []
        for item in due:
            backend = gateway.backends.get(item.backend)
            if referenced is not None and (item.container, item.blob) in referenced.get(
                item.backend, set()
            ):
                report.referenced += 1
                done.append(item)
            elif gateway.leases.held(item.container, item.blob):
                leased.append(item)
            elif backend is None:
                log.warning("deferred_delete_backend_unknown", backend=item.backend)
                failed.append(item)
            else:
                try:
                    await backend.delete(item.container, item.blob)
                except BlindstoreError as exc:
                    log.warning(
                        "blob_delete_failed", backend=item.backend, error=type(exc).__name__
                    )
                    failed.append(item)
                    continue
                report.deleted += 1
                done.append(item)
        await gateway.catalog.finish_deletions(done)
        postponed_from = gateway.clock()
        await gateway.catalog.postpone_deletions(leased, postponed_from + retry_seconds)
        await gateway.catalog.postpone_deletions(failed, postponed_from + failed_retry_seconds)
        report.leased += len(leased)
        report.failed += len(failed)
        if len(due) < batch or not done:
            # All due ones seen; or none could go, and those postponed by 0 s would come back.
            break
    return report


@dataclass(slots=True)
class GcReport:
    scanned: int = 0
    referenced: int = 0
    #: Blobs of replaced or deleted rows still waiting for their deferred deletion (kept).
    deferred: int = 0
    young: int = 0
    orphans: int = 0
    deleted: int = 0
    bytes_freed: int = 0
    #: Deferred deletions that were due: deleted now (or, with ``--dry-run``, would be).
    deferred_due: int = 0
    deferred_deleted: int = 0
    #: Temporary files of interrupted writes older than the grace period (local backends).
    temp_files: int = 0
    temp_files_removed: int = 0


async def collect_garbage(
    gateway: Gateway,
    *,
    grace_seconds: float = 3600.0,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
    progress: Callable[[GcReport], None] | None = None,
) -> GcReport:
    """Delete due deferred deletions, then blobs no catalog row, pending part or deferred
    deletion points at once older than the grace period, and stale temporary files.

    Blob first, row last means a crash leaves at worst such an orphan. The grace period protects
    writes in flight: their blob exists before their row does. The blobs of replaced or deleted
    rows are never orphans: they wait for their deferred deletion (reads may be streaming them).
    """
    report = GcReport()
    cutoff = clock() - grace_seconds
    tenants = await gateway.catalog.list_tenants()
    # References first, deferred deletions second: a row replaced in between is in the second.
    referenced = {
        backend.name: await gateway.catalog.referenced_blobs(backend.name)
        for backend in gateway.backends.values()
    }
    if dry_run:
        report.deferred_due = len(await gateway.catalog.due_deletions(clock(), limit=1 << 62))
    else:
        done = await delete_due_blobs(
            gateway,
            retry_seconds=0.0,
            failed_retry_seconds=0.0,
            referenced=referenced,
            now=clock(),
        )
        report.deferred_due = done.deleted + done.leased + done.failed + done.referenced
        report.deferred_deleted = done.deleted
    for backend in gateway.backends.values():
        deferred = await gateway.catalog.deferred_blobs(backend.name)
        for tenant in tenants:
            async for info in backend.list(tenant.container):
                report.scanned += 1
                if (info.container, info.blob) in referenced[backend.name]:
                    report.referenced += 1
                elif (info.container, info.blob) in deferred:
                    report.deferred += 1
                elif info.modified > cutoff:
                    report.young += 1
                else:
                    report.orphans += 1
                    if not dry_run:
                        await backend.delete(info.container, info.blob)
                        report.deleted += 1
                        report.bytes_freed += info.size
                if progress is not None and report.scanned % 1000 == 0:
                    progress(report)
        await _collect_temp_files(backend, cutoff, dry_run, report)
    return report


async def _collect_temp_files(
    backend: Backend, cutoff: float, dry_run: bool, report: GcReport
) -> None:
    """Count (and unless ``dry_run`` remove) a backend's stale temporary files, if it has any."""
    if dry_run:
        list_stale_temp = getattr(backend, "list_stale_temp", None)
        if list_stale_temp is not None:
            report.temp_files += len(await list_stale_temp(cutoff))
        return
    remove_stale_temp = getattr(backend, "remove_stale_temp", None)
    if remove_stale_temp is not None:
        removed: int = await remove_stale_temp(cutoff)
        report.temp_files += removed
        report.temp_files_removed += removed


@dataclass(slots=True)
class RepairReport:
    #: Objects found with pending repairs or quarantined.
    objects: int = 0
    #: (object, target) pairs repaired: the target now holds every part and is a replica.
    repaired: int = 0
    blobs_copied: int = 0
    #: (object, target) pairs still pending (no healthy source, target down, unknown backend).
    failed: int = 0
    #: Objects deleted or replaced while being repaired (their copies were removed again).
    superseded: int = 0
    #: Source replicas whose blob failed verification (moved to the repair targets).
    sources_rejected: int = 0
    #: Quarantined objects found with a replica that verifies again: the quarantine is lifted.
    released: int = 0
    #: Objects still quarantined: no replica verifies (restore one from a backup, or delete).
    quarantined: int = 0


async def repair_replicas(gateway: Gateway, *, page_size: int = 100) -> RepairReport:
    """Copy each object's blobs to its repair targets from a replica that verifies, then make
    those targets replicas; re-check quarantined objects.

    Every blob copied is verified on the way under the object's DEK (unwrapped from OpenBao, the
    row authenticated with it): header, commitment, every chunk tag and the length, so that a
    corrupt replica is never copied, whatever the backend says. A source that fails is reported
    as a read would (metric, ``integrity.failure`` event) and becomes a repair target itself.
    Idempotent: a target is moved from ``repairs`` to ``backends`` only once all its copies are
    stored, and copies overwrite.
    """
    report = RepairReport()
    after = ("", "")
    while page := await gateway.catalog.objects_to_repair(after=after, limit=page_size):
        for record in page:
            after = (record.bucket, record.key)
            report.objects += 1
            await _repair_one(gateway, record, report)
    return report


async def _repair_one(gateway: Gateway, record: ObjectRecord, report: RepairReport) -> None:
    try:
        dek = await gateway.unwrap_verified(record)
    except BlindstoreError as exc:
        # Without the DEK nothing can be verified, so nothing is copied.
        log.warning("repair_unverifiable", error=type(exc).__name__)
        report.failed += len(record.repairs)
        report.quarantined += record.quarantined is not None
        return
    rejected: list[str] = []
    verified = False
    if record.quarantined is not None:
        # Every replica failed a read: check them in place (one may have been restored).
        for name in record.backends:
            if await _verifies_in_place(gateway, record, name, dek):
                verified = True
                break
            rejected.append(name)
    backends, repairs = list(record.backends), list(record.repairs)
    for name in record.repairs:
        target = gateway.backends.get(name)
        if target is None:
            log.error("repair_target_unknown", backend=name)
            report.failed += 1
            continue
        try:
            for part in record.parts:
                await _copy_part(gateway, record, part, target, dek, rejected, report)
                report.blobs_copied += 1
        except BlindstoreError as exc:
            log.warning("repair_failed", backend=name, error=type(exc).__name__)
            report.failed += 1
            continue
        verified = True
        backends.append(name)
        repairs.remove(name)
        report.repaired += 1
    if not verified:
        # No replica verifies: the catalog keeps (or now has) the object quarantined.
        report.quarantined += record.quarantined is not None or set(rejected) >= set(
            record.backends
        )
        return
    backends = [name for name in backends if name not in rejected]
    repairs = [*repairs, *(name for name in rejected if name not in repairs)]
    current = await gateway.catalog.set_replicas(
        record.bucket, record.key, record.object_id, tuple(backends), tuple(repairs)
    )
    if not current:
        # Deleted or overwritten meanwhile: what was just copied belongs to no row.
        report.superseded += 1
        for name in set(backends) - set(record.backends):
            for part in record.parts:
                await _delete_quietly(gateway.backends[name], record.container, part.blob)
        return
    report.released += record.quarantined is not None


async def _verifies_in_place(gateway: Gateway, record: ObjectRecord, name: str, dek: bytes) -> bool:
    """Whether every blob of ``record`` on backend ``name`` verifies under ``dek``."""
    backend = gateway.backends.get(name)
    if backend is None:
        return False
    try:
        for part in record.parts:
            async for _ in _verified(backend, record, part, dek):
                pass
    except BlindstoreError as exc:
        log.warning("repair_replica_still_bad", backend=name, error=type(exc).__name__)
        return False
    return True


async def _copy_part(
    gateway: Gateway,
    record: ObjectRecord,
    part: StoredPart,
    target: Backend,
    dek: bytes,
    rejected: list[str],
    report: RepairReport,
) -> None:
    """Copy one blob from the first replica whose blob verifies as it is copied; a source that
    fails verification is reported and added to ``rejected``."""
    error: BlindstoreError = IntegrityError("no replica to copy from")
    for name in record.backends:
        source = gateway.backends.get(name)
        if source is None or name in rejected:
            continue
        try:
            stored = await target.put(
                record.container, part.blob, _verified(source, record, part, dek)
            )
        except IntegrityError as exc:
            await _delete_quietly(target, record.container, part.blob)
            rejected.append(name)
            report.sources_rejected += 1
            await gateway.replica_failed(record, source, part.part_number, exc)
            error = exc
            continue
        except BlindstoreError as exc:
            log.warning("repair_source_failed", backend=name, error=type(exc).__name__)
            error = exc
            continue
        if stored == part.stored_size:
            return
        log.warning("repair_source_size_mismatch", backend=name)
        await _delete_quietly(target, record.container, part.blob)
        error = IntegrityError("replica size differs from the manifest")
    raise error


async def _verified(
    source: Backend, record: ObjectRecord, part: StoredPart, dek: bytes
) -> AsyncIterator[bytes]:
    """The blob of ``part`` on ``source`` as stored, verified on the way (the plaintext is
    dropped); ``IntegrityError`` at the first fault, at the latest once the blob has ended."""
    reader = crypto.segment_reader(
        dek, record.tenant_id, record.object_id, part.part_number, plaintext_size=part.size
    )
    # One byte past the end: a replica holding appended bytes fails, and is not copied.
    async for data in source.get(record.container, part.blob, 0, part.stored_size + 1):
        reader.feed(data)
        yield data
    reader.finish()


async def _delete_quietly(backend: Backend, container: str, blob: str) -> None:
    # Best effort: a copy left behind is an orphan that `blindstore gc` removes.
    try:
        await backend.delete(container, blob)
    except BlindstoreError as exc:
        log.warning("blob_delete_failed", backend=backend.name, error=type(exc).__name__)
