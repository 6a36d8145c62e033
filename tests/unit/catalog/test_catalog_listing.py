"""The listing algorithm on an in-memory scan: exact semantics, and rows read per page."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blindstore.catalog.listing import Listing, list_page, successor
from tests.contract.catalog_contract import model_listing


class SortedKeys:
    """A fake ordered index over keys that counts the rows its scans return."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = sorted(keys)
        self.rows_read = 0
        self.scans = 0

    def fetch(self, lower: str, inclusive: bool, upper: str | None, limit: int) -> list[str]:
        start = (bisect.bisect_left if inclusive else bisect.bisect_right)(self.keys, lower)
        stop = len(self.keys) if upper is None else bisect.bisect_left(self.keys, upper)
        rows = self.keys[start : min(stop, start + limit)]
        self.rows_read += len(rows)
        self.scans += 1
        return rows

    def page(
        self, *, prefix: str = "", delimiter: str = "", start_after: str = "", max_keys: int = 1000
    ) -> Listing[str]:
        return list_page(
            self.fetch,
            lambda key: key,
            prefix=prefix,
            delimiter=delimiter,
            start_after=start_after,
            max_keys=max_keys,
        )


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("a", "b"),
        ("photos/", "photos0"),
        ("a\U0010ffff", "b"),
        ("a\U0010ffff\U0010ffff", "b"),
        ("\U0010ffff", None),
        ("", None),
        ("\ud7ff", "\ue000"),
        ("é", "ê"),
    ],
)
def test_successor_is_the_first_string_after_every_extension(
    prefix: str, expected: str | None
) -> None:
    assert successor(prefix) == expected


@given(prefix=st.text(min_size=1, max_size=4), extension=st.text(max_size=4))
def test_every_extension_of_a_prefix_sorts_below_its_successor(prefix: str, extension: str) -> None:
    after = successor(prefix)

    if after is not None:
        assert prefix + extension < after
        assert (prefix + extension).encode("utf-8", "surrogatepass") < after.encode(
            "utf-8", "surrogatepass"
        )


def test_a_prefix_holding_a_million_keys_costs_a_few_rows() -> None:
    index = SortedKeys([f"big/{n:07d}" for n in range(1_000_000)] + ["a", "c", "d/1"])

    page = index.page(delimiter="/", max_keys=1000)

    assert page.rows == ["a", "c"]
    assert page.common_prefixes == ["big/", "d/"]
    assert not page.truncated
    assert index.rows_read < 50


def test_a_page_of_large_common_prefixes_reads_rows_in_proportion_to_the_page() -> None:
    index = SortedKeys([f"{p:04d}/{n:04d}" for p in range(1000) for n in range(1000)])

    page = index.page(delimiter="/", max_keys=500)

    assert page.common_prefixes == [f"{p:04d}/" for p in range(500)]
    assert (page.truncated, page.next_marker) == (True, "0499/")
    assert index.rows_read <= 3 * 501 + 1000


def test_a_listing_without_delimiter_reads_one_row_more_than_the_page() -> None:
    index = SortedKeys([f"k{n:06d}" for n in range(100_000)])

    page = index.page(max_keys=1000, start_after="k000100")

    assert page.rows[0] == "k000101"
    assert len(page.rows) == 1000
    assert page.truncated
    assert (index.rows_read, index.scans) == (1001, 1)


def test_small_common_prefixes_are_rolled_up_within_a_few_growing_scans() -> None:
    index = SortedKeys([f"{p:04d}/only" for p in range(2000)])

    page = index.page(delimiter="/", max_keys=1000)

    assert len(page.common_prefixes) == 1000
    assert index.rows_read == 1001
    assert index.scans <= 5


def test_start_after_inside_a_common_prefix_skips_that_prefix() -> None:
    index = SortedKeys(["a/1", "a/2", "a/3", "b"])

    page = index.page(delimiter="/", start_after="a/1")

    assert (page.rows, page.common_prefixes) == (["b"], [])


_chars = st.sampled_from(["a", "b", "/", "-", "é", "\U0010ffff", "\ue000"])
_keys = st.text(_chars, min_size=1, max_size=6)


@settings(max_examples=500)
@given(
    keys=st.lists(_keys, max_size=40, unique=True),
    prefix=st.one_of(st.just(""), _keys),
    delimiter=st.sampled_from(["", "/", "-", "a/", "\U0010ffff"]),
    start_after=st.one_of(st.just(""), _keys),
    max_keys=st.integers(0, 8),
)
def test_pages_match_the_reference_model(
    keys: list[str], prefix: str, delimiter: str, start_after: str, max_keys: int
) -> None:
    page = SortedKeys(keys).page(
        prefix=prefix, delimiter=delimiter, start_after=start_after, max_keys=max_keys
    )

    assert (page.rows, page.common_prefixes, page.truncated, page.next_marker) == model_listing(
        keys, prefix, delimiter, start_after, max_keys
    )
