"""What one audit record says, and the interface that records it.

An ``AuditEvent`` is built by the S3 plane, the admin plane and the CLI jobs; an ``AuditSink``
appends it to the hash-chained log (``audit_log`` in the catalog). Appending is part of the
action: a sink that cannot append raises, and the action fails (an S3 client gets 503).
Never put plaintext, keys, secrets or the data-subject id in an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AuditEvent:
    time: float
    request_id: str
    #: Access key id, ``admin`` or ``os:<user>``; empty when the caller was not authenticated.
    principal: str
    #: S3 operation (``GetObject``), admin action (``admin.CreateTenant``) or CLI job
    #: (``keys.shred``).
    operation: str
    #: HTTP status, then the S3 error code if it failed: ``200``, ``403 AccessDenied``.
    result: str
    tenant_id: bytes | None = None
    bucket: str | None = None
    key: str | None = None
    object_id: bytes | None = None
    #: The object version (its ETag).
    version: str | None = None
    backends: tuple[str, ...] = ()
    key_name: str | None = None
    key_version: int | None = None
    #: Body bytes transferred (received for writes, sent for reads).
    bytes: int = 0
    #: The client's address.
    source: str = ""
    detail: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)


class AuditSink(Protocol):
    async def append(self, event: AuditEvent) -> None:
        """Append durably; raise ``ServiceUnavailable`` if it cannot (the action then fails)."""
        ...

    def committed_elsewhere(self, event: AuditEvent) -> None:
        """``event`` was committed by another transaction (a write's, with its row): it counts
        towards the next checkpoint, whose signer must find it again unchanged."""
        ...


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which records an audit query selects; every field given must match (None: any)."""

    object_id: bytes | None = None
    bucket: str | None = None
    key: str | None = None
    principal: str | None = None
    tenant_id: bytes | None = None
    operation: str | None = None
    #: Time range, seconds since the epoch: ``since <= time < until``.
    since: float | None = None
    until: float | None = None
