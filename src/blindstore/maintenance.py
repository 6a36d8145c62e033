"""Background housekeeping that needs the catalog and the backends together: orphan GC."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from blindstore.gateway import Gateway


@dataclass(slots=True)
class GcReport:
    scanned: int = 0
    referenced: int = 0
    young: int = 0
    orphans: int = 0
    deleted: int = 0
    bytes_freed: int = 0
    temp_files_removed: int = 0


async def collect_garbage(
    gateway: Gateway,
    *,
    grace_seconds: float = 3600.0,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
    progress: Callable[[GcReport], None] | None = None,
) -> GcReport:
    """Delete blobs no catalog row or pending part points at, once older than the grace period.

    Blob first, row last means a crash leaves at worst such an orphan. The grace period protects
    writes in flight: their blob exists before their row does.
    """
    report = GcReport()
    cutoff = clock() - grace_seconds
    tenants = await gateway.catalog.list_tenants()
    for backend in gateway.backends.values():
        referenced = await gateway.catalog.referenced_blobs(backend.name)
        for tenant in tenants:
            async for info in backend.list(tenant.container):
                report.scanned += 1
                if (info.container, info.blob) in referenced:
                    report.referenced += 1
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
        remove_stale_temp = getattr(backend, "remove_stale_temp", None)
        if remove_stale_temp is not None and not dry_run:
            report.temp_files_removed += await remove_stale_temp(cutoff)
    return report
