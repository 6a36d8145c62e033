"""The ``Range`` header of GetObject/HeadObject, with S3's rules.

S3 serves one byte range per request ("Amazon S3 doesn't support retrieving multiple ranges of
data per GET request", GetObject). What it does with each kind of header:

============================  ===================================================================
``bytes=a-b``, ``a < size``   206 for ``a..min(b, size-1)``; an end past the object is clamped
``bytes=a-``                  206 for ``a..size-1``
``bytes=-n``, ``n > 0``       206 for the last ``n`` bytes (the whole object when ``n >= size``)
``a >= size``                 416 ``InvalidRange`` (also on an empty object: s3-tests
                              ``test_ranged_request_empty_object``)
``bytes=-0``                  416 ``InvalidRange``: a zero suffix is never satisfiable (RFC 9110
                              §14.1.2)
``bytes=-n`` on 0 bytes       200 with the whole (empty) object: S3 answers ``200 OK``,
                              ``Content-Length: 0`` (apache/arrow-rs-object-store#846), since no
                              ``Content-Range`` can describe a range of an empty object
``b < a``, several ranges,    ignored: 200 with the whole object, as RFC 9110 §14.2 says for an
other units, bad syntax       invalid Range and as S3 does
============================  ===================================================================

Ranges are inclusive ``(start, end)`` pairs, as in ``Content-Range``.
"""

from __future__ import annotations

import re

from blindstore.errors import InvalidRange

__all__ = ["content_range", "parse_range"]

# One `bytes` range, digits only; the unit is case-insensitive (RFC 9110 §14.1).
_SINGLE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
# Positions with more digits than this are past any object; capping them keeps int() cheap and
# bounded on a hostile header while preserving every comparison that matters.
_MAX_DIGITS = 30
_FAR_PAST_ANY_OBJECT: int = 10**_MAX_DIGITS


def _position(digits: str) -> int:
    significant = digits.lstrip("0")
    if len(significant) > _MAX_DIGITS:
        return _FAR_PAST_ANY_OBJECT
    return int(significant) if significant else 0


def _greater(left: str, right: str) -> bool:
    """Compare two digit strings as numbers, whatever their length."""
    left, right = left.lstrip("0"), right.lstrip("0")
    return (len(left), left) > (len(right), right)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Resolve a ``Range`` header against an object of ``size`` bytes.

    Returns the inclusive ``(start, end)`` to serve with 206, or ``None`` to serve the whole
    object with 200 (no header, or one S3 ignores). Raises ``InvalidRange`` (416, with S3's
    ``RangeRequested`` and ``ActualObjectSize``) when the range cannot be satisfied.
    """
    if not header:
        return None
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        suffix = _position(last)
        if suffix == 0:
            raise _unsatisfiable(header, size)
        if size == 0:
            return None
        return max(size - suffix, 0), size - 1
    if last and _greater(first, last):
        return None
    start = _position(first)
    if start >= size:
        raise _unsatisfiable(header, size)
    end = size - 1 if not last else min(_position(last), size - 1)
    return start, end


def _unsatisfiable(header: str, size: int) -> InvalidRange:
    return InvalidRange(RangeRequested=header, ActualObjectSize=str(size))


def content_range(start: int, end: int, size: int) -> str:
    """The ``Content-Range`` value of a 206 answer: ``bytes start-end/size``."""
    return f"bytes {start}-{end}/{size}"
