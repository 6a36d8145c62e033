"""What every ``KeyWrapper`` must do; each implementation gets a subclass that supplies fixtures.

Fixtures a subclass provides:
    ``wrapper``  the implementation under test
    ``key_name`` a freshly created key (async fixture)
    ``rotate``   ``rotate(key_name)`` adds a key version (an admin action, outside the wrapper)
                 after which the wrapper's new data keys use it (a pool is emptied first)
The batch contract additionally needs ``wrapper`` to be a ``BatchKeyWrapper``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from blindstore.errors import KeyServiceError
from blindstore.keys.base import (
    BatchKeyWrapper,
    DataKey,
    KeyWrapper,
    WrappedDek,
    parse_key_version,
)

TENANT = bytes(range(16))
OTHER_TENANT = bytes(range(16, 32))
Rotate = Callable[[str], None]


def _moved(data_key: DataKey) -> bytes:
    """Another object id than ``data_key``'s."""
    other = secrets.token_bytes(16)
    assert other != data_key.object_id
    return other


@pytest.mark.anyio
class KeyWrapperContract:
    async def test_wrapped_dek_unwraps_to_the_same_dek(
        self, wrapper: KeyWrapper, key_name: str
    ) -> None:
        data_key = await wrapper.new_data_key(key_name, TENANT)
        dek = await wrapper.unwrap(key_name, TENANT, data_key.object_id, data_key.wrapped)
        assert dek == data_key.dek
        assert len(dek) == 32
        assert len(data_key.object_id) == 16
        assert data_key.key_name == key_name

    async def test_every_data_key_has_a_fresh_dek_and_object_id(
        self, wrapper: KeyWrapper, key_name: str
    ) -> None:
        keys = [await wrapper.new_data_key(key_name, TENANT) for _ in range(20)]
        assert len({k.dek for k in keys}) == 20
        assert len({k.object_id for k in keys}) == 20

    async def test_wrapped_form_names_the_key_version(
        self, wrapper: KeyWrapper, key_name: str
    ) -> None:
        data_key = await wrapper.new_data_key(key_name, TENANT)
        assert data_key.wrapped.startswith("vault:v1:")
        assert data_key.key_version == 1 == parse_key_version(data_key.wrapped)

    async def test_after_rotation_new_keys_use_the_new_version_and_old_ones_still_unwrap(
        self, wrapper: KeyWrapper, key_name: str, rotate: Rotate
    ) -> None:
        old = await wrapper.new_data_key(key_name, TENANT)
        rotate(key_name)
        new = await wrapper.new_data_key(key_name, TENANT)
        assert new.key_version == 2
        assert new.wrapped.startswith("vault:v2:")
        assert await wrapper.unwrap(key_name, TENANT, old.object_id, old.wrapped) == old.dek
        assert await wrapper.unwrap(key_name, TENANT, new.object_id, new.wrapped) == new.dek

    async def test_wrapped_dek_of_another_tenant_is_refused(
        self, wrapper: KeyWrapper, key_name: str
    ) -> None:
        data_key = await wrapper.new_data_key(key_name, TENANT)
        with pytest.raises(KeyServiceError):
            await wrapper.unwrap(key_name, OTHER_TENANT, data_key.object_id, data_key.wrapped)

    async def test_wrapped_dek_moved_to_another_object_is_refused(
        self, wrapper: KeyWrapper, key_name: str
    ) -> None:
        data_key = await wrapper.new_data_key(key_name, TENANT)
        await wrapper.unwrap(key_name, TENANT, data_key.object_id, data_key.wrapped)  # cached?
        with pytest.raises(KeyServiceError):
            await wrapper.unwrap(key_name, TENANT, _moved(data_key), data_key.wrapped)

    async def test_wrapped_dek_under_another_key_is_refused(
        self, wrapper: KeyWrapper, key_name: str
    ) -> None:
        other_key = f"{key_name}-other"
        await wrapper.create_key(other_key)
        data_key = await wrapper.new_data_key(key_name, TENANT)
        await wrapper.unwrap(key_name, TENANT, data_key.object_id, data_key.wrapped)  # cached?
        with pytest.raises(KeyServiceError):
            await wrapper.unwrap(other_key, TENANT, data_key.object_id, data_key.wrapped)

    async def test_a_key_that_was_never_created_unwraps_nothing(
        self, wrapper: KeyWrapper, key_name: str
    ) -> None:
        # (Wrapping under a missing key is the policies' business: Transit creates it by upsert
        # where the identity may, which is how data-subject keys are made.)
        data_key = await wrapper.new_data_key(key_name, TENANT)
        with pytest.raises(KeyServiceError):
            await wrapper.unwrap(
                f"{key_name}-never-created", TENANT, data_key.object_id, data_key.wrapped
            )

    @pytest.mark.parametrize(
        "wrapped", ["", "vault:v1:", "vault:v0:AAAA", "plain", "vault:v1:@@@@"]
    )
    async def test_malformed_wrapped_dek_is_refused(
        self, wrapper: KeyWrapper, key_name: str, wrapped: str
    ) -> None:
        with pytest.raises(KeyServiceError):
            await wrapper.unwrap(key_name, TENANT, bytes(16), wrapped)

    async def test_tampered_wrapped_dek_is_refused(
        self, wrapper: KeyWrapper, key_name: str
    ) -> None:
        data_key = await wrapper.new_data_key(key_name, TENANT)
        head, body = data_key.wrapped.rsplit(":", 1)
        flipped = ("B" if body[10] == "A" else "A").join((body[:10], body[11:]))
        with pytest.raises(KeyServiceError):
            await wrapper.unwrap(key_name, TENANT, data_key.object_id, f"{head}:{flipped}")

    async def test_create_key_is_idempotent(self, wrapper: KeyWrapper, key_name: str) -> None:
        data_key = await wrapper.new_data_key(key_name, TENANT)
        await wrapper.create_key(key_name)
        assert (
            await wrapper.unwrap(key_name, TENANT, data_key.object_id, data_key.wrapped)
            == data_key.dek
        )

    async def test_forget_keeps_the_object_readable(
        self, wrapper: KeyWrapper, key_name: str
    ) -> None:
        data_key = await wrapper.new_data_key(key_name, TENANT)
        await wrapper.unwrap(key_name, TENANT, data_key.object_id, data_key.wrapped)
        wrapper.forget(TENANT, data_key.object_id)
        dek = await wrapper.unwrap(key_name, TENANT, data_key.object_id, data_key.wrapped)
        assert dek == data_key.dek

    async def test_satisfies_the_key_wrapper_protocol(self, wrapper: KeyWrapper) -> None:
        assert isinstance(wrapper, KeyWrapper)


class BatchKeyWrapperContract(KeyWrapperContract):
    async def test_a_batch_of_64_is_wrapped_and_unwrapped_in_one_call_each(
        self, wrapper: BatchKeyWrapper, key_name: str
    ) -> None:
        before = wrapper.vault_calls
        keys = await wrapper.wrap_batch(key_name, TENANT, 64)
        assert wrapper.vault_calls == before + 1
        items = [WrappedDek(TENANT, k.object_id, k.wrapped) for k in keys]
        outcomes = await wrapper.unwrap_batch(key_name, items)
        assert wrapper.vault_calls == before + 2
        assert outcomes == [k.dek for k in keys]
        assert len({k.object_id for k in keys}) == 64
        assert len({k.dek for k in keys}) == 64

    async def test_a_refused_item_fails_alone_in_its_batch(
        self, wrapper: BatchKeyWrapper, key_name: str
    ) -> None:
        first, second = await wrapper.wrap_batch(key_name, TENANT, 2)
        items = [
            WrappedDek(TENANT, first.object_id, first.wrapped),
            WrappedDek(TENANT, second.object_id, first.wrapped),  # moved onto another object
            WrappedDek(OTHER_TENANT, second.object_id, second.wrapped),  # another tenant
            WrappedDek(TENANT, second.object_id, "not-a-wrapped-key"),
            WrappedDek(TENANT, second.object_id, second.wrapped),
        ]
        outcomes = await wrapper.unwrap_batch(key_name, items)
        assert outcomes[0] == first.dek
        assert all(isinstance(o, KeyServiceError) for o in outcomes[1:4])
        assert outcomes[4] == second.dek

    async def test_a_batch_where_every_item_fails_reports_each_item(
        self, wrapper: BatchKeyWrapper, key_name: str
    ) -> None:
        (data_key,) = await wrapper.wrap_batch(key_name, TENANT, 1)
        items = [WrappedDek(OTHER_TENANT, data_key.object_id, data_key.wrapped)] * 3
        outcomes = await wrapper.unwrap_batch(key_name, items)
        assert len(outcomes) == 3
        assert all(isinstance(o, KeyServiceError) for o in outcomes)
