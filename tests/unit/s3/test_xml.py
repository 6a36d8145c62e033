"""S3 XML bodies, proved against the real client: botocore serialises what we parse, and
botocore's own response parser reads back what we render."""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import botocore.handlers
import botocore.parsers
import botocore.serialize
import botocore.session
import pytest
from botocore.model import OperationModel
from hypothesis import given, settings
from hypothesis import strategies as st

from blindstore.errors import (
    BadRequest,
    ClientError,
    InvalidArgument,
    InvalidPartOrder,
    InvalidTag,
    MalformedXML,
)
from blindstore.s3 import xml
from blindstore.s3.xml import (
    BucketEntry,
    Deleted,
    DeleteError,
    ObjectEntry,
    Owner,
    PartEntry,
    UploadEntry,
)

_S3_MODEL = botocore.session.get_session().get_service_model("s3")
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
T0_UTC = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
OWNER = Owner("75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a", "tenant-a")
TRICKY_KEYS = [
    "plain/key.txt",
    "a&b<c>d\"e'f",
    "espace et accents é/ü/漢字",
    "emoji 😀.dcm",
    "carriage\rreturn and\nnewline\ttab",
    "plus+sign and %25 percent",
    "  leading and trailing  ",
    "~tilde*star(paren)",
]


def _operation(name: str) -> OperationModel:
    return _S3_MODEL.operation_model(name)


def _serialize(operation: str, params: dict[str, Any]) -> bytes:
    """The request body botocore would send, including its DeleteObjects CR/LF escaping."""
    serializer = botocore.serialize.create_serializer("rest-xml")
    request = serializer.serialize_to_request(params, _operation(operation))
    if operation == "DeleteObjects":
        botocore.handlers.escape_xml_payload(request)
    body = request["body"]
    assert isinstance(body, bytes)
    return body


def _parse_response(operation: str, body: bytes, status: int = 200) -> dict[str, Any]:
    parser = botocore.parsers.create_parser("rest-xml")
    response = {"body": body, "headers": {}, "status_code": status}
    shape = _operation(operation).output_shape
    assert shape is not None
    parsed = parser.parse(response, shape)
    assert isinstance(parsed, dict)
    return parsed


def _url_decoded(operation: str, parsed: dict[str, Any]) -> dict[str, Any]:
    """Apply botocore's handler that decodes encoding-type=url listings (as boto3 does)."""
    handlers: dict[str, Callable[..., None]] = {
        "ListObjects": botocore.handlers.decode_list_object,
        "ListObjectsV2": botocore.handlers.decode_list_object_v2,
    }
    handlers[operation](parsed=parsed, context={"encoding_type_auto_set": True})
    return parsed


# =============================================================================================
# Parsing what botocore sends
# =============================================================================================


def test_complete_multipart_parses_botocore_body() -> None:
    body = _serialize(
        "CompleteMultipartUpload",
        {
            "Bucket": "b",
            "Key": "k",
            "UploadId": "u",
            "MultipartUpload": {
                "Parts": [
                    {"PartNumber": 1, "ETag": '"0cc175b9c0f1b6a831c399e269772661"'},
                    {
                        "PartNumber": 2,
                        "ETag": '"92eb5ffee6ae2fec3ad71c777531578f"',
                        "ChecksumCRC32": "6Xg0Fw==",
                        "ChecksumSHA256": "ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs=",
                    },
                    {"PartNumber": 5, "ETag": "4a8a08f09d37b73795649038408b5f33"},
                ]
            },
        },
    )
    assert xml.parse_complete_multipart(body) == [
        (1, "0cc175b9c0f1b6a831c399e269772661", {}),
        (
            2,
            "92eb5ffee6ae2fec3ad71c777531578f",
            {"crc32": "6Xg0Fw==", "sha256": "ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs="},
        ),
        (5, "4a8a08f09d37b73795649038408b5f33", {}),
    ]


def _complete_body(numbers: list[str], *, namespace: bool = False) -> bytes:
    xmlns = f' xmlns="{xml.S3_NAMESPACE}"' if namespace else ""
    parts = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>&quot;e{n}&quot;</ETag></Part>" for n in numbers
    )
    return f"<CompleteMultipartUpload{xmlns}>{parts}</CompleteMultipartUpload>".encode()


def test_complete_multipart_accepts_the_samples_without_namespace_and_with_white_space() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUpload>\n  <Part>\n'
        b'    <PartNumber> 1 </PartNumber>\n    <ETag>"a54357aff0632cce46d942af68356b38"</ETag>\n'
        b"  </Part>\n</CompleteMultipartUpload>\n"
    )
    assert xml.parse_complete_multipart(body) == [(1, "a54357aff0632cce46d942af68356b38", {})]


def test_complete_multipart_takes_10000_parts() -> None:
    body = _complete_body([str(n) for n in range(1, 10_001)], namespace=True)
    parts = xml.parse_complete_multipart(body)
    assert len(parts) == 10_000
    assert parts[-1] == (10_000, "e10000", {})


def _peak_memory(parse: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        parse()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_complete_multipart_of_10000_parts_holds_one_part_at_a_time() -> None:
    """Parts are handed over as they close: eight extra elements per part cost no memory."""
    numbers = range(1, 10_001)
    plain = _complete_body([str(n) for n in numbers])
    padded = b"".join(
        [
            b"<CompleteMultipartUpload>",
            *(
                b"<Part><PartNumber>%d</PartNumber><ETag>e%d</ETag>%s</Part>"
                % (n, n, b"<Extra>x</Extra>" * 8)
                for n in numbers
            ),
            b"</CompleteMultipartUpload>",
        ]
    )
    baseline = _peak_memory(lambda: xml.parse_complete_multipart(plain))
    assert _peak_memory(lambda: xml.parse_complete_multipart(padded)) < baseline * 1.2


def test_well_formedness_is_judged_before_part_numbers() -> None:
    """A document broken after a bad part number is malformed, as S3 reads it whole first."""
    body = _complete_body(["0"])[: -len(b"</CompleteMultipartUpload>")]
    with pytest.raises(MalformedXML):
        xml.parse_complete_multipart(body)


def test_complete_multipart_with_10001_parts_is_malformed() -> None:
    with pytest.raises(MalformedXML):
        xml.parse_complete_multipart(_complete_body([str(n) for n in range(1, 10_002)]))


@pytest.mark.parametrize("number", ["0", "10001", "-1", "99999999999999999999"])
def test_part_number_outside_1_to_10000_is_invalid_argument(number: str) -> None:
    with pytest.raises(InvalidArgument, match="between 1 and 10000"):
        xml.parse_complete_multipart(_complete_body([number]))


@pytest.mark.parametrize("number", ["one", "", "1.5", "0x10"])
def test_part_number_that_is_not_an_integer_is_malformed(number: str) -> None:
    with pytest.raises(MalformedXML):
        xml.parse_complete_multipart(_complete_body([number]))


@pytest.mark.parametrize("numbers", [["2", "1"], ["1", "3", "2"], ["1", "1"]])
def test_parts_not_strictly_ascending_are_invalid_part_order(numbers: list[str]) -> None:
    with pytest.raises(InvalidPartOrder):
        xml.parse_complete_multipart(_complete_body(numbers))


@pytest.mark.parametrize(
    "body",
    [
        b"<CompleteMultipartUpload></CompleteMultipartUpload>",  # no part
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
        b"</CompleteMultipartUpload>",  # no ETag
        b"<CompleteMultipartUpload><Part><ETag>x</ETag></Part></CompleteMultipartUpload>",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag>"
        b"<ETag>y</ETag></Part></CompleteMultipartUpload>",  # two ETags
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag>"
        b"<ChecksumCRC32>a</ChecksumCRC32><ChecksumCRC32>b</ChecksumCRC32></Part>"
        b"</CompleteMultipartUpload>",  # two checksums of one algorithm
        b"<Delete><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Delete>",  # wrong root
    ],
)
def test_complete_multipart_that_breaks_the_schema_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        xml.parse_complete_multipart(body)


def test_delete_parses_botocore_body_with_tricky_keys() -> None:
    objects = [{"Key": key} for key in TRICKY_KEYS] + [{"Key": "v", "VersionId": "3/L4kqtJl"}]
    body = _serialize("DeleteObjects", {"Bucket": "b", "Delete": {"Objects": objects}})
    quiet, parsed = xml.parse_delete(body)
    assert quiet is False
    assert parsed == [(key, None) for key in TRICKY_KEYS] + [("v", "3/L4kqtJl")]


@pytest.mark.parametrize(("quiet", "expected"), [(True, True), (False, False)])
def test_delete_reads_quiet(quiet: bool, expected: bool) -> None:
    body = _serialize(
        "DeleteObjects", {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}], "Quiet": quiet}}
    )
    assert xml.parse_delete(body) == (expected, [("k", None)])


def test_delete_takes_1000_keys_and_refuses_1001() -> None:
    def body(count: int) -> bytes:
        objects = [{"Key": f"key-{i}"} for i in range(count)]
        return _serialize("DeleteObjects", {"Bucket": "b", "Delete": {"Objects": objects}})

    assert len(xml.parse_delete(body(1000))[1]) == 1000
    with pytest.raises(MalformedXML):
        xml.parse_delete(body(1001))


def test_delete_returns_an_empty_key_for_the_caller_to_answer() -> None:
    assert xml.parse_delete(b"<Delete><Object><Key/></Object></Delete>") == (False, [("", None)])


@pytest.mark.parametrize(
    "body",
    [
        b"<Delete></Delete>",
        b"<Delete><Quiet>true</Quiet></Delete>",
        b"<Delete><Object><VersionId>v</VersionId></Object></Delete>",
        b"<Delete><Object><Key>k</Key></Object><Quiet>maybe</Quiet></Delete>",
        b"<Delete><Object><Key>k</Key><Key>l</Key></Object></Delete>",
        b"<Delete><Object><Key>k</Key></Object><Quiet>true</Quiet><Quiet>true</Quiet></Delete>",
        b"<Tagging><Object><Key>k</Key></Object></Tagging>",
    ],
)
def test_delete_that_breaks_the_schema_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        xml.parse_delete(body)


def test_tagging_parses_botocore_body() -> None:
    tag_set = [
        {"Key": "project", "Value": "health data"},
        {"Key": "Patient Name", "Value": "Éloïse"},
        {"Key": "empty", "Value": ""},
    ]
    body = _serialize(
        "PutObjectTagging", {"Bucket": "b", "Key": "k", "Tagging": {"TagSet": tag_set}}
    )
    assert xml.parse_tagging(body) == {
        "project": "health data",
        "Patient Name": "Éloïse",
        "empty": "",
    }


def test_empty_tag_set_is_no_tags() -> None:
    body = _serialize("PutObjectTagging", {"Bucket": "b", "Key": "k", "Tagging": {"TagSet": []}})
    assert xml.parse_tagging(body) == {}


def test_tagging_applies_the_tag_rules() -> None:
    def body(tags: list[tuple[str, str]]) -> bytes:
        tag_set = [{"Key": key, "Value": value} for key, value in tags]
        return _serialize(
            "PutObjectTagging", {"Bucket": "b", "Key": "k", "Tagging": {"TagSet": tag_set}}
        )

    with pytest.raises(BadRequest):
        xml.parse_tagging(body([(f"k{i}", "v") for i in range(11)]))
    assert len(xml.parse_tagging(body([(f"k{i}", "v") for i in range(11)]), max_tags=50)) == 11
    with pytest.raises(InvalidTag):
        xml.parse_tagging(body([("k" * 129, "v")]))
    with pytest.raises(InvalidTag):
        xml.parse_tagging(body([("a", "1"), ("a", "2")]))


@pytest.mark.parametrize(
    "body",
    [
        b"<Tagging></Tagging>",
        b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
        b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
        b"<Tagging><TagSet/><TagSet/></Tagging>",
        b"<TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet>",
    ],
)
def test_tagging_that_breaks_the_schema_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedXML):
        xml.parse_tagging(body)


def test_create_bucket_reads_the_location_constraint() -> None:
    body = _serialize(
        "CreateBucket",
        {"Bucket": "b", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-3"}},
    )
    assert xml.parse_create_bucket(body) == "eu-west-3"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b" \r\n\t",
        b"<CreateBucketConfiguration/>",
        b"<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration >",
    ],
)
def test_create_bucket_without_a_constraint_is_none(body: bytes) -> None:
    assert xml.parse_create_bucket(body) is None


def test_create_bucket_with_another_document_is_malformed() -> None:
    with pytest.raises(MalformedXML):
        xml.parse_create_bucket(b"<LocationConstraint>eu-west-3</LocationConstraint>")


# --- Hostile documents ----------------------------------------------------------------------

_PARSERS: dict[str, Callable[[bytes], object]] = {
    "complete": xml.parse_complete_multipart,
    "delete": xml.parse_delete,
    "tagging": xml.parse_tagging,
    "create_bucket": xml.parse_create_bucket,
}

_BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Delete><Object><Key>&lol9;</Key></Object></Delete>"""

_XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Delete [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&xxe;</Key></Object></Delete>"""

_EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Delete SYSTEM "http://127.0.0.1:1/evil.dtd">
<Delete><Object><Key>k</Key></Object></Delete>"""

_HOSTILE_BODIES = {
    "billion_laughs": _BILLION_LAUGHS,
    "external_entity": _XXE,
    "external_dtd": _EXTERNAL_DTD,
    "bare_doctype": b"<!DOCTYPE Delete><Delete><Object><Key>k</Key></Object></Delete>",
    "undeclared_entity": b"<Delete><Object><Key>&lol;</Key></Object></Delete>",
    "deep_nesting": b"<a>" * 100_000 + b"</a>" * 100_000,
    "wide": b"<Tagging>" + b"<x/>" * 200_000 + b"</Tagging>",
    "not_xml": b"PartNumber=1&ETag=abc",
    "json": b'{"Parts": [{"PartNumber": 1}]}',
    "truncated": b"<Delete><Object><Key>k</Key></Object>",
    "two_roots": b"<Delete/><Delete/>",
    "latin1_declared": '<?xml version="1.0" encoding="ISO-8859-1"?><Tagging>é</Tagging>'.encode(
        "latin-1"
    ),
    "invalid_utf8": b"<Delete><Object><Key>\xff\xfe</Key></Object></Delete>",
    "utf16": '<?xml version="1.0" encoding="UTF-16"?><Delete/>'.encode("utf-16"),
    "control_char_reference": b"<Delete><Object><Key>&#x1;</Key></Object></Delete>",
    "unbound_prefix": b"<s3:Delete><Object><Key>k</Key></Object></s3:Delete>",
    "nul_byte": b"<Delete>\x00</Delete>",
}


@pytest.mark.parametrize("parser", _PARSERS.values(), ids=_PARSERS.keys())
@pytest.mark.parametrize("body", _HOSTILE_BODIES.values(), ids=_HOSTILE_BODIES.keys())
def test_hostile_body_is_malformed_quickly_in_bounded_memory(
    parser: Callable[[bytes], object], body: bytes
) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(MalformedXML):
            parser(body)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 16 << 20


@pytest.mark.parametrize("parser", _PARSERS.values(), ids=_PARSERS.keys())
def test_body_over_the_size_cap_is_malformed_before_parsing(
    parser: Callable[..., object],
) -> None:
    body = b"<Delete>" + b" " * 1000 + b"</Delete>"
    with pytest.raises(MalformedXML):
        parser(body, max_bytes=len(body) - 1)


@pytest.mark.parametrize(
    "parser",
    [xml.parse_complete_multipart, xml.parse_delete, xml.parse_tagging],
    ids=["complete", "delete", "tagging"],
)
def test_empty_body_is_malformed(parser: Callable[[bytes], object]) -> None:
    with pytest.raises(MalformedXML):
        parser(b"")


# =============================================================================================
# Rendering what botocore reads
# =============================================================================================


def test_every_document_starts_with_the_xml_declaration_and_s3_namespace() -> None:
    body = xml.render_initiate_multipart_upload("b", "k", "u")
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId></InitiateMultipartUploadResult>"
    )


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (T0, "2023-11-14T22:13:20.000Z"),
        (T0 + 0.5, "2023-11-14T22:13:20.500Z"),
        (1.999, "1970-01-01T00:00:01.999Z"),
        (T0 + 0.9999, "2023-11-14T22:13:20.999Z"),  # truncated, never rounded up a second
    ],
)
def test_times_are_iso8601_utc_with_milliseconds(timestamp: float, text: str) -> None:
    assert xml.iso8601(timestamp) == text


def test_list_buckets_reads_back() -> None:
    body = xml.render_list_buckets(
        OWNER,
        [BucketEntry("alpha", T0), BucketEntry("beta.example", T0 + 1.25, region="eu-west-3")],
    )
    parsed = _parse_response("ListBuckets", body)
    assert parsed["Owner"] == {"ID": OWNER.id, "DisplayName": "tenant-a"}
    assert parsed["Buckets"] == [
        {"Name": "alpha", "CreationDate": T0_UTC},
        {
            "Name": "beta.example",
            "CreationDate": datetime(2023, 11, 14, 22, 13, 21, 250_000, tzinfo=UTC),
            "BucketRegion": "eu-west-3",
        },
    ]


def test_list_buckets_writes_token_and_prefix_when_given() -> None:
    body = xml.render_list_buckets(Owner("id"), [], continuation_token="t", prefix="al")
    parsed = _parse_response("ListBuckets", body)
    assert parsed["Buckets"] == []
    assert parsed["ContinuationToken"] == "t"
    assert parsed["Prefix"] == "al"
    assert parsed["Owner"] == {"ID": "id"}


def _entries(keys: list[str]) -> list[ObjectEntry]:
    return [
        ObjectEntry(key=key, last_modified=T0, etag=f"{i:032x}", size=i)
        for i, key in enumerate(keys)
    ]


def test_list_objects_v2_reads_back() -> None:
    body = xml.render_list_objects_v2(
        bucket="b",
        prefix="photos/",
        max_keys=2,
        is_truncated=True,
        contents=[
            ObjectEntry("photos/a.jpg", T0, "fba9dede5f27731c9771645a39863328", 434234),
            ObjectEntry(
                "photos/b.jpg",
                T0,
                "1-2",
                7,
                storage_class="STANDARD_IA",
                checksum_algorithm="CRC32",
            ),
        ],
        common_prefixes=["photos/2006/"],
        delimiter="/",
        continuation_token="tok-in",
        next_continuation_token="tok-out",
        start_after="photos/0",
    )
    parsed = _parse_response("ListObjectsV2", body)
    parsed.pop("ResponseMetadata")
    assert parsed == {
        "Name": "b",
        "Prefix": "photos/",
        "ContinuationToken": "tok-in",
        "NextContinuationToken": "tok-out",
        "KeyCount": 3,
        "MaxKeys": 2,
        "Delimiter": "/",
        "IsTruncated": True,
        "StartAfter": "photos/0",
        "Contents": [
            {
                "Key": "photos/a.jpg",
                "LastModified": T0_UTC,
                "ETag": '"fba9dede5f27731c9771645a39863328"',
                "Size": 434234,
                "StorageClass": "STANDARD",
            },
            {
                "Key": "photos/b.jpg",
                "LastModified": T0_UTC,
                "ETag": '"1-2"',
                "ChecksumAlgorithm": ["CRC32"],
                "Size": 7,
                "StorageClass": "STANDARD_IA",
            },
        ],
        "CommonPrefixes": [{"Prefix": "photos/2006/"}],
    }


def test_list_objects_v2_writes_etags_with_quot_as_s3_does() -> None:
    body = xml.render_list_objects_v2(
        bucket="b", prefix="", max_keys=1000, is_truncated=False, contents=_entries(["k"])
    )
    assert b"<ETag>&quot;00000000000000000000000000000000&quot;</ETag>" in body
    assert b"<Prefix></Prefix>" in body
    assert b"<Delimiter>" not in body
    assert b"<EncodingType>" not in body


def test_list_objects_v2_owner_only_when_fetched() -> None:
    without = _parse_response(
        "ListObjectsV2",
        xml.render_list_objects_v2(
            bucket="b", prefix="", max_keys=1, is_truncated=False, contents=_entries(["k"])
        ),
    )
    assert "Owner" not in without["Contents"][0]
    fetched = _parse_response(
        "ListObjectsV2",
        xml.render_list_objects_v2(
            bucket="b",
            prefix="",
            max_keys=1,
            is_truncated=False,
            contents=_entries(["k"]),
            owner=OWNER,
        ),
    )
    assert fetched["Contents"][0]["Owner"] == {"ID": OWNER.id, "DisplayName": "tenant-a"}


def test_list_objects_v2_escapes_tricky_keys_for_xml() -> None:
    body = xml.render_list_objects_v2(
        bucket="b",
        prefix="a&b",
        max_keys=1000,
        is_truncated=False,
        contents=_entries(TRICKY_KEYS),
        common_prefixes=["<dir>/"],
        delimiter="/",
    )
    assert b"<Key>a&amp;b&lt;c&gt;d&quot;e'f</Key>" in body
    assert b"carriage&#xd;return" in body
    parsed = _parse_response("ListObjectsV2", body)
    assert [entry["Key"] for entry in parsed["Contents"]] == TRICKY_KEYS
    assert parsed["Prefix"] == "a&b"
    assert parsed["CommonPrefixes"] == [{"Prefix": "<dir>/"}]


def test_list_objects_v2_url_encoding_as_s3_tests_expect() -> None:
    """ceph/s3-tests test_bucket_listv2_encoding_basic, asserted on the raw values."""
    body = xml.render_list_objects_v2(
        bucket="b",
        prefix="",
        max_keys=1000,
        is_truncated=False,
        contents=_entries(["asdf+b"]),
        common_prefixes=["foo+1/", "foo/", "quux ab/"],
        delimiter="/",
        encoding_url=True,
    )
    parsed = _parse_response("ListObjectsV2", body)
    assert parsed["EncodingType"] == "url"
    assert parsed["Delimiter"] == "/"
    assert [entry["Key"] for entry in parsed["Contents"]] == ["asdf%2Bb"]
    assert [p["Prefix"] for p in parsed["CommonPrefixes"]] == ["foo%2B1/", "foo/", "quux%20ab/"]


def test_list_objects_v2_url_encoding_round_trips_keys_xml_cannot_carry() -> None:
    keys = [*TRICKY_KEYS, "ctrl\x01\x02\x1f", "nul\x00byte", "bom\ufeff\ufffe"]
    body = xml.render_list_objects_v2(
        bucket="b",
        prefix="pre fix/",
        max_keys=1000,
        is_truncated=False,
        contents=_entries(keys),
        common_prefixes=["a b/", "c\x01d/"],
        delimiter=" ",
        start_after="start after",
        encoding_url=True,
    )
    parsed = _url_decoded("ListObjectsV2", _parse_response("ListObjectsV2", body))
    assert [entry["Key"] for entry in parsed["Contents"]] == keys
    assert parsed["Prefix"] == "pre fix/"
    assert parsed["Delimiter"] == " "
    assert parsed["StartAfter"] == "start after"
    assert [p["Prefix"] for p in parsed["CommonPrefixes"]] == ["a b/", "c\x01d/"]


def test_control_characters_are_written_as_references_like_s3() -> None:
    """S3 writes `&#x4;` for a key XML 1.0 cannot carry; only encoding-type=url is readable."""
    body = xml.render_list_objects_v2(
        bucket="b", prefix="", max_keys=1, is_truncated=False, contents=_entries(["a\x04b"])
    )
    assert b"<Key>a&#x4;b</Key>" in body
    with pytest.raises(botocore.parsers.ResponseParserError):
        _parse_response("ListObjectsV2", body)


def test_list_objects_v1_reads_back_with_markers_and_owner() -> None:
    body = xml.render_list_objects_v1(
        bucket="b",
        prefix="p/",
        marker="p/a",
        max_keys=1,
        is_truncated=True,
        contents=_entries(["p/b"]),
        common_prefixes=["p/c/"],
        delimiter="/",
        next_marker="p/c/",
        owner=OWNER,
    )
    parsed = _parse_response("ListObjects", body)
    assert parsed["Marker"] == "p/a"
    assert parsed["NextMarker"] == "p/c/"
    assert parsed["MaxKeys"] == 1
    assert parsed["IsTruncated"] is True
    assert parsed["Delimiter"] == "/"
    assert parsed["Contents"][0]["Key"] == "p/b"
    assert parsed["Contents"][0]["Owner"] == {"ID": OWNER.id, "DisplayName": "tenant-a"}
    assert parsed["CommonPrefixes"] == [{"Prefix": "p/c/"}]


def test_list_objects_v1_without_delimiter_has_empty_marker_and_no_next_marker() -> None:
    body = xml.render_list_objects_v1(
        bucket="b", prefix="", marker="", max_keys=1000, is_truncated=False, contents=[]
    )
    assert b"<Marker></Marker>" in body
    assert b"NextMarker" not in body
    parsed = _parse_response("ListObjects", body)
    assert parsed["Marker"] == ""
    assert "Contents" not in parsed


def test_list_objects_v1_url_encodes_markers() -> None:
    body = xml.render_list_objects_v1(
        bucket="b",
        prefix="p q/",
        marker="p q/a+b",
        max_keys=1,
        is_truncated=True,
        contents=_entries(["p q/c d"]),
        delimiter="/",
        next_marker="p q/c d",
        encoding_url=True,
    )
    assert b"<Marker>p%20q/a%2Bb</Marker>" in body
    parsed = _url_decoded("ListObjects", _parse_response("ListObjects", body))
    assert parsed["Marker"] == "p q/a+b"
    assert parsed["NextMarker"] == "p q/c d"
    # S3 encodes V1's Prefix too (ListObjects: "Delimiter, Marker, Prefix, NextMarker, Key");
    # botocore's V1 handler leaves that one echo encoded.
    assert parsed["Prefix"] == "p%20q/"
    assert parsed["Contents"][0]["Key"] == "p q/c d"


def _bucket_location(body: bytes) -> object:
    parsed: dict[str, object] = {}
    response = SimpleNamespace(raw=object(), content=body)
    botocore.handlers.parse_get_bucket_location(parsed, response)
    return parsed["LocationConstraint"]


@pytest.mark.parametrize(
    ("region", "expected"), [("eu-west-3", "eu-west-3"), (None, None), ("us-east-1", None)]
)
def test_location_constraint_reads_back(region: str | None, expected: str | None) -> None:
    assert _bucket_location(xml.render_location_constraint(region)) == expected


def test_initiate_multipart_upload_reads_back() -> None:
    body = xml.render_initiate_multipart_upload("b", "dir/a&b.dcm", "VXBsb2FkIElE")
    parsed = _parse_response("CreateMultipartUpload", body)
    assert (parsed["Bucket"], parsed["Key"], parsed["UploadId"]) == (
        "b",
        "dir/a&b.dcm",
        "VXBsb2FkIElE",
    )


def test_complete_multipart_upload_reads_back() -> None:
    body = xml.render_complete_multipart_upload(
        location="http://127.0.0.1:9000/b/k",
        bucket="b",
        key="k",
        etag="3858f62230ac3c915f300c664312c11f-9",
        checksums={"crc32": "6Xg0Fw=="},
        checksum_type="COMPOSITE",
    )
    parsed = _parse_response("CompleteMultipartUpload", body)
    assert parsed["Location"] == "http://127.0.0.1:9000/b/k"
    assert parsed["ETag"] == '"3858f62230ac3c915f300c664312c11f-9"'
    assert parsed["ChecksumCRC32"] == "6Xg0Fw=="
    assert parsed["ChecksumType"] == "COMPOSITE"


def test_list_parts_reads_back() -> None:
    body = xml.render_list_parts(
        bucket="b",
        key="k",
        upload_id="u",
        part_number_marker=1,
        next_part_number_marker=3,
        max_parts=2,
        is_truncated=True,
        parts=[
            PartEntry(2, T0, "7778aef83f66abc1fa1e8477f296d394", 10_485_760),
            PartEntry(3, T0, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 5, {"crc32c": "AAAAAA=="}),
        ],
        initiator=Owner("arn:aws:iam::111122223333:user/some-user"),
        owner=OWNER,
    )
    parsed = _parse_response("ListParts", body)
    assert parsed["PartNumberMarker"] == 1
    assert parsed["NextPartNumberMarker"] == 3
    assert parsed["MaxParts"] == 2
    assert parsed["IsTruncated"] is True
    assert parsed["Initiator"] == {"ID": "arn:aws:iam::111122223333:user/some-user"}
    assert parsed["Owner"] == {"ID": OWNER.id, "DisplayName": "tenant-a"}
    assert parsed["StorageClass"] == "STANDARD"
    assert parsed["Parts"] == [
        {
            "PartNumber": 2,
            "LastModified": T0_UTC,
            "ETag": '"7778aef83f66abc1fa1e8477f296d394"',
            "Size": 10_485_760,
        },
        {
            "PartNumber": 3,
            "LastModified": T0_UTC,
            "ETag": '"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"',
            "ChecksumCRC32C": "AAAAAA==",
            "Size": 5,
        },
    ]


def test_list_multipart_uploads_reads_back() -> None:
    body = xml.render_list_multipart_uploads(
        bucket="b",
        key_marker="",
        upload_id_marker="",
        next_key_marker="my-movie.m2ts",
        next_upload_id_marker="YW55IGlkZWE",
        max_uploads=3,
        is_truncated=True,
        uploads=[UploadEntry("my-movie.m2ts", "YW55IGlkZWE", T0, Owner("init"), OWNER)],
        common_prefixes=["photos/"],
        prefix="",
        delimiter="/",
    )
    parsed = _parse_response("ListMultipartUploads", body)
    assert parsed["NextKeyMarker"] == "my-movie.m2ts"
    assert parsed["NextUploadIdMarker"] == "YW55IGlkZWE"
    assert parsed["MaxUploads"] == 3
    assert parsed["IsTruncated"] is True
    assert parsed["Uploads"] == [
        {
            "Key": "my-movie.m2ts",
            "UploadId": "YW55IGlkZWE",
            "Initiator": {"ID": "init"},
            "Owner": {"ID": OWNER.id, "DisplayName": "tenant-a"},
            "StorageClass": "STANDARD",
            "Initiated": T0_UTC,
        }
    ]
    assert parsed["CommonPrefixes"] == [{"Prefix": "photos/"}]


def test_list_multipart_uploads_url_encodes_keys_and_markers() -> None:
    body = xml.render_list_multipart_uploads(
        bucket="b",
        key_marker="a b",
        upload_id_marker="u1",
        next_key_marker="c+d",
        next_upload_id_marker="u2",
        max_uploads=1,
        is_truncated=True,
        uploads=[UploadEntry("c+d", "u2", T0, Owner("i"), Owner("o"))],
        prefix="",
        encoding_url=True,
    )
    parsed = _parse_response("ListMultipartUploads", body)
    assert parsed["EncodingType"] == "url"
    assert parsed["KeyMarker"] == "a%20b"
    assert parsed["NextKeyMarker"] == "c%2Bd"
    assert parsed["Uploads"][0]["Key"] == "c%2Bd"


def test_copy_object_and_copy_part_results_read_back() -> None:
    copy = _parse_response(
        "CopyObject", xml.render_copy_object_result("9b2cf535f27731c974343645a3985328", T0)
    )
    assert copy["CopyObjectResult"] == {
        "ETag": '"9b2cf535f27731c974343645a3985328"',
        "LastModified": T0_UTC,
    }
    part = _parse_response(
        "UploadPartCopy",
        xml.render_copy_part_result("abc", T0 + 0.25, checksums={"sha256": "c2hh"}),
    )
    assert part["CopyPartResult"] == {
        "ETag": '"abc"',
        "LastModified": datetime(2023, 11, 14, 22, 13, 20, 250_000, tzinfo=UTC),
        "ChecksumSHA256": "c2hh",
    }


def test_delete_result_reads_back() -> None:
    body = xml.render_delete_result(
        [
            Deleted("sample1.txt"),
            Deleted("a&b", version_id="v1"),
            Deleted("c", delete_marker=True, delete_marker_version_id="dm1"),
        ],
        [DeleteError("sample2.txt", "AccessDenied", "Access Denied", version_id="v2")],
    )
    parsed = _parse_response("DeleteObjects", body)
    assert parsed["Deleted"] == [
        {"Key": "sample1.txt"},
        {"Key": "a&b", "VersionId": "v1"},
        {"Key": "c", "DeleteMarker": True, "DeleteMarkerVersionId": "dm1"},
    ]
    assert parsed["Errors"] == [
        {
            "Key": "sample2.txt",
            "VersionId": "v2",
            "Code": "AccessDenied",
            "Message": "Access Denied",
        }
    ]


def test_quiet_delete_result_is_an_empty_document() -> None:
    body = xml.render_delete_result([], [])
    assert body.endswith(
        b'<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></DeleteResult>'
    )
    assert "Deleted" not in _parse_response("DeleteObjects", body)


def test_tagging_reads_back_in_key_order() -> None:
    tags = {"z": "last", "a": "first + best", "Éloïse": ""}
    body = xml.render_tagging(tags)
    parsed = _parse_response("GetObjectTagging", body)
    assert parsed["TagSet"] == [
        {"Key": "a", "Value": "first + best"},
        {"Key": "z", "Value": "last"},
        {"Key": "Éloïse", "Value": ""},
    ]
    assert xml.parse_tagging(body) == tags


def test_tagging_escapes_values() -> None:
    body = xml.render_tagging({"k": 'a&b<c>"d'})
    assert b"<Value>a&amp;b&lt;c&gt;&quot;d</Value>" in body
    assert _parse_response("GetObjectTagging", body)["TagSet"] == [
        {"Key": "k", "Value": 'a&b<c>"d'}
    ]


def test_error_document_is_exactly_s3s() -> None:
    body = xml.render_error(
        "NoSuchKey",
        "The specified key does not exist.",
        request_id="4442587FB7D0A2F9",
        host_id="h0st",
        fields={"Key": "dir/a&b"},
    )
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
        b"<Message>The specified key does not exist.</Message><Key>dir/a&amp;b</Key>"
        b"<RequestId>4442587FB7D0A2F9</RequestId><HostId>h0st</HostId></Error>"
    )
    parsed = _parse_response("GetObject", body, status=404)
    assert parsed["Error"] == {
        "Code": "NoSuchKey",
        "Message": "The specified key does not exist.",
        "Key": "dir/a&b",
    }


def test_error_document_without_fields_or_host_id() -> None:
    body = xml.render_error("InternalError", "We encountered an internal error.", request_id="r")
    assert body.endswith(b"<RequestId>r</RequestId><HostId></HostId></Error>")


# --- Speed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding_url", [False, True], ids=["xml", "url"])
def test_listing_1000_keys_renders_well_under_5_ms(encoding_url: bool) -> None:
    entries = [
        ObjectEntry(
            key=f"imaging/2024/patient-{i:05d}/series 1+{i}.dcm",
            last_modified=T0 + i * 0.5,
            etag="d41d8cd98f00b204e9800998ecf8427e",
            size=1_048_576 + i,
        )
        for i in range(1000)
    ]

    def render() -> bytes:
        return xml.render_list_objects_v2(
            bucket="hospital",
            prefix="imaging/",
            max_keys=1000,
            is_truncated=True,
            contents=entries,
            next_continuation_token="token",
            encoding_url=encoding_url,
        )

    best = float("inf")
    for _ in range(10):
        started = time.perf_counter()
        render()
        best = min(best, time.perf_counter() - started)
    assert best < 0.005


# --- Properties -----------------------------------------------------------------------------

# Any Unicode text a key can hold (valid UTF-8: no lone surrogates).
_KEYS = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40)
# The characters XML 1.0 can carry, which is what botocore can send in a request body.
_XML_KEYS = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\ufffe\uffff").filter(
        lambda char: char in "\t\n\r" or char >= " "
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(_KEYS, min_size=1, max_size=5, unique=True), prefix=_KEYS)
def test_any_key_round_trips_through_a_url_encoded_listing(keys: list[str], prefix: str) -> None:
    body = xml.render_list_objects_v2(
        bucket="b",
        prefix=prefix,
        max_keys=1000,
        is_truncated=False,
        contents=_entries(keys),
        common_prefixes=[prefix],
        encoding_url=True,
    )
    parsed = _url_decoded("ListObjectsV2", _parse_response("ListObjectsV2", body))
    assert [entry["Key"] for entry in parsed["Contents"]] == keys
    assert parsed["Prefix"] == prefix
    assert parsed["CommonPrefixes"] == [{"Prefix": prefix}]


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(_XML_KEYS, min_size=1, max_size=5))
def test_any_key_botocore_can_send_round_trips_through_delete(keys: list[str]) -> None:
    objects = [{"Key": key} for key in keys]
    body = _serialize("DeleteObjects", {"Bucket": "b", "Delete": {"Objects": objects}})
    assert xml.parse_delete(body) == (False, [(key, None) for key in keys])
    rendered = xml.render_delete_result([Deleted(key) for key in keys], [])
    assert [entry["Key"] for entry in _parse_response("DeleteObjects", rendered)["Deleted"]] == keys


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_anything_but_s3_errors(body: bytes) -> None:
    """Whatever arrives, a parser answers with a value or a client error, never a crash."""
    for parse in _PARSERS.values():
        with contextlib.suppress(ClientError):
            parse(body)
