"""Reading the audit trail: query, export, verify. Plain async functions over a ``Catalog``,
shared by the CLI (``blindstore audit``), the admin API and the SDK; keep their shapes stable.

Records are rendered as JSON objects by ``record_as_dict`` (ids and hashes in hex, ``time`` in
seconds since the epoch and ``at`` in ISO 8601 UTC); an export holds everything needed to check
the chain again offline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from blindstore.audit.chain import AuditRecord, ChainWalker, Checkpoint, Problem, SigningKey
from blindstore.audit.events import AuditFilter
from blindstore.audit.rollback import Mismatch, WriteLedger
from blindstore.catalog.base import Catalog
from blindstore.errors import InvalidArgument

#: Records fetched per catalog call when walking the whole log.
PAGE = 1000


@dataclass(frozen=True, slots=True)
class VerifyReport:
    intact: bool
    records: int
    last_seq: int
    #: The last checkpoint that verified and matched the chain (0: none). Records after it are
    #: not protected against truncation or a consistent rewrite.
    last_signed_seq: int
    checkpoints: int
    problems: list[Problem] = field(default_factory=list)
    #: Live object rows checked against the write records (0: not checked).
    objects: int = 0
    #: Live rows that are not the version the log says is current (rollback, resurrection).
    mismatches: list[Mismatch] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "records": self.records,
            "last_seq": self.last_seq,
            "last_signed_seq": self.last_signed_seq,
            "unsigned_tail": self.last_seq - self.last_signed_seq,
            "checkpoints": self.checkpoints,
            "problems": [p.as_dict() for p in self.problems],
            "objects": self.objects,
            "mismatches": [m.as_dict() for m in self.mismatches],
        }


async def verify_log(
    catalog: Catalog,
    key: SigningKey,
    *,
    checkpoints: list[Checkpoint] | None = None,
    check_objects: bool = True,
) -> VerifyReport:
    """Walk the whole log in seq order (page by page) and check the chain and the checkpoints
    (signatures with the pinned ``key`` only); then, with ``check_objects``, cross-check every
    live object row against the last write record of its key (``audit.rollback``)."""
    if checkpoints is None:
        checkpoints = await catalog.audit_checkpoints()
    walker = ChainWalker(checkpoints, key)
    ledger = WriteLedger()
    after = 0
    while True:
        page = await catalog.audit_records(after_seq=after, limit=PAGE)
        for record in page:
            walker.feed(record)
            ledger.feed(record)
        if len(page) < PAGE:
            break
        after = page[-1].seq
    problems = walker.finish()
    checked = 0
    mismatches: list[Mismatch] = []
    if check_objects:
        position = ("", "")
        while rows := await catalog.object_marks(after=position, limit=PAGE):
            checked += len(rows)
            mismatches.extend(m for m in map(ledger.check, rows) if m is not None)
            position = (rows[-1].bucket, rows[-1].key)
    return VerifyReport(
        intact=not problems and not mismatches,
        records=walker.count,
        last_seq=walker.last_seq,
        last_signed_seq=walker.last_signed_seq,
        checkpoints=len(checkpoints),
        problems=problems,
        objects=checked,
        mismatches=mismatches,
    )


async def resolve_filter(
    catalog: Catalog,
    *,
    object_id: str | None = None,
    bucket: str | None = None,
    key: str | None = None,
    principal: str | None = None,
    tenant: str | None = None,
    operation: str | None = None,
    since: str | float | None = None,
    until: str | float | None = None,
) -> AuditFilter:
    """An ``AuditFilter`` from user input: hex object id, tenant name, ISO 8601 or epoch times.
    ``InvalidArgument`` says what is wrong."""
    tenant_id = None
    if tenant is not None:
        found = await catalog.get_tenant_by_name(tenant)
        if found is None:
            raise InvalidArgument(f"no tenant named {tenant!r}")
        tenant_id = found.tenant_id
    oid = None
    if object_id is not None:
        try:
            oid = bytes.fromhex(object_id)
        except ValueError:
            raise InvalidArgument("the object id is 32 hexadecimal digits") from None
        if len(oid) != 16:
            raise InvalidArgument("the object id is 32 hexadecimal digits")
    return AuditFilter(
        object_id=oid,
        bucket=bucket,
        key=key,
        principal=principal,
        tenant_id=tenant_id,
        operation=operation,
        since=parse_time(since),
        until=parse_time(until),
    )


def parse_time(value: str | float | None) -> float | None:
    """Seconds since the epoch from a number or an ISO 8601 time (UTC unless it says)."""
    if value is None or isinstance(value, float | int):
        return None if value is None else float(value)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"{value!r} is neither ISO 8601 nor seconds since the epoch"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


async def query(
    catalog: Catalog,
    selection: AuditFilter,
    *,
    limit: int = 100,
    newest_first: bool = True,
    cursor: int | None = None,
) -> list[dict[str, Any]]:
    """Matching records as JSON objects (newest first by default); page with ``cursor`` = the
    last ``seq`` returned."""
    records = await catalog.query_audit(
        selection, limit=limit, newest_first=newest_first, cursor=cursor
    )
    names = await _tenant_names(catalog)
    return [record_as_dict(r, names) for r in records]


async def export(
    catalog: Catalog, selection: AuditFilter | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Every record (matching ``selection``, if given) in seq order, page by page."""
    names = await _tenant_names(catalog)
    after = 0
    while True:
        if selection is None:
            page = await catalog.audit_records(after_seq=after, limit=PAGE)
        else:
            page = await catalog.query_audit(
                selection, limit=PAGE, newest_first=False, cursor=after
            )
        for record in page:
            yield record_as_dict(record, names)
        if len(page) < PAGE:
            return
        after = page[-1].seq


def record_as_dict(
    record: AuditRecord, tenant_names: Mapping[bytes, str] | None = None
) -> dict[str, Any]:
    event = record.event
    return {
        "seq": record.seq,
        "time": event.time,
        "at": datetime.fromtimestamp(event.time, UTC).isoformat(timespec="milliseconds"),
        "request_id": event.request_id,
        "principal": event.principal,
        "tenant_id": event.tenant_id.hex() if event.tenant_id is not None else None,
        "tenant": (tenant_names or {}).get(event.tenant_id) if event.tenant_id else None,
        "operation": event.operation,
        "bucket": event.bucket,
        "key": event.key,
        "object_id": event.object_id.hex() if event.object_id is not None else None,
        "version": event.version,
        "backends": list(event.backends),
        "key_name": event.key_name,
        "key_version": event.key_version,
        "result": event.result,
        "bytes": event.bytes,
        "source": event.source,
        "detail": dict(event.detail),
        "prev_hash": record.prev_hash.hex(),
        "hash": record.hash.hex(),
    }


async def _tenant_names(catalog: Catalog) -> dict[bytes, str]:
    return {t.tenant_id: t.name for t in await catalog.list_tenants()}
