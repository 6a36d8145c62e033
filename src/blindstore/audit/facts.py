"""What a request touched, gathered while it runs, for its audit record.

The S3 plane opens a fresh ``AuditFacts`` per request (``collecting``); the gateway notes the
object row or upload it worked on (``note``) without any signature changing: handlers and the
gateway stay unaware of auditing, and code outside a request (CLI jobs, tests) notes nothing.
The facts object is shared by reference, so notes made in child tasks land too. A write that
creates an object commits its request's record in the same transaction as the row
(``write_event``): the object exists if and only if its record does. A write's record carries
the row MAC it committed and a delete's the object ids it removed (``detail``), which ``audit
verify`` checks the live rows against (``audit.rollback``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from blindstore.audit.events import AuditEvent
from blindstore.audit.rollback import DELETED_DETAIL, ROW_MAC_DETAIL


class _Stored(Protocol):
    @property
    def tenant_id(self) -> bytes: ...
    @property
    def object_id(self) -> bytes: ...
    @property
    def backends(self) -> tuple[str, ...]: ...
    @property
    def key_name(self) -> str: ...
    @property
    def key_version(self) -> int: ...


@dataclass(slots=True)
class AuditFacts:
    object_id: bytes | None = None
    #: The object version (ETag); None for an upload in progress.
    version: str | None = None
    backends: tuple[str, ...] = ()
    key_name: str | None = None
    key_version: int | None = None
    #: Builds this request's record as a success (set by the S3 plane when it audits), so that
    #: a write can commit its record in the same catalog transaction as its row.
    success_event: Callable[[], AuditEvent] | None = None
    #: The record was committed together with the write: the S3 plane appends nothing more.
    recorded: bool = False
    #: Added to the record's ``detail``: ``row_mac`` (hex) of the row a write committed,
    #: ``deleted`` (hex object ids, comma-separated) of the rows a delete removed.
    detail: dict[str, str] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)


_current: ContextVar[AuditFacts | None] = ContextVar("blindstore_audit_facts", default=None)


@contextmanager
def collecting() -> Iterator[AuditFacts]:
    """Collect facts for the code run inside (one request)."""
    facts = AuditFacts()
    token = _current.set(facts)
    try:
        yield facts
    finally:
        _current.reset(token)


def note(stored: _Stored) -> None:
    """Note the object row or upload the current request acts on (the last one noted wins)."""
    facts = _current.get()
    if facts is None:
        return
    facts.object_id = stored.object_id
    facts.version = getattr(stored, "etag", None)
    facts.backends = tuple(stored.backends)
    facts.key_name = stored.key_name
    facts.key_version = stored.key_version


def note_deleted(removed: _Stored) -> None:
    """Note an object row the current request deleted (all of them are named in its record)."""
    facts = _current.get()
    if facts is None:
        return
    note(removed)
    facts.deleted.append(removed.object_id.hex())
    facts.detail[DELETED_DETAIL] = ",".join(facts.deleted)


def write_event(stored: _Stored) -> AuditEvent | None:
    """The current request's record for the successful write of ``stored``, to commit with its
    row (then call ``recorded``); None outside an audited request. It carries the row's MAC:
    the version the log vouches for is the one ``audit verify`` expects to find live."""
    facts = _current.get()
    if facts is None or facts.success_event is None:
        return None
    note(stored)
    row_mac = getattr(stored, "row_mac", b"")
    if row_mac:
        facts.detail[ROW_MAC_DETAIL] = row_mac.hex()
    return facts.success_event()


def recorded() -> None:
    """The record ``write_event`` built is committed: the request is on the audit trail."""
    facts = _current.get()
    if facts is not None:
        facts.recorded = True
