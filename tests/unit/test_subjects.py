"""Data subjects: the id is checked, digested per tenant, and never kept."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import typer

from blindstore.catalog.base import SubjectKey, Tenant
from blindstore.catalog.sql import SqlCatalog
from blindstore.cli.keys import parse_duration
from blindstore.errors import InvalidArgument
from blindstore.provision import tenant_key_name
from blindstore.subjects import (
    SUBJECT_MAX_LENGTH,
    check_subject_id,
    convert_unkeyed_digests,
    is_subject_key,
    subject_key_name,
    unkeyed_digest,
)

TENANT = bytes(range(16))
OTHER_TENANT = bytes(range(1, 17))


def test_the_digest_of_a_subject_is_stable_and_differs_per_tenant_and_per_subject() -> None:
    digest = unkeyed_digest(TENANT, "patient-1")

    assert digest == unkeyed_digest(TENANT, "patient-1")
    assert len(digest) == 32
    assert digest != unkeyed_digest(OTHER_TENANT, "patient-1")
    assert digest != unkeyed_digest(TENANT, "patient-2")
    assert digest != unkeyed_digest(TENANT, "Patient-1")


@pytest.mark.parametrize("subject", ["patient-1", "patient-000001", "NIR 185 057 800 6084", "Zoë"])
def test_the_digest_never_contains_the_subject_id(subject: str) -> None:
    digest = unkeyed_digest(TENANT, subject)

    assert subject.encode() not in digest
    assert subject.encode().hex() not in digest.hex()


def test_the_tenant_id_and_the_subject_id_cannot_be_shifted_into_each_other() -> None:
    # Tenant ids have a fixed length, so (tenant, subject) splits of the same bytes differ.
    assert unkeyed_digest(TENANT, "ab") != unkeyed_digest(TENANT[1:] + b"a", "b")


async def _keyed(digest: bytes) -> bytes:
    """Stands for the Transit HMAC of the subject digest key."""
    return hmac.new(b"k" * 32, digest, hashlib.sha256).digest()


@pytest.mark.anyio
async def test_unkeyed_digests_are_converted_without_the_subject_ids_once() -> None:
    catalog = SqlCatalog("sqlite://")
    try:
        await catalog.create_tenant(Tenant(TENANT, "clinic", "hgw-t-x", "c", 1.0))
        old = [
            SubjectKey(f"hgw-p-{n}", TENANT, unkeyed_digest(TENANT, f"patient-{n}"), 1.0)
            for n in range(3)
        ]
        for key in old:
            await catalog.add_subject_key(
                SubjectKey(key.key_name, TENANT, key.subject_digest, 1.0, digest_keyed=False)
            )

        assert await convert_unkeyed_digests(catalog, _keyed, batch=2) == 3
        assert await convert_unkeyed_digests(catalog, _keyed) == 0
        for n, key in enumerate(old):
            found = await catalog.get_subject_key(
                TENANT, await _keyed(unkeyed_digest(TENANT, f"patient-{n}"))
            )
            assert found is not None
            assert (found.key_name, found.digest_keyed) == (key.key_name, True)
    finally:
        await catalog.close()


def test_subject_key_names_name_the_tenant_and_a_random_id_never_the_subject() -> None:
    name = subject_key_name("hgw-", TENANT, rng=lambda n: b"\xab" * n)

    assert name == f"hgw-p-{TENANT.hex()}-{'ab' * 16}"
    assert is_subject_key(name)
    assert subject_key_name("hgw-", TENANT) != subject_key_name("hgw-", TENANT)


@pytest.mark.parametrize(
    "name",
    [
        tenant_key_name("hgw-", TENANT),
        "hgw-sign",
        f"hgw-p-{TENANT.hex()}",
        f"hgw-p-{TENANT.hex()}-{'ab' * 15}",
        f"hgw-p-{TENANT.hex()}-{'AB' * 16}",
        f"hgw-p-{TENANT.hex()}-{'ab' * 16}-x",
        f"hgw-p-{TENANT.hex()}-{'ab' * 16}\n",
    ],
)
def test_other_key_names_are_not_subject_keys(name: str) -> None:
    assert not is_subject_key(name)


def test_a_subject_id_is_stripped() -> None:
    assert check_subject_id("  patient-1 ") == "patient-1"
    assert check_subject_id("x" * SUBJECT_MAX_LENGTH) == "x" * SUBJECT_MAX_LENGTH
    assert check_subject_id("a") == "a"


@pytest.mark.parametrize(
    "subject", ["", "   ", "x" * (SUBJECT_MAX_LENGTH + 1), "line\nbreak", "nul\x00", "tab\there"]
)
def test_an_empty_overlong_or_unprintable_subject_id_is_refused(subject: str) -> None:
    with pytest.raises(InvalidArgument, match="x-blindstore-data-subject must be 1 to 256"):
        check_subject_id(subject)


def test_the_refusal_does_not_echo_the_subject_id() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_subject_id("secret-patient\x00")

    assert "secret-patient" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("90", 90.0),
        ("30s", 30.0),
        ("15m", 900.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("1.5h", 5400.0),
        (" 2 D ", 172800.0),
    ],
)
def test_durations_are_read_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "-1", "1w", "1h30m", "1e3", "ten", "1.h", "inf"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="is not a duration"):
        parse_duration(text)
