"""Rollback and resurrection: live object rows cross-checked against the write records (pure).

The row MAC proves a row was written by someone holding its DEK, not that it is the *current*
version: an insider who restores an old row and its old blob (a backup, a file copy) rolls the
object back, or resurrects a deleted one, and the MAC still verifies. The audit records pin what
is current: each write (PutObject, CopyObject, CompleteMultipartUpload) records the object id and
row MAC it committed, in the same transaction as the row, and each delete names the object ids
it removed. ``WriteLedger`` is fed the log in seq order and then judges every live row:

- ``resurrected``: a delete record names the row's object id;
- ``rolled-back``: the last write record of the row's bucket/key stored another object id, or
  the same object id with another row MAC;
- ``unrecorded``: no write record at all for the row's bucket/key.

Memory: one entry per bucket/key ever written and one per deleted object id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from blindstore.audit.chain import AuditRecord

#: Operations whose successful record commits an object row (and carries ``row_mac``).
WRITE_OPERATIONS = frozenset({"PutObject", "CopyObject", "CompleteMultipartUpload"})
#: Operations whose successful record names the object ids removed.
DELETE_OPERATIONS = frozenset({"DeleteObject", "DeleteObjects", "retention.DeleteObject"})
#: ``detail`` names: the committed row's MAC (hex), the object ids a delete removed (hex, ``,``).
ROW_MAC_DETAIL = "row_mac"
DELETED_DETAIL = "deleted"

MismatchKind = Literal["rolled-back", "resurrected", "unrecorded"]


@dataclass(frozen=True, slots=True)
class ObjectMark:
    """What identifies a live object row's version: its object id and row MAC."""

    bucket: str
    key: str
    object_id: bytes
    row_mac: bytes


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A live row that is not the version the log says is current. ``seq``: the record that
    contradicts it (0 when there is none: ``unrecorded``)."""

    bucket: str
    key: str
    seq: int
    kind: MismatchKind
    message: str

    def as_dict(self) -> dict[str, object]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "seq": self.seq,
            "kind": self.kind,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class _Write:
    seq: int
    object_id: bytes
    #: None for a record written before write records carried the MAC.
    row_mac: bytes | None


class WriteLedger:
    """The current version of every key according to the log; see the module docstring."""

    def __init__(self) -> None:
        self._writes: dict[tuple[str, str], _Write] = {}
        self._deleted: dict[bytes, int] = {}

    def feed(self, record: AuditRecord) -> None:
        event = record.event
        succeeded = event.result.startswith("2")
        if event.operation in WRITE_OPERATIONS:
            # A failed write's record may name the row it tried to commit: only successes count.
            if not succeeded or event.bucket is None or event.key is None:
                return
            if event.object_id is None:
                return
            self._writes[(event.bucket, event.key)] = _Write(
                record.seq, event.object_id, _hex(event.detail.get(ROW_MAC_DETAIL))
            )
        elif event.operation in DELETE_OPERATIONS:
            for object_id in _deleted_ids(record, succeeded):
                self._deleted.setdefault(object_id, record.seq)

    def check(self, row: ObjectMark) -> Mismatch | None:
        def mismatch(seq: int, kind: MismatchKind, message: str) -> Mismatch:
            return Mismatch(row.bucket, row.key, seq, kind, message)

        deleted_at = self._deleted.get(row.object_id)
        if deleted_at is not None:
            return mismatch(
                deleted_at,
                "resurrected",
                f"object {row.object_id.hex()} was deleted (seq {deleted_at}) but its row is "
                "live again: restored from a copy",
            )
        last = self._writes.get((row.bucket, row.key))
        if last is None:
            return mismatch(
                0,
                "unrecorded",
                f"no write record for this key: its row (object {row.object_id.hex()}) was "
                "inserted outside the gateway, or written before the audit trail existed",
            )
        if last.object_id != row.object_id:
            return mismatch(
                last.seq,
                "rolled-back",
                f"the last write (seq {last.seq}) stored object {last.object_id.hex()}, the row "
                f"holds object {row.object_id.hex()}: an older version was restored",
            )
        if last.row_mac is not None and last.row_mac != row.row_mac:
            return mismatch(
                last.seq,
                "rolled-back",
                f"the row MAC differs from the one the write at seq {last.seq} committed: the "
                "row was replaced",
            )
        return None


def _deleted_ids(record: AuditRecord, succeeded: bool) -> list[bytes]:
    # The list names only rows actually removed: it counts even when the request failed later
    # (a DeleteObjects cut short by a 503 after some deletions).
    listed = record.event.detail.get(DELETED_DETAIL)
    if isinstance(listed, str):
        ids = [_hex(part) for part in listed.split(",") if part]
        return [i for i in ids if i is not None]
    # Retention deletions (and records older than the list) name theirs as their object.
    event = record.event
    if succeeded and event.operation != "DeleteObjects" and event.object_id is not None:
        return [event.object_id]
    return []


def _hex(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None
