"""The Range header as S3 resolves it: served, clamped, ignored or 416."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blindstore.errors import InvalidRange
from blindstore.s3.ranges import content_range, parse_range

SIZE = 11  # "contentData", the object of ceph/s3-tests' ranged tests


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=4-7", (4, 7)),  # test_ranged_request_response_code
        ("bytes=0-0", (0, 0)),
        ("bytes=10-10", (10, 10)),  # the last byte
        ("bytes=0-10", (0, 10)),
        ("bytes=4-", (4, 10)),  # test_ranged_request_skip_leading_bytes_response_code
        ("bytes=-7", (4, 10)),  # test_ranged_request_return_trailing_bytes_response_code
        ("bytes=-1", (10, 10)),
        ("bytes=-11", (0, 10)),
        ("bytes=-12", (0, 10)),  # a suffix longer than the object is the whole object
        ("bytes=-99999999999999999999999999999999999999", (0, 10)),
        ("bytes=4-20", (4, 10)),  # an end past the object is clamped
        ("bytes=4-99999999999999999999999999999999999999", (4, 10)),
        ("bytes=0004-0007", (4, 7)),
        ("Bytes=4-7", (4, 7)),  # the unit is case-insensitive
        (" bytes=4-7 ", (4, 7)),
    ],
)
def test_satisfiable_range_resolves_to_inclusive_bounds(
    header: str, expected: tuple[int, int]
) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=7-4",  # last < first: invalid, so ignored (RFC 9110 §14.2)
        "bytes=99999999999999999999999999999999999999-5",
        "bytes=0-1,3-4",  # S3 serves one range; several are ignored
        "bytes=-",
        "bytes=a-b",
        "bytes=1-2-3",
        "bytes= 1-2",
        "bytes=+1-2",
        "items=0-1",
        "0-1",
        "bytes",
    ],
)
def test_invalid_or_multiple_ranges_are_ignored(header: str | None) -> None:
    """S3 answers 200 with the whole object for a Range it cannot use."""
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=40-50", SIZE),  # test_ranged_request_invalid_range
        ("bytes=11-", SIZE),
        ("bytes=11-11", SIZE),
        ("bytes=99999999999999999999999999999999999999-", SIZE),
        ("bytes=-0", SIZE),  # a zero-length suffix is never satisfiable
        ("bytes=40-50", 0),  # test_ranged_request_empty_object
        ("bytes=0-0", 0),
        ("bytes=0-", 0),
        ("bytes=-0", 0),
    ],
)
def test_unsatisfiable_range_is_invalid_range(header: str, size: int) -> None:
    with pytest.raises(InvalidRange) as caught:
        parse_range(header, size)
    assert caught.value.status == 416
    assert caught.value.fields == {"RangeRequested": header, "ActualObjectSize": str(size)}


def test_suffix_range_on_an_empty_object_serves_the_whole_object() -> None:
    """S3 answers 200 with Content-Length 0; no Content-Range can describe it."""
    assert parse_range("bytes=-5", 0) is None


def test_huge_positions_do_not_cost_big_integer_parsing() -> None:
    digits = "9" * 100_000
    assert parse_range(f"bytes=1-{digits}", SIZE) == (1, 10)
    assert parse_range(f"bytes=-{digits}", SIZE) == (0, 10)
    with pytest.raises(InvalidRange):
        parse_range(f"bytes={digits}-", SIZE)
    assert parse_range(f"bytes={'0' * 100_000}1-2", SIZE) == (1, 2)


def test_content_range_is_bytes_start_end_over_size() -> None:
    assert content_range(4, 10, 11) == "bytes 4-10/11"
    assert content_range(0, 0, 1) == "bytes 0-0/1"


_POSITIONS = st.integers(min_value=0, max_value=40)


@given(size=_POSITIONS, first=_POSITIONS, last=st.one_of(st.none(), _POSITIONS))
def test_served_range_is_the_python_slice_of_the_object(
    size: int, first: int, last: int | None
) -> None:
    """bytes=a-b serves data[a:b+1], bytes=a- serves data[a:], or 416 when a is past the end."""
    data = bytes(range(size))
    header = f"bytes={first}-{'' if last is None else last}"
    if last is not None and last < first:
        assert parse_range(header, size) is None
        return
    if first >= size:
        with pytest.raises(InvalidRange):
            parse_range(header, size)
        return
    resolved = parse_range(header, size)
    assert resolved is not None
    start, end = resolved
    expected = data[first:] if last is None else data[first : last + 1]
    assert data[start : end + 1] == expected


@given(size=st.integers(min_value=1, max_value=40), suffix=st.integers(min_value=1, max_value=60))
def test_suffix_range_serves_the_python_suffix_slice(size: int, suffix: int) -> None:
    data = bytes(range(size))
    resolved = parse_range(f"bytes=-{suffix}", size)
    assert resolved is not None
    start, end = resolved
    assert data[start : end + 1] == data[-suffix:]
