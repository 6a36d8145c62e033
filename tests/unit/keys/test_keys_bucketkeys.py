"""Bucket-key mode: the pure ``bk1:`` format, the bounds, and KeyService with bucket keys."""

from __future__ import annotations

import base64
import dataclasses

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from blindstore.config import Settings
from blindstore.errors import KeyServiceError, KeyServiceUnavailable
from blindstore.keys.base import parse_key_version
from blindstore.keys.bucketkeys import (
    BucketKeyPolicy,
    bucket_key_id_of,
    is_bucket_wrapped,
    open_dek,
    seal_dek,
)
from blindstore.keys.memory import InMemoryKeyWrapper
from blindstore.keys.service import KeyService
from tests.unit.keys.fakes import ManualClock, MemoryBucketKeyStore, OutageKeyWrapper

pytestmark = pytest.mark.anyio

KEY = "hgw-t-bucketkeys"
SUBJECT_KEY = "hgw-p-bucketkeys-0001"
TENANT = bytes(range(16))
OTHER_TENANT = bytes(range(1, 17))
BK = bytes(range(32, 64))
BK_ID = bytes(range(100, 116))
OBJECT = bytes(range(200, 216))
DEK = bytes(range(64, 96))


def _seal(**overrides: bytes) -> str:
    args = {
        "bucket_key": BK,
        "bucket_key_id": BK_ID,
        "tenant_id": TENANT,
        "object_id": OBJECT,
        "dek": DEK,
        "salt": bytes(16),
        "nonce": bytes(12),
    } | overrides
    return seal_dek(
        args["bucket_key"],
        args["bucket_key_id"],
        args["tenant_id"],
        args["object_id"],
        args["dek"],
        salt=args["salt"],
        nonce=args["nonce"],
    )


# ---------------------------------------------------------------------------- the bk1 format


def test_a_bucket_wrapped_dek_round_trips_and_names_its_bucket_key() -> None:
    wrapped = _seal()

    assert wrapped.startswith(f"bk1:{BK_ID.hex()}:")
    assert is_bucket_wrapped(wrapped)
    assert not is_bucket_wrapped("vault:v1:AAAA")
    assert bucket_key_id_of(wrapped) == BK_ID
    assert open_dek(BK, TENANT, OBJECT, wrapped) == DEK


def test_the_bk1_layout_is_salt_nonce_ciphertext_and_tag() -> None:
    blob = base64.b64decode(_seal(salt=b"s" * 16, nonce=b"n" * 12).split(":")[2])

    assert len(blob) == 16 + 12 + 32 + 16
    assert blob[:16] == b"s" * 16
    assert blob[16:28] == b"n" * 12


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=16, max_size=16))
def test_any_dek_round_trips_under_any_salt(dek: bytes, salt: bytes) -> None:
    assert open_dek(BK, TENANT, OBJECT, _seal(dek=dek, salt=salt)) == dek


@pytest.mark.parametrize(
    ("bucket_key", "tenant_id", "object_id"),
    [
        (bytes(32), TENANT, OBJECT),
        (BK, OTHER_TENANT, OBJECT),
        (BK, TENANT, bytes(16)),
    ],
    ids=["wrong-bucket-key", "other-tenant", "other-object"],
)
def test_a_dek_opens_only_under_its_bucket_key_tenant_and_object(
    bucket_key: bytes, tenant_id: bytes, object_id: bytes
) -> None:
    with pytest.raises(KeyServiceError):
        open_dek(bucket_key, tenant_id, object_id, _seal())


def _tampered(wrapped: str, index: int) -> str:
    prefix, kid, blob = wrapped.split(":")
    raw = bytearray(base64.b64decode(blob))
    raw[index] ^= 1
    return f"{prefix}:{kid}:{base64.b64encode(bytes(raw)).decode()}"


@pytest.mark.parametrize("index", [0, 15, 16, 27, 28, 59, 60, 75])
def test_any_flipped_bit_of_salt_nonce_ciphertext_or_tag_fails(index: int) -> None:
    with pytest.raises(KeyServiceError):
        open_dek(BK, TENANT, OBJECT, _tampered(_seal(), index))


def test_truncated_extended_or_malformed_values_fail_before_any_key_is_used() -> None:
    wrapped = _seal()
    prefix, kid, blob = wrapped.split(":")
    raw = base64.b64decode(blob)
    malformed = [
        wrapped[:-4],
        f"{prefix}:{kid}:{base64.b64encode(raw[:-1]).decode()}",
        f"{prefix}:{kid}:{base64.b64encode(raw + b'x').decode()}",
        f"{prefix}:{kid[:-2]}:{blob}",
        f"{prefix}:{kid.upper()}:{blob}",
        f"bk2:{kid}:{blob}",
        wrapped + "\n",
        "bk1:",
    ]
    for value in malformed:
        with pytest.raises(KeyServiceError):
            bucket_key_id_of(value)
        with pytest.raises(KeyServiceError):
            open_dek(BK, TENANT, OBJECT, value)


def test_parse_key_version_accepts_bk1_values_as_version_zero() -> None:
    assert parse_key_version(_seal()) == 0
    assert parse_key_version("vault:v3:AAAA") == 3
    with pytest.raises(KeyServiceError):
        parse_key_version(_seal()[:-4])


def test_the_policy_applies_to_its_buckets_and_never_to_data_subject_keys() -> None:
    assert not BucketKeyPolicy().applies(KEY, "scans")
    every = BucketKeyPolicy(enabled=True)
    assert every.applies(KEY, "scans")
    assert not every.applies(KEY, None)
    assert not every.applies(SUBJECT_KEY, "scans")
    chosen = BucketKeyPolicy(enabled=True, buckets=frozenset({"scans"}))
    assert chosen.applies(KEY, "scans")
    assert not chosen.applies(KEY, "reports")


# ---------------------------------------------------------------------------- KeyService


async def _service(
    clock: ManualClock,
    store: MemoryBucketKeyStore | None = None,
    inner: InMemoryKeyWrapper | None = None,
    **policy: object,
) -> tuple[KeyService, OutageKeyWrapper, MemoryBucketKeyStore]:
    """A KeyService in bucket-key mode; give ``store`` and ``inner`` to model a restart."""
    vault = OutageKeyWrapper(inner)
    await vault.create_key(KEY)
    await vault.create_key(SUBJECT_KEY)
    store = store if store is not None else MemoryBucketKeyStore()
    service = KeyService(
        vault,  # type: ignore[arg-type]
        clock=clock,
        batch_window=0.0,
        bucket_key_store=store,
        bucket_key_policy=BucketKeyPolicy(enabled=True, **policy),  # type: ignore[arg-type]
    )
    return service, vault, store


async def test_many_puts_and_gets_cost_one_transit_call_per_bucket_key() -> None:
    service, vault, store = await _service(ManualClock())
    keys = [await service.new_data_key(KEY, TENANT, bucket="scans", size=10) for _ in range(50)]
    assert vault.attempts == 1
    assert len(store.rows) == 1
    assert all(k.wrapped.startswith("bk1:") for k in keys)
    assert len({k.object_id for k in keys}) == len({k.dek for k in keys}) == 50

    reader, reader_vault, _ = await _service(ManualClock(), store, vault.inner)  # a restart
    for key in keys:
        assert await reader.unwrap(KEY, TENANT, key.object_id, key.wrapped) == key.dek
    assert reader_vault.attempts == 1
    assert reader.stats()["bucket_keys_unwrapped"] == 1


async def test_bucket_keys_are_per_bucket_and_record_their_transit_version() -> None:
    service, vault, store = await _service(ManualClock())
    scans = await service.new_data_key(KEY, TENANT, bucket="scans")
    version = vault.inner.rotate_key(KEY)
    reports = await service.new_data_key(KEY, TENANT, bucket="reports")

    assert bucket_key_id_of(scans.wrapped) != bucket_key_id_of(reports.wrapped)
    assert (scans.key_version, reports.key_version) == (1, version)
    row = store.rows[bucket_key_id_of(reports.wrapped)]
    assert (row.tenant_id, row.bucket, row.key_name, row.key_version) == (
        TENANT,
        "reports",
        KEY,
        version,
    )
    assert parse_key_version(row.wrapped) == version


async def test_a_new_bucket_key_after_max_uses() -> None:
    service, _, store = await _service(ManualClock(), max_uses=3)
    keys = [await service.new_data_key(KEY, TENANT, bucket="scans") for _ in range(7)]
    ids = [bucket_key_id_of(k.wrapped) for k in keys]
    assert ids[0] == ids[1] == ids[2] != ids[3] == ids[4] == ids[5] != ids[6]
    assert len(store.rows) == 3


async def test_a_new_bucket_key_after_its_lifetime() -> None:
    clock = ManualClock()
    service, _, _ = await _service(clock, lifetime=10.0)
    first = await service.new_data_key(KEY, TENANT, bucket="scans")
    clock.advance(9.9)
    second = await service.new_data_key(KEY, TENANT, bucket="scans")
    clock.advance(0.1)
    third = await service.new_data_key(KEY, TENANT, bucket="scans")
    assert bucket_key_id_of(first.wrapped) == bucket_key_id_of(second.wrapped)
    assert bucket_key_id_of(third.wrapped) != bucket_key_id_of(first.wrapped)


async def test_a_new_bucket_key_after_max_bytes_known_at_put_or_counted_after() -> None:
    service, _, _ = await _service(ManualClock(), max_bytes=100)
    first = await service.new_data_key(KEY, TENANT, bucket="scans", size=60)
    second = await service.new_data_key(KEY, TENANT, bucket="scans", size=60)  # crosses: last
    third = await service.new_data_key(KEY, TENANT, bucket="scans")  # size unknown
    assert bucket_key_id_of(first.wrapped) == bucket_key_id_of(second.wrapped)
    assert bucket_key_id_of(third.wrapped) != bucket_key_id_of(first.wrapped)

    service.remember(KEY, TENANT, third.object_id, third.wrapped, third.dek, size=100)
    service.remember(KEY, TENANT, third.object_id, third.wrapped, third.dek, size=100)  # once
    fourth = await service.new_data_key(KEY, TENANT, bucket="scans")
    assert bucket_key_id_of(fourth.wrapped) != bucket_key_id_of(third.wrapped)


async def test_concurrent_puts_share_one_new_bucket_key() -> None:
    service, vault, store = await _service(ManualClock())
    vault.hold()
    keys = []

    async def put() -> None:
        keys.append(await service.new_data_key(KEY, TENANT, bucket="scans"))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(put)
        await anyio.wait_all_tasks_blocked()
        vault.release()
    assert vault.attempts == 1
    assert len(store.rows) == 1
    assert len({bucket_key_id_of(k.wrapped) for k in keys}) == 1


async def test_concurrent_cold_reads_of_one_bucket_key_make_one_transit_call() -> None:
    writer, vault, store = await _service(ManualClock())
    keys = [await writer.new_data_key(KEY, TENANT, bucket="scans") for _ in range(20)]
    reader, reader_vault, _ = await _service(ManualClock(), store, vault.inner)
    deks: dict[bytes, bytes] = {}

    async def get(index: int) -> None:
        key = keys[index]
        deks[key.object_id] = await reader.unwrap(KEY, TENANT, key.object_id, key.wrapped)

    async with anyio.create_task_group() as tg:
        for index in range(20):
            tg.start_soon(get, index)
    assert deks == {k.object_id: k.dek for k in keys}
    assert reader_vault.attempts == 1
    assert store.loads == 1


async def test_a_held_bucket_key_expires_after_its_lifetime() -> None:
    clock = ManualClock()
    service, vault, _ = await _service(clock, lifetime=30.0)
    key = await service.new_data_key(KEY, TENANT, bucket="scans")
    vault.down = True
    clock.advance(29.0)
    assert await service.unwrap(KEY, TENANT, key.object_id, key.wrapped) == key.dek
    clock.advance(1.0)
    with pytest.raises(KeyServiceUnavailable):
        await service.unwrap(KEY, TENANT, key.object_id, key.wrapped)


async def test_the_sweep_and_close_drop_every_bucket_key() -> None:
    clock = ManualClock()
    service, _, _ = await _service(clock, lifetime=30.0)
    await service.new_data_key(KEY, TENANT, bucket="scans")
    assert service.bucket_keys is not None
    assert len(service.bucket_keys) == 1
    clock.advance(30.0)
    assert service.bucket_keys.purge_expired() == 1
    await service.new_data_key(KEY, TENANT, bucket="scans")
    await service.close()
    assert len(service.bucket_keys) == 0


async def test_a_bucket_key_moved_to_another_tenant_fails_closed() -> None:
    service, vault, store = await _service(ManualClock())
    key = await service.new_data_key(KEY, TENANT, bucket="scans")
    kid = bucket_key_id_of(key.wrapped)
    reader, _, _ = await _service(ManualClock(), store, vault.inner)

    # Claimed by another tenant: its row check refuses, and Transit's context would too.
    store.rows[kid] = dataclasses.replace(store.rows[kid], tenant_id=OTHER_TENANT)
    with pytest.raises(KeyServiceError):
        await reader.unwrap(KEY, TENANT, key.object_id, key.wrapped)
    with pytest.raises(KeyServiceError):
        await reader.unwrap(KEY, OTHER_TENANT, key.object_id, key.wrapped)
    # A DEK copied onto another tenant's object, with its bucket key in RAM: still refused.
    with pytest.raises(KeyServiceError):
        await service.unwrap(KEY, OTHER_TENANT, key.object_id, key.wrapped)


async def test_unknown_bucket_keys_and_tampered_values_fail_closed() -> None:
    service, _, store = await _service(ManualClock())
    key = await service.new_data_key(KEY, TENANT, bucket="scans")
    with pytest.raises(KeyServiceError):
        await service.unwrap(KEY, TENANT, key.object_id, _tampered(key.wrapped, 40))
    with pytest.raises(KeyServiceError):
        await service.unwrap(KEY, TENANT, bytes(16), key.wrapped)
    store.rows.clear()
    reader, _, _ = await _service(ManualClock(), store)
    with pytest.raises(KeyServiceError):
        await reader.unwrap(KEY, TENANT, key.object_id, key.wrapped)


async def test_without_a_store_bk1_values_fail_closed() -> None:
    service, _, _ = await _service(ManualClock())
    key = await service.new_data_key(KEY, TENANT, bucket="scans")
    bare = KeyService(OutageKeyWrapper())  # type: ignore[arg-type]
    with pytest.raises(KeyServiceError):
        await bare.unwrap(KEY, TENANT, key.object_id, key.wrapped)


async def test_data_subject_keys_and_other_buckets_get_transit_wrapped_deks() -> None:
    service, _, store = await _service(ManualClock(), buckets=frozenset({"scans"}))
    subject = await service.new_data_key(SUBJECT_KEY, TENANT, bucket="scans")
    elsewhere = await service.new_data_key(KEY, TENANT, bucket="reports")
    unnamed = await service.new_data_key(KEY, TENANT)
    assert all(k.wrapped.startswith("vault:") for k in (subject, elsewhere, unnamed))
    assert store.rows == {}


# ---------------------------------------------------------------------------- no pool, no cache


async def test_pool_size_zero_wraps_each_dek_in_its_own_call() -> None:
    vault = OutageKeyWrapper()
    await vault.create_key(KEY)
    service = KeyService(vault, pool_size=0, batch_window=0.0)  # type: ignore[arg-type]
    async with service:
        for count in range(1, 4):
            await service.new_data_key(KEY, TENANT)
            assert vault.batch_sizes == [1] * count
    assert "pool_hits" not in service.stats()


async def test_cache_ttl_zero_unwraps_every_time() -> None:
    vault = OutageKeyWrapper()
    await vault.create_key(KEY)
    service = KeyService(vault, pool_size=0, cache_ttl=0, batch_window=0.0)  # type: ignore[arg-type]
    key = await service.new_data_key(KEY, TENANT)
    service.remember(KEY, TENANT, key.object_id, key.wrapped, key.dek)
    for _ in range(3):
        assert await service.unwrap(KEY, TENANT, key.object_id, key.wrapped) == key.dek
    assert vault.attempts == 4
    assert len(service.cache) == 0


# ---------------------------------------------------------------------------- settings


def test_settings_allow_no_pool_and_bound_the_bucket_keys() -> None:
    settings = Settings.model_validate({"keys": {"pool_size": 0, "cache_ttl_seconds": 0}})
    assert (settings.keys.pool_size, settings.keys.bucket_keys.enabled) == (0, False)
    enabled = Settings.model_validate({"keys": {"bucket_keys": {"enabled": True}}})
    assert enabled.keys.bucket_keys.lifetime_seconds == 300
    assert enabled.keys.bucket_keys.max_uses == 10_000
    assert enabled.keys.bucket_keys.max_bytes == 1 << 30
    for bad in (
        {"lifetime_seconds": 0},
        {"lifetime_seconds": 7200},
        {"max_uses": 0},
        {"max_uses": 10_000_000},
        {"max_bytes": 0},
        {"surprise": True},
    ):
        with pytest.raises(ValidationError):
            Settings.model_validate({"keys": {"bucket_keys": {"enabled": True, **bad}}})
