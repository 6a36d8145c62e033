"""S3 secrets sealed under the credentials key: what the catalog stores instead of the secret."""

from __future__ import annotations

import anyio
import pytest

from blindstore.errors import KeyServiceError
from blindstore.keys.credentials import (
    credentials_key_name,
    is_sealed,
    seal_secret,
    unseal_secret,
)
from blindstore.keys.memory import InMemoryKeyWrapper

KEY = credentials_key_name("hgw-")
TENANT = b"t" * 16
OTHER_TENANT = b"o" * 16
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _sealed(keys: InMemoryKeyWrapper, access_key_id: str = "BSAAA") -> str:
    async def main() -> str:
        await keys.create_key(KEY)
        return await seal_secret(keys, KEY, TENANT, access_key_id, SECRET)

    return anyio.run(main)


def test_the_credentials_key_is_named_after_the_prefix() -> None:
    assert credentials_key_name("hgw-") == "hgw-creds"
    assert credentials_key_name("prod-") == "prod-creds"


def test_a_sealed_secret_opens_for_its_access_key_and_shows_nothing_of_it() -> None:
    keys = InMemoryKeyWrapper()
    sealed = _sealed(keys)

    assert is_sealed(sealed)
    assert SECRET not in sealed
    assert SECRET.encode() not in sealed.encode()
    assert anyio.run(unseal_secret, keys, KEY, TENANT, "BSAAA", sealed) == SECRET


def test_sealing_twice_gives_different_values() -> None:
    keys = InMemoryKeyWrapper()
    assert _sealed(keys) != _sealed(keys)


def test_a_sealed_secret_moved_to_another_access_key_does_not_open() -> None:
    keys = InMemoryKeyWrapper()
    sealed = _sealed(keys)
    with pytest.raises(KeyServiceError):
        anyio.run(unseal_secret, keys, KEY, TENANT, "BSBBB", sealed)


def test_a_sealed_secret_moved_to_another_tenant_does_not_open() -> None:
    keys = InMemoryKeyWrapper()
    sealed = _sealed(keys)
    with pytest.raises(KeyServiceError):
        anyio.run(unseal_secret, keys, KEY, OTHER_TENANT, "BSAAA", sealed)


def test_a_tampered_sealed_secret_does_not_open() -> None:
    keys = InMemoryKeyWrapper()
    sealed = _sealed(keys)
    body = sealed.rsplit(":", 1)[1]
    flipped = ("B" if body[5] != "B" else "C").join((body[:5], body[6:]))
    with pytest.raises(KeyServiceError):
        anyio.run(unseal_secret, keys, KEY, TENANT, "BSAAA", sealed[: -len(body)] + flipped)


@pytest.mark.parametrize("value", ["", SECRET, "cs1:zz:vault:v1:AAAA:AAAA", "vault:v1:AAAA"])
def test_a_value_that_is_not_sealed_is_refused(value: str) -> None:
    keys = InMemoryKeyWrapper()
    assert not is_sealed(value)
    with pytest.raises(KeyServiceError):
        anyio.run(unseal_secret, keys, KEY, TENANT, "BSAAA", value)


def test_sealing_needs_the_credentials_key() -> None:
    keys = InMemoryKeyWrapper()  # no upsert: a missing key is refused, as under Transit
    with pytest.raises(KeyServiceError):
        anyio.run(seal_secret, keys, KEY, TENANT, "BSAAA", SECRET)
