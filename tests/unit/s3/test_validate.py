"""S3's request rules: bucket names, keys, metadata, system headers, tags, copy sources."""

from __future__ import annotations

import pytest

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
from blindstore.s3.validate import (
    check_bucket_name,
    check_key,
    check_tag_set,
    collect_system_headers,
    collect_user_metadata,
    parse_copy_source,
    parse_tagging_header,
    require_body_digest,
)

# --- Bucket names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "abc",
        "a" * 63,
        "my-bucket",
        "my.bucket.example",
        "1bucket9",
        "a-b.c-d",
        "192.168.5.4a",  # not an IP address
        "999.1.1",
        "bucket-xn--a",  # the reserved prefix is only a prefix
        "s3alias-bucket",  # the reserved suffix is only a suffix
    ],
)
def test_valid_bucket_name_passes(name: str) -> None:
    check_bucket_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "a" * 64,  # too long
        "",
        "MyBucket",  # upper case
        "my_bucket",  # underscore
        "my bucket",
        "-bucket",  # must start with a letter or digit
        "bucket-",  # must end with a letter or digit
        ".bucket",
        "bucket.",
        "foo..bar",  # adjacent periods
        "foo-.bar",  # a label ending in a hyphen
        "foo.-bar",  # a label starting with a hyphen
        "192.168.5.4",  # formatted as an IP address
        "xn--bucket",
        "sthree-bucket",
        "sthree-configurator",
        "amzn-s3-demo-bucket",
        "bucket-s3alias",
        "bucket--ol-s3",
        "bucket.mrap",
        "bucket--x-s3",
        "bucket--table-s3",
        "bück",
    ],
)
def test_invalid_bucket_name_is_rejected_with_its_name(name: str) -> None:
    with pytest.raises(InvalidBucketName) as caught:
        check_bucket_name(name)
    assert caught.value.fields == {"BucketName": name}


# --- Keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["a", "k" * 1024, "é" * 512, "😀" * 256, "../etc/passwd", " lead/trail "],
)
def test_key_up_to_1024_utf8_bytes_passes(key: str) -> None:
    check_key(key)


@pytest.mark.parametrize(("key", "size"), [("k" * 1025, 1025), ("é" * 513, 1026)])
def test_key_over_1024_utf8_bytes_is_key_too_long(key: str, size: int) -> None:
    with pytest.raises(KeyTooLongError) as caught:
        check_key(key)
    assert caught.value.fields == {"Size": str(size), "MaxSizeAllowed": "1024"}


def test_empty_key_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        check_key("")


def test_key_that_was_not_utf8_is_invalid_uri() -> None:
    """A path decoded with surrogateescape leaves lone surrogates for bytes that were not UTF-8."""
    key = b"bad\xffkey".decode("utf-8", "surrogateescape")
    with pytest.raises(InvalidURI):
        check_key(key)


# --- User metadata --------------------------------------------------------------------------


def test_user_metadata_is_collected_lower_case_without_prefix() -> None:
    headers = [
        ("X-Amz-Meta-Diagnosis", "benign"),
        ("x-amz-meta-patient-id", "42"),
        ("content-type", "text/plain"),
        ("x-amz-metadata-directive", "REPLACE"),
    ]
    assert collect_user_metadata(headers) == {"diagnosis": "benign", "patient-id": "42"}


def test_repeated_metadata_headers_are_comma_joined() -> None:
    headers = [("x-amz-meta-a", "1"), ("X-Amz-Meta-A", "2")]
    assert collect_user_metadata(headers) == {"a": "1,2"}


def test_metadata_header_without_a_name_is_ignored() -> None:
    assert collect_user_metadata([("x-amz-meta-", "orphan")]) == {}


def test_metadata_of_exactly_2048_bytes_passes() -> None:
    # The name counts without its x-amz-meta- prefix: 1 + 2047 bytes.
    assert collect_user_metadata([("x-amz-meta-k", "v" * 2047)]) == {"k": "v" * 2047}


def test_metadata_over_2048_bytes_is_metadata_too_large() -> None:
    with pytest.raises(MetadataTooLarge) as caught:
        collect_user_metadata([("x-amz-meta-k", "v" * 1000), ("x-amz-meta-l", "w" * 1047)])
    assert caught.value.fields == {"Size": "2049", "MaxSizeAllowed": "2048"}


def test_metadata_size_counts_utf8_bytes() -> None:
    # 1 + 682 * 3 = 2047 bytes passes; one more two-byte character does not.
    collect_user_metadata([("x-amz-meta-k", "€" * 682)])
    with pytest.raises(MetadataTooLarge):
        collect_user_metadata([("x-amz-meta-k", "€" * 682 + "é")])


# --- System headers -------------------------------------------------------------------------


def test_system_headers_are_collected_lower_case() -> None:
    headers = [
        ("Content-Type", "application/dicom"),
        ("Content-Disposition", 'attachment; filename="scan.dcm"'),
        ("Content-Language", "fr"),
        ("Cache-Control", "no-store"),
        ("Expires", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ("Content-Encoding", "gzip"),
        ("Content-Length", "12"),
        ("x-amz-meta-a", "b"),
    ]
    assert collect_system_headers(headers) == {
        "content-type": "application/dicom",
        "content-disposition": 'attachment; filename="scan.dcm"',
        "content-language": "fr",
        "cache-control": "no-store",
        "expires": "Wed, 21 Oct 2015 07:28:00 GMT",
        "content-encoding": "gzip",
    }


def test_missing_content_type_defaults_to_binary_octet_stream() -> None:
    assert collect_system_headers([]) == {"content-type": "binary/octet-stream"}


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("aws-chunked", None),
        ("AWS-Chunked", None),
        ("aws-chunked,gzip", "gzip"),
        ("gzip, aws-chunked", "gzip"),
        ("aws-chunked, gzip, br", "gzip,br"),
        ("gzip", "gzip"),
    ],
)
def test_aws_chunked_is_dropped_from_content_encoding(sent: str, stored: str | None) -> None:
    headers = collect_system_headers([("content-encoding", sent)])
    assert headers.get("content-encoding") == stored


def test_repeated_system_headers_are_joined() -> None:
    headers = [("cache-control", "no-store"), ("Cache-Control", "max-age=0")]
    assert collect_system_headers(headers)["cache-control"] == "no-store, max-age=0"


# --- Tags -----------------------------------------------------------------------------------


def test_ten_tags_of_maximal_length_pass() -> None:
    """ceph/s3-tests test_put_max_kvsize_tags: 10 tags, keys of 128, values of 256."""
    pairs = [(f"{i}".ljust(128, "k"), "v" * 256) for i in range(10)]
    assert check_tag_set(pairs) == dict(pairs)


def test_eleven_tags_are_bad_request() -> None:
    """S3 answers 400 BadRequest "Object tags cannot be greater than 10"."""
    with pytest.raises(BadRequest, match="cannot be greater than 10"):
        check_tag_set([(f"k{i}", "v") for i in range(11)])


def test_bucket_tag_sets_take_fifty() -> None:
    pairs = [(f"k{i}", "v") for i in range(50)]
    assert len(check_tag_set(pairs, max_tags=50)) == 50
    with pytest.raises(BadRequest):
        check_tag_set([*pairs, ("k50", "v")], max_tags=50)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([("k" * 129, "v")], "TagKey you have provided is too long"),
        ([("k", "v" * 257)], "TagValue you have provided is too long"),
        ([("😀" * 65, "v")], "TagKey you have provided is too long"),  # 130 UTF-16 units
        ([("", "v")], "TagKey you have provided is invalid"),
        ([("a", "1"), ("a", "2")], "multiple Tags with the same key"),
        ([("TagSet=[{Key", "v")], "TagKey you have provided is invalid"),
        ([("tab\tkey", "v")], "TagKey you have provided is invalid"),
        ([("k", "semi;colon")], "TagValue you have provided is invalid"),
        ([("aws:cloudformation", "v")], "cannot be prefixed with aws:"),
        ([("AWS:x", "v")], "cannot be prefixed with aws:"),
    ],
)
def test_invalid_tag_is_rejected(pairs: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(InvalidTag, match=message.replace("[", r"\[")):
        check_tag_set(pairs)


def test_tags_allow_unicode_letters_numbers_spaces_and_symbols() -> None:
    pairs = [
        ("Patient Name", "Éloïse Dupont"),
        ("path/to:key", "a+b=c@d_e.f-g"),
        ("ключ", "значение٣"),  # Cyrillic letters, an Arabic-Indic digit
        ("empty", ""),
        ("k", "128\u00a0km"),  # no-break space is a Unicode space separator
    ]
    assert check_tag_set(pairs) == dict(pairs)


def test_tag_with_a_symbol_outside_the_charset_is_invalid() -> None:
    with pytest.raises(InvalidTag):
        check_tag_set([("k", "emoji 😀")])


def test_tagging_header_is_form_decoded() -> None:
    header = "project=health%20data&owner=dr+house&empty=&bare"
    assert parse_tagging_header(header) == {
        "project": "health data",
        "owner": "dr house",
        "empty": "",
        "bare": "",
    }


def test_empty_tagging_header_is_no_tags() -> None:
    assert parse_tagging_header("") == {}


def test_tagging_header_decodes_utf8() -> None:
    assert parse_tagging_header("pr%C3%A9nom=%C3%89lo%C3%AFse") == {"prénom": "Éloïse"}


@pytest.mark.parametrize(
    "header",
    [
        "TagSet=[{Key=string,Value=string}]",  # S3 answered InvalidArgument (aws-cli #2841)
        "a=1&a=2",  # duplicate names
        "a=%FF",  # not UTF-8
    ],
)
def test_malformed_tagging_header_is_invalid_argument(header: str) -> None:
    with pytest.raises(InvalidArgument, match="x-amz-tagging"):
        parse_tagging_header(header)


def test_tagging_header_applies_the_tag_rules() -> None:
    with pytest.raises(InvalidTag):
        parse_tagging_header("TagSet%3D%5B%7BKey%3Dstring%2CValue%3Dstring%7D%5D")
    with pytest.raises(BadRequest):
        parse_tagging_header("&".join(f"k{i}=v" for i in range(11)))


# --- Copy source ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("/bucket/key", ("bucket", "key", None)),
        ("bucket/key", ("bucket", "key", None)),
        ("bucket/dir/sub/key.txt", ("bucket", "dir/sub/key.txt", None)),
        ("/bucket/my%20key%2Bplus+sign", ("bucket", "my key+plus+sign", None)),
        ("bucket/%C3%A9t%C3%A9.dcm", ("bucket", "été.dcm", None)),
        ("bucket/what%3F.txt", ("bucket", "what?.txt", None)),
        ("bucket/key?versionId=3%2FL4kqtJl", ("bucket", "key", "3/L4kqtJl")),
        ("/bucket//leading-slash-key", ("bucket", "/leading-slash-key", None)),
    ],
)
def test_copy_source_is_split_and_decoded(
    header: str, expected: tuple[str, str, str | None]
) -> None:
    assert parse_copy_source(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "/",
        "bucket",
        "bucket/",
        "/key-without-bucket",
        "bucket/key?versionId=",
        "bucket/key?partNumber=1",
        "bucket/key?versionId=1&x=2",
        "bucket/%FF",
    ],
)
def test_malformed_copy_source_is_invalid_argument(header: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_copy_source(header)


def test_key_with_nul_is_refused() -> None:
    """NUL cannot be listed in S3 XML nor stored in PostgreSQL TEXT."""
    with pytest.raises(InvalidArgument):
        check_key("a\x00b")


# --- request checks (issue 9) ---------------------------------------------------------------


def test_non_utf8_user_metadata_is_invalid_argument() -> None:
    raw = b"caf\xe9".decode("utf-8", "surrogateescape")
    with pytest.raises(InvalidArgument) as caught:
        collect_user_metadata([("x-amz-meta-note", raw)])
    assert caught.value.fields == {"ArgumentName": "x-amz-meta-note"}


def test_non_utf8_system_header_is_invalid_argument() -> None:
    raw = b"\xff".decode("utf-8", "surrogateescape")
    with pytest.raises(InvalidArgument):
        collect_system_headers([("content-type", raw)])


def test_utf8_metadata_is_kept() -> None:
    assert collect_user_metadata([("x-amz-meta-note", "café ✓")]) == {"note": "café ✓"}


@pytest.mark.parametrize(
    "headers", [["content-md5"], ["x-amz-checksum-crc32"], ["x-amz-checksum-sha256", "host"]]
)
def test_a_digest_header_satisfies_delete_objects(headers: list[str]) -> None:
    require_body_digest(headers)


@pytest.mark.parametrize("headers", [[], ["host"], ["x-amz-checksum-mode"]])
def test_delete_objects_without_a_digest_is_invalid_request(headers: list[str]) -> None:
    with pytest.raises(InvalidRequest, match="Missing required header for this request"):
        require_body_digest(headers)
