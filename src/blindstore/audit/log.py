"""The audit sink over the catalog: group commit and signed checkpoints.

Group commit: concurrent requests' events are appended in one catalog transaction. The first
request to find no append in flight leads: it yields once to the event loop (so that requests
already scheduled join), then appends everything queued. Requests arriving while an append is in
flight queue up; when it finishes, the first of them leads the next append with all of them.
So an idle gateway pays one transaction per request and no delay, and a busy one pays one
transaction per in-flight batch. Each caller waits for the commit that holds its event and gets
``ServiceUnavailable`` if it failed: the request then fails (the S3 plane answers 503).

Checkpoints: every ``checkpoint_every`` records or ``checkpoint_seconds`` seconds (whichever
first, and once more at shutdown), a background task signs the chain's current head with the
Transit ed25519 key and stores the checkpoint, chained to the previous one. It signs only a head
it can vouch for: it re-hashes the segment since the checkpoint it trusts (the last it signed, or
the latest one when it started) and finds again, unchanged, every record it appended itself
(``Witness``). Otherwise it signs a ``discontinuity`` naming the segment instead of endorsing
it. Records appended by other processes (other gateways, CLI jobs) are vouched for by their hash
links only. Signing never holds up a request; a failed signing is logged and retried.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import ClassVar, Protocol

import anyio
import anyio.lowlevel
import structlog

from blindstore.audit.chain import (
    GENESIS,
    AuditRecord,
    Checkpoint,
    canonical_bytes,
    checkpoint_digest,
    checkpoint_message,
    record_hash,
)
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
    discontinuities: int = 0


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
        #: The checkpoint this process trusts (None: the genesis) and what it appended since.
        self._base: Checkpoint | None = None
        self._base_unknown = False
        self._witness = Witness()
        #: Content digests of the last signed segment's records this process did not claim: a
        #: write's record committed just before that checkpoint may be claimed just after it.
        self._recent: Counter[bytes] = Counter()
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
        if self._signer is not None:
            for record in records:
                self._witness.add_record(record)
        self._count(len(records))

    def committed_elsewhere(self, event: AuditEvent) -> None:
        """``event`` was committed with a write's row: it counts towards the next checkpoint,
        whose signer must find it again unchanged."""
        if self._signer is not None:
            self._witness.add_event(event)
        self._count(1)

    def _count(self, count: int) -> None:
        self.stats.records += count
        self._since_checkpoint += count
        if self._since_checkpoint >= self._every:
            self._checkpoint_due.set()

    # -- checkpoints -------------------------------------------------------------------------

    async def __aenter__(self) -> CatalogAuditLog:
        if self._signer is not None:
            # The base this process trusts: the latest checkpoint when it starts (verify checks
            # its signature). Everything after it must be vouched for before it is signed.
            try:
                self._base = await self._catalog.latest_audit_checkpoint()
            except BlindstoreError as exc:
                self._base_unknown = True  # read at the first checkpoint instead
                log.warning("audit.base_unavailable", error=type(exc).__name__)
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
        (a failure is logged and the next tick tries again).

        The head is endorsed (``checkpoint``) only if this process can vouch for the segment
        since its trusted base (``vouch``); otherwise the signed record is a ``discontinuity``
        naming that segment. Either way it chains to the latest stored checkpoint.
        """
        if self._signer is None:
            return None
        # Taken before the head is read: every record in it is at or below that head.
        witness, self._witness = self._witness, Witness()
        try:
            if self._base_unknown:
                self._base = await self._catalog.latest_audit_checkpoint()
                self._base_unknown = False
                # Records appended before that base are its signer's to vouch for, not ours.
                cut = self._base.seq if self._base is not None else 0
                witness = Witness({s: h for s, h in witness.by_seq.items() if s > cut})
            signed = await self._sign_head(witness)
        except BlindstoreError as exc:
            # Retried after another checkpoint_every records or checkpoint_seconds, not at once:
            # an unreachable or refusing Transit must not turn every append into a sign call.
            self._witness = witness.merged(self._witness)
            self._since_checkpoint = 0
            log.warning("audit.checkpoint_failed", error=type(exc).__name__)
            return None
        self._since_checkpoint = 0
        if signed is None:
            self._witness = witness.merged(self._witness)
            return None
        self._base = signed
        self.stats.checkpoints += 1
        if signed.kind == "discontinuity":
            self.stats.discontinuities += 1
            log.error("audit.discontinuity", from_seq=signed.from_seq, seq=signed.seq)
        else:
            log.info("audit.checkpoint", seq=signed.seq)
        return signed

    async def _sign_head(self, witness: Witness) -> Checkpoint | None:
        assert self._signer is not None
        head = await self._catalog.audit_head()
        if head is None:
            return None
        seq, digest = head
        base = self._base
        stored = await self._catalog.audit_checkpoints(since_seq=base.seq if base else 0)
        # Chained to the latest stored checkpoint (the catalog only accepts that), even when the
        # one this process trusts is gone: verify then sees the gap.
        latest = stored[-1] if stored else await self._catalog.latest_audit_checkpoint()
        if latest is not None and latest.seq > seq:
            # Only a cut log or a planted checkpoint row does that; no checkpoint can be stored
            # until the log grows past it. Say so at every tick (verify reports it too).
            log.error("audit.checkpoint_beyond_head", checkpoint_seq=latest.seq, head_seq=seq)
        if latest is not None and latest.seq >= seq:
            return None  # already covered (by this gateway or another one)
        problem = _base_problem(base, stored)
        unmatched: Counter[bytes] = Counter()
        if problem is None:
            problem, unmatched = await vouch(
                self._catalog, base, latest, seq, digest, witness, self._recent
            )
        prev_digest = checkpoint_digest(latest) if latest is not None else GENESIS
        unsigned = Checkpoint(
            seq=seq,
            hash=digest,
            time=round(self._clock(), 3),
            key_name=self._signer.key_name,
            key_version=0,
            signature="",
            prev_seq=latest.seq if latest is not None else 0,
            prev_digest=prev_digest,
            kind="checkpoint" if problem is None else "discontinuity",
            from_seq=(base.seq if base else 0) + 1,
        )
        if problem is not None:
            log.error("audit.cannot_vouch", reason=problem, seq=seq)
        signature, version = await self._signer.sign(checkpoint_message(unsigned))
        checkpoint = replace(unsigned, key_version=version, signature=signature)
        if not await self._catalog.add_audit_checkpoint(checkpoint):
            return None  # another gateway's checkpoint landed first: try again next tick
        self._recent = unmatched
        return checkpoint


@dataclass(slots=True)
class Witness:
    """The records this process appended since its trusted base, to find again unchanged
    before it signs: those it appended itself by seq and hash, those committed with a write's
    row (seq unknown) by content digest. Bounded: past ``LIMIT`` it can no longer vouch."""

    LIMIT: ClassVar[int] = 1_000_000

    by_seq: dict[int, bytes] = field(default_factory=dict)
    contents: Counter[bytes] = field(default_factory=Counter)
    overflowed: bool = False

    def add_record(self, record: AuditRecord) -> None:
        if self._room():
            self.by_seq[record.seq] = record.hash

    def add_event(self, event: AuditEvent) -> None:
        if self._room():
            self.contents[content_digest(event)] += 1

    def merged(self, later: Witness) -> Witness:
        self.by_seq.update(later.by_seq)
        self.contents.update(later.contents)
        self.overflowed |= later.overflowed
        return self

    def _room(self) -> bool:
        # len(), not Counter.total() (a scan): contents are distinct (unique request ids).
        if len(self.by_seq) + len(self.contents) >= self.LIMIT:
            self.overflowed = True
        return not self.overflowed


def content_digest(event: AuditEvent) -> bytes:
    """A record's content without its place in the chain (for records whose seq is unknown)."""
    return hashlib.sha256(canonical_bytes(0, event)).digest()


def _base_problem(base: Checkpoint | None, stored: list[Checkpoint]) -> str | None:
    """Why the checkpoint this process trusts is no longer what it signed or saw, or None."""
    if base is None:
        return None
    if not stored or stored[0].seq != base.seq:
        return f"the checkpoint at seq {base.seq} is gone from the catalog"
    if checkpoint_digest(stored[0]) != checkpoint_digest(base):
        return f"the checkpoint at seq {base.seq} was replaced"
    return None


async def vouch(
    catalog: Catalog,
    base: Checkpoint | None,
    latest: Checkpoint | None,
    seq: int,
    digest: bytes,
    witness: Witness,
    recent: Counter[bytes],
) -> tuple[str | None, Counter[bytes]]:
    """None if the chain from ``base`` (or the genesis) to the head ``seq``/``digest`` is
    intact and holds every record of ``witness`` unchanged (a record whose seq is unknown may
    also be among ``recent``, the previous segment's unclaimed records); else why it cannot be
    vouched for. Also returns the content digests of the segment's unclaimed records.

    Re-hashes every record of the segment and checks every link and seq: a record rewritten
    with its hash recomputed, a deletion or an insertion that does not also recompute every
    later hash is seen; one that does is seen when it touches a record this process wrote.
    """
    start = base.seq if base is not None else 0
    expected = base.hash if base is not None else GENESIS
    # A record claimed just after the checkpoint that covers it (its append returned after that
    # checkpoint read the head) is pinned by that checkpoint already.
    by_seq = {s: h for s, h in witness.by_seq.items() if s > start}
    contents = Counter(witness.contents)
    unclaimed: Counter[bytes] = Counter()
    after = start - 1 if start > 0 else 0
    at = start
    while at < seq:
        page = await catalog.audit_records(after_seq=after, limit=_VOUCH_PAGE)
        if not page:
            return f"the log ends at seq {at}, before its head at seq {seq}", unclaimed
        for record in page:
            if record.seq == start and start > 0:
                if record.hash != expected:
                    return f"the record at seq {start} no longer matches its checkpoint", unclaimed
                continue
            if record.seq > seq:
                break
            if record.seq != at + 1:
                return f"seq {at + 1} is missing or out of order", unclaimed
            if record.prev_hash != expected:
                return f"seq {record.seq} does not link to seq {at}", unclaimed
            if record_hash(record.prev_hash, record.seq, record.event) != record.hash:
                return f"seq {record.seq} does not match its hash", unclaimed
            mine = by_seq.pop(record.seq, None)
            if mine is not None and mine != record.hash:
                return f"seq {record.seq}, appended by this gateway, was changed", unclaimed
            if mine is None:
                content = content_digest(record.event)
                if contents[content] > 0:
                    contents[content] -= 1
                else:
                    unclaimed[content] += 1
            if latest is not None and record.seq == latest.seq and record.hash != latest.hash:
                return (
                    f"the latest checkpoint (seq {latest.seq}) does not match the chain",
                    unclaimed,
                )
            expected = record.hash
            at = record.seq
        after = page[-1].seq
    if at != seq or expected != digest:
        return f"the head at seq {seq} is not the end of the chain", unclaimed
    if by_seq or +(contents - recent):
        return "records this gateway wrote are missing or changed", unclaimed
    if witness.overflowed:
        return "too many records since the last checkpoint to vouch for each one", unclaimed
    return None, unclaimed


#: Records read per page when re-verifying a segment before signing.
_VOUCH_PAGE = 1000
