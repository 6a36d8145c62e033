"""Sizes in a policy are bytes, or a number with a decimal or binary unit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blindstore.policy import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("512", 512),
        ("512 B", 512),
        ("64KiB", 65536),
        ("64 kib", 65536),
        ("1 MiB", 1048576),
        ("1.5 GB", 1_500_000_000),
        ("2 TB", 2 * 10**12),
        ("1 TiB", 2**40),
        (" 10 MB ", 10_000_000),
        ("0.5 B", 0),
    ],
)
def test_sizes_are_parsed(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "-1", "1 MiBs", "1e6", "1,5 GB", "ten"])
def test_malformed_sizes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"size|unit"):
        parse_size(text)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1024, "1 KiB"),
        (1536, "1536 B"),
        (3 * 2**20, "3 MiB"),
        (2**40, "1 TiB"),
    ],
)
def test_sizes_are_shown_in_the_largest_exact_unit(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=2**60))
def test_a_shown_size_reads_back_as_itself(size: int) -> None:
    assert parse_size(format_size(size)) == size
