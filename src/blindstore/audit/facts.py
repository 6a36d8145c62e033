"""What a request touched, gathered while it runs, for its audit record.

The S3 plane opens a fresh ``AuditFacts`` per request (``collecting``); the gateway notes the
object row or upload it worked on (``note``) without any signature changing: handlers and the
gateway stay unaware of auditing, and code outside a request (CLI jobs, tests) notes nothing.
The facts object is shared by reference, so notes made in child tasks land too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol


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
