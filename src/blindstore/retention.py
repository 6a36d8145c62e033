"""Retention enforcement: delete the objects whose retention date has passed.

An object written with ``x-blindstore-retention-until`` (``blindstore.provenance``) carries the
date in its catalog row (``retention_until``, indexed). ``enforce_retention`` pages through the
rows whose date is before ``now`` and deletes each one as DELETE does (catalog row first, then its
blobs on every replica, cached keys dropped), or only reports them (``dry_run``). ``now`` is
given, never read from a clock here, so that a run is reproducible and testable.

Never deletes an object that is not past its date: the catalog query selects by date, each row
is checked again before it is deleted, and the deletion only happens while the row still holds
the same object (a newer version written meanwhile is left alone). Every deletion is appended to
the audit log when the gateway has one; if that append fails, the run stops.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import structlog

from blindstore.audit.events import AuditEvent
from blindstore.catalog.base import ObjectRecord
from blindstore.gateway import Gateway
from blindstore.provenance import format_retention

log = structlog.get_logger("blindstore.retention")

#: The audit operation of a deletion by retention enforcement.
OPERATION: Final = "retention.DeleteObject"
#: Rows read from the catalog at a time.
PAGE_SIZE: Final = 200


@dataclass(frozen=True, slots=True)
class ExpiredObject:
    """One object found past its retention date, and what happened to it."""

    tenant: str
    bucket: str
    key: str
    retention_until: float
    size: int
    #: ``deleted``; ``expired`` (dry run: would be deleted); ``skipped`` (deleted or replaced
    #: by a newer version since it was found).
    action: str

    def as_dict(self) -> dict[str, str | int]:
        return {
            "tenant": self.tenant,
            "bucket": self.bucket,
            "key": self.key,
            "retention_until": format_retention(self.retention_until),
            "size": self.size,
            "action": self.action,
        }


@dataclass(slots=True)
class RetentionReport:
    now: float
    dry_run: bool
    #: Objects found past their date.
    expired: int = 0
    deleted: int = 0
    #: Plaintext bytes of the objects deleted (or, in a dry run, that would be).
    bytes: int = 0
    skipped: int = 0
    objects: list[ExpiredObject] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        return {
            "expired": self.expired,
            "deleted": self.deleted,
            "skipped": self.skipped,
            "bytes": self.bytes,
        }


async def enforce_retention(
    gateway: Gateway,
    *,
    now: float,
    dry_run: bool = False,
    tenant_id: bytes | None = None,
    bucket: str | None = None,
    principal: str = "",
    on_object: Callable[[ExpiredObject], None] | None = None,
    progress: Callable[[RetentionReport], None] | None = None,
    keep_objects: bool = True,
    page_size: int = PAGE_SIZE,
) -> RetentionReport:
    """Delete (or with ``dry_run`` only list) every object whose retention ended before ``now``.

    ``tenant_id`` and ``bucket`` narrow the run. ``principal`` names the operator in audit
    records (``os:<user>``). ``on_object`` sees each object as it is handled (the CLI streams
    them); ``keep_objects`` False keeps the report's ``objects`` empty for very long runs.
    ``progress`` is called after each page.
    """
    report = RetentionReport(now=now, dry_run=dry_run)
    names = {tenant.tenant_id: tenant.name for tenant in await gateway.catalog.list_tenants()}
    run_id = uuid.uuid4().hex
    cursor: tuple[float, str, str] | None = None
    while True:
        page = await gateway.catalog.expired_objects(
            now, tenant_id=tenant_id, bucket=bucket, after=cursor, limit=page_size
        )
        if not page:
            break
        for record in page:
            until = record.retention_until
            if until is None or not until < now:
                # The catalog query already excludes these: never trust it with a deletion.
                log.error("retention_row_not_expired")
                continue
            report.expired += 1
            action = "expired"
            if not dry_run:
                action = await _delete(gateway, record, now, principal, run_id)
            if action == "skipped":
                report.skipped += 1
            else:
                report.bytes += record.size
                report.deleted += action == "deleted"
            found = ExpiredObject(
                tenant=names.get(record.tenant_id, record.tenant_id.hex()),
                bucket=record.bucket,
                key=record.key,
                retention_until=until,
                size=record.size,
                action=action,
            )
            if keep_objects:
                report.objects.append(found)
            if on_object is not None:
                on_object(found)
        last = page[-1]
        assert last.retention_until is not None
        cursor = (last.retention_until, last.bucket, last.key)
        if progress is not None:
            progress(report)
    log.info(
        "retention_enforced",
        dry_run=dry_run,
        expired=report.expired,
        deleted=report.deleted,
        skipped=report.skipped,
    )
    return report


async def _delete(
    gateway: Gateway, record: ObjectRecord, now: float, principal: str, run_id: str
) -> str:
    """Delete one expired object; ``deleted`` or ``skipped`` (gone or replaced meanwhile)."""
    removed = await gateway.delete_object_version(record.bucket, record.key, record.object_id)
    if removed is None:
        return "skipped"
    if gateway.audit is not None:
        try:
            await _audit(gateway, removed, now, principal, run_id)
        except BaseException:
            # The object is gone and its record could not be written: say so, stop the run.
            log.error("retention_audit_failed", run=run_id)
            raise
    return "deleted"


async def _audit(
    gateway: Gateway, removed: ObjectRecord, now: float, principal: str, run_id: str
) -> None:
    """Append the audit record of one deletion (the caller checked that there is a sink)."""
    assert gateway.audit is not None
    await gateway.audit.append(
        AuditEvent(
            # When it happened; ``now`` is the cut-off date, which a run may set ahead.
            time=gateway.clock(),
            request_id=uuid.uuid4().hex,
            principal=principal,
            operation=OPERATION,
            result="204",
            tenant_id=removed.tenant_id,
            bucket=removed.bucket,
            key=removed.key,
            object_id=removed.object_id,
            version=removed.etag,
            backends=(*removed.backends, *removed.repairs),
            key_name=removed.key_name,
            key_version=removed.key_version,
            detail={
                "retention_until": format_retention(removed.retention_until or 0.0),
                "cutoff": format_retention(now),
                "run": run_id,
            },
        )
    )
