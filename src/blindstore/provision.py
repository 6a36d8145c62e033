"""Tenants and access keys: creation and lookup, shared by the CLI and the admin plane."""

from __future__ import annotations

import base64
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from blindstore.backends.ids import new_container_name
from blindstore.catalog.base import AccessKey, Catalog, Tenant
from blindstore.errors import ClientError
from blindstore.keys.base import KeyWrapper

_AKID_ALPHABET = string.ascii_uppercase + string.digits
_TENANT_NAME_MAX = 64


class TenantExists(ClientError):
    code = "TenantAlreadyExists"
    status = 409
    default_message = "A tenant with this name already exists."


@dataclass(frozen=True, slots=True)
class NewCredentials:
    tenant: Tenant
    access_key_id: str
    secret_key: str = field(repr=False)


def tenant_key_name(prefix: str, tenant_id: bytes) -> str:
    """Transit key of a tenant: ``<prefix>t-<tenant id hex>`` (never the human name)."""
    return f"{prefix}t-{tenant_id.hex()}"


def new_access_key(rng: Callable[[int], bytes] = secrets.token_bytes) -> tuple[str, str]:
    """An AWS-shaped key pair: a 20-character id and a 40-character secret."""
    raw = rng(20)
    akid = "BS" + "".join(_AKID_ALPHABET[b % len(_AKID_ALPHABET)] for b in raw[:18])
    secret = base64.b64encode(rng(30)).decode()
    return akid, secret


async def create_tenant(
    catalog: Catalog,
    keys: KeyWrapper,
    name: str,
    *,
    key_prefix: str = "hgw-",
    rng: Callable[[int], bytes] = secrets.token_bytes,
    clock: Callable[[], float] = time.time,
) -> NewCredentials:
    """Create a tenant, its Transit key and a first access key pair."""
    name = name.strip()
    # No "/": the name is a path segment of the admin API (/-/tenants/<name>).
    if not name or len(name) > _TENANT_NAME_MAX or not name.isprintable() or "/" in name:
        raise ClientError(
            f"tenant names are 1-{_TENANT_NAME_MAX} printable characters, without '/'"
        )
    if await catalog.get_tenant_by_name(name) is not None:
        raise TenantExists(f"tenant {name!r} already exists")
    tenant_id = rng(16)
    tenant = Tenant(
        tenant_id=tenant_id,
        name=name,
        key_name=tenant_key_name(key_prefix, tenant_id),
        container=new_container_name(rng),  # meaningless to a provider
        created=clock(),
    )
    # Key first: a tenant row whose key does not exist would fail every write.
    await keys.create_key(tenant.key_name)
    await catalog.create_tenant(tenant)
    return await add_access_key(catalog, tenant, rng=rng, clock=clock)


async def add_access_key(
    catalog: Catalog,
    tenant: Tenant,
    *,
    rng: Callable[[int], bytes] = secrets.token_bytes,
    clock: Callable[[], float] = time.time,
) -> NewCredentials:
    akid, secret = new_access_key(rng)
    await catalog.add_access_key(
        AccessKey(
            access_key_id=akid, secret_key=secret, tenant_id=tenant.tenant_id, created=clock()
        )
    )
    return NewCredentials(tenant=tenant, access_key_id=akid, secret_key=secret)
