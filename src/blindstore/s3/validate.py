"""Request validation with S3's rules: bucket names, keys, metadata, tags, copy sources.

Pure functions: strings and header pairs in, clean values out, or an ``errors`` exception whose
code and message are the ones S3 answers. Header inputs are ``(name, value)`` pairs in any case
(pass ``request.headers.items()``), so repeated headers are seen and combined as S3 combines them.

Sources for the rules: the S3 user guide (bucket naming rules, object key names, user-defined
metadata, object tagging), the API reference (PutObject ``x-amz-tagging``, CopyObject
``x-amz-copy-source``) and answers observed from S3 (the tag errors, as quoted in public issue
trackers and in ceph/s3-tests).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import unquote, unquote_plus

from blindstore.errors import (
    BadRequest,
    InvalidArgument,
    InvalidBucketName,
    InvalidRequest,
    InvalidTag,
    InvalidURI,
    KeyTooLongError,
    MetadataTooLarge,
)

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "MAX_BUCKET_TAGS",
    "MAX_KEY_BYTES",
    "MAX_OBJECT_TAGS",
    "MAX_USER_METADATA_BYTES",
    "SYSTEM_HEADERS",
    "check_bucket_name",
    "check_key",
    "check_tag_set",
    "collect_system_headers",
    "collect_user_metadata",
    "parse_copy_source",
    "parse_tagging_header",
    "require_body_digest",
]

# --- Bucket names ---------------------------------------------------------------------------

# Dot-separated labels, each starting and ending with a letter or digit. This one pattern holds
# the documented charset, "begin and end with a letter or number" and "no two adjacent
# periods", plus the label rule that rejects `foo-.bar` and `foo.-bar` (ceph/s3-tests
# test_bucket_create_naming_dns_dash_dot / _dot_dash, checked against S3).
_BUCKET_LABELS = re.compile(
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
)
_IPV4_LIKE = re.compile(r"\d+\.\d+\.\d+\.\d+")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def check_bucket_name(name: str) -> None:
    """Raise ``InvalidBucketName`` unless ``name`` follows S3's general-purpose bucket rules.

    3 to 63 characters of lower-case letters, digits, ``.`` and ``-``; each dot-separated label
    starts and ends with a letter or digit; not shaped like an IPv4 address; none of the
    reserved prefixes (``xn--``, ``sthree-``, ``amzn-s3-demo-``) or suffixes (``-s3alias``,
    ``--ol-s3``, ``.mrap``, ``--x-s3``, ``--table-s3``).
    """
    if (
        not 3 <= len(name) <= 63
        or _BUCKET_LABELS.fullmatch(name) is None
        or _IPV4_LIKE.fullmatch(name) is not None
        or name.startswith(_RESERVED_BUCKET_PREFIXES)
        or name.endswith(_RESERVED_BUCKET_SUFFIXES)
    ):
        raise InvalidBucketName(BucketName=name)


# --- Object keys ----------------------------------------------------------------------------

MAX_KEY_BYTES = 1024


def check_key(key: str) -> None:
    """Check an object key: non-empty, valid UTF-8, at most 1024 UTF-8 bytes.

    Raises ``InvalidArgument`` for an empty key, ``InvalidURI`` for a key holding lone
    surrogates (bytes that were not UTF-8 on the wire), and ``KeyTooLongError`` (with S3's
    ``Size`` and ``MaxSizeAllowed``) past 1024 bytes, ``InvalidArgument`` for NUL. Any other
    character is an opaque part of the key, as in S3.
    """
    if not key:
        raise InvalidArgument("The object key must not be empty.")
    # A character is at most 4 UTF-8 bytes, so short ASCII keys need no encoding at all.
    if key.isascii():
        size = len(key)
    else:
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidURI() from None
    if size > MAX_KEY_BYTES:
        raise KeyTooLongError(Size=str(size), MaxSizeAllowed=str(MAX_KEY_BYTES))
    # NUL cannot travel in an S3 XML listing and PostgreSQL TEXT cannot store it.
    if "\x00" in key:
        raise InvalidArgument("Object keys must not contain the NUL character.")


def _check_utf8(name: str, value: str) -> None:
    """Stored header values must be UTF-8: the request decoder keeps other bytes as lone
    surrogates (SigV4 needs the wire bytes back), which no catalog or answer can carry."""
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(
            f"The value of the {name} header is not valid UTF-8.", ArgumentName=name
        ) from None


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


# --- Metadata headers -----------------------------------------------------------------------

_META_PREFIX = "x-amz-meta-"
#: "the user-defined metadata is limited to 2 KB in size ... measured by taking the sum of the
#: number of bytes in the UTF-8 encoding of each key and value" (S3 user guide). The key is the
#: name after ``x-amz-meta-``, as the SDKs expose it.
MAX_USER_METADATA_BYTES = 2048


def collect_user_metadata(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Collect ``x-amz-meta-*`` headers as ``{name without prefix, lower-case: value}``.

    Repeated names are joined with ``,`` (S3 combines same-named metadata headers into a
    comma-delimited list). Raises ``MetadataTooLarge`` when the names plus values exceed
    2048 UTF-8 bytes.
    """
    metadata: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if not lowered.startswith(_META_PREFIX):
            continue
        key = lowered[len(_META_PREFIX) :]
        if not key:
            # `x-amz-meta-` alone names nothing; there is no key to store it under.
            continue
        _check_utf8(lowered, value)
        previous = metadata.get(key)
        metadata[key] = value if previous is None else f"{previous},{value}"
    size = sum(_utf8_len(key) + _utf8_len(value) for key, value in metadata.items())
    if size > MAX_USER_METADATA_BYTES:
        raise MetadataTooLarge(Size=str(size), MaxSizeAllowed=str(MAX_USER_METADATA_BYTES))
    return metadata


#: The system metadata an object keeps from its upload request (lower-case header names).
SYSTEM_HEADERS = frozenset(
    {
        "content-type",
        "content-encoding",
        "content-disposition",
        "content-language",
        "cache-control",
        "expires",
    }
)
#: What S3 stores (and answers on GET/HEAD) when an upload carries no Content-Type.
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
_AWS_CHUNKED = "aws-chunked"


def collect_system_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Collect the stored system headers as ``{lower-case name: value}``.

    ``aws-chunked`` is dropped from Content-Encoding, as S3 does: it frames this request's body,
    it does not describe the object (a Content-Encoding left empty is omitted). Repeated
    headers are joined with ``", "``. Content-Type defaults to ``binary/octet-stream``.
    """
    collected: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in SYSTEM_HEADERS:
            _check_utf8(lowered, value)
            previous = collected.get(lowered)
            collected[lowered] = value if previous is None else f"{previous}, {value}"
    encoding = collected.get("content-encoding")
    if encoding is not None and _AWS_CHUNKED in encoding.lower():
        kept = [
            token
            for token in (part.strip() for part in encoding.split(","))
            if token and token.lower() != _AWS_CHUNKED
        ]
        if kept:
            collected["content-encoding"] = ",".join(kept)
        else:
            del collected["content-encoding"]
    collected.setdefault("content-type", DEFAULT_CONTENT_TYPE)
    return collected


# --- Tags -----------------------------------------------------------------------------------

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
_MAX_TAG_KEY = 128
_MAX_TAG_VALUE = 256
_TAG_SYMBOLS = frozenset("_.:/=+-@ ")
# The tag charset is `[\p{L}\p{Z}\p{N}_.:/=+\-@]` (AWS API references); for ASCII that is this.
_ASCII_TAG_TEXT = re.compile(r"[A-Za-z0-9 _.:/=+\-@]*")
_TAGGING_HEADER_MESSAGE = (
    "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters "
    "without tag name duplicates."
)


def _tag_text_is_valid(text: str) -> bool:
    if text.isascii():
        return _ASCII_TAG_TEXT.fullmatch(text) is not None
    return all(char in _TAG_SYMBOLS or unicodedata.category(char)[0] in "LNZ" for char in text)


def _utf16_len(text: str) -> int:
    # S3 counts tag lengths in UTF-16 code units ("object tags are internally represented in
    # UTF-16"), so a character outside the BMP counts twice.
    return len(text) if text.isascii() else len(text.encode("utf-16-le", "surrogatepass")) // 2


def check_tag_set(
    pairs: Iterable[tuple[str, str]], *, max_tags: int = MAX_OBJECT_TAGS
) -> dict[str, str]:
    """Validate tag ``(key, value)`` pairs with S3's rules and return them as a dict.

    ``BadRequest`` past ``max_tags`` ("Object tags cannot be greater than 10"); ``InvalidTag``
    for a duplicate key, a key of 0 or more than 128 characters, a value over 256 characters
    (UTF-16 code units), a character outside letters, digits, white space and ``_.:/=+-@``, or
    a key in the reserved ``aws:`` namespace.
    """
    tag_list = list(pairs)
    if len(tag_list) > max_tags:
        raise BadRequest(f"Object tags cannot be greater than {max_tags}")
    tags: dict[str, str] = {}
    for key, value in tag_list:
        if key in tags:
            raise InvalidTag("Cannot provide multiple Tags with the same key")
        if _utf16_len(key) > _MAX_TAG_KEY:
            raise InvalidTag(f"The TagKey you have provided is too long, max {_MAX_TAG_KEY}")
        if _utf16_len(value) > _MAX_TAG_VALUE:
            raise InvalidTag(f"The TagValue you have provided is too long, max {_MAX_TAG_VALUE}")
        if not key or not _tag_text_is_valid(key):
            raise InvalidTag("The TagKey you have provided is invalid")
        if not _tag_text_is_valid(value):
            raise InvalidTag("The TagValue you have provided is invalid")
        if key[:4].lower() == "aws:":
            raise InvalidTag("Your TagKey cannot be prefixed with aws:")
        tags[key] = value
    return tags


def parse_tagging_header(value: str) -> dict[str, str]:
    """Parse ``x-amz-tagging`` (``k1=v1&k2=v2``, form-URL-encoded) into a validated tag dict.

    A name without ``=`` holds the empty value (ceph/s3-tests ``foo=bar&bar``); an empty header
    is no tags. ``InvalidArgument`` (S3's message) for a pair with a second ``=``, a repeated
    name or bytes that are not UTF-8; then the rules of :func:`check_tag_set`.
    """
    pairs: list[tuple[str, str]] = []
    names: set[str] = set()
    for piece in value.split("&"):
        if not piece:
            continue
        raw_name, _, raw_value = piece.partition("=")
        if "=" in raw_value:
            raise InvalidArgument(_TAGGING_HEADER_MESSAGE)
        try:
            name = unquote_plus(raw_name, errors="strict")
            decoded = unquote_plus(raw_value, errors="strict")
        except UnicodeDecodeError:
            raise InvalidArgument(_TAGGING_HEADER_MESSAGE) from None
        if name in names:
            raise InvalidArgument(_TAGGING_HEADER_MESSAGE)
        names.add(name)
        pairs.append((name, decoded))
    return check_tag_set(pairs)


# --- Copy source ----------------------------------------------------------------------------

_COPY_SOURCE_MESSAGE = "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
_VERSION_ID_QUERY = "versionId="


#: ``x-amz-checksum-<algorithm>`` headers that carry a value (not -mode, -algorithm, -type).
_CHECKSUM_VALUE_HEADER = re.compile(r"x-amz-checksum-(crc32|crc32c|crc64nvme|sha1|sha256)")


def require_body_digest(headers: Iterable[str]) -> None:
    """DeleteObjects must carry Content-MD5 or an ``x-amz-checksum-*`` value (as S3 demands), so
    that a list of keys to delete cannot be altered in transit undetected."""
    for name in headers:
        if name in ("content-md5", "x-amz-trailer") or _CHECKSUM_VALUE_HEADER.fullmatch(name):
            return
    raise InvalidRequest("Missing required header for this request: Content-MD5")


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """Parse ``x-amz-copy-source`` into ``(bucket, key, version_id or None)``.

    The value is ``[/]bucket/key[?versionId=id]`` with bucket and key percent-encoded (a ``+``
    stays a ``+``: this is a path, not a form). The query is split off before decoding, so an
    encoded ``?`` stays in the key. ``InvalidArgument`` for a missing bucket or key, a query
    other than one non-empty ``versionId``, or bytes that are not UTF-8. The bucket name and
    key are not checked here; look them up as usual.
    """
    path, question, query = value.partition("?")
    version_id: str | None = None
    if question:
        if not query.startswith(_VERSION_ID_QUERY) or "&" in query:
            raise InvalidArgument(_COPY_SOURCE_MESSAGE)
        try:
            version_id = unquote(query[len(_VERSION_ID_QUERY) :], errors="strict")
        except UnicodeDecodeError:
            raise InvalidArgument(_COPY_SOURCE_MESSAGE) from None
        if not version_id:
            raise InvalidArgument("Version id cannot be the empty string")
    try:
        decoded = unquote(path.removeprefix("/"), errors="strict")
    except UnicodeDecodeError:
        raise InvalidArgument(_COPY_SOURCE_MESSAGE) from None
    bucket, slash, key = decoded.partition("/")
    if not bucket or not slash or not key:
        raise InvalidArgument(_COPY_SOURCE_MESSAGE)
    return bucket, key, version_id
