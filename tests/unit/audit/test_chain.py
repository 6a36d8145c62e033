"""The audit hash chain: every kind of tampering is detected and located."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from blindstore.audit.chain import (
    GENESIS,
    AuditRecord,
    Checkpoint,
    SigningKey,
    canonical_bytes,
    chain,
    checkpoint_bytes,
    checkpoint_digest,
    checkpoint_message,
    record_hash,
    verify,
)
from blindstore.audit.events import AuditEvent

KEY = Ed25519PrivateKey.generate()
PUBLIC = SigningKey("hgw-audit", {1: KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)})


def event(n: int) -> AuditEvent:
    return AuditEvent(
        time=1_700_000_000.0 + n,
        request_id=f"R{n:04d}",
        principal="AKIDEMO",
        operation="GetObject",
        result="200",
        tenant_id=bytes(16),
        bucket="b",
        key=f"k{n}",
        object_id=hashlib.sha256(str(n).encode()).digest()[:16],
        version="etag",
        backends=("local",),
        key_name="hgw-t-00",
        key_version=1,
        bytes=4096,
        source="127.0.0.1",
    )


def log(n: int = 10) -> list[AuditRecord]:
    return chain(event(i) for i in range(1, n + 1))


def signed(record: AuditRecord, *, time: float = 1.0) -> Checkpoint:
    import base64

    sig = KEY.sign(checkpoint_bytes(record.seq, record.hash, time))
    return Checkpoint(
        record.seq, record.hash, time, "hgw-audit", 1, f"vault:v1:{base64.b64encode(sig).decode()}"
    )


def kinds(problems: list[object]) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in problems]  # type: ignore[attr-defined]


def test_an_untouched_chain_verifies() -> None:
    records = log()
    assert records[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    assert verify(records, [signed(records[6])], PUBLIC) == []


def test_the_hash_covers_prev_hash_and_canonical_bytes() -> None:
    first = log(1)[0]
    expected = hashlib.sha256(GENESIS + canonical_bytes(1, event(1))).digest()
    assert first.hash == expected == record_hash(GENESIS, 1, event(1))


def test_canonical_bytes_cover_every_field() -> None:
    base = event(1)
    changes = {
        "time": 2.0,
        "request_id": "X",
        "principal": "",
        "operation": "PutObject",
        "result": "403 AccessDenied",
        "tenant_id": None,
        "bucket": None,
        "key": "other",
        "object_id": None,
        "version": None,
        "backends": ("a", "b"),
        "key_name": None,
        "key_version": 2,
        "bytes": 0,
        "source": "",
        "detail": {"why": "x"},
    }
    assert set(changes) | {"detail"} >= {f.name for f in dataclasses.fields(AuditEvent)}
    original = canonical_bytes(1, base)
    for name, value in changes.items():
        assert canonical_bytes(1, dataclasses.replace(base, **{name: value})) != original, name
    assert canonical_bytes(2, base) != original


def test_canonical_bytes_are_unambiguous_between_fields() -> None:
    a = dataclasses.replace(event(1), bucket="ab", key="c")
    b = dataclasses.replace(event(1), bucket="a", key="bc")
    assert canonical_bytes(1, a) != canonical_bytes(1, b)


def test_an_edited_field_is_detected_at_its_seq() -> None:
    records = log()
    records[4] = dataclasses.replace(
        records[4], event=dataclasses.replace(records[4].event, principal="someone-else")
    )
    assert kinds(verify(records, [], PUBLIC)) == [(5, "edited")]


def test_a_deleted_record_is_detected() -> None:
    records = log()
    del records[3]
    assert kinds(verify(records, [], PUBLIC)) == [(4, "deleted")]


def test_several_deleted_records_are_one_problem() -> None:
    records = log()
    del records[3:6]
    problems = verify(records, [], PUBLIC)
    assert kinds(problems) == [(4, "deleted")]
    assert "4..6" in problems[0].message


def test_a_forged_record_inserted_with_the_rest_renumbered_is_detected() -> None:
    records = log()
    # The forger links the record to seq 5 and hashes it right (the hash has no secret), then
    # shifts the following records' seq to make room, as a database edit would.
    forged_event = dataclasses.replace(event(99), principal="forger")
    forged = AuditRecord(
        6, forged_event, records[4].hash, record_hash(records[4].hash, 6, forged_event)
    )
    shifted = [dataclasses.replace(r, seq=r.seq + 1) for r in records[5:]]
    tampered = [*records[:5], forged, *shifted]
    assert kinds(verify(tampered, [], PUBLIC)) == [(6, "inserted"), (7, "renumbered")]


def test_a_forged_record_with_a_duplicate_seq_is_detected() -> None:
    records = log()
    forged_event = dataclasses.replace(event(99), principal="forger")
    forged = AuditRecord(
        6, forged_event, records[4].hash, record_hash(records[4].hash, 6, forged_event)
    )
    tampered = [*records[:5], forged, *records[5:]]
    assert kinds(verify(tampered, [], PUBLIC)) == [(6, "inserted")]


def test_swapped_records_are_detected() -> None:
    records = log()
    records[3], records[4] = records[4], records[3]
    assert kinds(verify(records, [], PUBLIC)) == [(4, "reordered")]


def test_swapped_contents_under_fixed_seqs_are_detected() -> None:
    # A database swap: rows 4 and 5 exchange everything but their seq.
    records = log()
    a, b = records[3], records[4]
    records[3] = dataclasses.replace(b, seq=4)
    records[4] = dataclasses.replace(a, seq=5)
    assert kinds(verify(records, [], PUBLIC)) == [(4, "reordered"), (5, "reordered")]


def test_a_rewritten_record_with_its_hash_recomputed_breaks_the_next_link() -> None:
    records = log()
    old = records[4]
    edited = dataclasses.replace(old.event, result="403 AccessDenied")
    records[4] = dataclasses.replace(old, event=edited, hash=record_hash(old.prev_hash, 5, edited))
    assert kinds(verify(records, [], PUBLIC)) == [(6, "broken")]


def test_a_whole_chain_recomputed_after_an_edit_fails_the_signed_checkpoint() -> None:
    records = log()
    checkpoint = signed(records[7])
    events = [r.event for r in records]
    events[2] = dataclasses.replace(events[2], principal="someone-else")
    assert kinds(verify(chain(events), [checkpoint], PUBLIC)) == [(8, "checkpoint-mismatch")]


def test_truncation_through_a_checkpoint_is_detected() -> None:
    records = log()
    problems = verify(records[:6], [signed(records[7])], PUBLIC)
    assert kinds(problems) == [(8, "checkpoint-missing-record")]


def test_truncation_after_the_last_checkpoint_is_not_detectable() -> None:
    # The documented limit: nothing signs the records after the last checkpoint.
    records = log()
    assert verify(records[:9], [signed(records[7])], PUBLIC) == []


def test_a_forged_checkpoint_is_detected() -> None:
    records = log()
    other = Ed25519PrivateKey.generate()
    import base64

    sig = other.sign(checkpoint_bytes(8, records[7].hash, 1.0))
    forged = Checkpoint(
        8, records[7].hash, 1.0, "hgw-audit", 1, f"vault:v1:{base64.b64encode(sig).decode()}"
    )
    assert kinds(verify(records, [forged], PUBLIC)) == [(8, "checkpoint-signature")]


def test_an_altered_checkpoint_is_detected() -> None:
    records = log()
    good = signed(records[7])
    moved = dataclasses.replace(good, seq=9, hash=records[8].hash)
    assert kinds(verify(records, [moved], PUBLIC)) == [(9, "checkpoint-signature")]


def test_a_checkpoint_under_an_unknown_key_is_refused() -> None:
    records = log()
    checkpoint = dataclasses.replace(signed(records[7]), key_version=2)
    assert kinds(verify(records, [checkpoint], PUBLIC)) == [(8, "checkpoint-signature")]


# ---------------------------------------------------------------------------- chained checkpoints


def chained(
    record: AuditRecord,
    previous: Checkpoint | None,
    *,
    kind: Literal["checkpoint", "discontinuity"] = "checkpoint",
    key_name: str = "hgw-audit",
    time: float = 1.0,
) -> Checkpoint:
    import base64

    unsigned = Checkpoint(
        record.seq,
        record.hash,
        time,
        key_name,
        1,
        "",
        prev_seq=previous.seq if previous else 0,
        prev_digest=checkpoint_digest(previous) if previous else GENESIS,
        kind=kind,
        from_seq=(previous.seq if previous else 0) + 1,
    )
    sig = KEY.sign(checkpoint_message(unsigned))
    return dataclasses.replace(unsigned, signature=f"vault:v1:{base64.b64encode(sig).decode()}")


def three_chained(records: list[AuditRecord]) -> list[Checkpoint]:
    first = chained(records[2], None)
    second = chained(records[5], first)
    return [first, second, chained(records[8], second)]


def test_chained_checkpoints_verify() -> None:
    records = log()
    assert verify(records, three_chained(records), PUBLIC) == []


def test_a_chained_checkpoint_may_follow_unchained_ones() -> None:
    records = log()
    old = signed(records[2])
    assert verify(records, [old, chained(records[5], old)], PUBLIC) == []


def test_a_deleted_checkpoint_breaks_the_checkpoint_chain() -> None:
    records = log()
    first, _, third = three_chained(records)
    assert kinds(verify(records, [first, third], PUBLIC)) == [(9, "checkpoint-chain")]


def test_a_deleted_first_checkpoint_breaks_the_checkpoint_chain() -> None:
    records = log()
    _, second, third = three_chained(records)
    assert kinds(verify(records, [second, third], PUBLIC)) == [(6, "checkpoint-chain")]


def test_a_replaced_checkpoint_breaks_the_checkpoint_chain() -> None:
    # Another genuine checkpoint of the same seq (from an older copy, say) has another digest.
    records = log()
    first, _, third = three_chained(records)
    other = chained(records[5], first, time=2.0)
    assert kinds(verify(records, [first, other, third], PUBLIC)) == [(9, "checkpoint-chain")]


def test_an_unchained_checkpoint_after_chained_ones_is_reported() -> None:
    records = log()
    first = chained(records[2], None)
    assert kinds(verify(records, [first, signed(records[5])], PUBLIC)) == [(6, "checkpoint-chain")]


def test_a_checkpoint_row_naming_another_key_fails_even_with_that_keys_valid_signature() -> None:
    # An insider who controls some other Transit key and renames the row to it: the key is
    # pinned by configuration, never taken from the row.
    records = log()
    rogue = chained(records[7], None, key_name="insider-key")
    both = SigningKey("hgw-audit", dict(PUBLIC.public_keys))
    assert kinds(verify(records, [rogue], both)) == [(8, "checkpoint-key")]
    # Verified under its own name it would pass: only the pin refuses it.
    assert verify(records, [rogue], SigningKey("insider-key", dict(PUBLIC.public_keys))) == []


def test_a_signed_discontinuity_is_reported_with_its_range() -> None:
    records = log()
    first = chained(records[2], None)
    gap = chained(records[7], first, kind="discontinuity")
    problems = verify(records, [first, gap], PUBLIC)
    assert kinds(problems) == [(4, "discontinuity")]
    assert "seq 4..8" in problems[0].message


def test_a_discontinuity_cannot_be_turned_into_an_endorsement() -> None:
    records = log()
    gap = chained(records[7], None, kind="discontinuity")
    endorsed = dataclasses.replace(gap, kind="checkpoint")
    assert kinds(verify(records, [endorsed], PUBLIC)) == [(8, "checkpoint-signature")]
