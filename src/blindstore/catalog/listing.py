"""S3 listing semantics over an ordered key scan (pure: the scan is a parameter).

The result is the ordered set of *entries* greater than ``start_after``: every key under the
prefix that has no delimiter after the prefix, and, for the others, their common prefix (the key
cut just after the first delimiter following the prefix). ``max_keys`` counts entries.

Rolling up must not cost a read of every key under a common prefix (a prefix may hold millions):
after emitting common prefix ``P``, the scan restarts at ``successor(P)``, the first string after
every string that starts with ``P``. Python compares ``str`` by code point, which is the UTF-8 byte
order the database sorts in, so the same comparisons hold on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Row = TypeVar("Row")

_MAX_CODE_POINT = 0x10FFFF
_SURROGATES_START = 0xD800
_SURROGATES_END = 0xDFFF

#: After a scan that had to restart, the next one asks for this many rows (the row that makes a
#: common prefix, and one to see whether the prefix has more keys).
_PROBE_ROWS = 2
#: With a delimiter, the first scan is this small (a large common prefix may come first); the
#: following scans grow fourfold while they are not cut short.
_FIRST_ROLLUP_SCAN = 32


def successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``.

    None when there is none (the prefix is empty or made only of U+10FFFF).
    """
    stripped = prefix.rstrip(chr(_MAX_CODE_POINT))
    if not stripped:
        return None
    code = ord(stripped[-1]) + 1
    if _SURROGATES_START <= code <= _SURROGATES_END:
        # Surrogates cannot be encoded in UTF-8; no key contains one.
        code = _SURROGATES_END + 1
    return stripped[:-1] + chr(code)


@dataclass(frozen=True, slots=True)
class Listing(Generic[Row]):
    """One page of entries, in order: rows for keys, strings for common prefixes."""

    rows: list[Row]
    common_prefixes: list[str]
    truncated: bool
    next_marker: str | None


def list_page(
    fetch: Callable[[str, bool, str | None, int], Sequence[Row]],
    key_of: Callable[[Row], str],
    *,
    prefix: str,
    delimiter: str,
    start_after: str,
    max_keys: int,
) -> Listing[Row]:
    """Compute one listing page with as few and as small scans as the shape allows.

    ``fetch(lower, lower_inclusive, upper, limit)`` returns at most ``limit`` rows in key order
    with ``lower <(=) key < upper`` (no upper bound when ``upper`` is None).

    Each scan asks for at most the number of entries still wanted (plus one, which proves
    truncation). A scan that runs into a large common prefix is abandoned for a new one after it,
    and the scans after that ask for few rows, growing again while prefixes stay small: a page
    reads O(max_keys) rows whatever the bucket holds.
    """
    if max_keys <= 0:
        return Listing([], [], False, None)
    lower, inclusive = start_after, False
    if prefix and start_after < prefix:
        lower, inclusive = prefix, True
    upper = successor(prefix) if prefix else None
    rows: list[Row] = []
    common_prefixes: list[str] = []
    last_entry: str | None = None
    wanted = max_keys + 1
    found = 0
    window = min(wanted, _FIRST_ROLLUP_SCAN) if delimiter else wanted
    while found < wanted:
        limit = min(window, wanted - found)
        batch = fetch(lower, inclusive, upper, limit)
        restart = False
        skip_below: str | None = None
        for row in batch:
            key = key_of(row)
            if skip_below is not None:
                if key < skip_below:
                    # Still under the common prefix just emitted: jump past it with a new scan
                    # rather than reading the rest of it row by row.
                    restart = True
                    break
                skip_below = None
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut < 0:
                found += 1
                if found <= max_keys:
                    rows.append(row)
                    last_entry = key
                lower, inclusive = key, False
            else:
                common = key[: cut + len(delimiter)]
                if common > start_after:
                    found += 1
                    if found <= max_keys:
                        common_prefixes.append(common)
                        last_entry = common
                after = successor(common)
                if after is None:
                    # Nothing sorts after this common prefix: the listing is complete.
                    return Listing(
                        rows,
                        common_prefixes,
                        found > max_keys,
                        _marker(found, max_keys, last_entry),
                    )
                lower, inclusive, skip_below = after, True, after
            if found >= wanted:
                break
        if restart:
            window = _PROBE_ROWS
        elif len(batch) < limit:
            break
        else:
            window *= 4
    return Listing(rows, common_prefixes, found > max_keys, _marker(found, max_keys, last_entry))


def _marker(found: int, max_keys: int, last_entry: str | None) -> str | None:
    return last_entry if found > max_keys else None
