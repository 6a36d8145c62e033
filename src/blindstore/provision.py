"""Tenants and access keys: creation and lookup, shared by the CLI and the admin plane.

Secrets are written sealed only (``keys.credentials``): the catalog never holds a clear secret,
and ``seal_clear_secrets`` seals those a catalog from before revision 0008 still holds.
"""

from __future__ import annotations

import base64
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from blindstore.backends.ids import new_container_name
from blindstore.catalog.base import AccessKey, Catalog, Tenant
from blindstore.errors import ClientError, ConfigError, KeyServiceError, KeyServiceUnavailable
from blindstore.keys.base import KeyWrapper
from blindstore.keys.credentials import credentials_key_name, seal_secret, unseal_secret
from blindstore.keys.justification import job, justified

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
    # Keys first: a tenant row whose key does not exist would fail every write, an access key
    # that cannot be sealed cannot be stored.
    await keys.create_key(tenant.key_name)
    await keys.create_key(credentials_key_name(key_prefix))
    await catalog.create_tenant(tenant)
    return await add_access_key(catalog, keys, tenant, key_prefix=key_prefix, rng=rng, clock=clock)


async def add_access_key(
    catalog: Catalog,
    keys: KeyWrapper,
    tenant: Tenant,
    *,
    key_prefix: str = "hgw-",
    rng: Callable[[int], bytes] = secrets.token_bytes,
    clock: Callable[[], float] = time.time,
) -> NewCredentials:
    """A new key pair for ``tenant``; its secret is stored sealed (one Transit call)."""
    akid, secret = new_access_key(rng)
    sealed = await seal_secret(
        keys, credentials_key_name(key_prefix), tenant.tenant_id, akid, secret
    )
    await catalog.add_access_key(
        AccessKey(
            access_key_id=akid, sealed_secret=sealed, tenant_id=tenant.tenant_id, created=clock()
        )
    )
    return NewCredentials(tenant=tenant, access_key_id=akid, secret_key=secret)


async def open_secret(keys: KeyWrapper, key: AccessKey, *, key_prefix: str = "hgw-") -> str | None:
    """The secret of a stored access key; None if it is not sealed (never trusted in clear).

    ``KeyServiceError`` if the sealed value does not open (tampered, or moved from another key
    id or tenant); ``KeyServiceUnavailable`` if Vault cannot be reached.
    """
    if key.sealed_secret is None:
        return None
    return await unseal_secret(
        keys, credentials_key_name(key_prefix), key.tenant_id, key.access_key_id, key.sealed_secret
    )


async def seal_clear_secrets(
    catalog: Catalog, keys: KeyWrapper, *, key_prefix: str = "hgw-"
) -> int:
    """Seal every secret the catalog still holds in clear and erase it; how many were sealed.

    For catalogs written before revision 0008. ``blindstore serve`` and ``dev`` run it before
    they listen, ``blindstore access-keys seal`` on demand; a second run finds nothing to do.
    """
    key_name = credentials_key_name(key_prefix)
    count = 0
    for key in await catalog.access_keys_in_clear():
        assert key.secret_key is not None
        sealed = await seal_secret(keys, key_name, key.tenant_id, key.access_key_id, key.secret_key)
        if await catalog.seal_access_key(key.access_key_id, sealed):
            count += 1
    return count


async def seal_stored_secrets(
    catalog: Catalog, keys: KeyWrapper, *, key_prefix: str = "hgw-"
) -> int:
    """``seal_clear_secrets`` at startup: a secret that cannot be sealed stops the start
    (``ConfigError`` naming the fix) rather than stay in clear or leave its key unusable."""
    key_name = credentials_key_name(key_prefix)
    try:
        with justified(job("seal-secrets")):
            return await seal_clear_secrets(catalog, keys, key_prefix=key_prefix)
    except (KeyServiceError, KeyServiceUnavailable) as exc:
        raise ConfigError(
            f"access keys stored in clear could not be sealed under the Transit key {key_name} "
            f"({exc}). Create that key as the key administrator (deploy/openbao/provision.sh, "
            "or `blindstore tenants create`), give the gateway's identity encrypt and decrypt "
            "on it (deploy/openbao/gateway-policy.hcl), then start again or run "
            "`blindstore access-keys seal`."
        ) from exc
