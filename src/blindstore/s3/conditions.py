"""S3 conditional requests (RFC 9110 §13 as S3 applies them), pure.

Evaluated against the current object's ETag and Last-Modified. S3's precedence: If-Match beats a
failing If-Unmodified-Since, and If-None-Match beats a passing If-Modified-Since.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from blindstore.errors import NotModified, PreconditionFailed


@dataclass(frozen=True, slots=True)
class Conditions:
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: float | None = None
    if_unmodified_since: float | None = None

    @property
    def empty(self) -> bool:
        return (
            self.if_match is None
            and self.if_none_match is None
            and self.if_modified_since is None
            and self.if_unmodified_since is None
        )


def parse_http_date(value: str | None) -> float | None:
    """An HTTP date as epoch seconds; an unparseable date is ignored, as S3 does."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etags(value: str) -> list[str]:
    return [v.strip().removeprefix("W/").strip('"') for v in value.split(",") if v.strip()]


def etag_matches(header: str, etag: str) -> bool:
    tags = _etags(header)
    return "*" in tags or etag in tags


def check_read(cond: Conditions, etag: str, last_modified: float) -> None:
    """Raise PreconditionFailed (412) or NotModified (304) for a GET/HEAD, as S3 does."""
    if cond.empty:
        return
    # Last-Modified has one-second resolution on the wire.
    modified = int(last_modified)
    if cond.if_match is not None:
        if not etag_matches(cond.if_match, etag):
            raise PreconditionFailed(Condition="If-Match")
    elif cond.if_unmodified_since is not None and modified > cond.if_unmodified_since:
        raise PreconditionFailed(Condition="If-Unmodified-Since")
    if cond.if_none_match is not None:
        if etag_matches(cond.if_none_match, etag):
            raise NotModified()
    elif cond.if_modified_since is not None and modified <= cond.if_modified_since:
        raise NotModified()


def check_copy_source(cond: Conditions, etag: str, last_modified: float) -> None:
    """x-amz-copy-source-if-*: every failure is a 412 (there is no 304 for a copy)."""
    try:
        check_read(cond, etag, last_modified)
    except NotModified as exc:
        raise PreconditionFailed() from exc
