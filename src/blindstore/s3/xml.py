"""S3's XML bodies: parse the request documents, render the response documents.

Parsing goes through ``defusedxml`` with a bounded tree builder: no DTD (so no entity expansion
and no external references), a size cap, a depth cap and an element-count cap, each checked
while expat reads, so a hostile body costs bounded time and memory. Any of those, and any
well-formedness error (bad bytes, bad UTF-8, wrong root), is ``MalformedXML``.

Rendering is string building with one precompiled escape, in the element order of the S3 API
reference samples (Response Syntax where no sample shows an element; clients find elements by
name, so order is fidelity, not function). Result roots carry S3's namespace, the error document
none, as S3 writes them. Times are ISO 8601 UTC with milliseconds (``2009-10-12T17:50:30.000Z``),
ETags are written quoted (``&quot;...&quot;``) from the unquoted values the catalog keeps, and
checksums are taken as ``{lower-case algorithm: base64 value}`` (``{"crc32": "..."}``, the
catalog's form) and written as ``ChecksumCRC32`` etc.

Keys: XML 1.0 cannot carry most control characters even as references. Like S3 (aws-sdk-go
issue 1914: ``<Key>|&#x4;...``) they are written as character references, which strict XML 1.0
parsers refuse; clients that need such keys list with ``encoding-type=url`` (boto3 always does),
which percent-encodes Key, Prefix, Delimiter, StartAfter, Marker/NextMarker, KeyMarker and
CommonPrefixes as S3 does (``quux ab/`` -> ``quux%20ab/``, ``a+b`` -> ``a%2Bb``).
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from blindstore.errors import InvalidArgument, InvalidPartOrder, MalformedXML
from blindstore.s3.validate import MAX_OBJECT_TAGS, check_tag_set

__all__ = [
    "MAX_COMPLETE_MULTIPART_BODY",
    "MAX_DELETE_BODY",
    "MAX_DELETE_OBJECTS",
    "MAX_PARTS",
    "MAX_SMALL_BODY",
    "S3_NAMESPACE",
    "BucketEntry",
    "DeleteError",
    "Deleted",
    "ObjectEntry",
    "Owner",
    "PartEntry",
    "UploadEntry",
    "iso8601",
    "parse_complete_multipart",
    "parse_create_bucket",
    "parse_delete",
    "parse_tagging",
    "render_complete_multipart_upload",
    "render_copy_object_result",
    "render_copy_part_result",
    "render_delete_result",
    "render_error",
    "render_initiate_multipart_upload",
    "render_list_buckets",
    "render_list_multipart_uploads",
    "render_list_objects_v1",
    "render_list_objects_v2",
    "render_list_parts",
    "render_location_constraint",
    "render_tagging",
]

S3_NAMESPACE: Final = "http://s3.amazonaws.com/doc/2006-03-01/"

#: Part numbers run 1..10000, so a valid completion lists at most this many parts.
MAX_PARTS: Final = 10_000
#: DeleteObjects takes at most 1000 keys.
MAX_DELETE_OBJECTS: Final = 1_000
#: Body caps. 10000 parts with every checksum are about 4 MB; 1000 keys of 1024 bytes with
#: version ids are about 2 MB, more when the keys need escaping.
MAX_COMPLETE_MULTIPART_BODY: Final = 8 << 20
MAX_DELETE_BODY: Final = 8 << 20
#: Tagging and CreateBucketConfiguration: a few dozen elements.
MAX_SMALL_BODY: Final = 256 << 10

# No S3 request document nests deeper than 4 (Tagging/TagSet/Tag/Key).
_MAX_DEPTH = 8
# Element budgets: the largest valid document plus slack, so that "one too many" still reaches
# the count check and its precise error. A Part holds PartNumber, ETag and up to 10 checksums.
_COMPLETE_ELEMENTS = 1 + (MAX_PARTS + 1) * 13
_DELETE_ELEMENTS = 2 + (MAX_DELETE_OBJECTS + 1) * 6
_SMALL_ELEMENTS = 1_000


# =============================================================================================
# Parsing
# =============================================================================================


class _LimitExceeded(Exception):
    """A structural cap was hit mid-parse; reported to the client as MalformedXML."""


class _Element:
    __slots__ = ("children", "name", "parts")

    def __init__(self, name: str) -> None:
        self.name = name
        self.children: list[_Element] = []
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)


_RecordHandler = Callable[[_Element], None]


class _BoundedTreeBuilder:
    """An ElementTree parser target that builds a minimal tree and aborts past its caps.

    With ``on_record``, each child of the root is handed over when it closes and not kept, so
    a document of 10000 Parts never holds more than one Part's elements at a time.
    """

    def __init__(self, root_name: str, max_elements: int, on_record: _RecordHandler | None) -> None:
        self.root: _Element | None = None
        self._root_name = root_name
        self._stack: list[_Element] = []
        self._budget = max_elements
        self._on_record = on_record

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        self._budget -= 1
        depth = len(self._stack)
        if self._budget < 0 or depth >= _MAX_DEPTH:
            raise _LimitExceeded
        # Namespaces are accepted (botocore declares S3's) but not required (AWS samples omit it).
        element = _Element(tag.rpartition("}")[2])
        if depth == 0:
            if element.name != self._root_name:
                raise _LimitExceeded
            self.root = element
        elif depth > 1 or self._on_record is None:
            self._stack[-1].children.append(element)
        self._stack.append(element)

    def end(self, tag: str) -> None:
        element = self._stack.pop()
        if len(self._stack) == 1 and self._on_record is not None:
            self._on_record(element)

    def data(self, data: str) -> None:
        depth = len(self._stack)
        # A streamed root keeps no text: it would only gather the white space between records.
        if depth > 1 or (depth == 1 and self._on_record is None):
            self._stack[-1].parts.append(data)

    def close(self) -> _Element | None:
        return self.root


def _parse(
    body: bytes,
    root_name: str,
    *,
    max_bytes: int,
    max_elements: int,
    on_record: _RecordHandler | None = None,
) -> _Element:
    """Parse ``body`` into a tree rooted at ``root_name``; MalformedXML for anything else.

    ``on_record`` may raise MalformedXML for a record that breaks the schema; checks that are
    not about well-formedness belong after this returns, so that a document broken further on
    is reported as malformed, as S3 reads the whole document first.
    """
    if not body or len(body) > max_bytes:
        raise MalformedXML()
    builder = _BoundedTreeBuilder(root_name, max_elements, on_record)
    # encoding="utf-8" overrides any declared encoding: S3 bodies are UTF-8 and nothing else.
    parser = DefusedXMLParser(
        target=builder,
        encoding="utf-8",
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    try:
        parser.feed(body)
        parser.close()
    except (ParseError, DefusedXmlException, _LimitExceeded):
        raise MalformedXML() from None
    if builder.root is None:
        raise MalformedXML()
    return builder.root


def _single(parent: _Element, name: str) -> _Element | None:
    """The one child called ``name``, or None; a repeated element is malformed."""
    found: _Element | None = None
    for child in parent.children:
        if child.name == name:
            if found is not None:
                raise MalformedXML()
            found = child
    return found


def _required(parent: _Element, name: str) -> _Element:
    child = _single(parent, name)
    if child is None:
        raise MalformedXML()
    return child


_XSD_INT = re.compile(r"[+-]?[0-9]+")
_PART_NUMBER_MESSAGE = "Part number must be an integer between 1 and 10000, inclusive"
_CHECKSUM_ELEMENT = "Checksum"


def _part_number(digits: str) -> int:
    # Already xsd:int-shaped; a number too long to be an int is out of range.
    if len(digits) > 12:
        raise InvalidArgument(_PART_NUMBER_MESSAGE)
    number = int(digits)
    if not 1 <= number <= MAX_PARTS:
        raise InvalidArgument(_PART_NUMBER_MESSAGE)
    return number


def _unquoted_etag(text: str) -> str:
    etag = text.strip()
    if len(etag) >= 2 and etag[0] == '"' and etag[-1] == '"':
        return etag[1:-1]
    return etag


def parse_complete_multipart(
    body: bytes, *, max_bytes: int = MAX_COMPLETE_MULTIPART_BODY
) -> list[tuple[int, str, dict[str, str]]]:
    """Parse a CompleteMultipartUpload body into ``(part number, etag, checksums)`` triples.

    The ETag comes back without quotes (S3 accepts it quoted or not); checksums are
    ``{lower-case algorithm: value}`` from the part's ``Checksum*`` elements (``ChecksumCRC32``
    -> ``"crc32"``). Raises ``MalformedXML`` for a body that is not a well-formed, bounded
    ``CompleteMultipartUpload`` with at least one part each holding one PartNumber (an integer)
    and one ETag, or that lists more than 10000 parts; then ``InvalidArgument`` for a part
    number outside 1..10000 (S3's message) and ``InvalidPartOrder`` for part numbers that do
    not strictly increase (a repeated number included). Whether each part exists and matches
    its ETag, and part sizes (InvalidPart, EntityTooSmall), are for the caller to decide.
    """
    raw_parts: list[tuple[str, str, dict[str, str]]] = []

    def on_part(element: _Element) -> None:
        if element.name != "Part":
            return
        if len(raw_parts) == MAX_PARTS:
            raise MalformedXML()
        digits = _required(element, "PartNumber").text.strip()  # xsd:int collapses white space
        if _XSD_INT.fullmatch(digits) is None:
            raise MalformedXML()
        etag = _unquoted_etag(_required(element, "ETag").text)
        checksums: dict[str, str] = {}
        for child in element.children:
            if child.name.startswith(_CHECKSUM_ELEMENT):
                algorithm = child.name[len(_CHECKSUM_ELEMENT) :].lower()
                if not algorithm or algorithm in checksums:
                    raise MalformedXML()
                checksums[algorithm] = child.text.strip()
        raw_parts.append((digits, etag, checksums))

    _parse(
        body,
        "CompleteMultipartUpload",
        max_bytes=max_bytes,
        max_elements=_COMPLETE_ELEMENTS,
        on_record=on_part,
    )
    if not raw_parts:
        raise MalformedXML()
    parts: list[tuple[int, str, dict[str, str]]] = []
    previous = 0
    for digits, etag, checksums in raw_parts:
        number = _part_number(digits)
        if number <= previous:
            raise InvalidPartOrder()
        previous = number
        parts.append((number, etag, checksums))
    return parts


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise MalformedXML()


def parse_delete(
    body: bytes, *, max_bytes: int = MAX_DELETE_BODY
) -> tuple[bool, list[tuple[str, str | None]]]:
    """Parse a DeleteObjects body into ``(quiet, [(key, version id or None), ...])``.

    Keys are returned exactly as sent (white space and ``&#xD;`` references kept). An empty
    ``<Key/>`` is returned as ``""`` for the caller to answer per key; an empty VersionId is no
    version. ``MalformedXML`` for anything but a bounded ``Delete`` holding 1 to 1000 Objects,
    each with one Key, and at most one valid boolean Quiet.
    """
    objects: list[tuple[str, str | None]] = []
    quiet: list[bool] = []

    def on_record(element: _Element) -> None:
        if element.name == "Object":
            if len(objects) == MAX_DELETE_OBJECTS:
                raise MalformedXML()
            key = _required(element, "Key").text
            version = _single(element, "VersionId")
            objects.append((key, (version.text.strip() or None) if version is not None else None))
        elif element.name == "Quiet":
            if quiet:
                raise MalformedXML()
            quiet.append(_boolean(element.text))

    _parse(body, "Delete", max_bytes=max_bytes, max_elements=_DELETE_ELEMENTS, on_record=on_record)
    if not objects:
        raise MalformedXML()
    return bool(quiet and quiet[0]), objects


def parse_tagging(
    body: bytes, *, max_tags: int = MAX_OBJECT_TAGS, max_bytes: int = MAX_SMALL_BODY
) -> dict[str, str]:
    """Parse a PutObjectTagging/PutBucketTagging body into a validated ``{key: value}`` dict.

    ``MalformedXML`` unless the body is ``Tagging`` holding one ``TagSet`` whose ``Tag``
    elements each hold one Key and one Value (an empty TagSet is valid: no tags). Then S3's tag
    rules (:func:`blindstore.s3.validate.check_tag_set`): ``BadRequest`` past ``max_tags``
    (10 for objects, 50 for buckets), ``InvalidTag`` for a bad key or value.
    """
    root = _parse(body, "Tagging", max_bytes=max_bytes, max_elements=_SMALL_ELEMENTS)
    tag_set = _required(root, "TagSet")
    pairs = [
        (_required(tag, "Key").text, _required(tag, "Value").text)
        for tag in tag_set.children
        if tag.name == "Tag"
    ]
    return check_tag_set(pairs, max_tags=max_tags)


def parse_create_bucket(body: bytes, *, max_bytes: int = MAX_SMALL_BODY) -> str | None:
    """Return the LocationConstraint of a CreateBucket body, or None.

    An empty body (or only white space) and an empty or absent LocationConstraint are None,
    which S3 reads as us-east-1. ``MalformedXML`` for anything else that is not a bounded
    ``CreateBucketConfiguration``.
    """
    if not body or body.isspace():
        return None
    root = _parse(
        body, "CreateBucketConfiguration", max_bytes=max_bytes, max_elements=_SMALL_ELEMENTS
    )
    location = _single(root, "LocationConstraint")
    if location is None:
        return None
    return location.text.strip() or None


# =============================================================================================
# Rendering
# =============================================================================================

_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

# What cannot appear literally in XML 1.0 text: the markup characters, `"` (S3 writes ETags as
# &quot;), CR (a parser would turn it into LF), and characters outside XML 1.0's Char
# production, which S3 writes as (ill-formed) character references too.
_NEEDS_ESCAPE = re.compile('[&<>"\x00-\x08\x0b\x0c\r\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_NAMED_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


def _entity(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED_ENTITIES.get(char) or f"&#x{ord(char):x};"


def _escape(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return _NEEDS_ESCAPE.sub(_entity, text)


# encoding-type=url: percent-encode the UTF-8 bytes of everything but RFC 3986's unreserved
# characters and "/" (ceph/s3-tests test_bucket_listv2_encoding_basic, checked against S3).
# Same output as urllib.parse.quote(text, safe="/"), at a third of its cost on listing-sized
# inputs: runs of unsafe characters are found by one regex and their encodings memoised.
_URL_UNSAFE = re.compile(r"[^A-Za-z0-9_.~/-]+")


@functools.lru_cache(maxsize=1024)
def _percent_encoded(run: str) -> str:
    return "".join([f"%{byte:02X}" for byte in run.encode("utf-8", "surrogatepass")])


def _percent_match(match: re.Match[str]) -> str:
    return _percent_encoded(match.group())


def _url_encode(text: str) -> str:
    return _URL_UNSAFE.sub(_percent_match, text)


def _name(text: str, url: bool) -> str:
    """A key-like value (key, prefix, delimiter, marker) as the listing writes it."""
    return _url_encode(text) if url else _escape(text)


@functools.lru_cache(maxsize=4096)
def _utc_seconds(whole_seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole_seconds))


def iso8601(timestamp: float) -> str:
    """Epoch seconds as S3 writes times in XML: ``2009-10-12T17:50:30.000Z`` (milliseconds
    truncated, so a listing never shows a later second than Last-Modified on HEAD)."""
    # The epsilon absorbs binary rounding (1.999 * 1000 == 1998.9999999999998).
    milliseconds = math.floor(timestamp * 1000 + 1e-6)
    whole, fraction = divmod(milliseconds, 1000)
    return f"{_utc_seconds(whole)}.{fraction:03d}Z"


def _root(name: str) -> str:
    return f'{_DECLARATION}<{name} xmlns="{S3_NAMESPACE}">'


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _optional(element: str, value: str | None) -> str:
    return "" if value is None else f"<{element}>{_escape(value)}</{element}>"


def _checksums(checksums: Mapping[str, str] | None) -> str:
    if not checksums:
        return ""
    return "".join(
        f"<Checksum{algorithm.upper()}>{_escape(value)}</Checksum{algorithm.upper()}>"
        for algorithm, value in checksums.items()
    )


@dataclass(frozen=True, slots=True)
class Owner:
    """An Owner or Initiator. S3 stopped writing DisplayName in November 2025; None omits it."""

    id: str
    display_name: str | None = None

    def render(self, element: str = "Owner") -> str:
        """This owner as ``<element><ID/>[<DisplayName/>]</element>``."""
        return (
            f"<{element}><ID>{_escape(self.id)}</ID>"
            f"{_optional('DisplayName', self.display_name)}</{element}>"
        )


@dataclass(frozen=True, slots=True)
class BucketEntry:
    """One bucket of ListBuckets; ``created`` in epoch seconds."""

    name: str
    created: float
    region: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """One object of a listing; ``etag`` without quotes, ``last_modified`` in epoch seconds."""

    key: str
    last_modified: float
    etag: str
    size: int
    storage_class: str = "STANDARD"
    #: The checksum algorithm given at upload (``"CRC32"``…), listed as ChecksumAlgorithm.
    checksum_algorithm: str | None = None


@dataclass(frozen=True, slots=True)
class PartEntry:
    """One uploaded part of ListParts; ``etag`` without quotes."""

    part_number: int
    last_modified: float
    etag: str
    size: int
    checksums: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UploadEntry:
    """One in-progress upload of ListMultipartUploads."""

    key: str
    upload_id: str
    initiated: float
    initiator: Owner
    owner: Owner
    storage_class: str = "STANDARD"


@dataclass(frozen=True, slots=True)
class Deleted:
    """One ``<Deleted>`` entry of DeleteObjects."""

    key: str
    version_id: str | None = None
    delete_marker: bool = False
    delete_marker_version_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteError:
    """One ``<Error>`` entry of DeleteObjects (code and message as for a whole request)."""

    key: str
    code: str
    message: str
    version_id: str | None = None


def render_list_buckets(
    owner: Owner,
    buckets: Iterable[BucketEntry],
    *,
    continuation_token: str | None = None,
    prefix: str | None = None,
) -> bytes:
    """ListBuckets: ``ListAllMyBucketsResult`` with Owner, Buckets (Name, CreationDate,
    BucketRegion when known), then ContinuationToken and Prefix when given."""
    out = [_root("ListAllMyBucketsResult"), owner.render(), "<Buckets>"]
    out.extend(
        f"<Bucket><Name>{_escape(bucket.name)}</Name>"
        f"<CreationDate>{iso8601(bucket.created)}</CreationDate>"
        f"{_optional('BucketRegion', bucket.region)}</Bucket>"
        for bucket in buckets
    )
    out.append("</Buckets>")
    out.append(_optional("ContinuationToken", continuation_token))
    out.append(_optional("Prefix", prefix))
    out.append("</ListAllMyBucketsResult>")
    return "".join(out).encode()


def _contents(entries: Iterable[ObjectEntry], owner: Owner | None, url: bool) -> Iterable[str]:
    owner_xml = owner.render() if owner is not None else ""
    for entry in entries:
        yield (
            f"<Contents><Key>{_name(entry.key, url)}</Key>"
            f"<LastModified>{iso8601(entry.last_modified)}</LastModified>"
            f"<ETag>&quot;{_escape(entry.etag)}&quot;</ETag>"
            f"{_optional('ChecksumAlgorithm', entry.checksum_algorithm)}"
            f"<Size>{entry.size}</Size>{owner_xml}"
            f"<StorageClass>{_escape(entry.storage_class)}</StorageClass></Contents>"
        )


def _common_prefixes(prefixes: Iterable[str], url: bool) -> Iterable[str]:
    for prefix in prefixes:
        yield f"<CommonPrefixes><Prefix>{_name(prefix, url)}</Prefix></CommonPrefixes>"


def render_list_objects_v2(
    *,
    bucket: str,
    prefix: str,
    max_keys: int,
    is_truncated: bool,
    contents: Sequence[ObjectEntry],
    common_prefixes: Sequence[str] = (),
    delimiter: str | None = None,
    continuation_token: str | None = None,
    next_continuation_token: str | None = None,
    start_after: str | None = None,
    encoding_url: bool = False,
    owner: Owner | None = None,
) -> bytes:
    """ListObjectsV2: ``ListBucketResult``.

    Prefix is always written (empty when none), Delimiter and StartAfter when non-empty, the
    tokens when not None; KeyCount is ``len(contents) + len(common_prefixes)``. Pass ``owner``
    only for ``fetch-owner=true``. With ``encoding_url`` the Key, Prefix, Delimiter, StartAfter
    and CommonPrefixes values are percent-encoded and ``<EncodingType>url</EncodingType>`` is
    written.
    """
    url = encoding_url
    out = [
        _root("ListBucketResult"),
        f"<Name>{_escape(bucket)}</Name><Prefix>{_name(prefix, url)}</Prefix>",
        _optional("ContinuationToken", continuation_token),
        _optional("NextContinuationToken", next_continuation_token),
        f"<KeyCount>{len(contents) + len(common_prefixes)}</KeyCount>",
        f"<MaxKeys>{max_keys}</MaxKeys>",
    ]
    if delimiter:
        out.append(f"<Delimiter>{_name(delimiter, url)}</Delimiter>")
    if url:
        out.append("<EncodingType>url</EncodingType>")
    out.append(f"<IsTruncated>{_bool(is_truncated)}</IsTruncated>")
    if start_after:
        out.append(f"<StartAfter>{_name(start_after, url)}</StartAfter>")
    out.extend(_contents(contents, owner, url))
    out.extend(_common_prefixes(common_prefixes, url))
    out.append("</ListBucketResult>")
    return "".join(out).encode()


def render_list_objects_v1(
    *,
    bucket: str,
    prefix: str,
    marker: str,
    max_keys: int,
    is_truncated: bool,
    contents: Sequence[ObjectEntry],
    common_prefixes: Sequence[str] = (),
    delimiter: str | None = None,
    next_marker: str | None = None,
    encoding_url: bool = False,
    owner: Owner | None = None,
) -> bytes:
    """ListObjects (V1): ``ListBucketResult`` with Marker (always) and NextMarker.

    S3 writes NextMarker only when a delimiter was given and the listing is truncated (without
    a delimiter clients continue from the last key): pass it in exactly that case. ``owner`` is
    written in every Contents (V1 always lists it). ``encoding_url`` as in V2, covering Marker
    and NextMarker too.
    """
    url = encoding_url
    out = [
        _root("ListBucketResult"),
        f"<Name>{_escape(bucket)}</Name><Prefix>{_name(prefix, url)}</Prefix>",
        f"<Marker>{_name(marker, url)}</Marker>",
    ]
    if next_marker is not None:
        out.append(f"<NextMarker>{_name(next_marker, url)}</NextMarker>")
    out.append(f"<MaxKeys>{max_keys}</MaxKeys>")
    if delimiter:
        out.append(f"<Delimiter>{_name(delimiter, url)}</Delimiter>")
    if url:
        out.append("<EncodingType>url</EncodingType>")
    out.append(f"<IsTruncated>{_bool(is_truncated)}</IsTruncated>")
    out.extend(_contents(contents, owner, url))
    out.extend(_common_prefixes(common_prefixes, url))
    out.append("</ListBucketResult>")
    return "".join(out).encode()


def render_location_constraint(region: str | None) -> bytes:
    """GetBucketLocation: the region as the root's text; us-east-1 (or None) is empty, which
    botocore reads as ``None`` ("Buckets in Region us-east-1 have a LocationConstraint of
    null")."""
    text = "" if region is None or region == "us-east-1" else _escape(region)
    return f"{_root('LocationConstraint')}{text}</LocationConstraint>".encode()


def render_initiate_multipart_upload(bucket: str, key: str, upload_id: str) -> bytes:
    """CreateMultipartUpload: ``InitiateMultipartUploadResult`` (Bucket, Key, UploadId)."""
    return (
        f"{_root('InitiateMultipartUploadResult')}<Bucket>{_escape(bucket)}</Bucket>"
        f"<Key>{_escape(key)}</Key><UploadId>{_escape(upload_id)}</UploadId>"
        "</InitiateMultipartUploadResult>"
    ).encode()


def render_complete_multipart_upload(
    *,
    location: str,
    bucket: str,
    key: str,
    etag: str,
    checksums: Mapping[str, str] | None = None,
    checksum_type: str | None = None,
) -> bytes:
    """CompleteMultipartUpload: ``CompleteMultipartUploadResult`` (Location, Bucket, Key, ETag,
    then the object's checksums and ChecksumType when given)."""
    return (
        f"{_root('CompleteMultipartUploadResult')}<Location>{_escape(location)}</Location>"
        f"<Bucket>{_escape(bucket)}</Bucket><Key>{_escape(key)}</Key>"
        f"<ETag>&quot;{_escape(etag)}&quot;</ETag>{_checksums(checksums)}"
        f"{_optional('ChecksumType', checksum_type)}</CompleteMultipartUploadResult>"
    ).encode()


def render_list_parts(
    *,
    bucket: str,
    key: str,
    upload_id: str,
    part_number_marker: int,
    next_part_number_marker: int | None,
    max_parts: int,
    is_truncated: bool,
    parts: Iterable[PartEntry],
    initiator: Owner,
    owner: Owner,
    storage_class: str = "STANDARD",
    checksum_algorithm: str | None = None,
) -> bytes:
    """ListParts: ``ListPartsResult``. NextPartNumberMarker (the last part listed) is written
    when not None; S3 writes it on a truncated page."""
    out = [
        _root("ListPartsResult"),
        f"<Bucket>{_escape(bucket)}</Bucket><Key>{_escape(key)}</Key>",
        f"<UploadId>{_escape(upload_id)}</UploadId>",
        initiator.render("Initiator"),
        owner.render(),
        f"<StorageClass>{_escape(storage_class)}</StorageClass>",
        f"<PartNumberMarker>{part_number_marker}</PartNumberMarker>",
    ]
    if next_part_number_marker is not None:
        out.append(f"<NextPartNumberMarker>{next_part_number_marker}</NextPartNumberMarker>")
    out.append(f"<MaxParts>{max_parts}</MaxParts>")
    out.append(f"<IsTruncated>{_bool(is_truncated)}</IsTruncated>")
    out.extend(
        f"<Part><PartNumber>{part.part_number}</PartNumber>"
        f"<LastModified>{iso8601(part.last_modified)}</LastModified>"
        f"<ETag>&quot;{_escape(part.etag)}&quot;</ETag>{_checksums(part.checksums)}"
        f"<Size>{part.size}</Size></Part>"
        for part in parts
    )
    out.append(_optional("ChecksumAlgorithm", checksum_algorithm))
    out.append("</ListPartsResult>")
    return "".join(out).encode()


def render_list_multipart_uploads(
    *,
    bucket: str,
    key_marker: str,
    upload_id_marker: str,
    next_key_marker: str,
    next_upload_id_marker: str,
    max_uploads: int,
    is_truncated: bool,
    uploads: Iterable[UploadEntry],
    common_prefixes: Iterable[str] = (),
    prefix: str = "",
    delimiter: str | None = None,
    encoding_url: bool = False,
) -> bytes:
    """ListMultipartUploads: ``ListMultipartUploadsResult``. The four markers are always
    written (empty when none, as in S3's samples); ``encoding_url`` encodes KeyMarker,
    NextKeyMarker, Prefix, Delimiter, each Key and CommonPrefixes."""
    url = encoding_url
    out = [
        _root("ListMultipartUploadsResult"),
        f"<Bucket>{_escape(bucket)}</Bucket>",
        f"<KeyMarker>{_name(key_marker, url)}</KeyMarker>",
        f"<UploadIdMarker>{_escape(upload_id_marker)}</UploadIdMarker>",
        f"<NextKeyMarker>{_name(next_key_marker, url)}</NextKeyMarker>",
        f"<NextUploadIdMarker>{_escape(next_upload_id_marker)}</NextUploadIdMarker>",
    ]
    if delimiter:
        out.append(f"<Delimiter>{_name(delimiter, url)}</Delimiter>")
    out.append(f"<Prefix>{_name(prefix, url)}</Prefix>")
    if url:
        out.append("<EncodingType>url</EncodingType>")
    out.append(f"<MaxUploads>{max_uploads}</MaxUploads>")
    out.append(f"<IsTruncated>{_bool(is_truncated)}</IsTruncated>")
    out.extend(
        f"<Upload><Key>{_name(upload.key, url)}</Key>"
        f"<UploadId>{_escape(upload.upload_id)}</UploadId>"
        f"{upload.initiator.render('Initiator')}{upload.owner.render()}"
        f"<StorageClass>{_escape(upload.storage_class)}</StorageClass>"
        f"<Initiated>{iso8601(upload.initiated)}</Initiated></Upload>"
        for upload in uploads
    )
    out.extend(_common_prefixes(common_prefixes, url))
    out.append("</ListMultipartUploadsResult>")
    return "".join(out).encode()


def _copy_result(
    root: str, etag: str, last_modified: float, checksums: Mapping[str, str] | None
) -> bytes:
    return (
        f"{_root(root)}<LastModified>{iso8601(last_modified)}</LastModified>"
        f"<ETag>&quot;{_escape(etag)}&quot;</ETag>{_checksums(checksums)}</{root}>"
    ).encode()


def render_copy_object_result(
    etag: str, last_modified: float, checksums: Mapping[str, str] | None = None
) -> bytes:
    """CopyObject: ``CopyObjectResult`` (LastModified, ETag, checksums when given)."""
    return _copy_result("CopyObjectResult", etag, last_modified, checksums)


def render_copy_part_result(
    etag: str, last_modified: float, checksums: Mapping[str, str] | None = None
) -> bytes:
    """UploadPartCopy: ``CopyPartResult`` (LastModified, ETag, checksums when given)."""
    return _copy_result("CopyPartResult", etag, last_modified, checksums)


def render_delete_result(deleted: Iterable[Deleted], errors: Iterable[DeleteError]) -> bytes:
    """DeleteObjects: ``DeleteResult`` with the Deleted entries (leave them out for
    ``Quiet``), then the Error entries."""
    out = [_root("DeleteResult")]
    for entry in deleted:
        out.append(f"<Deleted><Key>{_escape(entry.key)}</Key>")
        out.append(_optional("VersionId", entry.version_id))
        if entry.delete_marker:
            out.append("<DeleteMarker>true</DeleteMarker>")
            out.append(_optional("DeleteMarkerVersionId", entry.delete_marker_version_id))
        out.append("</Deleted>")
    out.extend(
        f"<Error><Key>{_escape(error.key)}</Key>{_optional('VersionId', error.version_id)}"
        f"<Code>{_escape(error.code)}</Code><Message>{_escape(error.message)}</Message></Error>"
        for error in errors
    )
    out.append("</DeleteResult>")
    return "".join(out).encode()


def render_tagging(tags: Mapping[str, str]) -> bytes:
    """GetObjectTagging/GetBucketTagging: ``Tagging`` with the tags in key order, as S3
    answers them (ceph/s3-tests test_put_obj_with_tags)."""
    out = [_root("Tagging"), "<TagSet>"]
    out.extend(
        f"<Tag><Key>{_escape(key)}</Key><Value>{_escape(tags[key])}</Value></Tag>"
        for key in sorted(tags)
    )
    out.append("</TagSet></Tagging>")
    return "".join(out).encode()


def render_error(
    code: str,
    message: str,
    *,
    request_id: str,
    host_id: str = "",
    fields: Mapping[str, str] | None = None,
) -> bytes:
    """The error document: ``<Error>`` (no namespace, as S3 writes it) with Code, Message, the
    extra ``fields`` in order (BucketName, Key, UploadId…; names are trusted element names),
    RequestId and HostId."""
    extra = "".join(f"<{name}>{_escape(value)}</{name}>" for name, value in (fields or {}).items())
    return (
        f"{_DECLARATION}<Error><Code>{_escape(code)}</Code>"
        f"<Message>{_escape(message)}</Message>{extra}"
        f"<RequestId>{_escape(request_id)}</RequestId><HostId>{_escape(host_id)}</HostId>"
        "</Error>"
    ).encode()
