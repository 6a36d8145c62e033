"""Provenance headers: parsed, checked (the error names the header), returned; requirements."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from blindstore.errors import InvalidArgument, InvalidRequest
from blindstore.provenance import (
    MAX_VALUE_LENGTH,
    Provenance,
    check_required,
    format_retention,
    missing,
    parse_headers,
    parse_retention,
    response_headers,
)

DEC_31_2031 = datetime(2031, 12, 31, tzinfo=UTC).timestamp()


def test_the_four_headers_are_read_in_any_case() -> None:
    parsed = parse_headers(
        [
            ("X-Blindstore-Origin-System", "PACS-CHU-Nord"),
            ("x-blindstore-consent-ref", "  consent/2026/42 "),
            ("x-blindstore-legal-basis", "gdpr-9-2-h"),
            ("x-blindstore-retention-until", "2031-12-31"),
            ("x-amz-meta-other", "ignored"),
        ]
    )
    assert parsed.fields == {
        "origin_system": "PACS-CHU-Nord",
        "consent_ref": "consent/2026/42",
        "legal_basis": "gdpr-9-2-h",
    }
    assert parsed.retention_until == DEC_31_2031


def test_a_request_without_provenance_has_none() -> None:
    parsed = parse_headers([("content-type", "text/plain")])
    assert parsed == Provenance()
    assert parsed.present() == frozenset()


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "line\nbreak",
        "tab\there",
        "nul\x00",
        "bell\x07",
        "x" * (MAX_VALUE_LENGTH + 1),
        "not utf-8 \udce9",
    ],
)
def test_bad_text_values_are_refused_naming_the_header(value: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_headers([("x-blindstore-consent-ref", value)])
    assert "x-blindstore-consent-ref" in caught.value.message
    assert caught.value.status == 400


def test_values_up_to_the_limit_and_unicode_text_are_accepted() -> None:
    longest = "x" * MAX_VALUE_LENGTH
    parsed = parse_headers(
        [("x-blindstore-origin-system", longest), ("x-blindstore-legal-basis", "art. 9(2)(h) é")]
    )
    assert parsed.fields["origin_system"] == longest
    assert parsed.fields["legal_basis"] == "art. 9(2)(h) é"


def test_a_header_given_twice_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="x-blindstore-legal-basis must be given once"):
        parse_headers([("x-blindstore-legal-basis", "a"), ("X-Blindstore-Legal-Basis", "b")])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2031-12-31", DEC_31_2031),
        ("2031-12-31T00:00Z", DEC_31_2031),
        ("2031-12-31T00:00:00Z", DEC_31_2031),
        ("2031-12-31T01:00:00+01:00", DEC_31_2031),
        ("2031-12-30T23:00:00-01:00", DEC_31_2031),
        ("2031-12-31T00:00:00.250Z", DEC_31_2031 + 0.25),
        ("2031-12-31T00:00:00.250000001Z", DEC_31_2031 + 0.25),
        ("1970-01-01", 0.0),
    ],
)
def test_retention_dates_and_date_times_are_read_as_utc(text: str, expected: float) -> None:
    assert parse_retention(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tomorrow",
        "2031-12-31T00:00:00",  # no time zone: ambiguous
        "2031-02-30",
        "2031-13-01",
        "20311231",
        "2031-12-31 00:00:00Z",
        "2031-12-31T25:00:00Z",
        "1969-12-31",
        "2031-12-31T00:00:00+25:00",
        "١٢٣٤-01-01",  # non-ASCII digits
    ],
)
def test_invalid_retention_dates_are_refused_naming_the_header(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_headers([("x-blindstore-retention-until", text)])
    assert "x-blindstore-retention-until" in caught.value.message


def test_retention_is_returned_as_iso_8601_utc() -> None:
    assert format_retention(DEC_31_2031) == "2031-12-31T00:00:00Z"
    assert format_retention(DEC_31_2031 + 0.25) == "2031-12-31T00:00:00.250Z"
    assert parse_retention(format_retention(DEC_31_2031 + 12.5)) == DEC_31_2031 + 12.5


def test_response_headers_repeat_the_request_headers() -> None:
    headers = response_headers({"legal_basis": "gdpr-9-2-h", "origin_system": "LIS"}, DEC_31_2031)
    assert headers == [
        ("x-blindstore-origin-system", "LIS"),
        ("x-blindstore-legal-basis", "gdpr-9-2-h"),
        ("x-blindstore-retention-until", "2031-12-31T00:00:00Z"),
    ]
    assert response_headers({}, None) == []


def test_missing_lists_the_required_fields_a_write_lacks_in_order() -> None:
    given = Provenance({"legal_basis": "x"}, retention_until=1.0)
    required = ("consent_ref", "retention_until", "legal_basis", "origin_system")
    assert missing(required, given) == ("consent_ref", "origin_system")
    assert missing((), Provenance()) == ()


def test_a_missing_requirement_names_the_headers_and_the_rule() -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_required(("consent_ref", "legal_basis"), Provenance({"legal_basis": "x"}), "ident")
    assert caught.value.status == 400
    assert "x-blindstore-consent-ref" in caught.value.message
    assert "x-blindstore-legal-basis" not in caught.value.message
    assert "'ident'" in caught.value.message
    check_required(("legal_basis",), Provenance({"legal_basis": "x"}), "ident")
