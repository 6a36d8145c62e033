"""S3 conditional request rules."""

from __future__ import annotations

import pytest

from blindstore.errors import NotModified, PreconditionFailed
from blindstore.s3.conditions import Conditions, check_copy_source, check_read, parse_http_date

ETAG = "abc"
MODIFIED = 1_700_000_000.5


def test_no_conditions_pass() -> None:
    check_read(Conditions(), ETAG, MODIFIED)


def test_if_match_wildcard_and_list() -> None:
    check_read(Conditions(if_match="*"), ETAG, MODIFIED)
    check_read(Conditions(if_match='"x", "abc"'), ETAG, MODIFIED)
    with pytest.raises(PreconditionFailed):
        check_read(Conditions(if_match='"x"'), ETAG, MODIFIED)


def test_if_none_match_gives_not_modified() -> None:
    with pytest.raises(NotModified):
        check_read(Conditions(if_none_match='"abc"'), ETAG, MODIFIED)


def test_if_match_wins_over_failing_if_unmodified_since() -> None:
    check_read(Conditions(if_match='"abc"', if_unmodified_since=MODIFIED - 100), ETAG, MODIFIED)


def test_if_none_match_wins_over_passing_if_modified_since() -> None:
    with pytest.raises(NotModified):
        check_read(
            Conditions(if_none_match='"abc"', if_modified_since=MODIFIED - 100), ETAG, MODIFIED
        )


def test_modified_since_compares_whole_seconds() -> None:
    with pytest.raises(NotModified):
        check_read(Conditions(if_modified_since=int(MODIFIED)), ETAG, MODIFIED)
    with pytest.raises(PreconditionFailed):
        check_read(Conditions(if_unmodified_since=MODIFIED - 1), ETAG, MODIFIED)


def test_copy_source_conditions_never_answer_not_modified() -> None:
    with pytest.raises(PreconditionFailed):
        check_copy_source(Conditions(if_none_match='"abc"'), ETAG, MODIFIED)


def test_unparseable_dates_are_ignored() -> None:
    assert parse_http_date("yesterday") is None
    assert parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT") == 1_700_000_000.0
