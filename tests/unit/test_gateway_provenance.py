"""Provenance through the gateway (in process): stored and MACed, carried by multipart and copy,
required by the policy before anything is stored; retention enforcement."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import anyio
import pytest

from blindstore import crypto, provision
from blindstore.audit.events import AuditEvent
from blindstore.backends.memory import MemoryBackend
from blindstore.catalog.base import ObjectRecord
from blindstore.catalog.sql import SqlCatalog
from blindstore.errors import IntegrityError, InvalidRequest, ServiceUnavailable
from blindstore.gateway import Gateway, Principal, WriteMeta, _canonical_row
from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.maintenance import delete_due_blobs
from blindstore.policy import ObjectFacts, Placement, decide, parse
from blindstore.provenance import Provenance, parse_retention
from blindstore.retention import enforce_retention
from blindstore.s3.checksums import BodyVerifier
from blindstore.s3.conditions import Conditions
from blindstore.server.wire import VerifiedBody

POLICY = parse(
    """\
version: 1
backends:
  home: {kind: memory, provider: Op, jurisdiction: EEA}
  away: {kind: memory, provider: Cloud, jurisdiction: EEA}
rules:
  - name: identifying
    match: {classification: identifying}
    targets: [home, away]
    require: [consent_ref, legal_basis]
  - name: everything-else
    targets: home
""",
    "test-policy.yaml",
)
CONSENT = Provenance({"consent_ref": "c-42", "legal_basis": "gdpr-9-2-h"})
IDENTIFYING = {"classification": "identifying"}
Y2030 = parse_retention("2030-01-01")
Y2040 = parse_retention("2040-01-01")


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.broken = False

    async def append(self, event: AuditEvent) -> None:
        if self.broken:
            raise ServiceUnavailable()
        self.events.append(event)

    def committed_elsewhere(self, event: AuditEvent) -> None:
        """Nothing to count: this sink signs no checkpoints."""


class World:
    def __init__(self) -> None:
        self.stores = {name: MemoryBackend(name) for name in ("home", "away")}
        # Blobs of deleted rows are due for deletion at once (no reads run concurrently here).
        self.catalog = SqlCatalog("sqlite://", delete_delay=0.0)
        self.keys = InMemoryKeyWrapper()

        def place(facts: ObjectFacts) -> Placement:
            return decide(POLICY, facts)

        self.gateway = Gateway(
            self.catalog, self.keys, self.stores, default_backend="home", placement=place
        )
        self.sink = RecordingSink()
        self.gateway.audit = self.sink
        self.principal: Principal | None = None

    async def setup(self) -> None:
        made = await provision.create_tenant(self.catalog, self.keys, "t")
        self.principal = Principal(made.access_key_id, made.tenant)
        await self.gateway.create_bucket(self.principal, "b", "us-east-1")

    @property
    def who(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def blobs(self) -> int:
        return sum(len(store._blobs) for store in self.stores.values())

    def put(self, key: str, data: bytes = b"health data", **meta: object) -> ObjectRecord:
        async def go() -> ObjectRecord:
            return await self.gateway.put_object(
                self.who,
                "b",
                key,
                _once(data),
                _check(),
                WriteMeta(**meta),  # type: ignore[arg-type]
            )

        return anyio.run(go)

    def get(self, key: str) -> bytes:
        async def go() -> bytes:
            read = await self.gateway.get_object(self.who, "b", key)
            return b"".join([chunk async for chunk in read.body])

        return anyio.run(go)

    def row(self, key: str) -> ObjectRecord | None:
        return anyio.run(self.catalog.get_object, "b", key)


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    anyio.run(w.setup)
    yield w
    anyio.run(w.gateway.close)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _check() -> VerifiedBody:
    return VerifiedBody(BodyVerifier())


# ---------------------------------------------------------------------------- the row MAC


def test_a_row_without_provenance_is_maced_as_before_revision_0005(world: World) -> None:
    """The canonical row as revision 0004 built it, written out independently, still verifies."""
    record = world.put("plain")
    before_0005 = {
        "bucket": record.bucket,
        "key": record.key,
        "tenant": record.tenant_id.hex(),
        "object": record.object_id.hex(),
        "container": record.container,
        "parts": [[p.part_number, p.blob, p.size, p.stored_size, p.etag] for p in record.parts],
        "size": record.size,
        "etag": record.etag,
        "last_modified": record.last_modified,
        "headers": record.headers,
        "meta": record.user_metadata,
        "checksums": record.checksums,
        "key_name": record.key_name,
    }
    canonical = json.dumps(
        before_0005, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert _canonical_row(record) == canonical
    dek = anyio.run(
        world.keys.unwrap, record.key_name, record.tenant_id, record.object_id, record.wrapped_dek
    )
    assert crypto.row_mac(dek, record.object_id, canonical) == record.row_mac
    assert world.get("plain") == b"health data"


def test_provenance_and_retention_are_stored_and_covered_by_the_row_mac(world: World) -> None:
    given = Provenance({"origin_system": "PACS", "consent_ref": "c-1"}, retention_until=Y2040)
    world.put("k", provenance=given)
    stored = world.row("k")
    assert stored is not None
    assert stored.provenance == {"origin_system": "PACS", "consent_ref": "c-1"}
    assert stored.retention_until == Y2040
    doc = json.loads(_canonical_row(stored))
    assert doc["provenance"] == stored.provenance
    assert doc["retention_until"] == Y2040
    assert world.get("k") == b"health data"


@pytest.mark.parametrize(
    "tamper",
    [
        {"provenance": {"origin_system": "PACS", "consent_ref": "forged"}},
        {"provenance": {"origin_system": "PACS"}},
        {"retention_until": Y2030},
        {"retention_until": None},
    ],
)
def test_edited_provenance_in_the_catalog_is_detected(
    world: World, tamper: dict[str, object]
) -> None:
    given = Provenance({"origin_system": "PACS", "consent_ref": "c-1"}, retention_until=Y2040)
    record = world.put("k", provenance=given)
    anyio.run(world.catalog.put_object, replace(record, **tamper))  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        world.get("k")


def test_provenance_added_to_a_row_that_had_none_is_detected(world: World) -> None:
    record = world.put("k")
    anyio.run(world.catalog.put_object, replace(record, retention_until=Y2030))
    with pytest.raises(IntegrityError):
        world.get("k")


# ---------------------------------------------------------------------------- requirements


def test_a_put_without_required_provenance_is_refused_and_stores_nothing(world: World) -> None:
    with pytest.raises(InvalidRequest) as caught:
        world.put("scan", user_metadata=IDENTIFYING, provenance=Provenance({"legal_basis": "x"}))
    assert "x-blindstore-consent-ref" in caught.value.message
    assert "'identifying'" in caught.value.message
    assert world.blobs() == 0
    assert world.row("scan") is None


def test_a_put_with_the_required_provenance_is_stored(world: World) -> None:
    record = world.put("scan", user_metadata=IDENTIFYING, provenance=CONSENT)
    assert record.backends == ("home", "away")
    assert world.get("scan") == b"health data"


def test_objects_of_rules_without_requirement_need_no_provenance(world: World) -> None:
    world.put("note")
    assert world.get("note") == b"health data"


def test_a_multipart_upload_without_required_provenance_is_refused(world: World) -> None:
    async def go() -> None:
        await world.gateway.create_upload(
            world.who, "b", "big", WriteMeta(user_metadata=IDENTIFYING)
        )

    with pytest.raises(InvalidRequest):
        anyio.run(go)
    page = anyio.run(
        lambda: world.gateway.list_uploads(
            world.who, "b", prefix="", key_marker="", upload_id_marker="", max_uploads=10
        )
    )
    assert page.uploads == []


def test_a_multipart_upload_carries_provenance_to_the_object(world: World) -> None:
    given = replace(CONSENT, retention_until=Y2040)

    async def go() -> ObjectRecord:
        meta = WriteMeta(user_metadata=IDENTIFYING, provenance=given)
        upload = await world.gateway.create_upload(world.who, "b", "big", meta)
        assert (upload.provenance, upload.retention_until) == (dict(given.fields), Y2040)
        part = await world.gateway.upload_part(
            world.who, "b", "big", upload.upload_id, 1, _once(b"part one"), _check()
        )
        return await world.gateway.complete_upload(
            world.who, "b", "big", upload.upload_id, [(1, part.etag)]
        )

    record = anyio.run(go)
    assert record.provenance == dict(CONSENT.fields)
    assert record.retention_until == Y2040
    assert world.get("big") == b"part one"


def _copy(world: World, dst: str, meta: WriteMeta | None) -> ObjectRecord:
    async def go() -> ObjectRecord:
        return await world.gateway.copy_object(
            world.who, "b", "src", "b", dst, _check(),
            source_conditions=Conditions(), meta=meta, tags=None,
        )  # fmt: skip

    return anyio.run(go)


def test_a_copy_keeps_the_source_provenance_unless_it_replaces_metadata(world: World) -> None:
    source = replace(CONSENT, retention_until=Y2040)
    world.put("src", user_metadata=IDENTIFYING, provenance=source)

    kept = _copy(world, "kept", None)
    assert (kept.provenance, kept.retention_until) == (dict(CONSENT.fields), Y2040)
    replaced = _copy(world, "replaced", WriteMeta(provenance=Provenance({"origin_system": "R"})))
    assert (replaced.provenance, replaced.retention_until) == ({"origin_system": "R"}, None)
    assert world.get("kept") == world.get("replaced") == b"health data"


def test_a_copy_to_a_requiring_rule_without_provenance_is_refused(world: World) -> None:
    world.put("src")
    before = world.blobs()
    with pytest.raises(InvalidRequest):
        _copy(world, "dst", WriteMeta(user_metadata=IDENTIFYING))
    assert world.blobs() == before
    assert world.row("dst") is None


# ---------------------------------------------------------------------------- retention


def _enforce(world: World, now: float, **kw: object) -> list[tuple[str, str]]:
    async def go() -> list[tuple[str, str]]:
        report = await enforce_retention(world.gateway, now=now, principal="os:dpo", **kw)  # type: ignore[arg-type]
        return [(found.key, found.action) for found in report.objects]

    return anyio.run(go)


def _seed(world: World) -> dict[str, ObjectRecord]:
    return {
        "expired-2030": world.put("expired-2030", provenance=Provenance(retention_until=Y2030)),
        "expired-early": world.put("expired-early", provenance=Provenance(retention_until=1e9)),
        "kept-2040": world.put("kept-2040", provenance=Provenance(retention_until=Y2040)),
        "forever": world.put("forever"),
    }


def test_a_dry_run_lists_only_expired_objects_and_deletes_nothing(world: World) -> None:
    _seed(world)
    blobs = world.blobs()
    found = _enforce(world, parse_retention("2035-06-01"), dry_run=True)
    assert found == [("expired-early", "expired"), ("expired-2030", "expired")]
    assert world.blobs() == blobs
    assert world.sink.events == []


def test_enforcement_deletes_only_expired_objects_with_their_blobs(world: World) -> None:
    records = _seed(world)
    found = _enforce(world, parse_retention("2035-06-01"))
    assert found == [("expired-early", "deleted"), ("expired-2030", "deleted")]
    assert world.row("expired-2030") is None
    assert world.row("expired-early") is None
    # The blobs go with the deferred deletion of the removed rows (reads may still stream them).
    assert world.blobs() == len(records)
    anyio.run(lambda: delete_due_blobs(world.gateway, retry_seconds=1.0, failed_retry_seconds=1.0))
    home = world.stores["home"]._blobs
    for key, record in records.items():
        present = (record.container, record.parts[0].blob) in home
        assert present == (key in ("kept-2040", "forever"))
    assert world.get("kept-2040") == world.get("forever") == b"health data"


def test_an_object_is_not_deleted_at_or_before_its_retention_date(world: World) -> None:
    world.put("k", provenance=Provenance(retention_until=Y2030))
    assert _enforce(world, Y2030) == []
    assert _enforce(world, Y2030 - 1) == []
    assert world.row("k") is not None
    assert _enforce(world, Y2030 + 0.001) == [("k", "deleted")]


def test_each_deletion_is_audited(world: World) -> None:
    record = world.put("old", provenance=Provenance(retention_until=Y2030))
    _enforce(world, Y2040)
    [event] = world.sink.events
    assert event.operation == "retention.DeleteObject"
    assert event.principal == "os:dpo"
    assert event.result == "204"
    assert (event.bucket, event.key, event.object_id) == ("b", "old", record.object_id)
    assert (event.tenant_id, event.version) == (record.tenant_id, record.etag)
    assert event.backends == ("home",)
    assert event.detail["retention_until"] == "2030-01-01T00:00:00Z"


def test_a_failing_audit_write_stops_the_run(world: World) -> None:
    world.put("a", provenance=Provenance(retention_until=Y2030))
    world.put("b", provenance=Provenance(retention_until=Y2030))
    world.sink.broken = True
    with pytest.raises(ServiceUnavailable):
        _enforce(world, Y2040)
    remaining = [key for key in ("a", "b") if world.row(key) is not None]
    assert len(remaining) == 1


def test_enforcement_pages_through_many_objects(world: World) -> None:
    for index in range(7):
        world.put(f"k{index}", provenance=Provenance(retention_until=Y2030 + index))
    found = _enforce(world, Y2040, page_size=3)
    assert sorted(key for key, _ in found) == [f"k{index}" for index in range(7)]
    assert {action for _, action in found} == {"deleted"}


def test_enforcement_narrows_to_a_bucket_or_tenant(world: World) -> None:
    anyio.run(world.gateway.create_bucket, world.who, "other", "us-east-1")

    async def put_other() -> None:
        meta = WriteMeta(provenance=Provenance(retention_until=Y2030))
        await world.gateway.put_object(world.who, "other", "k", _once(b"x"), _check(), meta)

    anyio.run(put_other)
    world.put("k", provenance=Provenance(retention_until=Y2030))
    assert _enforce(world, Y2040, bucket="other", dry_run=True) == [("k", "expired")]
    assert _enforce(world, Y2040, tenant_id=b"\x00" * 16, dry_run=True) == []
    assert len(_enforce(world, Y2040, tenant_id=world.who.tenant.tenant_id, dry_run=True)) == 2


def test_an_object_replaced_since_it_was_found_is_left_alone(world: World) -> None:
    old = world.put("k", provenance=Provenance(retention_until=Y2030))
    world.put("k", b"new version")
    removed = anyio.run(world.gateway.delete_object_version, "b", "k", old.object_id)
    assert removed is None
    assert world.get("k") == b"new version"
