"""Provenance and consent: where an object's data came from, on what consent and legal basis, and
until when it may be kept.

A client states them in request headers on PutObject, CreateMultipartUpload and CopyObject
(``docs/provenance.md``); the catalog keeps them with the object (``ObjectRecord.provenance``,
``ObjectRecord.retention_until``), the row MAC covers them, and GET/HEAD return them as the same
headers. A placement rule can require some of them (``require:`` in the policy), and
``blindstore retention enforce`` deletes objects once their retention date has passed.

Pure: header values in, checked values out, or ``InvalidArgument``/``InvalidRequest`` naming the
header. No I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Final

from blindstore.errors import InvalidArgument, InvalidRequest

__all__ = [
    "FIELDS",
    "HEADERS",
    "LEGAL_BASES",
    "MAX_VALUE_LENGTH",
    "REQUIRABLE",
    "RETENTION_HEADER",
    "Provenance",
    "check_required",
    "format_retention",
    "missing",
    "parse_headers",
    "parse_retention",
    "response_headers",
]

#: Text fields kept in ``ObjectRecord.provenance``, in the order they are shown.
FIELDS: Final = ("origin_system", "consent_ref", "legal_basis")
#: The fields a placement rule may require (``require:``): the text fields and the retention date.
REQUIRABLE: Final = (*FIELDS, "retention_until")

#: The request (and response) header of each field.
HEADERS: Final = {
    "origin_system": "x-blindstore-origin-system",
    "consent_ref": "x-blindstore-consent-ref",
    "legal_basis": "x-blindstore-legal-basis",
    "retention_until": "x-blindstore-retention-until",
}
RETENTION_HEADER: Final = HEADERS["retention_until"]

#: Longest accepted value, in characters.
MAX_VALUE_LENGTH: Final = 256

#: Suggested ``legal_basis`` codes (GDPR art. 6 and 9, with the French public-health code). The
#: header is free text; these codes are the documented vocabulary, so that audits can group
#: objects by basis. Labels serve transparency output.
LEGAL_BASES: Final = {
    "gdpr-9-2-a": "GDPR art. 9(2)(a): explicit consent of the data subject",
    "gdpr-9-2-c": "GDPR art. 9(2)(c): vital interests of a data subject unable to consent",
    "gdpr-9-2-g": "GDPR art. 9(2)(g): substantial public interest, on the basis of law",
    "gdpr-9-2-h": (
        "GDPR art. 9(2)(h): preventive or occupational medicine, medical diagnosis, "
        "provision of health care or treatment, management of health care systems"
    ),
    "gdpr-9-2-i": "GDPR art. 9(2)(i): public interest in the area of public health",
    "gdpr-9-2-j": (
        "GDPR art. 9(2)(j): archiving in the public interest, scientific or historical "
        "research, statistics"
    ),
}

# ISO 8601 extended format: a date, or a date-time with an explicit offset (Z or ±HH:MM). A
# date-time without an offset is refused: which time zone was meant cannot be known.
_DATE = r"\d{4}-\d{2}-\d{2}"
_RETENTION = re.compile(
    rf"(?P<date>{_DATE})"
    r"(?:T(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)(?P<offset>Z|[+-]\d{2}:\d{2}))?",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class Provenance:
    """The provenance fields of one write: ``fields`` holds the present text fields only."""

    fields: Mapping[str, str] = field(default_factory=dict)
    retention_until: float | None = None

    def present(self) -> frozenset[str]:
        """The names (of ``REQUIRABLE``) this write carries."""
        names = set(self.fields)
        if self.retention_until is not None:
            names.add("retention_until")
        return frozenset(names)


def _check_text(header: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise InvalidArgument(f"{header} must not be empty.", ArgumentName=header)
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidArgument(
            f"{header} must be at most {MAX_VALUE_LENGTH} characters.", ArgumentName=header
        )
    # isprintable() is False for control characters, line and paragraph separators, and the
    # surrogates that stand for bytes that were not UTF-8 on the wire.
    if not value.isprintable():
        raise InvalidArgument(
            f"{header} must be printable UTF-8 text without control characters.",
            ArgumentName=header,
        )
    return value


def parse_retention(text: str, *, header: str = RETENTION_HEADER) -> float:
    """An ISO 8601 date (``2031-12-31``, 00:00 UTC that day) or date-time with an offset
    (``2031-12-31T23:59:59Z``, ``...+01:00``) as seconds since the epoch.

    ``InvalidArgument`` naming ``header`` for anything else (no offset, a date that does not
    exist, a year before 1970).
    """
    value = text.strip()
    matched = _RETENTION.fullmatch(value)
    problem = (
        f"{header} must be an ISO 8601 date (2031-12-31) or a date-time with a time zone "
        "(2031-12-31T23:59:59Z)."
    )
    if matched is None:
        raise InvalidArgument(problem, ArgumentName=header)
    try:
        if matched["time"] is None:
            moment = datetime.combine(date.fromisoformat(matched["date"]), time(), UTC)
        else:
            # fromisoformat (3.11) takes at most 6 fraction digits: finer ones do not matter.
            clock, dot, fraction = matched["time"].partition(".")
            offset = "+00:00" if matched["offset"] == "Z" else matched["offset"]
            moment = datetime.fromisoformat(f"{matched['date']}T{clock}{dot}{fraction[:6]}{offset}")
    except ValueError:
        raise InvalidArgument(problem, ArgumentName=header) from None
    if moment.year < 1970:
        raise InvalidArgument(f"{header} must not be before 1970.", ArgumentName=header)
    return moment.timestamp()


def format_retention(epoch: float) -> str:
    """A retention date as returned on GET/HEAD: ISO 8601 in UTC, ``2031-12-31T00:00:00Z``
    (milliseconds only when there are some)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_headers(headers: Iterable[tuple[str, str]]) -> Provenance:
    """The provenance headers of a request (``(name, value)`` pairs, any case), checked.

    Each header may appear once (``InvalidArgument`` otherwise: two consent references cannot be
    combined into one).
    """
    by_header = {header: name for name, header in HEADERS.items()}
    seen: dict[str, str] = {}
    for raw_name, raw_value in headers:
        lowered = raw_name.lower()
        name = by_header.get(lowered)
        if name is None:
            continue
        if name in seen:
            raise InvalidArgument(f"{lowered} must be given once.", ArgumentName=lowered)
        seen[name] = raw_value
    retention = seen.pop("retention_until", None)
    fields: dict[str, str] = {
        name: _check_text(HEADERS[name], seen[name]) for name in FIELDS if name in seen
    }
    return Provenance(
        fields=fields,
        retention_until=None if retention is None else parse_retention(retention),
    )


def response_headers(
    provenance: Mapping[str, str], retention_until: float | None
) -> list[tuple[str, str]]:
    """The headers GET and HEAD return for an object's provenance."""
    headers = [(HEADERS[name], provenance[name]) for name in FIELDS if name in provenance]
    if retention_until is not None:
        headers.append((RETENTION_HEADER, format_retention(retention_until)))
    return headers


def missing(required: Iterable[str], provenance: Provenance) -> tuple[str, ...]:
    """The required fields a write lacks, in the order they were required."""
    present = provenance.present()
    return tuple(name for name in required if name not in present)


def check_required(required: Iterable[str], provenance: Provenance, rule: str) -> None:
    """``InvalidRequest`` naming the missing headers and the rule that requires them."""
    lacking = missing(required, provenance)
    if lacking:
        names = ", ".join(HEADERS[name] for name in lacking)
        raise InvalidRequest(
            f"The placement policy (rule {rule!r}) requires the header(s) {names} for this "
            "object; nothing was stored."
        )
