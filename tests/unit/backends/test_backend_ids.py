"""Blob ids and container names: generated valid, and nothing else accepted."""

from __future__ import annotations

import pytest

from blindstore.backends.ids import (
    BLOB_PATTERN,
    CONTAINER_PATTERN,
    check_blob,
    check_container,
    check_range,
    new_blob_id,
    new_container_name,
)
from blindstore.errors import BlindstoreError


def test_blob_id_is_a_hex_shard_and_the_base32_of_sixteen_random_bytes() -> None:
    assert new_blob_id(lambda n: bytes(range(n))) == "00/aaaqeayeaudaocajbifqydiob4"
    assert new_blob_id(lambda n: b"\xff" * n) == "ff/77777777777777777777777774"


def test_random_blob_ids_are_valid_and_distinct() -> None:
    ids = {new_blob_id() for _ in range(1000)}

    assert len(ids) == 1000
    assert all(BLOB_PATTERN.fullmatch(blob) for blob in ids)


def test_container_names_are_valid_everywhere() -> None:
    name = new_container_name(lambda n: bytes(range(n)))

    assert name == "bs-aaaqeayeaudaocajbifqydiob4"
    assert CONTAINER_PATTERN.fullmatch(name)
    assert CONTAINER_PATTERN.fullmatch(new_container_name())


@pytest.mark.parametrize("name", ["abc", "bs-0123", "a" * 63, "9-9"])
def test_valid_container_names_pass(name: str) -> None:
    check_container(name)


@pytest.mark.parametrize(
    "name", ["ab", "a" * 64, "-abc", "abc-", "ABC", "a--b", "a.b", "a/b", "..", "abc\n", ""]
)
def test_invalid_container_names_are_refused(name: str) -> None:
    with pytest.raises(BlindstoreError, match="Invalid container"):
        check_container(name)


@pytest.mark.parametrize(
    "blob",
    [
        "../aaaaaaaaaaaaaaaaaa",
        "00/aaaa",
        "00/aaaaaaaaaaaaaaaa1",
        "000/aaaaaaaaaaaaaaaa",
        "00/" + "a" * 65,
    ],
)
def test_invalid_blob_ids_are_refused(blob: str) -> None:
    with pytest.raises(BlindstoreError, match="Invalid blob"):
        check_blob(blob)


@pytest.mark.parametrize(("start", "end"), [(-1, None), (5, 4)])
def test_impossible_ranges_are_programming_errors(start: int, end: int | None) -> None:
    with pytest.raises(ValueError, match="invalid byte range"):
        check_range(start, end)
