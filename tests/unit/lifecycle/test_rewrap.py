"""Rotation without re-encryption: rewrap the catalog's wrapped DEKs, then raise the floor."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from blindstore.catalog.sql import SqlCatalog
from blindstore.errors import KeyServiceError
from blindstore.lifecycle.rewrap import _reason_not_to_raise, pending_count, rewrap_key
from tests.contract.catalog_contract import (
    TENANT,
    make_object,
    make_upload,
    setup_bucket,
    wrapped_by,
)
from tests.unit.keys.fakes import ManualClock
from tests.unit.lifecycle.fakes import FakeTransitAdmin, context_of

pytestmark = pytest.mark.anyio

KEY = TENANT.key_name
ROTATED_AT = 10_000.0
SETTLE = 900.0


@pytest.fixture
async def catalog() -> AsyncIterator[SqlCatalog]:
    catalog = SqlCatalog("sqlite://")
    await setup_bucket(catalog)
    yield catalog
    await catalog.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(ROTATED_AT + SETTLE + 1)


@pytest.fixture
def admin(clock: ManualClock) -> FakeTransitAdmin:
    """The tenant key, rotated to version 2 at ROTATED_AT (the settle time has passed)."""
    admin = FakeTransitAdmin(clock)
    admin.add_key(KEY, created=1000.0)
    admin.keys[KEY].versions[2] = ROTATED_AT
    return admin


class Interrupted(Exception):
    """The operator stopped the job (or the process died) after a batch."""


async def put_old(catalog: SqlCatalog, *keys: str, version: int = 1) -> None:
    for key in keys:
        await catalog.put_object(wrapped_by(make_object("photos", key), KEY, version))


async def test_rewrap_moves_every_old_wrapped_dek_to_the_latest_version_and_raises_the_floor(
    catalog: SqlCatalog, admin: FakeTransitAdmin, clock: ManualClock
) -> None:
    await put_old(catalog, "a", "b", "c", "d", "e")
    await put_old(catalog, "current", version=2)
    await catalog.create_upload(
        dataclasses.replace(make_upload("photos", "big", "u1"), key_version=1)
    )
    done: list[int] = []

    report = await rewrap_key(
        catalog, admin, KEY, batch_size=2, settle=SETTLE, progress=done.append, clock=clock
    )

    assert (report.rewrapped, report.skipped, report.failed, report.remaining) == (6, 0, 0, 0)
    assert (report.latest_version, report.min_decryption_version) == (2, 2)
    assert report.not_raised_because is None
    assert report.errors == ()
    assert done == [2, 2, 1, 1]
    assert admin.rewrap_calls == [2, 2, 1, 1]
    assert admin.floor_calls == [(KEY, 2)]
    assert admin.keys[KEY].min_decryption_version == 2
    assert await catalog.count_wrapped_below(KEY, 2) == 0
    a = await catalog.get_object("photos", "a")
    assert a is not None
    assert (a.wrapped_dek, a.key_version) == ("vault:v2:photos/a", 2)
    upload = await catalog.get_upload("u1")
    assert upload is not None
    assert (upload.wrapped_dek, upload.key_version) == ("vault:v2:upload", 2)
    # Each DEK is rewrapped in its own object's context.
    assert context_of(TENANT.tenant_id, a.object_id) in admin.contexts


async def test_rows_changed_while_their_batch_was_in_flight_are_skipped(
    catalog: SqlCatalog, admin: FakeTransitAdmin, clock: ManualClock
) -> None:
    await put_old(catalog, "a", "b")
    fresh = dataclasses.replace(
        wrapped_by(make_object("photos", "b", etag="new"), KEY, 2), wrapped_dek="vault:v2:ZnJlc2g="
    )

    async def client_overwrites_b() -> None:
        admin.during_rewrap = None
        await catalog.put_object(fresh)

    admin.during_rewrap = client_overwrites_b

    report = await rewrap_key(catalog, admin, KEY, settle=SETTLE, clock=clock)

    assert (report.rewrapped, report.skipped, report.failed, report.remaining) == (1, 1, 0, 0)
    assert await catalog.get_object("photos", "b") == fresh
    assert report.min_decryption_version == 2


async def test_items_transit_refuses_are_reported_and_keep_the_floor_down(
    catalog: SqlCatalog, admin: FakeTransitAdmin, clock: ManualClock
) -> None:
    await put_old(catalog, "a", "bad", "c")
    admin.refuse.add("vault:v1:photos/bad")

    report = await rewrap_key(catalog, admin, KEY, batch_size=2, settle=SETTLE, clock=clock)

    assert (report.rewrapped, report.skipped, report.failed, report.remaining) == (2, 0, 1, 1)
    assert report.errors == ("Transit refused to rewrap: cipher: bad input",)
    assert report.min_decryption_version == 1
    assert report.not_raised_because == "1 wrapped keys are still below version 2"
    assert admin.floor_calls == []
    bad = await catalog.get_object("photos", "bad")
    assert bad is not None
    assert bad.wrapped_dek == "vault:v1:photos/bad"


async def test_the_floor_waits_for_the_settle_time_after_the_rotation(
    catalog: SqlCatalog, admin: FakeTransitAdmin, clock: ManualClock
) -> None:
    await put_old(catalog, "a")
    clock.now = ROTATED_AT + 60

    early = await rewrap_key(catalog, admin, KEY, settle=SETTLE, clock=clock)

    assert (early.rewrapped, early.remaining, early.min_decryption_version) == (1, 0, 1)
    assert early.not_raised_because is not None
    assert "younger than the settle time (900 s)" in early.not_raised_because
    assert "run again in 841 s" in early.not_raised_because
    assert admin.floor_calls == []

    clock.now = ROTATED_AT + SETTLE
    later = await rewrap_key(catalog, admin, KEY, settle=SETTLE, clock=clock)

    assert (later.rewrapped, later.min_decryption_version, later.not_raised_because) == (0, 2, None)
    assert admin.floor_calls == [(KEY, 2)]


async def test_the_floor_is_put_back_when_old_rows_appear_while_raising_it(
    catalog: SqlCatalog, admin: FakeTransitAdmin, clock: ManualClock
) -> None:
    await put_old(catalog, "a")

    async def gateway_commits_a_pooled_dek(version: int) -> None:
        if version == 2:
            await put_old(catalog, "late")

    admin.before_floor = gateway_commits_a_pooled_dek

    report = await rewrap_key(catalog, admin, KEY, settle=SETTLE, clock=clock)

    assert admin.floor_calls == [(KEY, 2), (KEY, 1)]
    assert admin.keys[KEY].min_decryption_version == 1
    assert report.min_decryption_version == 1
    assert report.not_raised_because == (
        "rows wrapped by an older version appeared meanwhile: run again"
    )

    admin.before_floor = None
    again = await rewrap_key(catalog, admin, KEY, settle=SETTLE, clock=clock)

    assert (again.rewrapped, again.min_decryption_version, again.not_raised_because) == (
        1,
        2,
        None,
    )


async def test_an_interrupted_run_is_finished_by_the_next_one(
    catalog: SqlCatalog, admin: FakeTransitAdmin, clock: ManualClock
) -> None:
    keys = [f"k{n}" for n in range(7)]
    await put_old(catalog, *keys)

    def interrupt(_done: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        await rewrap_key(
            catalog, admin, KEY, batch_size=3, settle=SETTLE, progress=interrupt, clock=clock
        )
    assert await catalog.count_wrapped_below(KEY, 2) == 4
    assert await pending_count(catalog, admin, [KEY, "hgw-missing"]) == 4
    assert admin.floor_calls == []

    report = await rewrap_key(catalog, admin, KEY, batch_size=3, settle=SETTLE, clock=clock)

    assert (report.rewrapped, report.remaining, report.min_decryption_version) == (4, 0, 2)
    assert await pending_count(catalog, admin, [KEY]) == 0


async def test_no_raise_leaves_the_floor_alone(
    catalog: SqlCatalog, admin: FakeTransitAdmin, clock: ManualClock
) -> None:
    await put_old(catalog, "a")

    report = await rewrap_key(catalog, admin, KEY, settle=SETTLE, raise_floor=False, clock=clock)

    assert (report.rewrapped, report.min_decryption_version) == (1, 1)
    assert report.not_raised_because == "not asked to (--no-raise)"
    assert admin.floor_calls == []


async def test_a_key_transit_does_not_have_is_an_error(
    catalog: SqlCatalog, admin: FakeTransitAdmin
) -> None:
    with pytest.raises(KeyServiceError, match="does not exist"):
        await rewrap_key(catalog, admin, "hgw-missing")


@pytest.mark.parametrize(
    ("wanted", "remaining", "floor", "created", "now", "reason"),
    [
        (True, 0, 1, 0.0, 10_000.0, None),
        (True, 0, 2, 0.0, 0.0, None),  # already raised: nothing to wait for
        (True, 3, 2, 0.0, 10_000.0, "3 wrapped keys could not be rewrapped"),
        (True, 3, 1, 0.0, 10_000.0, "3 wrapped keys are still below version 2"),
        (True, 0, 1, 9_500.0, 10_000.0, "younger than the settle time"),
        (True, 0, 1, 9_100.0, 10_000.0, None),  # exactly the settle time
        (True, 0, 1, None, 10_000.0, None),  # no creation time known
        (False, 0, 1, 0.0, 10_000.0, "not asked to (--no-raise)"),
    ],
)
def test_reasons_not_to_raise_the_floor(
    wanted: bool,
    remaining: int,
    floor: int,
    created: float | None,
    now: float,
    reason: str | None,
) -> None:
    found = _reason_not_to_raise(wanted, remaining, floor, 2, created, 900.0, now)

    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert reason in found
