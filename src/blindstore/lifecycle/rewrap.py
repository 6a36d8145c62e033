"""Rotation without re-encryption: rotate a Transit key, rewrap the catalog, raise the floor.

``rewrap_key`` walks every object and pending upload whose DEK the key wrapped below its latest
version, in batches: one ``transit/rewrap`` call (``batch_input``) per batch, then one catalog
transaction storing the new wrapped DEKs, each only if its row was not changed meanwhile. Data is
never decrypted, re-encrypted or moved, and the DEKs never leave OpenBao in clear.

The job is resumable by construction: a rewrapped row no longer matches "below the latest
version", so a run that was interrupted simply finds less to do when started again.

Raising ``min_decryption_version`` is the step that makes old key versions useless. It is only
taken when nothing below the latest version remains, and when the latest version is older than
``settle`` seconds: running gateways hold pools of DEKs wrapped before the rotation for at most
``keys.pool_ttl_seconds`` (≤ 5 minutes), and an upload in flight commits the DEK it started
with. After raising, the catalog is checked again; a row that slipped in meanwhile puts the floor
back where it was (nothing becomes unreadable), and the next run raises it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from blindstore.catalog.base import Catalog, WrappedRef, WrappedTable
from blindstore.errors import KeyServiceError
from blindstore.keys.admin import RewrapItem, TransitAdmin
from blindstore.keys.base import dek_context, parse_key_version

#: Default wait after a rotation before old versions may be retired (pool ttl + uploads).
DEFAULT_SETTLE_SECONDS = 15 * 60
_TABLES: tuple[WrappedTable, ...] = ("objects", "uploads")


@dataclass(frozen=True, slots=True)
class RewrapReport:
    key_name: str
    latest_version: int
    #: Wrapped DEKs moved to the latest version by this run.
    rewrapped: int
    #: Rows changed by a client while their batch was in flight (left as they are).
    skipped: int
    #: Items Transit refused (named in ``errors``).
    failed: int
    #: Wrapped DEKs still below the latest version after the run.
    remaining: int
    min_decryption_version: int
    #: Why ``min_decryption_version`` was not raised to the latest version (None: it was).
    not_raised_because: str | None
    errors: tuple[str, ...] = ()


async def pending_count(catalog: Catalog, admin: TransitAdmin, key_names: list[str]) -> int:
    """How many wrapped DEKs under ``key_names`` are below their key's latest version."""
    total = 0
    for name in key_names:
        info = await admin.key_info(name)
        if info is not None:
            total += await _count_below(catalog, name, info.latest_version)
    return total


async def _count_below(catalog: Catalog, key_name: str, version: int) -> int:
    """Objects, uploads and bucket keys wrapped by ``key_name`` below ``version``."""
    total = await catalog.count_wrapped_below(key_name, version)
    after = b""
    while page := await catalog.bucket_keys_below(key_name, version, after=after, limit=500):
        total += len(page)
        after = page[-1].bucket_key_id
    return total


async def rewrap_key(
    catalog: Catalog,
    admin: TransitAdmin,
    key_name: str,
    *,
    batch_size: int = 200,
    settle: float = DEFAULT_SETTLE_SECONDS,
    raise_floor: bool = True,
    progress: Callable[[int], None] = lambda _done: None,
    clock: Callable[[], float] = time.time,
) -> RewrapReport:
    """Rewrap everything ``key_name`` wrapped below its latest version, then raise the floor."""
    info = await admin.key_info(key_name)
    if info is None:
        raise KeyServiceError(f"Transit key {key_name} does not exist")
    latest = info.latest_version
    rewrapped = skipped = failed = 0
    errors: list[str] = []
    for table in _TABLES:
        after = ("", "")
        while refs := await catalog.wrapped_below(
            table, key_name, latest, after=after, limit=batch_size
        ):
            stored, refused, messages = await _rewrap_batch(catalog, admin, key_name, refs)
            rewrapped += stored
            failed += refused
            skipped += len(refs) - stored - refused
            errors.extend(messages)
            progress(len(refs))
            after = refs[-1].locator
    # Bucket keys (bucket-key mode) are wrapped by the tenant key like DEKs; their objects'
    # DEKs are wrapped by them, so moving the bucket key moves those objects.
    after_id = b""
    while bucket_keys := await catalog.bucket_keys_below(
        key_name, latest, after=after_id, limit=batch_size
    ):
        items = [
            RewrapItem(k.wrapped, dek_context(k.tenant_id, k.bucket_key_id)) for k in bucket_keys
        ]
        for bucket_key, outcome in zip(
            bucket_keys, await admin.rewrap(key_name, items), strict=True
        ):
            if isinstance(outcome, KeyServiceError):
                failed += 1
                errors.append(outcome.message)
            elif await catalog.rewrap_bucket_key(
                bucket_key.bucket_key_id, bucket_key.wrapped, outcome, parse_key_version(outcome)
            ):
                rewrapped += 1
            else:
                skipped += 1
        progress(len(bucket_keys))
        after_id = bucket_keys[-1].bucket_key_id
    remaining = await _count_below(catalog, key_name, latest)
    floor = info.min_decryption_version
    reason = _reason_not_to_raise(
        raise_floor, remaining, floor, latest, info.versions.get(latest), settle, clock()
    )
    if reason is None and floor < latest:
        try:
            await admin.set_min_decryption_version(key_name, latest)
        except KeyServiceError as exc:
            # The rewrap identity may rewrap but not configure keys: the key administrator
            # runs the command again (nothing left to rewrap) to raise the floor.
            reason = f"this identity may not raise min_decryption_version ({exc.message})"
        else:
            # A pooled DEK or an upload wrapped before the rotation may have committed meanwhile.
            if slipped_in := await _count_below(catalog, key_name, latest):
                await admin.set_min_decryption_version(key_name, floor)
                remaining = slipped_in
                reason = "rows wrapped by an older version appeared meanwhile: run again"
            else:
                floor = latest
    return RewrapReport(
        key_name=key_name,
        latest_version=latest,
        rewrapped=rewrapped,
        skipped=skipped,
        failed=failed,
        remaining=remaining,
        min_decryption_version=floor,
        not_raised_because=reason,
        errors=tuple(dict.fromkeys(errors)),
    )


async def _rewrap_batch(
    catalog: Catalog, admin: TransitAdmin, key_name: str, refs: list[WrappedRef]
) -> tuple[int, int, list[str]]:
    items = [RewrapItem(ref.wrapped, dek_context(ref.tenant_id, ref.object_id)) for ref in refs]
    outcomes = await admin.rewrap(key_name, items)
    changes: list[tuple[WrappedRef, str, int]] = []
    errors: list[str] = []
    for ref, outcome in zip(refs, outcomes, strict=True):
        if isinstance(outcome, KeyServiceError):
            errors.append(outcome.message)
        else:
            changes.append((ref, outcome, parse_key_version(outcome)))
    stored = await catalog.replace_wrapped(changes) if changes else 0
    return stored, len(errors), errors


def _reason_not_to_raise(
    wanted: bool,
    remaining: int,
    floor: int,
    latest: int,
    created: float | None,
    settle: float,
    now: float,
) -> str | None:
    if not wanted:
        return "not asked to (--no-raise)"
    if floor >= latest:
        return None if remaining == 0 else f"{remaining} wrapped keys could not be rewrapped"
    if remaining:
        return f"{remaining} wrapped keys are still below version {latest}"
    if created is not None and now - created < settle:
        wait = int(settle - (now - created)) + 1
        return (
            f"version {latest} is younger than the settle time ({int(settle)} s): gateways may "
            f"still hold DEKs wrapped before the rotation; run again in {wait} s"
        )
    return None
