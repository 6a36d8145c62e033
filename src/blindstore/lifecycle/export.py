"""The customer's exit: a tenant's objects as plaintext files in a directory (docs/export.md).

Every object is read through the gateway's own read path (row MAC, then every chunk's tag) into
a temporary file that is fsynced and renamed only once the whole body verified: a file under
``objects/`` is always a complete, authenticated plaintext. File names derive from a digest of
bucket and key, never from the key (which may hold ``../``, control characters, 1024 bytes).

The run is resumable: each finished object is appended (fsynced) to ``journal.jsonl``; a rerun
skips an object whose journal line still matches its catalog row and whose file still has the
recorded SHA-256. The run ends by writing ``manifest.jsonl`` and, last, the signed
``export.json`` whose presence means "finished".
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import anyio

from blindstore.catalog.base import ObjectRecord, Tenant
from blindstore.errors import BlindstoreError, KeyShredded, NoSuchKey
from blindstore.gateway.records import Principal
from blindstore.lifecycle.certificates import attach_signature, canonical_bytes

if TYPE_CHECKING:
    from blindstore.gateway.core import Gateway
    from blindstore.lifecycle.shred import Signer

EXPORT_TYPE = "blindstore/export/v1"
FORMAT_VERSION = 1
HEADER = "export.json"
MANIFEST = "manifest.jsonl"
JOURNAL = "journal.jsonl"
OBJECTS = "objects"
_TEMP_PREFIX = ".partial-"
_OURS = frozenset({HEADER, MANIFEST, JOURNAL, OBJECTS})
_HASH_BLOCK = 1 << 20


class ExportError(BlindstoreError):
    """The export cannot start or finish; the message says why."""

    expose_message = True


@dataclass(slots=True)
class ExportResult:
    """What a run did: counts over the whole export, and this run's own work."""

    exported: int = 0
    shredded: int = 0
    bytes: int = 0
    written: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    header: dict[str, Any] | None = None


def iso_ms(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def object_file(bucket: str, key: str) -> str:
    """The file of an object, relative to the export directory: a digest of bucket and key, so
    that no key can name a path (NUL cannot occur in a bucket name)."""
    digest = hashlib.sha256(f"{bucket}\0{key}".encode()).hexdigest()
    return f"{OBJECTS}/{digest}"


def dumps_line(entry: dict[str, Any]) -> str:
    """One JSON Lines record: sorted keys, no spaces, ASCII only (control characters and
    non-ASCII key bytes escaped), so that any JSON parser reads it back exactly."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True) + "\n"


def file_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def manifest_entry(record: ObjectRecord, sha256: str) -> dict[str, Any]:
    """The manifest line of an exported object: everything stored with it, as stored."""
    return {
        "bucket": record.bucket,
        "key": record.key,
        "status": "exported",
        "file": object_file(record.bucket, record.key),
        "size": record.size,
        "sha256": sha256,
        "etag": record.etag,
        "content_type": record.headers.get("content-type"),
        "headers": dict(record.headers),
        "user_metadata": dict(record.user_metadata),
        "tags": dict(record.tags),
        "checksums": dict(record.checksums),
        "provenance": dict(record.provenance),
        "retention_until": iso_ms(record.retention_until)
        if record.retention_until is not None
        else None,
        "last_modified": iso_ms(record.last_modified),
    }


def shredded_entry(bucket: str, key: str) -> dict[str, Any]:
    """A crypto-shredded object: listed, with no file and no metadata (unreadable for good)."""
    return {"bucket": bucket, "key": key, "status": "shredded"}


async def export_tenant(
    gateway: Gateway,
    tenant: Tenant,
    dest: Path,
    *,
    bucket: str | None = None,
    signer: Signer,
    force: bool = False,
    clock: Callable[[], float] = time.time,
    on_object: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ExportResult:
    """Export ``tenant`` (or one of its buckets) to ``dest``; see the module docstring.

    ``on_object(n)`` is called after each object (n done so far in this run); ``on_total`` once
    with the number of objects to go through. A file system error (disk full, no permission)
    ends the run as ``ExportError``; rerun to resume.
    """
    try:
        return await _export(
            gateway,
            tenant,
            dest,
            bucket=bucket,
            signer=signer,
            force=force,
            clock=clock,
            on_object=on_object,
            on_total=on_total,
        )
    except OSError as exc:
        raise ExportError(f"cannot write the export in {dest}: {exc.strerror or exc}") from exc


async def _export(
    gateway: Gateway,
    tenant: Tenant,
    dest: Path,
    *,
    bucket: str | None = None,
    signer: Signer,
    force: bool = False,
    clock: Callable[[], float] = time.time,
    on_object: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ExportResult:
    buckets = await _buckets(gateway, tenant, bucket)
    started = await anyio.to_thread.run_sync(
        functools.partial(_prepare, dest, tenant.name, bucket, force=force, now=clock())
    )
    journal = await anyio.to_thread.run_sync(_read_journal, dest)
    await gateway.refresh_revocations()
    if on_total is not None:
        on_total(await _count(gateway, tenant, buckets))
    principal = Principal(access_key_id="blindstore-export", tenant=tenant)
    result = ExportResult()
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    done = 0
    with (dest / JOURNAL).open("a", encoding="utf-8") as journal_file:
        for name in buckets:
            async for record in _objects(gateway, tenant, name):
                entry = await _export_one(
                    gateway,
                    principal,
                    tenant,
                    record,
                    dest,
                    journal.get((name, record.key)),
                    result,
                )
                if entry is not None:
                    entries[(name, record.key)] = entry
                    if entry != journal.get((name, record.key)):
                        await anyio.to_thread.run_sync(_append, journal_file, entry)
                done += 1
                if on_object is not None:
                    on_object(done)
    if result.failed:
        return result
    result.header = await anyio.to_thread.run_sync(
        _finish, dest, tenant.name, buckets, entries, started, clock(), signer
    )
    result.header["shreddings"] = [
        {
            "shred_id": shred.shred_id,
            "scope": shred.scope,
            "requested": iso_ms(shred.requested),
            "destroyed": iso_ms(shred.destroyed) if shred.destroyed is not None else None,
        }
        for shred in await gateway.catalog.list_shreds()
        if shred.tenant_id == tenant.tenant_id
    ]
    result.header = await _sign(result.header, signer)
    header_text = json.dumps(result.header, indent=2, sort_keys=True) + "\n"
    await anyio.to_thread.run_sync(_write_atomically, dest / HEADER, header_text)
    await anyio.to_thread.run_sync((dest / JOURNAL).unlink)
    await anyio.to_thread.run_sync(_fsync_dir, dest)
    return result


async def _export_one(
    gateway: Gateway,
    principal: Principal,
    tenant: Tenant,
    record: ObjectRecord,
    dest: Path,
    previous: dict[str, Any] | None,
    result: ExportResult,
) -> dict[str, Any] | None:
    if tenant.shredded is not None or record.key_name in gateway.revoked_keys:
        result.shredded += 1
        return shredded_entry(record.bucket, record.key)
    try:
        if previous is not None and await anyio.to_thread.run_sync(
            _still_valid, previous, record, dest
        ):
            # The file is intact; the metadata is taken afresh from the authenticated row (tags
            # may have changed since without changing the ETag).
            current = await gateway.head_object(principal, record.bucket, record.key)
            if current.etag == previous["etag"]:
                result.exported += 1
                result.skipped += 1
                result.bytes += current.size
                return manifest_entry(current, str(previous["sha256"]))
        read = await gateway.get_object(principal, record.bucket, record.key)
        sha256 = await _write_file(dest / object_file(record.bucket, record.key), read.body)
    except KeyShredded:
        result.shredded += 1
        return shredded_entry(record.bucket, record.key)
    except NoSuchKey:
        return None  # deleted since it was listed: not part of the export
    except BlindstoreError as exc:
        # The class says what failed (IntegrityError, BackendUnavailable, KeyServiceError...);
        # the message may be a server-side one that is not shown.
        result.failed.append(
            {"bucket": record.bucket, "key": record.key, "error": _error_name(exc)}
        )
        return None
    result.exported += 1
    result.written += 1
    result.bytes += read.record.size
    return manifest_entry(read.record, sha256)


def _error_name(exc: BlindstoreError) -> str:
    """The class of the error tree (errors.py) ``exc`` is, not a private subclass of it."""
    return next(c.__name__ for c in type(exc).__mro__ if c.__module__ == BlindstoreError.__module__)


def _still_valid(previous: dict[str, Any], record: ObjectRecord, dest: Path) -> bool:
    """A journal line is reused if the object is unchanged and its file intact."""
    if previous.get("status") != "exported":
        return False
    if (previous.get("etag"), previous.get("last_modified")) != (
        record.etag,
        iso_ms(record.last_modified),
    ):
        return False
    path = dest / object_file(record.bucket, record.key)
    if not path.is_file():
        return False
    return file_sha256(path) == (previous.get("size"), previous.get("sha256"))


async def _write_file(path: Path, body: AsyncIterator[bytes]) -> str:
    """Stream ``body`` to ``path`` through a temporary file; renamed only once the whole body
    was read (the read path raises on the first chunk that fails authentication)."""
    temp = path.with_name(_TEMP_PREFIX + path.name)
    digest = hashlib.sha256()
    try:
        handle = await anyio.to_thread.run_sync(temp.open, "wb")
        try:
            async for chunk in body:
                await anyio.to_thread.run_sync(_write_and_hash, handle, digest, chunk)
            await anyio.to_thread.run_sync(_flush_and_sync, handle)
        finally:
            await anyio.to_thread.run_sync(handle.close)
        await anyio.to_thread.run_sync(os.replace, temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    await anyio.to_thread.run_sync(_fsync_dir, path.parent)
    return digest.hexdigest()


def _write_and_hash(handle: BinaryIO, digest: Any, chunk: bytes) -> None:
    handle.write(chunk)
    digest.update(chunk)


def _flush_and_sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


async def _buckets(gateway: Gateway, tenant: Tenant, bucket: str | None) -> list[str]:
    owned = sorted(b.name for b in await gateway.catalog.list_buckets(tenant.tenant_id))
    if bucket is None:
        return owned
    if bucket not in owned:
        raise ExportError(f"tenant {tenant.name!r} has no bucket {bucket!r}")
    return [bucket]


async def _objects(gateway: Gateway, tenant: Tenant, bucket: str) -> AsyncIterator[ObjectRecord]:
    after = ""
    while True:
        page = await gateway.catalog.list_objects(
            bucket, start_after=after, max_keys=1000, tenant_id=tenant.tenant_id
        )
        for record in page.objects:
            yield record
        if not page.truncated or not page.objects:
            return
        after = page.objects[-1].key


async def _count(gateway: Gateway, tenant: Tenant, buckets: list[str]) -> int:
    total = 0
    for name in buckets:
        async for _ in _objects(gateway, tenant, name):
            total += 1
    return total


def _prepare(dest: Path, tenant: str, bucket: str | None, *, force: bool, now: float) -> str:
    """Make ``dest`` ready; return the export's start time (the first run's, when resuming)."""
    dest.mkdir(parents=True, exist_ok=True)
    foreign = sorted(
        p.name
        for p in dest.iterdir()
        if p.name not in _OURS and not p.name.startswith(_TEMP_PREFIX)
    )
    if foreign:
        raise ExportError(
            f"{dest} holds files that are not an export's ({', '.join(foreign[:5])}): "
            "export to an empty directory"
        )
    if (dest / HEADER).exists() and not force:
        raise ExportError(
            f"{dest} holds a finished export: give --force to overwrite it, or another directory"
        )
    if force:
        _clear(dest)
    (dest / OBJECTS).mkdir(exist_ok=True)
    for temp in [*dest.glob(_TEMP_PREFIX + "*"), *(dest / OBJECTS).glob(_TEMP_PREFIX + "*")]:
        temp.unlink()
    header = _journal_header(dest)
    if header is not None:
        if (header.get("tenant"), header.get("bucket")) != (tenant, bucket):
            raise ExportError(
                f"{dest} holds an unfinished export of another tenant or bucket: "
                "give --force to start over"
            )
        return str(header["started"])
    started = iso_ms(now)
    _write_atomically(
        dest / JOURNAL,
        dumps_line({"journal": 1, "tenant": tenant, "bucket": bucket, "started": started}),
    )
    return started


def _clear(dest: Path) -> None:
    for name in (HEADER, MANIFEST, JOURNAL):
        with contextlib.suppress(FileNotFoundError):
            (dest / name).unlink()
    if (dest / OBJECTS).is_dir():
        for path in (dest / OBJECTS).iterdir():
            path.unlink()


def _journal_lines(dest: Path) -> Iterator[dict[str, Any]]:
    """The journal's records; a torn last line (a crash mid-append) is ignored."""
    try:
        text = (dest / JOURNAL).read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        try:
            loaded = json.loads(line)
        except ValueError:
            continue
        if isinstance(loaded, dict):
            yield loaded


def _journal_header(dest: Path) -> dict[str, Any] | None:
    return next((line for line in _journal_lines(dest) if "journal" in line), None)


def _read_journal(dest: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (str(line["bucket"]), str(line["key"])): line
        for line in _journal_lines(dest)
        if "bucket" in line and "key" in line
    }


def _append(handle: Any, entry: dict[str, Any]) -> None:
    handle.write(dumps_line(entry))
    handle.flush()
    os.fsync(handle.fileno())


def _finish(
    dest: Path,
    tenant: str,
    buckets: list[str],
    entries: dict[tuple[str, str], dict[str, Any]],
    started: str,
    now: float,
    signer: Signer,
) -> dict[str, Any]:
    """Write manifest.jsonl (sorted by bucket, then key) and return the unsigned header. Files
    of objects deleted since an interrupted run are removed: the directory holds what the
    manifest lists, nothing else."""
    ordered = [entries[name] for name in sorted(entries)]
    listed = {entry["file"] for entry in ordered if entry["status"] == "exported"}
    for path in (dest / OBJECTS).iterdir():
        if f"{OBJECTS}/{path.name}" not in listed:
            path.unlink()
    manifest = "".join(dumps_line(entry) for entry in ordered)
    _write_atomically(dest / MANIFEST, manifest)
    exported = [entry for entry in ordered if entry["status"] == "exported"]
    return {
        "type": EXPORT_TYPE,
        "format_version": FORMAT_VERSION,
        "tenant": tenant,
        "buckets": buckets,
        "started": started,
        "finished": iso_ms(now),
        "objects": len(exported),
        "shredded": len(ordered) - len(exported),
        "bytes": sum(int(entry["size"]) for entry in exported),
        "manifest_sha256": hashlib.sha256(manifest.encode("ascii")).hexdigest(),
        "signing_key": signer.key_name,
    }


async def _sign(header: dict[str, Any], signer: Signer) -> dict[str, Any]:
    signature, version = await signer.admin.sign(signer.key_name, canonical_bytes(header))
    return attach_signature(
        header, key_name=signer.key_name, key_version=version, signature=signature
    )


def _write_atomically(path: Path, text: str) -> None:
    temp = path.with_name(_TEMP_PREFIX + path.name)
    with temp.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
