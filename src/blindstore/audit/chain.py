"""The audit hash chain and its signed checkpoints (pure: no I/O).

Each record's ``hash`` is ``SHA-256(prev_hash || canonical_bytes(record))``; the first record's
``prev_hash`` is 32 zero bytes. ``canonical_bytes`` covers every field, ``seq`` and ``time``
included, in a fixed order, as a JSON array (unambiguous: every value is typed and delimited).
A checkpoint is the hash at some ``seq``, signed (ed25519, by an OpenBao Transit key) over
``checkpoint_message``; a chained (v2) checkpoint also covers the previous checkpoint's digest, so
that deleting, replacing or inserting a checkpoint breaks the checkpoint chain, and says whether
its signer could vouch for the records since its last trusted checkpoint (``checkpoint``) or not
(``discontinuity``). The byte-level formats are documented in docs/audit.md.

``verify`` walks records in the order given (the catalog returns them by ``seq``) and says
which record is wrong and how. What it can and cannot prove: any edit, deletion, insertion or
reordering *before the last signed checkpoint* is detected, even by someone who recomputes
every hash, because the checkpoint's signature pins the chain up to it. A tail rewritten
before the next checkpoint is not endorsed by it when the signer notices (a broken link, or a
record it appended itself changed or gone): the checkpoint is then a signed ``discontinuity``,
reported here. Records after the last checkpoint can still be cut off undetectably: checkpoint
often (``audit.checkpoint_every``/``checkpoint_seconds``) and export the log off-site.
Signatures are checked with the pinned signing key (``SigningKey``), never a key named by the
checkpoint row itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from blindstore.audit.events import AuditEvent

RECORD_FORMAT = "blindstore-audit/v1"
CHECKPOINT_FORMAT = "blindstore-audit-checkpoint/v1"
CHAINED_CHECKPOINT_FORMAT = "blindstore-audit-checkpoint/v2"
GENESIS = bytes(32)

CheckpointKind = Literal["checkpoint", "discontinuity"]

ProblemKind = Literal[
    "edited",
    "deleted",
    "inserted",
    "reordered",
    "renumbered",
    "broken",
    "checkpoint-signature",
    "checkpoint-mismatch",
    "checkpoint-missing-record",
    "checkpoint-key",
    "checkpoint-chain",
    "discontinuity",
]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An ``AuditEvent`` as stored: its place in the chain and the hashes that bind it."""

    seq: int
    event: AuditEvent
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain's hash at ``seq``, signed by a Transit ed25519 key."""

    seq: int
    hash: bytes
    time: float
    key_name: str
    key_version: int
    #: ``vault:vN:<base64 of the 64-byte signature>`` over ``checkpoint_message``.
    signature: str
    #: Chained (v2) checkpoints: the previous checkpoint's seq and ``checkpoint_digest`` (0 and
    #: ``GENESIS`` for the first one). None for the unchained v1 checkpoints of older releases.
    prev_seq: int | None = None
    prev_digest: bytes | None = None
    #: ``discontinuity``: the signer could not vouch for records ``from_seq..seq`` (it signs
    #: that fact, not an endorsement of them).
    kind: CheckpointKind = "checkpoint"
    #: The first seq of the segment this checkpoint speaks for (v2 only).
    from_seq: int | None = None

    @property
    def chained(self) -> bool:
        return self.prev_digest is not None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The pinned checkpoint key: its configured name and its public keys by version (raw
    ed25519). A checkpoint naming another key is refused, whatever its signature."""

    name: str
    public_keys: Mapping[int, bytes]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the log: which record (``seq``) and what."""

    seq: int
    kind: ProblemKind
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"seq": self.seq, "kind": self.kind, "message": self.message}


def canonical_bytes(seq: int, event: AuditEvent) -> bytes:
    """The bytes a record's hash covers: every field, in a fixed order (docs/audit.md)."""
    values: list[object] = [
        RECORD_FORMAT,
        seq,
        event.time,
        event.request_id,
        event.principal,
        event.tenant_id.hex() if event.tenant_id is not None else None,
        event.operation,
        event.bucket,
        event.key,
        event.object_id.hex() if event.object_id is not None else None,
        event.version,
        list(event.backends),
        event.key_name,
        event.key_version,
        event.result,
        event.bytes,
        event.source,
        dict(event.detail),
    ]
    return _json(values)


def record_hash(prev_hash: bytes, seq: int, event: AuditEvent) -> bytes:
    return hashlib.sha256(prev_hash + canonical_bytes(seq, event)).digest()


def chain(
    events: Iterable[AuditEvent], *, after_seq: int = 0, prev_hash: bytes = GENESIS
) -> list[AuditRecord]:
    """Records for ``events``, continuing a chain whose last record is ``after_seq``/``prev_hash``
    (``0``/``GENESIS`` for an empty log)."""
    records = []
    seq = after_seq
    for event in events:
        seq += 1
        digest = record_hash(prev_hash, seq, event)
        records.append(AuditRecord(seq, event, prev_hash, digest))
        prev_hash = digest
    return records


def checkpoint_bytes(seq: int, digest: bytes, time: float) -> bytes:
    """The bytes an unchained (v1) checkpoint's signature covers (docs/audit.md)."""
    return _json([CHECKPOINT_FORMAT, seq, digest.hex(), time])


def checkpoint_message(cp: Checkpoint) -> bytes:
    """The bytes ``cp``'s signature covers: v1 as ``checkpoint_bytes``; v2 adds its kind, the
    segment it speaks for and the previous checkpoint's seq and digest (docs/audit.md)."""
    if cp.prev_digest is None:
        return checkpoint_bytes(cp.seq, cp.hash, cp.time)
    return _json(
        [
            CHAINED_CHECKPOINT_FORMAT,
            cp.kind,
            cp.seq,
            cp.hash.hex(),
            cp.time,
            cp.from_seq,
            cp.prev_seq,
            cp.prev_digest.hex(),
        ]
    )


def checkpoint_digest(cp: Checkpoint) -> bytes:
    """What the next checkpoint chains to: SHA-256 of the signed bytes and the signature."""
    return hashlib.sha256(checkpoint_message(cp) + cp.signature.encode("ascii", "replace")).digest()


def encode_detail(detail: Mapping[str, object]) -> str:
    """The stored form of an event's ``detail`` (the catalog's JSON text)."""
    return _json(dict(detail)).decode("ascii")


def _json(value: object) -> bytes:
    # ASCII-only output: non-ASCII and even lone surrogates become \\u escapes, so the bytes do
    # not depend on an encoder's error handling.
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


# ---------------------------------------------------------------------------- verification


def verify(
    records: Iterable[AuditRecord], checkpoints: Sequence[Checkpoint], key: SigningKey
) -> list[Problem]:
    """Every problem found, in log order; empty when the chain is intact.

    ``records`` in ``seq`` order (as the catalog returns them; streaming is fine), ``key``: the
    pinned signing key (from configuration, never from the checkpoint rows).
    """
    walker = ChainWalker(checkpoints, key)
    for record in records:
        walker.feed(record)
    return walker.finish()


class ChainWalker:
    """``verify`` one record at a time, for logs too large to hold in memory.

    Each record is checked three ways: its own hash (``edited``, or ``reordered``/``renumbered``
    when it hashes correctly under another seq), its place in the sequence (a gap is
    ``deleted`` unless the missing seq turns up later: ``reordered``; a repeated seq is
    ``inserted``), and its link to the record before it (a record the next one links past was
    ``inserted``; any other mismatch is ``broken``). Only a few recent hashes are kept.
    """

    #: Shifts tried when a record's hash fails: "it was written as seq ± d".
    _SHIFTS = (-1, 1, -2, 2, -3, 3)
    _WINDOW = 4096

    def __init__(self, checkpoints: Sequence[Checkpoint], key: SigningKey) -> None:
        self.problems: list[Problem] = []
        self.count = 0
        self.last_seq = 0
        #: The highest checkpoint whose signature verified and whose hash matched the chain.
        self.last_signed_seq = 0
        self._checkpoints = {cp.seq: cp for cp in checkpoints}
        self._bad_signatures: set[int] = set()
        for cp in checkpoints:
            problem = _check_signature(cp, key)
            if problem is not None:
                self._bad_signatures.add(cp.seq)
                self.problems.append(problem)
        self.problems.extend(_check_checkpoint_chain(checkpoints))
        self._seen_checkpoints: set[int] = set()
        self._expected = 1
        #: Stored hashes of recent records by seq (0: the genesis value).
        self._hashes: dict[int, bytes] = {0: GENESIS}
        self._flagged: set[int] = set()
        #: Seq ranges skipped so far, [low, high]; a late arrival means reordered.
        self._missing: list[list[int]] = []
        #: A run of consecutive records hashed under seq + shift: [first, last, shift].
        self._run: list[int] | None = None

    def feed(self, record: AuditRecord) -> None:
        self.count += 1
        seq = record.seq
        if record_hash(record.prev_hash, seq, record.event) != record.hash:
            shift = next(
                (
                    d
                    for d in self._SHIFTS
                    if seq + d > 0
                    and record_hash(record.prev_hash, seq + d, record.event) == record.hash
                ),
                None,
            )
            if shift is None:
                self._add(seq, "edited", "the record's content does not match its hash")
            else:
                self._moved(seq, shift)
        in_order = seq == self._expected
        duplicate = False
        if seq > self._expected:
            self._missing.append([self._expected, seq - 1])
        elif seq < self._expected:
            if self._take_missing(seq):
                self._add(seq, "reordered", f"seq {seq} comes after seq {self.last_seq}")
            else:
                duplicate = True
                self._add(seq, "inserted", f"a second record with seq {seq}")
        linkable = in_order and seq - 1 in self._hashes and seq - 1 not in self._flagged
        if linkable and record.prev_hash != self._hashes[seq - 1]:
            if seq >= 2 and self._hashes.get(seq - 2) == record.prev_hash:
                self._add(
                    seq - 1,
                    "inserted",
                    f"seq {seq} links past it to seq {seq - 2}: this record was inserted",
                )
            elif seq not in self._flagged:
                self._add(
                    seq,
                    "broken",
                    f"does not link to seq {seq - 1}: a record before it was rewritten "
                    "(its hash recomputed), inserted or deleted",
                )
        if not duplicate:
            self._hashes[seq] = record.hash
            self._hashes.pop(seq - self._WINDOW, None)
        self.last_seq = max(self.last_seq, seq)
        self._expected = max(self._expected, seq + 1)
        cp = self._checkpoints.get(seq)
        if cp is not None and not duplicate and seq not in self._seen_checkpoints:
            self._seen_checkpoints.add(seq)
            if cp.hash != record.hash:
                self._add(
                    seq,
                    "checkpoint-mismatch",
                    "the signed checkpoint does not match the chain at this record: records "
                    "up to here were changed and their hashes recomputed",
                )
            elif seq not in self._bad_signatures and not any(
                p.kind not in _CHECKPOINT_ONLY for p in self.problems if p.seq <= seq
            ):
                self.last_signed_seq = seq

    def finish(self) -> list[Problem]:
        """The problems, sorted by seq (call once, after the last record)."""
        self._flush_run()
        for low, high in self._missing:
            span = str(low) if low == high else f"{low}..{high}"
            self._add(low, "deleted", f"record(s) {span} are missing from the log")
        for seq in sorted(set(self._checkpoints) - self._seen_checkpoints):
            self._add(
                seq,
                "checkpoint-missing-record",
                f"a signed checkpoint covers seq {seq}, which is not in the log (it ends at "
                f"seq {self.last_seq}): records were deleted",
            )
        self.problems.sort(key=lambda p: p.seq)
        return self.problems

    def _take_missing(self, seq: int) -> bool:
        for i, (low, high) in enumerate(self._missing):
            if low <= seq <= high:
                pieces = [[low, seq - 1], [seq + 1, high]]
                self._missing[i : i + 1] = [p for p in pieces if p[0] <= p[1]]
                return True
        return False

    def _moved(self, seq: int, shift: int) -> None:
        self._flagged.add(seq)
        run = self._run
        if run is not None and run[2] == shift and run[1] == seq - 1:
            run[1] = seq
            return
        self._flush_run()
        self._run = [seq, seq, shift]

    def _flush_run(self) -> None:
        if self._run is None:
            return
        first, last, shift = self._run
        self._run = None
        if first == last:
            self.problems.append(
                Problem(
                    first,
                    "reordered",
                    f"seq {first} holds the record written as seq {first + shift}",
                )
            )
        else:
            self.problems.append(
                Problem(
                    first,
                    "renumbered",
                    f"seq {first}..{last} hold the records written as seq {first + shift}.."
                    f"{last + shift}: records were inserted or deleted before seq {first} and "
                    "the rest renumbered",
                )
            )

    def _add(self, seq: int, kind: ProblemKind, message: str) -> None:
        self._flagged.add(seq)
        self.problems.append(Problem(seq, kind, message))


#: Problems of a checkpoint row alone: they do not stop a later checkpoint from pinning the
#: chain (the records up to it still match a valid signature).
_CHECKPOINT_ONLY = frozenset({"checkpoint-signature", "checkpoint-key", "checkpoint-chain"})

_TRANSIT_SIGNATURE = re.compile(r"vault:v([1-9][0-9]{0,8}):([A-Za-z0-9+/=]+)")


def _check_signature(cp: Checkpoint, key: SigningKey) -> Problem | None:
    def bad(kind: ProblemKind, reason: str) -> Problem:
        return Problem(cp.seq, kind, f"checkpoint at seq {cp.seq}: {reason}")

    if cp.key_name != key.name:
        return bad(
            "checkpoint-key",
            f"it names the signing key {cp.key_name!r}, not the configured {key.name!r}: "
            "the row was altered or forged",
        )
    match = _TRANSIT_SIGNATURE.fullmatch(cp.signature)
    if match is None:
        return bad("checkpoint-signature", "the signature is not of the form vault:vN:<base64>")
    if int(match.group(1)) != cp.key_version:
        return bad(
            "checkpoint-signature", "the signature's key version does not match the checkpoint's"
        )
    public = key.public_keys.get(cp.key_version)
    if public is None:
        return bad("checkpoint-signature", f"no public key for {key.name} version {cp.key_version}")
    try:
        raw = base64.b64decode(match.group(2), validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(raw, checkpoint_message(cp))
    except (binascii.Error, ValueError, InvalidSignature):
        return bad(
            "checkpoint-signature",
            "the signature does not verify: the checkpoint was forged or altered",
        )
    return None


def _check_checkpoint_chain(checkpoints: Sequence[Checkpoint]) -> list[Problem]:
    """Each chained checkpoint must name the checkpoint just before it (by seq and digest);
    report the discontinuities the signers recorded."""
    problems: list[Problem] = []
    previous: Checkpoint | None = None
    chained_seen = False
    for cp in sorted(checkpoints, key=lambda c: c.seq):
        if cp.chained:
            chained_seen = True
            expected = (previous.seq, checkpoint_digest(previous)) if previous else (0, GENESIS)
            if (cp.prev_seq, cp.prev_digest) != expected:
                before = f"seq {previous.seq}" if previous else "none"
                problems.append(
                    Problem(
                        cp.seq,
                        "checkpoint-chain",
                        f"checkpoint at seq {cp.seq} was chained to the checkpoint at seq "
                        f"{cp.prev_seq}, but the checkpoint before it is {before} (or differs "
                        "from the one signed): a checkpoint was deleted, replaced or inserted",
                    )
                )
        elif chained_seen:
            problems.append(
                Problem(
                    cp.seq,
                    "checkpoint-chain",
                    f"checkpoint at seq {cp.seq} is unchained (v1) but follows chained ones: "
                    "it was inserted",
                )
            )
        if cp.kind == "discontinuity":
            start = cp.from_seq if cp.from_seq is not None else cp.seq
            problems.append(
                Problem(
                    start,
                    "discontinuity",
                    f"seq {start}..{cp.seq}: the gateway that signed the checkpoint at seq "
                    f"{cp.seq} could not vouch for these records (a hash link was broken, or a "
                    "record it had written was changed or gone): the log was altered after "
                    "they were written",
                )
            )
        previous = cp
    return problems
