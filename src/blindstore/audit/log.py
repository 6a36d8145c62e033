"""The audit sink over the catalog: group commit and signed checkpoints.

Group commit: concurrent requests' events are appended in one catalog transaction. The first
request to find no append in flight leads: it yields once to the event loop (so that requests
already scheduled join), then appends everything queued. Requests arriving while an append is in
flight queue up; when it finishes, the first of them leads the next append with all of them.
So an idle gateway pays one transaction per request and no delay, and a busy one pays one
transaction per in-flight batch. Each caller waits for the commit that holds its event and gets
``ServiceUnavailable`` if it failed: the request then fails (the S3 plane answers 503).

Checkpoints: every ``checkpoint_every`` records or ``checkpoint_seconds`` seconds (whichever
first, and once more at shutdown), a background task signs the chain's current head (whoever
appended it: several gateways share one chain) with the Transit ed25519 key and stores the
checkpoint. Signing never holds up a request; a failed signing is logged and retried.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

import anyio
import anyio.lowlevel
import structlog

from blindstore.audit.chain import AuditRecord, Checkpoint, checkpoint_bytes
from blindstore.audit.events import AuditEvent
from blindstore.background import start_background
from blindstore.catalog.base import Catalog
from blindstore.errors import BlindstoreError, ServiceUnavailable

log = structlog.get_logger("blindstore.audit")


class CheckpointSigner(Protocol):
    """Signs checkpoint bytes with an ed25519 key (Transit ``sign``)."""

    key_name: str

    async def sign(self, message: bytes) -> tuple[str, int]:
        """``vault:vN:<base64 signature>`` and the key version N."""
        ...


@dataclass(eq=False, slots=True)
class _Pending:
    event: AuditEvent
    #: Set when the event is committed or failed, or when this caller must lead the next append.
    wake: anyio.Event = field(default_factory=anyio.Event)
    finished: bool = False
    error: BaseException | None = None


@dataclass(slots=True)
class AuditStats:
    appends: int = 0
    records: int = 0
    failures: int = 0
    checkpoints: int = 0


class CatalogAuditLog:
    """``AuditSink`` over a catalog. Enter it (``async with``) to run checkpoints."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        signer: CheckpointSigner | None = None,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._catalog = catalog
        self._signer = signer
        self._every = checkpoint_every
        self._seconds = checkpoint_seconds
        self._clock = clock
        self._queue: list[_Pending] = []
        self._busy = False
        self._since_checkpoint = 0
        self._checkpoint_due = anyio.Event()
        self._stack: AsyncExitStack | None = None
        self.stats = AuditStats()

    # -- appending ---------------------------------------------------------------------------

    async def append(self, event: AuditEvent) -> None:
        pending = _Pending(event)
        self._queue.append(pending)
        try:
            if self._busy:
                await pending.wake.wait()
            if not pending.finished:
                await self._lead()
        except BaseException:
            self._abandon(pending)
            raise
        if pending.error is not None:
            raise ServiceUnavailable("The audit record could not be written.") from pending.error

    def _abandon(self, pending: _Pending) -> None:
        """A caller cancelled while queued: leave the queue, and pass on the lead if it had it."""
        if pending in self._queue:
            self._queue.remove(pending)
        if pending.wake.is_set() and not pending.finished:
            self._hand_over()

    async def _lead(self) -> None:
        self._busy = True
        with anyio.CancelScope(shield=True):
            # Requests already scheduled join this append.
            await anyio.lowlevel.checkpoint()
            batch, self._queue = self._queue, []
            try:
                records = await self._catalog.append_audit([p.event for p in batch])
            except Exception as exc:
                self.stats.failures += 1
                log.error("audit.append_failed", events=len(batch), error=type(exc).__name__)
                for pending in batch:
                    pending.error = exc
            else:
                self._committed(records)
            finally:
                for pending in batch:
                    pending.finished = True
                    pending.wake.set()
                self._hand_over()

    def _hand_over(self) -> None:
        if self._queue:
            self._queue[0].wake.set()  # the next leader; _busy stays set
        else:
            self._busy = False

    def _committed(self, records: list[AuditRecord]) -> None:
        self.stats.appends += 1
        self.committed_elsewhere(len(records))

    def committed_elsewhere(self, count: int) -> None:
        """Count records committed (here, or with a write's row) towards the next checkpoint."""
        self.stats.records += count
        self._since_checkpoint += count
        if self._since_checkpoint >= self._every:
            self._checkpoint_due.set()

    # -- checkpoints -------------------------------------------------------------------------

    async def __aenter__(self) -> CatalogAuditLog:
        if self._signer is not None:
            self._stack = AsyncExitStack()
            await start_background(self._stack, self._checkpoint_forever)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            # The last records get a checkpoint too: a clean shutdown leaves no unsigned tail.
            with anyio.move_on_after(10, shield=True):
                await self.checkpoint()

    async def _checkpoint_forever(self) -> None:
        while True:
            with anyio.move_on_after(self._seconds):
                await self._checkpoint_due.wait()
            self._checkpoint_due = anyio.Event()
            await self.checkpoint()

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the chain's current head unless a checkpoint already covers it; never raises
        (a failure is logged and the next tick tries again)."""
        if self._signer is None:
            return None
        try:
            head = await self._catalog.audit_head()
            if head is None:
                return None
            seq, digest = head
            existing = await self._catalog.audit_checkpoints()
            if existing and existing[-1].seq >= seq:
                self._since_checkpoint = 0
                return None
            at = round(self._clock(), 3)
            signature, version = await self._signer.sign(checkpoint_bytes(seq, digest, at))
            checkpoint = Checkpoint(seq, digest, at, self._signer.key_name, version, signature)
            await self._catalog.add_audit_checkpoint(checkpoint)
        except BlindstoreError as exc:
            # Retried after another checkpoint_every records or checkpoint_seconds, not at once:
            # an unreachable or refusing Transit must not turn every append into a sign call.
            self._since_checkpoint = 0
            log.warning("audit.checkpoint_failed", error=type(exc).__name__)
            return None
        self._since_checkpoint = 0
        self.stats.checkpoints += 1
        log.info("audit.checkpoint", seq=seq)
        return checkpoint
