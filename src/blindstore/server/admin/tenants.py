"""Tenants and their access keys: list, get, create; access keys list, create, revoke.

A secret access key is shown once, in the answer that creates it; listings never carry one (the
catalog query does not even read the column). Creating a tenant creates its Transit key first
(``provision.create_tenant``): under the least-privilege OpenBao policies the gateway's identity
may not create keys, and the answer is then a 502 that says so — create tenants with
``blindstore tenants create`` under the KMS administrator's identity instead.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from blindstore import provision
from blindstore.catalog.base import AccessKeyInfo, Tenant
from blindstore.errors import BlindstoreError, KeyServiceError
from blindstore.server.admin.common import (
    ADMIN,
    AUTH_ERRORS,
    BODY_ERRORS,
    After,
    Conflict,
    Context,
    Limit,
    NotFound,
    RequestModel,
    errors,
)

router = APIRouter(tags=["tenants"], dependencies=ADMIN)

TenantName = Annotated[str, Path(min_length=1, max_length=64, description="The tenant's name.")]
AccessKeyId = Annotated[str, Path(min_length=1, max_length=128)]


class NoSuchTenant(NotFound):
    code = "NoSuchTenant"
    default_message = "No tenant has this name."


class NoSuchAccessKey(NotFound):
    code = "NoSuchAccessKey"
    default_message = "This tenant has no access key with this id."


class TenantShredded(Conflict):
    code = "TenantShredded"
    default_message = "This tenant was crypto-shredded: it can get no new credentials."


class KeyCreationRefused(BlindstoreError):
    code = "KeyCreationRefused"
    status = 502
    default_message = (
        "OpenBao refused to create the tenant's Transit key. Under the least-privilege policies "
        "the gateway may not create keys: run `blindstore tenants create` as the KMS "
        "administrator."
    )


class TenantOut(BaseModel):
    name: str
    tenant_id: str = Field(description="16 random bytes, hex; never derived from the name.")
    transit_key: str = Field(description="The Transit key wrapping this tenant's data keys.")
    container: str = Field(description="The tenant's container name on every backend.")
    created: float = Field(description="Seconds since the epoch.")
    shredded: float | None = Field(description="When the tenant was crypto-shredded, if it was.")

    @classmethod
    def of(cls, tenant: Tenant) -> TenantOut:
        return cls(
            name=tenant.name,
            tenant_id=tenant.tenant_id.hex(),
            transit_key=tenant.key_name,
            container=tenant.container,
            created=tenant.created,
            shredded=tenant.shredded,
        )


class TenantPage(BaseModel):
    tenants: list[TenantOut]
    next: str | None = Field(description="Pass as `after` for the next page; null at the end.")


class AccessKeyOut(BaseModel):
    access_key_id: str
    created: float

    @classmethod
    def of(cls, key: AccessKeyInfo) -> AccessKeyOut:
        return cls(access_key_id=key.access_key_id, created=key.created)


class AccessKeyPage(BaseModel):
    access_keys: list[AccessKeyOut]
    next: str | None = Field(description="Pass as `after` for the next page; null at the end.")


class NewAccessKey(BaseModel):
    """A new key pair. The secret is shown here once and can never be read again."""

    tenant: str
    access_key_id: str
    secret_key: str


_NAME_START = "0-9A-Za-zÀ-ÖØ-öø-ɏ"


class NewTenantRequest(RequestModel):
    name: str = Field(
        min_length=1,
        max_length=64,
        # Latin letters (accented ones included) and digits, then also spaces and . _ @ ' -: a
        # name that reads well in a legal notice and is one path segment of this API. Written
        # with explicit ranges so that every regex dialect (the schema's ECMA, Python's, Rust's)
        # reads it the same way.
        pattern=rf"^[{_NAME_START}][{_NAME_START} .@'_-]*$",
        examples=["hopital-nord", "Hôpital Nord"],
    )


class NewTenant(BaseModel):
    tenant: TenantOut
    access_key: NewAccessKey


async def _tenant(context: Context, name: str) -> Tenant:
    found = await context.gateway.catalog.get_tenant_by_name(name)
    if found is None:
        raise NoSuchTenant()
    return found


@router.get(
    "/-/tenants", operation_id="ListTenants", name="ListTenants", responses=errors(*AUTH_ERRORS)
)
async def list_tenants(context: Context, limit: Limit = 100, after: After = "") -> TenantPage:
    """Tenants by name, a page at a time."""
    found = await context.gateway.catalog.list_tenants_page(after=after, limit=limit + 1)
    more = len(found) > limit
    page = found[:limit]
    return TenantPage(tenants=[TenantOut.of(t) for t in page], next=page[-1].name if more else None)


@router.post(
    "/-/tenants",
    operation_id="CreateTenant",
    name="CreateTenant",
    status_code=201,
    responses=errors(*BODY_ERRORS, 409, 502),
)
async def create_tenant(request: NewTenantRequest, context: Context) -> NewTenant:
    """Create a tenant, its Transit key and its first access key pair (the secret is returned
    here, once)."""
    try:
        made = await provision.create_tenant(
            context.gateway.catalog,
            context.gateway.keys,
            request.name,
            key_prefix=context.settings.vault.key_prefix,
        )
    except KeyServiceError as exc:
        raise KeyCreationRefused() from exc
    return NewTenant(
        tenant=TenantOut.of(made.tenant),
        access_key=NewAccessKey(
            tenant=made.tenant.name,
            access_key_id=made.access_key_id,
            secret_key=made.secret_key,
        ),
    )


@router.get(
    "/-/tenants/{tenant}",
    operation_id="GetTenant",
    name="GetTenant",
    responses=errors(*AUTH_ERRORS, 404),
)
async def get_tenant(tenant: TenantName, context: Context) -> TenantOut:
    """One tenant."""
    return TenantOut.of(await _tenant(context, tenant))


@router.get(
    "/-/tenants/{tenant}/access-keys",
    operation_id="ListAccessKeys",
    name="ListAccessKeys",
    responses=errors(*AUTH_ERRORS, 404),
)
async def list_access_keys(
    tenant: TenantName, context: Context, limit: Limit = 100, after: After = ""
) -> AccessKeyPage:
    """A tenant's access keys by id, a page at a time (never their secrets)."""
    found = await _tenant(context, tenant)
    keys = await context.gateway.catalog.list_access_keys(
        found.tenant_id, after=after, limit=limit + 1
    )
    more = len(keys) > limit
    page = keys[:limit]
    return AccessKeyPage(
        access_keys=[AccessKeyOut.of(k) for k in page],
        next=page[-1].access_key_id if more else None,
    )


@router.post(
    "/-/tenants/{tenant}/access-keys",
    operation_id="CreateAccessKey",
    name="CreateAccessKey",
    status_code=201,
    responses=errors(*AUTH_ERRORS, 404, 409),
)
async def create_access_key(tenant: TenantName, context: Context) -> NewAccessKey:
    """A new access key pair for a tenant (the secret is returned here, once): rotate a client's
    credentials by creating the new pair, switching the client, then revoking the old one."""
    found = await _tenant(context, tenant)
    if found.shredded is not None:
        raise TenantShredded()
    made = await provision.add_access_key(
        context.gateway.catalog,
        context.gateway.keys,
        found,
        key_prefix=context.settings.vault.key_prefix,
    )
    return NewAccessKey(
        tenant=found.name, access_key_id=made.access_key_id, secret_key=made.secret_key
    )


@router.delete(
    "/-/tenants/{tenant}/access-keys/{access_key_id}",
    operation_id="DeleteAccessKey",
    name="DeleteAccessKey",
    status_code=204,
    response_class=Response,
    responses=errors(*AUTH_ERRORS, 404),
)
async def delete_access_key(
    tenant: TenantName, access_key_id: AccessKeyId, context: Context
) -> Response:
    """Revoke an access key: at once on this gateway, within seconds on the others (their
    credential caches expire)."""
    found = await _tenant(context, tenant)
    key = await context.gateway.catalog.get_access_key(access_key_id)
    if key is None or key.tenant_id != found.tenant_id:
        raise NoSuchAccessKey()
    await context.gateway.catalog.delete_access_key(access_key_id)
    context.forget_access_key(access_key_id)
    return Response(status_code=204)
