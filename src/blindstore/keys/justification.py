"""Key-access justification: every Transit call says why it is made, in OpenBao's audit log.

The S3 plane (and each CLI or admin job) states who asks for a key operation and for what:
``tenant=demo principal=BSX... op=GetObject request=<x-amz-request-id>``. The Transit client sends
the justifications in effect as the ``X-Blindstore-Justification`` request header, which OpenBao
records in clear once ``sys/config/auditing/request-headers/x-blindstore-justification
hmac=false`` is configured (``deploy/openbao/provision.sh``). An auditor can then tie each unwrap
in the key service's log to an S3 request in the gateway's log, and to the tenant and access key
behind it, without trusting the gateway's own log alone.

The justification travels in a ``ContextVar``: set once per request (``justified``), read where
the call is made. Work that serves several requests carries all of them: the unwrap micro-batcher
sends the union of its members' justifications, and a DEK pool refill carries the request that
triggered it, marked ``(pool refill)``.

The header holds no secret and no health data: no object key, bucket name or key material. It is
ASCII only (other characters become ``_``), each field is capped, and the whole header is capped
with a ``(+N more)`` tail, so a huge batch cannot make an oversized request.
"""

from __future__ import annotations

import contextvars
import getpass
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

#: The request header; OpenBao matches audited header names case-insensitively.
HEADER = "X-Blindstore-Justification"
#: Cap of the whole header value: far below any server's header limit, room for ~20 requests.
MAX_HEADER_CHARS = 2048
_FIELD_CHARS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._:@/+-]")


def _clean(value: str) -> str:
    """One field: ASCII without separators (no space, ``,`` or ``=``), at most 64 characters."""
    return _UNSAFE.sub("_", value[:_FIELD_CHARS]) or "-"


@dataclass(frozen=True, slots=True)
class Justification:
    """Why a key operation happens: who (tenant, principal) and for what (op, request)."""

    tenant: str
    principal: str
    op: str
    request: str = ""
    #: Work done ahead for this request (a DEK pool refill), not the request's own key.
    refill: bool = False

    def render(self) -> str:
        text = (
            f"tenant={_clean(self.tenant)} principal={_clean(self.principal)} op={_clean(self.op)}"
        )
        if self.request:
            text += f" request={_clean(self.request)}"
        return text + " (pool refill)" if self.refill else text

    def as_refill(self) -> Justification:
        return replace(self, refill=True)


_current: contextvars.ContextVar[tuple[Justification, ...]] = contextvars.ContextVar(
    "blindstore_justification", default=()
)


def current() -> tuple[Justification, ...]:
    """The justifications in effect here (empty outside any ``justified`` block)."""
    return _current.get()


def union(groups: Iterable[Iterable[Justification]]) -> tuple[Justification, ...]:
    """Every justification of ``groups`` once, in first-seen order."""
    return tuple(dict.fromkeys(j for group in groups for j in group))


@contextmanager
def justified(*justifications: Justification) -> Iterator[None]:
    """Key operations in this block (and in tasks it starts) carry ``justifications``."""
    token = _current.set(union([justifications]))
    try:
        yield
    finally:
        _current.reset(token)


def enter(justification: Justification) -> contextvars.Token[tuple[Justification, ...]]:
    """Like ``justified`` for code that cannot nest a block; undo with ``leave(token)``."""
    return _current.set((justification,))


def leave(token: contextvars.Token[tuple[Justification, ...]]) -> None:
    _current.reset(token)


def job(op: str, *, tenant: str = "*") -> Justification:
    """The justification of an operator job (CLI, maintenance): the OS user is the principal."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        user = f"uid{os.getuid()}"
    return Justification(tenant=tenant, principal=f"os:{user}", op=op)


def header_value(justifications: tuple[Justification, ...]) -> str | None:
    """The header for these justifications, or ``None`` when there are none."""
    if not justifications:
        return None
    parts: list[str] = []
    used = 0
    for index, justification in enumerate(justifications):
        text = justification.render()
        # Room is kept for the tail that says how many were left out.
        tail = len(f", (+{len(justifications) - index} more)")
        if used + len(text) + 2 + tail > MAX_HEADER_CHARS and parts:
            parts.append(f"(+{len(justifications) - index} more)")
            break
        parts.append(text)
        used += len(text) + 2
    return ", ".join(parts)
