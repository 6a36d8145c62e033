"""The shared pieces of the key protocol: derivation context and wrapped-form parsing."""

from __future__ import annotations

import pytest

from blindstore.errors import KeyServiceError
from blindstore.keys.base import DEK_CONTEXT_LABEL, dek_context, parse_key_version


def test_dek_context_is_the_label_then_tenant_then_object() -> None:
    tenant, obj = bytes(range(16)), bytes(range(16, 32))
    assert dek_context(tenant, obj) == DEK_CONTEXT_LABEL + tenant + obj


@pytest.mark.parametrize(("tenant", "obj"), [(b"short", bytes(16)), (bytes(16), bytes(17))])
def test_dek_context_refuses_ids_that_are_not_16_bytes(tenant: bytes, obj: bytes) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        dek_context(tenant, obj)


@pytest.mark.parametrize(
    ("wrapped", "version"),
    [("vault:v1:AbIVXexIUow=", 1), ("vault:v12:AAAA", 12), ("vault:v4294967295:AAAA", 4294967295)],
)
def test_key_version_is_read_from_the_wrapped_form(wrapped: str, version: int) -> None:
    assert parse_key_version(wrapped) == version


@pytest.mark.parametrize(
    "wrapped",
    [
        "",
        "vault:v0:AAAA",
        "vault:v01:AAAA",
        "vault:vx:AAAA",
        "vault:v1:",
        "vault:v1:AA AA",
        "xvault:v1:AAAA",
        "vault:v1:AAAA\n",
        "vault:v1:" + "A" * 2000,
    ],
)
def test_malformed_wrapped_forms_are_refused(wrapped: str) -> None:
    with pytest.raises(KeyServiceError):
        parse_key_version(wrapped)
