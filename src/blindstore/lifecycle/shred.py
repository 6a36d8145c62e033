"""Crypto-shredding of a tenant or of one data subject, with a signed certificate.

Three steps, so that an operator's mistake can be undone until the grace period ends:

1. ``request_shred`` records the request in the catalog (every gateway then refuses the keys'
   data within ``keys.revocation_refresh_seconds``, cached DEKs or not) and soft-deletes the
   Transit keys (OpenBao refuses every use of them, but keeps their material);
2. ``restore_shred`` (during the grace period) undoes both;
3. ``destroy`` (when the grace period is over, or at once with ``--grace 0``) deletes the
   Transit keys for good, then deletes the data that is now noise — catalog rows and blobs on
   every backend (for a tenant: its whole container on each backend) — and signs a certificate
   with the ``<prefix>sign`` Transit key.

Destroying the key is the erasure; deleting the ciphertext afterwards is hygiene. Residual
copies (OpenBao storage snapshots, catalog backups) are named in the certificate and in
docs/operations.md.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from blindstore.backends.base import Backend
from blindstore.catalog.base import Catalog, KeyUsage, ObjectRecord, Shred, Tenant
from blindstore.errors import BlindstoreError, ClientError
from blindstore.keys.admin import KeyInfo, TransitAdmin
from blindstore.lifecycle.certificates import CERTIFICATE_TYPE, attach_signature, canonical_bytes
from blindstore.subjects import Keying, subject_digest

log = structlog.get_logger("blindstore.shred")

RESIDUAL_COPIES = (
    "OpenBao storage snapshots and catalog backups taken before destroyed_at still hold the "
    "destroyed keys or wrapped DEKs until their retention ends; erasure is complete once the "
    "last of them expires (see docs/operations.md, crypto-shredding)."
)


class NothingToShred(ClientError):
    """The tenant or subject has no key to shred (unknown, or shredded already)."""


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs certificates with a Transit ed25519 key."""

    admin: TransitAdmin
    key_name: str
    vault_addr: str
    mount: str


def new_tenant_shred(
    tenant: Tenant,
    subject_keys: list[str],
    *,
    grace: float,
    operator: str,
    clock: Callable[[], float] = time.time,
    rng: Callable[[int], bytes] = secrets.token_bytes,
) -> Shred:
    """A request to shred a tenant: its key and every live data-subject key of it."""
    if tenant.shredded is not None:
        raise NothingToShred(f"tenant {tenant.name!r} is already shredded")
    now = clock()
    return Shred(
        shred_id=rng(16).hex(),
        scope="tenant",
        tenant_id=tenant.tenant_id,
        key_names=(tenant.key_name, *subject_keys),
        requested=now,
        destroy_after=now + grace,
        operator=operator,
    )


async def new_subject_shred(
    catalog: Catalog,
    tenant: Tenant,
    subject: str,
    *,
    grace: float,
    operator: str,
    keyed: Keying,
    clock: Callable[[], float] = time.time,
    rng: Callable[[int], bytes] = secrets.token_bytes,
) -> Shred:
    """A request to shred a data subject's keys (found by its keyed digest, ``keyed`` being
    the gateway's Transit HMAC; the id is never stored): the live one and any retired one no
    shredding request covers (a request restored after the subject got a new key leaves its
    key retired, see ``Catalog.cancel_shred``)."""
    digest = await subject_digest(tenant.tenant_id, subject, keyed)
    revoked = await catalog.revoked_key_names()
    names = tuple(
        key.key_name
        for key in await catalog.list_subject_keys(tenant.tenant_id)
        if key.subject_digest == digest and key.key_name not in revoked
    )
    if not names:
        raise NothingToShred("no live key for this data subject in this tenant")
    now = clock()
    return Shred(
        shred_id=rng(16).hex(),
        scope="subject",
        tenant_id=tenant.tenant_id,
        key_names=names,
        requested=now,
        destroy_after=now + grace,
        operator=operator,
    )


async def check_permissions(admin: TransitAdmin, shred: Shred, signing_key: str) -> None:
    """Fail before anything is recorded if this identity cannot see the keys or sign (the
    gateway's own identity, say): a request recorded but never carried out would refuse the
    data while leaving its keys intact."""
    for name in shred.key_names:
        await admin.key_info(name)
    await admin.ensure_signing_key(signing_key)


async def request_shred(catalog: Catalog, admin: TransitAdmin, shred: Shred) -> None:
    """Record the request (reads stop), then soft-delete the keys if there is a grace period."""
    await catalog.record_shred(shred)
    if shred.destroy_after > shred.requested:
        for name in shred.key_names:
            if await admin.key_info(name) is not None:  # a subject key never used: no key
                await admin.soft_delete(name)


async def restore_shred(catalog: Catalog, admin: TransitAdmin, shred: Shred) -> None:
    """Undo a request whose keys are not destroyed yet."""
    if shred.destroyed is not None:
        raise NothingToShred("the keys of this request are destroyed: nothing can restore them")
    for name in shred.key_names:
        info = await admin.key_info(name)
        if info is not None and info.soft_deleted:
            await admin.restore(name)
    await catalog.cancel_shred(shred.shred_id)


async def destroy(
    catalog: Catalog,
    backends: Mapping[str, Backend],
    shred: Shred,
    signer: Signer,
    *,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Destroy the keys, delete the data left as noise, sign and record the certificate."""
    tenant = await catalog.get_tenant(shred.tenant_id)
    if tenant is None:
        raise NothingToShred("the tenant of this shredding request no longer exists")
    subjects = {
        key.key_name: key.subject_digest.hex()
        for key in await catalog.list_subject_keys(tenant.tenant_id)
    }
    infos = {name: await signer.admin.key_info(name) for name in shred.key_names}
    usage = await catalog.key_usage(shred.key_names)
    for name in shred.key_names:
        await signer.admin.destroy(name)
    destroyed_at = clock()
    if shred.scope == "tenant":
        await catalog.purge_tenant(tenant.tenant_id)
        blobs = await _empty_container(backends, tenant.container)
    else:
        blobs = await _delete_objects(catalog, backends, shred.key_names)
    certificate = _certificate(
        shred, tenant, infos, usage, blobs, sorted(backends), destroyed_at, signer, subjects
    )
    signature, version = await signer.admin.sign(signer.key_name, canonical_bytes(certificate))
    signed = attach_signature(
        certificate, key_name=signer.key_name, key_version=version, signature=signature
    )
    await catalog.finish_shred(shred.shred_id, destroyed_at, json.dumps(signed, sort_keys=True))
    log.info("shred.destroyed", shred_id=shred.shred_id, scope=shred.scope, keys=len(infos))
    return signed


def _certificate(
    shred: Shred,
    tenant: Tenant,
    infos: Mapping[str, KeyInfo | None],
    usage: KeyUsage,
    blobs: int,
    backend_names: list[str],
    destroyed_at: float,
    signer: Signer,
    subjects: Mapping[str, str],
) -> dict[str, Any]:
    keys = []
    for name in shred.key_names:
        info = infos[name]
        entry: dict[str, Any] = {
            "name": name,
            "existed": info is not None,
            "versions": sorted(info.versions) if info is not None else [],
        }
        if name in subjects:
            entry["subject_digest"] = subjects[name]
        keys.append(entry)
    return {
        "type": CERTIFICATE_TYPE,
        "shred_id": shred.shred_id,
        "scope": shred.scope,
        "tenant": {"id": tenant.tenant_id.hex(), "name": tenant.name},
        "keys": keys,
        "destroyed": {
            "objects": usage.objects,
            "bytes": usage.bytes,
            "pending_uploads": usage.uploads,
            "blobs_deleted": blobs,
            "backends": backend_names,
        },
        "requested_at": iso_time(shred.requested),
        "grace_seconds": round(shred.destroy_after - shred.requested),
        "destroyed_at": iso_time(destroyed_at),
        "operator": shred.operator,
        "key_custodian": {"vault_addr": signer.vault_addr, "transit_mount": signer.mount},
        "residual_copies": RESIDUAL_COPIES,
    }


async def _empty_container(backends: Mapping[str, Backend], container: str) -> int:
    deleted = 0
    for backend in backends.values():
        async for blob in backend.list(container):
            await backend.delete(container, blob.blob)
            deleted += 1
    return deleted


async def _delete_objects(
    catalog: Catalog, backends: Mapping[str, Backend], key_names: tuple[str, ...]
) -> int:
    deleted = 0
    after = ("", "")
    while records := await catalog.objects_with_keys(key_names, after=after):
        for record in records:
            if await catalog.delete_object_version(record.bucket, record.key, record.object_id):
                deleted += await _delete_blobs(backends, record)
        after = (records[-1].bucket, records[-1].key)
    for upload in await catalog.uploads_with_keys(key_names):
        try:
            parts = await catalog.abort_upload(upload.upload_id)
        except BlindstoreError:
            continue  # completed or aborted meanwhile
        for part in parts:
            for name in set(part.backends) | set(upload.backends):
                backend = backends.get(name)
                if backend is not None:
                    await backend.delete(upload.container, part.blob)
                    deleted += 1
    return deleted


async def _delete_blobs(backends: Mapping[str, Backend], record: ObjectRecord) -> int:
    deleted = 0
    for name in {*record.backends, *record.repairs}:
        backend = backends.get(name)
        if backend is None:
            continue  # a backend no longer configured: `blindstore gc` there later
        for part in record.parts:
            await backend.delete(record.container, part.blob)
            deleted += 1
    return deleted


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
