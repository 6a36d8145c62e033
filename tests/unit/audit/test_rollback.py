"""Live rows judged against the write and delete records: rollback, resurrection, planted rows,
and no false alarm for the orders concurrent requests really commit in."""

from __future__ import annotations

import dataclasses

from blindstore.audit.chain import chain
from blindstore.audit.events import AuditEvent
from blindstore.audit.rollback import Mismatch, ObjectMark, WriteLedger

OLD, NEW = b"\x01" * 16, b"\x02" * 16
MAC_OLD, MAC_NEW = b"\xaa" * 32, b"\xbb" * 32


def write(
    object_id: bytes, mac: bytes | None, *, key: str = "k", result: str = "200"
) -> AuditEvent:
    detail: dict[str, str | int | float | bool | None] = {"method": "PUT"}
    if mac is not None:
        detail["row_mac"] = mac.hex()
    return AuditEvent(
        time=1.0,
        request_id="r",
        principal="AK",
        operation="PutObject",
        result=result,
        bucket="b",
        key=key,
        object_id=object_id,
        detail=detail,
    )


def delete(*object_ids: bytes, operation: str = "DeleteObject") -> AuditEvent:
    return AuditEvent(
        time=1.0,
        request_id="r",
        principal="AK",
        operation=operation,
        result="204" if operation == "DeleteObject" else "200",
        bucket="b",
        key="k" if operation == "DeleteObject" else None,
        object_id=object_ids[-1] if object_ids else None,
        detail={"deleted": ",".join(o.hex() for o in object_ids)},
    )


def judge(events: list[AuditEvent], row: ObjectMark) -> Mismatch | None:
    ledger = WriteLedger()
    for record in chain(events):
        ledger.feed(record)
    return ledger.check(row)


def kind_and_seq(found: Mismatch | None) -> tuple[str, int] | None:
    return None if found is None else (found.kind, found.seq)


def test_the_version_last_written_is_current() -> None:
    events = [write(OLD, MAC_OLD), write(NEW, MAC_NEW)]
    assert judge(events, ObjectMark("b", "k", NEW, MAC_NEW)) is None


def test_an_older_version_restored_is_rolled_back() -> None:
    events = [write(OLD, MAC_OLD), write(NEW, MAC_NEW)]
    found = judge(events, ObjectMark("b", "k", OLD, MAC_OLD))
    assert kind_and_seq(found) == ("rolled-back", 2)


def test_a_row_of_the_same_object_with_another_mac_is_rolled_back() -> None:
    found = judge([write(NEW, MAC_NEW)], ObjectMark("b", "k", NEW, MAC_OLD))
    assert kind_and_seq(found) == ("rolled-back", 1)


def test_a_deleted_object_restored_is_resurrected() -> None:
    events = [write(OLD, MAC_OLD), delete(OLD)]
    assert kind_and_seq(judge(events, ObjectMark("b", "k", OLD, MAC_OLD))) == ("resurrected", 2)


def test_every_object_of_a_multi_delete_is_named() -> None:
    events = [
        write(OLD, MAC_OLD, key="a"),
        write(NEW, MAC_NEW),
        delete(OLD, NEW, operation="DeleteObjects"),
    ]
    assert kind_and_seq(judge(events, ObjectMark("b", "a", OLD, MAC_OLD))) == ("resurrected", 3)
    assert kind_and_seq(judge(events, ObjectMark("b", "k", NEW, MAC_NEW))) == ("resurrected", 3)


def test_a_row_without_any_write_record_is_unrecorded() -> None:
    found = judge([write(OLD, MAC_OLD, key="other")], ObjectMark("b", "k", NEW, MAC_NEW))
    assert kind_and_seq(found) == ("unrecorded", 0)


def test_a_failed_write_does_not_count() -> None:
    events = [write(OLD, MAC_OLD), write(NEW, MAC_NEW, result="412 PreconditionFailed")]
    assert judge(events, ObjectMark("b", "k", OLD, MAC_OLD)) is None


def test_a_delete_recorded_after_a_newer_write_it_raced_with_is_no_alarm() -> None:
    # DELETE removed OLD and committed, PUT then committed NEW with its record, and only then was
    # the DELETE's record appended (deletes are recorded after their change commits).
    events = [write(OLD, MAC_OLD), write(NEW, MAC_NEW), delete(OLD)]
    assert judge(events, ObjectMark("b", "k", NEW, MAC_NEW)) is None


def test_a_write_recorded_before_row_macs_were_recorded_is_checked_by_object_id() -> None:
    events = [write(OLD, None), write(NEW, None)]
    assert judge(events, ObjectMark("b", "k", NEW, MAC_NEW)) is None
    assert kind_and_seq(judge(events, ObjectMark("b", "k", OLD, MAC_OLD))) == ("rolled-back", 2)


def test_objects_removed_by_a_multi_delete_that_failed_later_are_still_deleted() -> None:
    cut_short = dataclasses.replace(
        delete(OLD, operation="DeleteObjects"), result="503 ServiceUnavailable"
    )
    events = [write(OLD, MAC_OLD), cut_short]
    assert kind_and_seq(judge(events, ObjectMark("b", "k", OLD, MAC_OLD))) == ("resurrected", 2)
