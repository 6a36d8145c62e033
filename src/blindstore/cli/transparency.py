"""``blindstore transparency``: where an object is, who holds its key, why it is there, who carries
each HDS activity for it; or, with ``--bucket``/``--tenant``, where a bucket's or a tenant's
objects are. Reads the catalog and the policy file only: Vault and the backends are not
contacted (see ``blindstore.transparency``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from blindstore.cli.common import resolve_settings, run_job
from blindstore.cli.options import ConfigOption, DataDirOption
from blindstore.policy import HdsActivity, format_size
from blindstore.transparency import (
    BackendFacts,
    CatalogSource,
    Summary,
    TransparencyRecord,
    bucket_summary,
    object_transparency,
    tenant_summary,
)

console = Console()


def transparency(
    bucket: Annotated[str | None, typer.Argument(help="Bucket of the object.")] = None,
    key: Annotated[str | None, typer.Argument(help="Key of the object.")] = None,
    summary_bucket: Annotated[
        str | None, typer.Option("--bucket", help="Summarise where this bucket's objects are.")
    ] = None,
    summary_tenant: Annotated[
        str | None, typer.Option("--tenant", help="Summarise where this tenant's objects are.")
    ] = None,
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """The transparency record of BUCKET KEY, or a summary with --bucket or --tenant."""
    chosen = [bool(bucket or key), summary_bucket is not None, summary_tenant is not None]
    if sum(chosen) != 1 or (chosen[0] and not (bucket and key)):
        raise typer.BadParameter("give BUCKET KEY, or --bucket BUCKET, or --tenant TENANT")
    if fmt not in ("text", "json"):
        raise typer.BadParameter("one of text, json", param_hint="--format")

    async def main() -> TransparencyRecord | Summary:
        from blindstore import runtime
        from blindstore.policy import load_file

        settings = resolve_settings(data_dir, config)
        policy_file = settings.placement.policy
        policy = load_file(policy_file) if policy_file is not None else None
        catalog = runtime.open_catalog(settings)
        try:
            source = CatalogSource(catalog, policy)
            if summary_tenant is not None:
                return await tenant_summary(source, settings, summary_tenant)
            if summary_bucket is not None:
                return await bucket_summary(source, settings, summary_bucket)
            return await object_transparency(source, settings, bucket or "", key or "")
        finally:
            await catalog.close()

    result = run_job(main)
    if fmt == "json":
        typer.echo(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
    elif isinstance(result, TransparencyRecord):
        render_record(result)
    else:
        render_summary(result)


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _where(backend: BackendFacts) -> str:
    return " / ".join(p for p in (backend.region, backend.country) if p) or "-"


def _facts_table(
    title: str, backends: list[tuple[BackendFacts, list[str]]], extra: tuple[str, ...]
) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("backend", "kind"):
        table.add_column(column, no_wrap=True)
    for column in ("provider", "region / country", "jurisdiction", "certified"):
        table.add_column(column, overflow="fold")
    for column in extra:
        table.add_column(column, justify="right" if column != "status" else "left")
    for backend, cells in backends:
        table.add_row(
            backend.name,
            backend.kind,
            backend.provider or "undeclared",
            _where(backend),
            backend.jurisdiction or "undeclared",
            ", ".join(backend.certifications) or "-",
            *cells,
        )
    return table


def render_record(record: TransparencyRecord) -> None:
    _say(f"object: tenant {record.tenant!r}, bucket {record.bucket!r}, key {record.key!r}")
    _say(f"  id {record.object_id}, {format_size(record.size)}, etag {record.etag}")
    _say(f"  written {record.written_iso}, last read {record.last_accessed_iso or 'not recorded'}")
    if record.quarantined_iso is not None:
        _say(
            f"  QUARANTINED since {record.quarantined_iso}: no replica verifies "
            "(blindstore repair lifts it once one does)"
        )
    rows = [(r.backend, [r.status.replace("_", " ")]) for r in record.replicas]
    console.print(_facts_table("Replicas", rows, ("status",)))
    activities = Table(title="Who carries each HDS hosting activity", title_justify="left")
    activities.add_column("activity")
    for replica in record.replicas:
        activities.add_column(replica.backend.name, overflow="fold")
    for activity in HdsActivity:
        activities.add_row(
            activity.label,
            *(r.backend.hds_activities[activity] or "NOT DECLARED" for r in record.replicas),
        )
    console.print(activities)
    key = record.key_custodian
    _say(f"key custodian: {key.vault_addr}, Transit mount {key.transit_mount!r}")
    _say(f"  key {key.key_name} version {key.key_version} ({key.scope.replace('_', ' ')} key)")
    if key.wrapping == "bucket_key":
        _say(f"  bucket-key mode: data key wrapped under bucket key {key.bucket_key_id}")
    if key.shredded:
        _say("  this key was crypto-shredded: the object can never be read again")
    placement = record.placement
    if placement is None:
        _say("placement: no placement policy; objects go to the storage backend")
    else:
        _say(
            f"placement now: rule {placement.rule} (line {placement.rule_line}) "
            f"of {placement.policy}"
        )
        for reason in placement.reasons:
            _say(f"  - {reason}")
        if placement.matches_current:
            _say("  the object is where this rule puts it")
        else:
            _say(
                f"  the object is NOT where this rule puts it: missing "
                f"{', '.join(placement.missing_targets) or 'nothing'}, also on "
                f"{', '.join(placement.extra_backends) or 'nothing else'}"
            )
    _say("provenance: " + (json.dumps(record.provenance, ensure_ascii=False) or "{}"))
    _say(f"retention until: {record.retention_until_iso or 'not set'}")


def render_summary(summary: Summary) -> None:
    scope = f"bucket {summary.bucket!r}" if summary.bucket else f"tenant {summary.tenant!r}"
    _say(
        f"{scope} (tenant {summary.tenant!r}): {summary.objects} objects, "
        f"{format_size(summary.bytes)}; {summary.pending_repair_objects} awaiting repair"
    )
    rows = [
        (u.backend, [str(u.objects), format_size(u.bytes), str(u.pending_repair_objects)])
        for u in summary.backends
    ]
    console.print(_facts_table("Per backend", rows, ("objects", "bytes", "awaiting repair")))
    for title, usage in (
        ("Per provider", summary.providers),
        ("Per jurisdiction", summary.jurisdictions),
    ):
        part = Table(title=title, title_justify="left")
        part.add_column("name", overflow="fold")
        part.add_column("objects", justify="right")
        part.add_column("bytes", justify="right")
        for row in usage:
            part.add_row(row.name, str(row.objects), format_size(row.bytes))
        console.print(part)
