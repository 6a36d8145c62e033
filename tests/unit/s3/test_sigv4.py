"""SigV4 verification against requests signed by botocore itself and the AWS documentation."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, cast
from urllib.parse import quote, unquote, urlsplit

import botocore.auth
import botocore.crt.auth
import botocore.session
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from blindstore.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    NotImplementedOperation,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)
from blindstore.s3.sigv4 import (
    EMPTY_SHA256,
    AuthResult,
    PayloadMode,
    SigV4Request,
    authenticate,
    canonical_query,
    derive_signing_key,
    parse_signature,
    verify_signature,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "eu-west-3"
SIGNED_AT = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)

DOC_AKID = "AKIAIOSFODNN7EXAMPLE"
DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_TIME = datetime(2013, 5, 24, tzinfo=UTC)

KEYS = [
    "plain.txt",
    "with space.txt",
    "ünïcödé/文件.bin",
    "a+b=c&d",
    "tilde~and-under_score.dot",
    "100%/percent",
    "double//slash",
    "../dot/./segments/..",
    "!$'()*,;:@[]",
    "trailing/",
]


def _lookup(access_key_id: str) -> str | None:
    return {AKID: SECRET, DOC_AKID: DOC_SECRET}.get(access_key_id)


def _signing_clock(remove_tzinfo: bool = True) -> datetime:
    return SIGNED_AT.replace(tzinfo=None) if remove_tzinfo else SIGNED_AT


@pytest.fixture(autouse=True)
def _frozen_botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore's signers (and the awscrt-backed ones its clients pick when awscrt is
    # installed) read the clock when signing; freezing it makes every signature exact.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", _signing_clock)
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", _signing_clock)


def _host_header(url: str) -> str:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname or ""
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _wire(request: AWSRequest | AWSPreparedRequest) -> SigV4Request:
    """What the server sees of a request botocore signed, through the ASGI path."""
    prepared = request.prepare() if isinstance(request, AWSRequest) else request
    parts = urlsplit(prepared.url)
    headers = [(b"host", _host_header(prepared.url).encode())]
    for name, value in prepared.headers.items():
        if name.lower() != "host":
            # botocore's clients hold bytes here, bare AWSRequests hold str.
            wire_value: str | bytes = value
            raw = wire_value.encode() if isinstance(wire_value, str) else wire_value
            headers.append((name.lower().encode(), raw))
    return SigV4Request.from_asgi(
        prepared.method, parts.path.encode(), parts.query.encode(), headers
    )


def _header_signed(
    method: str,
    url: str,
    *,
    data: bytes = b"",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> SigV4Request:
    request = AWSRequest(method=method, url=url, data=data, headers=headers, params=params)
    S3SigV4Auth(Credentials(AKID, SECRET), "s3", REGION).add_auth(request)
    return _wire(request)


def _presigned(url: str, *, expires: int = 3600, method: str = "GET") -> SigV4Request:
    request = AWSRequest(method=method, url=url)
    S3SigV4QueryAuth(Credentials(AKID, SECRET), "s3", REGION, expires=expires).add_auth(request)
    return _wire(request)


def _verify(request: SigV4Request, now: datetime = SIGNED_AT) -> AuthResult:
    return authenticate(request, _lookup, now)


def _with_header(request: SigV4Request, name: str, value: str) -> SigV4Request:
    return dataclasses.replace(request, headers={**request.headers, name: value})


# Known answers from the AWS documentation (sig-v4-header-based-auth, query-string auth,
# streaming "Example: PUT Object").


def test_aws_documentation_get_object_example_verifies() -> None:
    request = SigV4Request(
        method="GET",
        raw_path="/test.txt",
        raw_query="",
        headers={
            "host": "examplebucket.s3.amazonaws.com",
            "range": "bytes=0-9",
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
            "authorization": (
                f"AWS4-HMAC-SHA256 Credential={DOC_AKID}/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ),
        },
    )
    result = authenticate(request, _lookup, DOC_TIME)
    assert result.access_key_id == DOC_AKID
    assert result.region == "us-east-1"
    assert result.payload_mode is PayloadMode.SHA256
    assert result.payload_sha256 == EMPTY_SHA256
    assert not result.presigned


def test_aws_documentation_presigned_example_verifies() -> None:
    request = SigV4Request(
        method="GET",
        raw_path="/test.txt",
        raw_query=(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential={DOC_AKID}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
            "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        ),
        headers={"host": "examplebucket.s3.amazonaws.com"},
    )
    result = authenticate(request, _lookup, DOC_TIME + timedelta(hours=23))
    assert result.presigned
    assert result.payload_mode is PayloadMode.UNSIGNED
    assert result.payload_sha256 is None


def test_aws_documentation_streaming_put_gives_the_seed_signature() -> None:
    seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    request = SigV4Request(
        method="PUT",
        raw_path="/examplebucket/chunkObject.txt",
        raw_query="",
        headers={
            "host": "s3.amazonaws.com",
            "x-amz-date": "20130524T000000Z",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": "66560",
            "content-length": "66824",
            "authorization": (
                f"AWS4-HMAC-SHA256 Credential={DOC_AKID}/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;"
                "x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"
                f"Signature={seed}"
            ),
        },
    )
    result = authenticate(request, _lookup, DOC_TIME)
    assert result.payload_mode is PayloadMode.STREAMING_SIGNED
    assert result.payload_mode.is_aws_chunked
    assert result.payload_mode.signs_chunks
    assert not result.payload_mode.has_trailer
    assert result.payload_sha256 is None
    assert result.chunk_signing.seed_signature == seed
    assert result.chunk_signing.amz_date == "20130524T000000Z"
    assert result.chunk_signing.scope == "20130524/us-east-1/s3/aws4_request"
    assert result.chunk_signing.signing_key == derive_signing_key(
        DOC_SECRET, "20130524", "us-east-1"
    )
    assert "signing_key" not in repr(result.chunk_signing)


# Requests signed by botocore's own signers.


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(
    "endpoint",
    [
        "https://s3.example.com/bucket/",
        "http://bucket.s3.example.com/",
        "http://localhost:9000/bucket/",
        "https://bucket.gateway.example:8443/",
    ],
)
def test_botocore_header_signed_object_requests_verify(endpoint: str, key: str) -> None:
    url = endpoint + quote(key, safe="/~")
    body = b"payload of " + key.encode()
    request = _header_signed("PUT", url, data=body, headers={"Content-Type": "text/plain"})

    result = _verify(request)

    assert result.access_key_id == AKID
    assert result.region == REGION
    assert result.payload_mode is PayloadMode.SHA256
    assert result.payload_sha256 == hashlib.sha256(body).hexdigest()
    assert result.request_time == SIGNED_AT


@pytest.mark.parametrize(
    "params",
    [
        {"list-type": "2"},
        {"list-type": "2", "prefix": "dir with space/ü+é~%", "delimiter": "/"},
        {"list-type": "2", "continuation-token": "1Xb+/aZ==", "encoding-type": "url"},
        {"list-type": "2", "start-after": "a&b=c;d", "max-keys": "7"},
        {"uploads": ""},
        {"partNumber": "3", "uploadId": "VXBsb2FkIElE+/=="},
        {"versionId": "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"},
        {"tagging": "", "x-id": "PutObjectTagging"},
    ],
)
def test_botocore_header_signed_query_parameters_verify(params: dict[str, str]) -> None:
    # AWSRequest puts params on the wire with form encoding ("+" for a space) while botocore
    # signs them with "%20": the verifier must read "+" as a space to agree.
    request = _header_signed("GET", "https://s3.example.com/bucket", params=params)
    assert _verify(request).access_key_id == AKID


@pytest.mark.parametrize("key", KEYS)
def test_botocore_presigned_urls_verify(key: str) -> None:
    url = "https://bucket.s3.example.com:8443/" + quote(key, safe="/~")
    request = _presigned(url, expires=600)

    result = _verify(request, SIGNED_AT + timedelta(seconds=599))

    assert result.presigned
    assert result.payload_mode is PayloadMode.UNSIGNED
    assert result.chunk_signing.seed_signature == result.chunk_signing.seed_signature.lower()


def test_presigned_url_with_operation_parameters_verifies() -> None:
    url = "https://s3.example.com/bucket/key?response-content-disposition=attachment%3B%20x.txt"
    assert _verify(_presigned(url)).presigned


def test_header_signed_with_date_header_instead_of_x_amz_date_verifies() -> None:
    request = _header_signed(
        "GET", "https://s3.example.com/bucket/key", headers={"Date": "placeholder"}
    )
    assert "x-amz-date" not in request.headers
    assert _verify(request).request_time == SIGNED_AT


def test_repeated_header_lines_are_joined_with_commas_as_signed() -> None:
    signed = _header_signed(
        "GET", "https://s3.example.com/bucket/key", headers={"X-Amz-Meta-List": "a,b"}
    )
    lines = [
        (name.encode(), value.encode())
        for name, value in signed.headers.items()
        if name != "x-amz-meta-list"
    ]
    lines += [(b"x-amz-meta-list", b" a "), (b"X-Amz-Meta-List", b"b")]

    request = SigV4Request.from_asgi("GET", signed.raw_path.encode(), b"", lines)

    assert request.headers["x-amz-meta-list"] == "a,b"
    assert _verify(request).access_key_id == AKID


def test_header_whitespace_is_trimmed_and_collapsed_as_botocore_signs() -> None:
    request = _header_signed(
        "GET", "https://s3.example.com/bucket/key", headers={"X-Amz-Meta-Note": "  a   b\t c "}
    )
    assert _verify(request).access_key_id == AKID


def test_from_asgi_drops_a_query_left_on_raw_path() -> None:
    request = SigV4Request.from_asgi("GET", b"/b/k?x=1", b"x=1", [(b"Host", b"h")])
    assert request.raw_path == "/b/k"
    assert request.host == "h"


def test_from_asgi_keeps_non_utf8_bytes_exactly() -> None:
    request = SigV4Request.from_asgi("GET", b"/b/\xff", b"a=%FF", [(b"x-amz-meta-a", b"\xfe")])
    assert request.raw_path.encode("utf-8", "surrogateescape") == b"/b/\xff"
    assert request.headers["x-amz-meta-a"].encode("utf-8", "surrogateescape") == b"\xfe"


# A real botocore client: the exact requests boto3 sends.


class _Sent(Exception):
    """Raised by the capture hook so that nothing leaves the process."""


def _capturing_client(
    sent: list[AWSPreparedRequest],
    *,
    addressing_style: Literal["virtual", "path"] = "virtual",
    endpoint: str = "https://localhost:9443",
) -> S3Client:
    client = botocore.session.get_session().create_client(
        "s3",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        config=Config(s3={"addressing_style": addressing_style}),
    )

    def capture(request: AWSPreparedRequest, **_: object) -> None:
        sent.append(request)
        raise _Sent

    client.meta.events.register("before-send.s3", capture)
    return cast("S3Client", client)


@pytest.mark.parametrize("addressing_style", ["virtual", "path"])
def test_botocore_client_requests_verify(addressing_style: Literal["virtual", "path"]) -> None:
    sent: list[AWSPreparedRequest] = []
    client = _capturing_client(sent, addressing_style=addressing_style)
    calls: list[Callable[[], object]] = [
        lambda: client.list_objects_v2(
            Bucket="bkt", Prefix="a b+c/ü~%", ContinuationToken="ab+/==", StartAfter="x&y"
        ),
        lambda: client.get_object(Bucket="bkt", Key="dir/ü x+y~%.txt", Range="bytes=0-9"),
        lambda: client.put_object(
            Bucket="bkt", Key="../a//b", Body=b"x" * 5000, Metadata={"k": "v"}
        ),
        lambda: client.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "a"}]}),
    ]
    for call in calls:
        with pytest.raises(_Sent):
            call()

    results = [_verify(_wire(request)) for request in sent]

    assert [result.access_key_id for result in results] == [AKID] * len(calls)
    # put_object over https streams with an unsigned, checksummed trailer.
    assert results[2].payload_mode is PayloadMode.STREAMING_UNSIGNED_TRAILER


def test_botocore_client_presigned_url_verifies() -> None:
    client = _capturing_client([], endpoint="http://localhost:9000")
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": "bkt", "Key": "x y+z/ü~"}, ExpiresIn=60
    )
    parts = urlsplit(url)
    request = SigV4Request.from_asgi(
        "GET", parts.path.encode(), parts.query.encode(), [(b"host", parts.netloc.encode())]
    )
    assert _verify(request).presigned


# Tampering with any signed part.


def _tampered_variants(request: SigV4Request) -> Iterator[tuple[str, SigV4Request]]:
    yield "method", dataclasses.replace(request, method="DELETE")
    yield "path", dataclasses.replace(request, raw_path=request.raw_path + "x")
    yield "path encoding", dataclasses.replace(request, raw_path=request.raw_path + "%2F")
    yield "query added", dataclasses.replace(request, raw_query=request.raw_query + "&acl=")
    signed = request.headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
    for name in signed.split(";"):
        yield name, _with_header(request, name, _still_valid_but_different(name, request))


def _still_valid_but_different(name: str, request: SigV4Request) -> str:
    value = request.headers[name]
    if name == "x-amz-date":
        return value[:-2] + ("7Z" if value[-2] != "7" else "8Z")
    if name == "x-amz-content-sha256":
        return hashlib.sha256(b"other body").hexdigest()
    return value + "0"


def test_tampering_any_signed_part_fails_the_signature() -> None:
    request = _header_signed(
        "PUT",
        "https://s3.example.com/bucket/a%20key",
        data=b"body",
        headers={"Content-Type": "text/plain", "X-Amz-Meta-Owner": "alice"},
        params={"tagging": ""},
    )
    _verify(request)
    variants = list(_tampered_variants(request))
    assert {"host", "x-amz-date", "x-amz-content-sha256", "x-amz-meta-owner"} <= {
        name for name, _ in variants
    }
    accepted = []
    for name, variant in variants:
        try:
            _verify(variant)
        except SignatureDoesNotMatch:
            continue
        accepted.append(name)
    assert accepted == []


def test_changing_the_query_value_fails_the_signature() -> None:
    request = _header_signed(
        "GET", "https://s3.example.com/bucket", params={"list-type": "2", "prefix": "a"}
    )
    tampered = dataclasses.replace(
        request, raw_query=request.raw_query.replace("prefix=a", "prefix=b")
    )
    with pytest.raises(SignatureDoesNotMatch):
        _verify(tampered)


def test_a_different_signature_fails() -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    authorization = request.headers["authorization"]
    flipped = authorization[:-1] + ("0" if authorization[-1] != "0" else "1")
    with pytest.raises(SignatureDoesNotMatch) as caught:
        _verify(_with_header(request, "authorization", flipped))
    assert caught.value.fields["AWSAccessKeyId"] == AKID


def test_a_wrong_secret_fails() -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    with pytest.raises(SignatureDoesNotMatch):
        authenticate(request, lambda _: "not the secret", SIGNED_AT)


@pytest.mark.parametrize(
    "replace",
    [
        ("X-Amz-Expires=3600", "X-Amz-Expires=7200"),
        ("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Bx-amz-date"),
        ("X-Amz-Date=20250314T150926Z", "X-Amz-Date=20250314T150927Z"),
    ],
)
def test_tampering_presigned_parameters_fails(replace: tuple[str, str]) -> None:
    request = _presigned("https://s3.example.com/bucket/key")
    assert replace[0] in request.raw_query
    tampered = dataclasses.replace(request, raw_query=request.raw_query.replace(*replace))
    if "x-amz-date" in replace[1]:
        tampered = _with_header(tampered, "x-amz-date", "20250314T150926Z")
    with pytest.raises(SignatureDoesNotMatch):
        _verify(tampered)


def test_tampering_presigned_path_fails() -> None:
    request = _presigned("https://s3.example.com/bucket/key")
    with pytest.raises(SignatureDoesNotMatch):
        _verify(dataclasses.replace(request, raw_path="/bucket/other"))


def test_an_unsigned_x_amz_header_is_refused() -> None:
    request = _header_signed("PUT", "https://s3.example.com/bucket/key", data=b"x")
    with pytest.raises(AccessDenied) as caught:
        _verify(_with_header(request, "x-amz-meta-injected", "1"))
    assert caught.value.fields == {"HeadersNotSigned": "x-amz-meta-injected"}


def test_an_unsigned_x_amz_header_on_a_presigned_url_is_refused() -> None:
    request = _presigned("https://s3.example.com/bucket/key", method="PUT")
    with pytest.raises(AccessDenied):
        _verify(_with_header(request, "x-amz-copy-source", "/other/secret"))


def test_a_signed_header_missing_from_the_request_fails() -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key", headers={"Range": "x"})
    headers = {name: value for name, value in request.headers.items() if name != "range"}
    with pytest.raises(SignatureDoesNotMatch):
        _verify(dataclasses.replace(request, headers=headers))


# Clock.


@pytest.mark.parametrize("offset", [timedelta(minutes=-15), timedelta(0), timedelta(minutes=15)])
def test_header_auth_accepts_up_to_fifteen_minutes_of_skew(offset: timedelta) -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    assert _verify(request, SIGNED_AT + offset).access_key_id == AKID


@pytest.mark.parametrize("offset", [timedelta(minutes=-16), timedelta(minutes=16)])
def test_header_auth_refuses_more_than_fifteen_minutes_of_skew(offset: timedelta) -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    with pytest.raises(RequestTimeTooSkewed) as caught:
        _verify(request, SIGNED_AT + offset)
    assert caught.value.fields["RequestTime"] == "2025-03-14T15:09:26Z"


def test_naive_now_is_taken_as_utc() -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    assert _verify(request, SIGNED_AT.replace(tzinfo=None)).access_key_id == AKID


def test_an_expired_presigned_url_is_denied() -> None:
    request = _presigned("https://s3.example.com/bucket/key", expires=60)
    _verify(request, SIGNED_AT + timedelta(seconds=60))
    with pytest.raises(AccessDenied, match="Request has expired") as caught:
        _verify(request, SIGNED_AT + timedelta(seconds=61))
    assert caught.value.fields["Expires"] == "2025-03-14T15:10:26Z"


def test_a_presigned_url_from_the_future_is_too_skewed() -> None:
    request = _presigned("https://s3.example.com/bucket/key")
    _verify(request, SIGNED_AT - timedelta(minutes=15))
    with pytest.raises(RequestTimeTooSkewed):
        _verify(request, SIGNED_AT - timedelta(minutes=16))


def test_presigned_expiry_longer_than_a_week_is_refused() -> None:
    _verify(_presigned("https://s3.example.com/bucket/key", expires=604800))
    with pytest.raises(AuthorizationQueryParametersError, match="604800"):
        _verify(_presigned("https://s3.example.com/bucket/key", expires=604801))


# Credentials, syntax, unsupported mechanisms.


def test_an_unknown_access_key_is_refused() -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    with pytest.raises(InvalidAccessKeyId) as caught:
        authenticate(request, lambda _: None, SIGNED_AT)
    assert caught.value.fields == {"AWSAccessKeyId": AKID}


def test_the_two_steps_allow_an_asynchronous_secret_lookup() -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    claim = parse_signature(request, SIGNED_AT)
    assert claim.access_key_id == AKID
    assert claim.scope == f"20250314/{REGION}/s3/aws4_request"
    assert verify_signature(claim, SECRET).access_key_id == AKID


def test_a_request_for_another_region_is_refused_when_the_region_is_fixed() -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    assert authenticate(request, _lookup, SIGNED_AT, region=REGION).region == REGION
    with pytest.raises(AuthorizationHeaderMalformed, match="us-east-1") as caught:
        authenticate(request, _lookup, SIGNED_AT, region="us-east-1")
    assert caught.value.fields == {"Region": "us-east-1"}


def test_a_presigned_url_for_another_region_is_refused_when_the_region_is_fixed() -> None:
    request = _presigned("https://s3.example.com/bucket/key")
    with pytest.raises(AuthorizationQueryParametersError):
        authenticate(request, _lookup, SIGNED_AT, region="us-east-1")


_GOOD_CREDENTIAL = f"Credential={AKID}/20250314/{REGION}/s3/aws4_request"
_GOOD_SIGNATURE = "Signature=" + "a" * 64


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA512 " + _GOOD_CREDENTIAL,
        f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, {_GOOD_SIGNATURE}",
        f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, SignedHeaders=host, Signature=xyz",
        f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, SignedHeaders=host, {_GOOD_SIGNATURE}, Extra=1",
        f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, {_GOOD_CREDENTIAL}, SignedHeaders=host",
        f"AWS4-HMAC-SHA256 Credential={AKID}/20250314/{REGION}/s3, SignedHeaders=host, "
        + _GOOD_SIGNATURE,
        f"AWS4-HMAC-SHA256 Credential={AKID}/20250314/{REGION}/ec2/aws4_request, "
        f"SignedHeaders=host, {_GOOD_SIGNATURE}",
        f"AWS4-HMAC-SHA256 Credential={AKID}/20250314/{REGION}/s3/aws5_request, "
        f"SignedHeaders=host, {_GOOD_SIGNATURE}",
        f"AWS4-HMAC-SHA256 Credential={AKID}/2025031/{REGION}/s3/aws4_request, "
        f"SignedHeaders=host, {_GOOD_SIGNATURE}",
        f"AWS4-HMAC-SHA256 Credential={AKID}/20250315/{REGION}/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-date, {_GOOD_SIGNATURE}",
        f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, SignedHeaders=x-amz-date, {_GOOD_SIGNATURE}",
        f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, SignedHeaders=Host;x-amz-date, {_GOOD_SIGNATURE}",
        f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, SignedHeaders=host;;x-amz-date, {_GOOD_SIGNATURE}",
        f"AWS4-HMAC-SHA256 {_GOOD_CREDENTIAL}, SignedHeaders=host;host, {_GOOD_SIGNATURE}",
    ],
)
def test_a_malformed_authorization_header_is_refused(authorization: str) -> None:
    request = SigV4Request(
        "GET",
        "/bucket/key",
        "",
        {
            "host": "h",
            "x-amz-date": "20250314T150926Z",
            "x-amz-content-sha256": EMPTY_SHA256,
            "authorization": authorization,
        },
    )
    with pytest.raises(AuthorizationHeaderMalformed):
        _verify(request)


def test_signature_version_2_headers_are_refused_with_a_clear_message() -> None:
    request = SigV4Request("GET", "/b/k", "", {"host": "h", "authorization": "AWS AKID:c2ln"})
    with pytest.raises(InvalidRequest, match="Signature Version 4"):
        _verify(request)


def test_signature_version_2_query_auth_is_refused_with_a_clear_message() -> None:
    request = SigV4Request(
        "GET", "/b/k", "AWSAccessKeyId=AKID&Expires=1&Signature=c2ln", {"host": "h"}
    )
    with pytest.raises(InvalidRequest, match="Signature Version 4"):
        _verify(request)


def test_anonymous_requests_are_denied() -> None:
    with pytest.raises(AccessDenied):
        _verify(SigV4Request("GET", "/bucket/key", "", {"host": "h"}))


def test_header_and_query_auth_together_are_refused() -> None:
    presigned = _presigned("https://s3.example.com/bucket/key")
    header = _header_signed("GET", "https://s3.example.com/bucket/key")
    both = dataclasses.replace(header, raw_query=presigned.raw_query)
    with pytest.raises(InvalidArgument):
        _verify(both)


def test_a_missing_payload_hash_header_is_refused() -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    headers = {k: v for k, v in request.headers.items() if k != "x-amz-content-sha256"}
    with pytest.raises(InvalidRequest, match="x-amz-content-sha256"):
        _verify(dataclasses.replace(request, headers=headers))


def test_an_unknown_payload_mode_is_refused() -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    with pytest.raises(InvalidArgument):
        _verify(_with_header(request, "x-amz-content-sha256", "STREAMING-SOMETHING"))


def test_sigv4a_streaming_is_not_implemented() -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    mode = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
    with pytest.raises(NotImplementedOperation):
        _verify(_with_header(request, "x-amz-content-sha256", mode))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("UNSIGNED-PAYLOAD", PayloadMode.UNSIGNED),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", PayloadMode.STREAMING_SIGNED),
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", PayloadMode.STREAMING_SIGNED_TRAILER),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", PayloadMode.STREAMING_UNSIGNED_TRAILER),
    ],
)
def test_literal_payload_modes_are_recognised(mode: str, expected: PayloadMode) -> None:
    class DeclaredPayloadAuth(S3SigV4Auth):
        """botocore's signer, declaring a chosen payload mode instead of hashing the body."""

        def payload(self, request: AWSRequest) -> str:
            return mode

    request = AWSRequest(method="PUT", url="https://s3.example.com/bucket/key", data=b"x")
    DeclaredPayloadAuth(Credentials(AKID, SECRET), "s3", REGION).add_auth(request)
    result = _verify(_wire(request))
    assert result.payload_mode is expected
    assert result.payload_sha256 is None


def test_session_tokens_are_refused() -> None:
    request = AWSRequest(method="GET", url="https://s3.example.com/bucket/key")
    S3SigV4Auth(Credentials(AKID, SECRET, "token"), "s3", REGION).add_auth(request)
    with pytest.raises(AccessDenied, match="X-Amz-Security-Token"):
        _verify(_wire(request))
    presigned = AWSRequest(method="GET", url="https://s3.example.com/bucket/key")
    S3SigV4QueryAuth(Credentials(AKID, SECRET, "token"), "s3", REGION).add_auth(presigned)
    with pytest.raises(AccessDenied, match="X-Amz-Security-Token"):
        _verify(_wire(presigned))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("X-Amz-Algorithm=AWS4-HMAC-SHA256", "requires"),
        ("X-Amz-Signature=" + "a" * 64, "requires"),
        ("X-Amz-Algorithm=AWS4-HMAC-SHA1&X-Amz-Credential=x&X-Amz-Date=x&X-Amz-Expires=1"
         "&X-Amz-SignedHeaders=host&X-Amz-Signature=x", "only supports"),
        ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Algorithm=AWS4-HMAC-SHA256", "only once"),
    ],
)  # fmt: skip
def test_bad_presigned_parameters_are_refused(query: str, message: str) -> None:
    with pytest.raises(AuthorizationQueryParametersError, match=message):
        _verify(SigV4Request("GET", "/b/k", query, {"host": "h"}))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("X-Amz-Expires=3600", "X-Amz-Expires=-1", "number"),
        ("X-Amz-Expires=3600", "X-Amz-Expires=1e3", "number"),
        ("X-Amz-Date=20250314T150926Z", "X-Amz-Date=2025-03-14", "ISO8601"),
        ("X-Amz-Date=20250314T150926Z", "X-Amz-Date=20250315T000000Z", "credential date"),
        ("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=range", "host"),
    ],
)
def test_invalid_presigned_values_are_refused(old: str, new: str, message: str) -> None:
    request = _presigned("https://s3.example.com/bucket/key")
    tampered = dataclasses.replace(request, raw_query=request.raw_query.replace(old, new))
    with pytest.raises(AuthorizationQueryParametersError, match=message):
        _verify(tampered)


@pytest.mark.parametrize("date", ["2025-03-14T15:09:26Z", "20250314T150926", "20251314T150926Z"])
def test_an_invalid_request_date_is_denied(date: str) -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    with pytest.raises(AccessDenied, match="valid Date"):
        _verify(_with_header(request, "x-amz-date", date))


# Canonical forms and the signing-key cache.


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", ""),
        ("uploads", "uploads="),
        ("b=2&a=1&a=0", "a=0&a=1&b=2"),
        ("prefix=a+b%2bc", "prefix=a%20b%2Bc"),
        ("prefix=%7e%2f~/", "prefix=~%2F~%2F"),
        ("k=%c3%bc", "k=%C3%BC"),
        ("&&x=1&", "x=1"),
    ],
)
def test_canonical_query_decodes_and_re_encodes_the_aws_way(raw: str, canonical: str) -> None:
    assert canonical_query(raw) == canonical


def test_signing_keys_are_cached() -> None:
    derive_signing_key.cache_clear()
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    _verify(request)
    _verify(request)
    info = derive_signing_key.cache_info()
    assert (info.misses, info.hits) == (1, 1)


# Headers a presigned URL's holder could add: the gateway's own decide retention, legal basis
# and data subject, so they must be signed like x-amz-* (issue 9, M2).


def test_an_unsigned_x_blindstore_header_on_a_presigned_url_is_refused() -> None:
    request = _presigned("https://s3.example.com/bucket/key", method="PUT")
    with pytest.raises(AccessDenied, match="not signed") as caught:
        _verify(_with_header(request, "x-blindstore-retention-until", "1971-01-01"))
    assert caught.value.fields == {"HeadersNotSigned": "x-blindstore-retention-until"}


def test_an_unsigned_x_blindstore_header_with_header_auth_is_refused() -> None:
    request = _header_signed("PUT", "https://s3.example.com/bucket/key", data=b"x")
    with pytest.raises(AccessDenied) as caught:
        _verify(_with_header(request, "x-blindstore-legal-basis", "forged"))
    assert caught.value.fields == {"HeadersNotSigned": "x-blindstore-legal-basis"}


def test_every_unsigned_header_is_named() -> None:
    request = _presigned("https://s3.example.com/bucket/key", method="PUT")
    forged = _with_header(
        _with_header(request, "x-blindstore-data-subject", "someone"), "x-amz-meta-a", "1"
    )
    with pytest.raises(AccessDenied) as caught:
        _verify(forged)
    assert caught.value.fields == {"HeadersNotSigned": "x-amz-meta-a, x-blindstore-data-subject"}


def test_signed_x_blindstore_headers_verify() -> None:
    request = _header_signed(
        "PUT",
        "https://s3.example.com/bucket/key",
        data=b"x",
        headers={"x-blindstore-retention-until": "2040-01-01", "x-blindstore-legal-basis": "care"},
    )
    assert "x-blindstore-retention-until" in request.headers["authorization"]
    assert _verify(request).access_key_id == AKID


def test_other_headers_need_not_be_signed() -> None:
    request = _presigned("https://s3.example.com/bucket/key")
    assert _verify(_with_header(request, "user-agent", "curl/8")).access_key_id == AKID


# Header value canonicalisation (SigV4 "Trimall"), checked against AWS's own signers.


def _crt_header_signed(url: str, headers: dict[str, str]) -> SigV4Request:
    request = AWSRequest(method="GET", url=url, headers=headers)
    botocore.crt.auth.CrtS3SigV4Auth(Credentials(AKID, SECRET), "s3", REGION).add_auth(request)
    return _wire(request)


@pytest.mark.parametrize(
    "signer", [S3SigV4Auth, botocore.crt.auth.CrtS3SigV4Auth], ids=["botocore", "crt"]
)
def test_header_values_are_trimmed_and_ascii_whitespace_runs_collapsed(
    signer: type[S3SigV4Auth],
) -> None:
    value = "  a\tb   c \t d  "
    request = AWSRequest(
        method="GET", url="https://s3.example.com/bucket/key", headers={"x-amz-meta-v": value}
    )
    signer(Credentials(AKID, SECRET), "s3", REGION).add_auth(request)
    wire = _wire(request)
    assert wire.headers["x-amz-meta-v"] == "a\tb   c \t d"
    assert _verify(wire).access_key_id == AKID
    claim = parse_signature(wire, SIGNED_AT)
    assert "\nx-amz-meta-v:a b c d\n" in claim.canonical_request


def test_non_ascii_whitespace_inside_a_header_value_is_kept_as_signed() -> None:
    # The AWS CRT (AWS CLI v2, CRT-based SDKs) keeps U+001F, U+001E and the like: str.split()
    # would have turned them into spaces, and such a request would not verify.
    request = _crt_header_signed(
        "https://s3.example.com/bucket/key", {"x-amz-meta-v": "a\x1fb\x1e\x1ec"}
    )
    assert _verify(request).access_key_id == AKID


def test_a_value_whose_inner_separator_changed_does_not_verify() -> None:
    request = _header_signed(
        "GET", "https://s3.example.com/bucket/key", headers={"x-amz-meta-v": "a b"}
    )
    with pytest.raises(SignatureDoesNotMatch):
        _verify(_with_header(request, "x-amz-meta-v", "a\x1fb"))


# Region pinning: S3's exact error for each mechanism.


def test_a_request_signed_for_another_region_names_the_expected_one() -> None:
    request = _header_signed("GET", "https://s3.example.com/bucket/key")
    with pytest.raises(AuthorizationHeaderMalformed) as caught:
        authenticate(request, _lookup, SIGNED_AT, region="eu-central-1")
    assert caught.value.message == (
        f"The authorization header is malformed; the region '{REGION}' is wrong; "
        "expecting 'eu-central-1'"
    )
    assert caught.value.fields == {"Region": "eu-central-1"}


def test_a_presigned_url_for_another_region_names_the_expected_one() -> None:
    request = _presigned("https://s3.example.com/bucket/key")
    with pytest.raises(AuthorizationQueryParametersError) as caught:
        authenticate(request, _lookup, SIGNED_AT, region="eu-central-1")
    assert caught.value.message == (
        f"Error parsing the X-Amz-Credential parameter; the region '{REGION}' is wrong; "
        "expecting 'eu-central-1'"
    )
    assert caught.value.fields == {"Region": "eu-central-1"}


def test_a_presigned_url_that_signs_an_x_blindstore_header_verifies_with_it() -> None:
    request = AWSRequest(
        method="PUT",
        url="https://s3.example.com/bucket/key",
        headers={"x-blindstore-retention-until": "2040-01-01"},
    )
    S3SigV4QueryAuth(Credentials(AKID, SECRET), "s3", REGION, expires=300).add_auth(request)
    wire = _wire(request)
    assert "x-blindstore-retention-until" in unquote(wire.raw_query)
    assert _verify(wire).presigned
    with pytest.raises(SignatureDoesNotMatch):
        _verify(_with_header(wire, "x-blindstore-retention-until", "1971-01-01"))
