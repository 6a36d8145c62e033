"""Accountability over HTTP: transparency records and summaries, the audit trail (query and
verify), and the HDS responsibility notice. Thin: the work is in ``blindstore.transparency``,
``blindstore.audit.query`` and ``blindstore.reports.responsibilities`` (shared with the CLI).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from blindstore import transparency
from blindstore.audit import query as audit_query
from blindstore.audit.chain import SigningKey
from blindstore.errors import NoSuchTenant
from blindstore.lifecycle.certificates import public_key_from_pem
from blindstore.reports.responsibilities import render, responsibility_notice
from blindstore.server.admin.common import (
    ADMIN,
    AUTH_ERRORS,
    Conflict,
    Context,
    Limit,
    errors,
)

router = APIRouter(tags=["accountability"], dependencies=ADMIN)

BucketName = Annotated[str, Path(min_length=3, max_length=63)]
ObjectKey = Annotated[str, Path(min_length=1, max_length=1024)]
TenantName = Annotated[str, Path(min_length=1, max_length=64)]


class NoPolicy(Conflict):
    code = "NoPolicy"
    default_message = "No placement policy is configured (placement.policy): nothing to report."


@router.get(
    "/-/transparency/objects/{bucket}/{key:path}",
    operation_id="GetObjectTransparency",
    name="GetObjectTransparency",
    responses=errors(*AUTH_ERRORS, 404),
)
async def object_record(bucket: BucketName, key: ObjectKey, context: Context) -> JSONResponse:
    """Where an object's bytes are, who holds its key, who carries each HDS activity for each
    replica, the rule that placed it and why, its provenance, when it was written and read."""
    found = await transparency.object_transparency(context.gateway, context.settings, bucket, key)
    return JSONResponse(found.as_json())


@router.get(
    "/-/transparency/buckets/{bucket}",
    operation_id="GetBucketTransparency",
    name="GetBucketTransparency",
    responses=errors(*AUTH_ERRORS, 404),
)
async def bucket_record(bucket: BucketName, context: Context) -> JSONResponse:
    """Objects and bytes of a bucket per backend, provider and jurisdiction."""
    summary = await transparency.bucket_summary(context.gateway, context.settings, bucket)
    return JSONResponse(summary.as_json())


@router.get(
    "/-/transparency/tenants/{tenant}",
    operation_id="GetTenantTransparency",
    name="GetTenantTransparency",
    responses=errors(*AUTH_ERRORS, 404),
)
async def tenant_record(tenant: TenantName, context: Context) -> JSONResponse:
    """Objects and bytes of a tenant per backend, provider and jurisdiction."""
    summary = await transparency.tenant_summary(context.gateway, context.settings, tenant)
    return JSONResponse(summary.as_json())


class AuditPage(BaseModel):
    records: list[dict[str, Any]]
    next: str | None = Field(None, description="Pass as `after` for the next page.")


OptionalText = Annotated[str | None, Query(max_length=1024)]
_TIME = "ISO 8601 (UTC unless it says) or seconds since the epoch."


@router.get(
    "/-/audit/records",
    operation_id="QueryAudit",
    name="QueryAudit",
    responses=errors(*AUTH_ERRORS, 404),
)
async def audit_records(
    context: Context,
    object_id: Annotated[str | None, Query(pattern="^[0-9a-f]{32}$")] = None,
    bucket: OptionalText = None,
    key: OptionalText = None,
    principal: OptionalText = None,
    tenant: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    operation: OptionalText = None,
    since: Annotated[datetime | float | None, Query(description=_TIME)] = None,
    until: Annotated[datetime | float | None, Query(description=_TIME)] = None,
    limit: Limit = 100,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="A page's `next`.")] = None,
) -> AuditPage:
    """Audit records, newest first, filtered by object, bucket and key, principal, tenant,
    operation and time (ISO 8601; UTC unless it says)."""
    catalog = context.gateway.catalog
    if tenant is not None and await catalog.get_tenant_by_name(tenant) is None:
        raise NoSuchTenant(f"No tenant named {tenant!r}.")
    selection = await audit_query.resolve_filter(
        catalog,
        object_id=object_id,
        bucket=bucket,
        key=key,
        principal=principal,
        tenant=tenant,
        operation=operation,
        since=_epoch(since),
        until=_epoch(until),
    )
    records = await audit_query.query(catalog, selection, limit=limit, cursor=after)
    more = len(records) == limit
    return AuditPage(records=records, next=str(records[-1]["seq"]) if more else None)


def _epoch(when: datetime | float | None) -> float | None:
    if when is None or isinstance(when, float | int):
        return when
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


class AuditVerification(BaseModel):
    intact: bool
    records: int
    last_seq: int
    last_signed_seq: int
    last_checkpoint: int
    unsigned_tail: int
    checkpoints: int
    #: False when the gateway has no public key of the signing key (configure
    #: ``audit.public_keys``): then only the hash chain was checked.
    checkpoints_verified: bool
    problems: list[dict[str, Any]]
    #: Live object rows checked against the last write record of their key.
    objects: int
    #: Rows that are not the version last written: rolled back, resurrected or unrecorded.
    mismatches: list[dict[str, Any]]


@router.post(
    "/-/audit/verify",
    operation_id="VerifyAudit",
    name="VerifyAudit",
    responses=errors(*AUTH_ERRORS),
)
async def audit_verify(context: Context) -> AuditVerification:
    """Walk the whole chain and check every record's hash and every signed checkpoint."""
    catalog = context.gateway.catalog
    audit = context.settings.audit
    checkpoints = await catalog.audit_checkpoints()
    # The gateway's own Vault identity may sign checkpoints but not read the key: the auditor
    # exports the public keys (`blindstore audit signing-key`) into the settings. The key is
    # pinned to the configured name, whatever the checkpoint rows say.
    key = SigningKey(
        audit.key_name(context.settings.vault),
        {
            version: public_key_from_pem(path.read_bytes())
            for version, path in enumerate(audit.public_keys or [], start=1)
        },
    )
    verified = bool(key.public_keys)
    report = await audit_query.verify_log(catalog, key, checkpoints=checkpoints if verified else [])
    body = report.as_dict()
    return AuditVerification(
        **body,
        last_checkpoint=body["last_signed_seq"],
        checkpoints_verified=verified,
    )


@router.get(
    "/-/reports/responsibilities",
    operation_id="GetResponsibilities",
    name="GetResponsibilities",
    responses={
        **errors(*AUTH_ERRORS, 409),
        200: {
            "content": {
                "application/json": {},
                "text/markdown": {"schema": {"type": "string"}},
                "text/html": {"schema": {"type": "string"}},
            },
            "description": "The notice, in the format asked for.",
        },
    },
)
async def responsibilities(
    context: Context,
    format: Annotated[Literal["json", "md", "html"], Query()] = "json",
) -> Response:
    """Who carries each of the six HDS hosting activities for every backend in use, from the
    placement policy's declared facts; activities nobody carries are flagged."""
    policy = context.gateway.current_policy()
    if policy is None:
        raise NoPolicy()
    notice = responsibility_notice(policy)
    if format == "json":
        return JSONResponse(notice.model_dump(mode="json", by_alias=True))
    text = render(notice, format)
    if format == "html":
        return HTMLResponse(text)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")
