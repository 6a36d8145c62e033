"""SigV4 through boto3 and by hand: payload modes, presigned URLs, digests, clocks and keys."""

from __future__ import annotations

import base64
import hashlib
import urllib.error
import urllib.request
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import awscrt.checksums
import boto3
import pytest
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.gwserver import RunningGateway
from tests.integration import rawhttp
from tests.integration.rawhttp import boto_client, object_path, virtual_client

DATA = bytes(range(256)) * 300  # 76,800 bytes: several 16 KiB chunks


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _record_headers(client: Any) -> list[dict[str, str]]:
    """Headers of every request ``client`` sends, as they go on the wire."""
    seen: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        seen.append(
            {
                k.lower(): v.decode() if isinstance(v, bytes) else v
                for k, v in request.headers.items()
            }
        )

    client.meta.events.register("before-send", record)
    return seen


def _absent(s3: Any, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=key)
    assert _error(exc) == ("404", 404)


# ---------------------------------------------------------------------------- payload modes


def test_boto3_put_over_http_signs_the_payload_sha256(gw: RunningGateway, bucket: str) -> None:
    client = boto_client(gw)
    seen = _record_headers(client)
    client.put_object(Bucket=bucket, Key="signed", Body=DATA)
    assert seen[-1]["x-amz-content-sha256"] == hashlib.sha256(DATA).hexdigest()
    assert client.get_object(Bucket=bucket, Key="signed")["Body"].read() == DATA


def test_unsigned_payload_put_round_trips(gw: RunningGateway, bucket: str) -> None:
    client = boto_client(gw, addressing="virtual", s3={"payload_signing_enabled": False})
    seen = _record_headers(client)
    client.put_object(Bucket=bucket, Key="unsigned", Body=DATA)
    assert seen[-1]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert seen[-1]["host"] == f"{bucket}.localhost:{gw.port}"
    assert client.get_object(Bucket=bucket, Key="unsigned")["Body"].read() == DATA


def _streaming_put(
    gw: RunningGateway, bucket: str, key: str, chunks: list[bytes], *, tamper: bool = False
) -> rawhttp.RawResponse:
    decoded = sum(len(c) for c in chunks)
    # The encoded length is known before signing: each chunk header is fixed-width.
    encoded = sum(len(f"{len(c):x};chunk-signature=") + 64 + 4 + len(c) for c in [*chunks, b""])
    request = rawhttp.sign(
        gw,
        "PUT",
        object_path(bucket, key),
        headers={
            "Content-Encoding": "aws-chunked",
            "Content-Length": str(encoded),
            "x-amz-decoded-content-length": str(decoded),
            "Content-Type": "text/plain",
        },
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    )
    body = rawhttp.signed_chunks(request, chunks)
    assert len(body) == encoded
    if tamper:
        # Flip one payload byte of the second chunk: its signature no longer matches.
        cut = body.index(chunks[1][:16]) + 3
        body = body[:cut] + bytes([body[cut] ^ 1]) + body[cut + 1 :]
    request.body = body
    return rawhttp.send_signed(request, gw)


def test_streaming_signed_chunked_put_round_trips(gw: RunningGateway, s3: Any, bucket: str) -> None:
    chunks = [DATA[:65536], DATA[65536:70000], DATA[70000:]]
    response = _streaming_put(gw, bucket, "chunked", chunks)
    assert response.status == 200, response.body
    assert response.headers["etag"] == f'"{hashlib.md5(DATA).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="chunked")
    assert got["Body"].read() == DATA
    # aws-chunked is how the body travelled, not how the object is encoded.
    assert "ContentEncoding" not in got
    assert got["ContentType"] == "text/plain"


def test_streaming_chunk_with_a_bad_signature_stores_nothing(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    chunks = [DATA[:65536], DATA[65536:]]
    response = _streaming_put(gw, bucket, "tampered", chunks, tamper=True)
    assert response.status == 403
    assert response.code == "SignatureDoesNotMatch"
    _absent(s3, bucket, "tampered")


def _signed_trailer_put(
    gw: RunningGateway, bucket: str, key: str, checksum: str
) -> rawhttp.RawResponse:
    request = rawhttp.sign(
        gw,
        "PUT",
        object_path(bucket, key),
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(DATA)),
            "x-amz-trailer": "x-amz-checksum-sha256",
        },
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    )
    request.body = rawhttp.signed_chunks(
        request, [DATA[:65536], DATA[65536:]], {"x-amz-checksum-sha256": checksum}
    )
    return rawhttp.send_signed(request, gw)


def test_streaming_signed_trailer_put_round_trips(gw: RunningGateway, s3: Any, bucket: str) -> None:
    checksum = base64.b64encode(hashlib.sha256(DATA).digest()).decode()
    response = _signed_trailer_put(gw, bucket, "signed-trailer", checksum)
    assert response.status == 200, response.body
    got = s3.get_object(Bucket=bucket, Key="signed-trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == DATA
    assert got["ChecksumSHA256"] == checksum


def test_streaming_signed_trailer_with_a_wrong_checksum_stores_nothing(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    response = _signed_trailer_put(gw, bucket, "signed-trailer", wrong)
    assert (response.status, response.code) == (400, "BadDigest")
    _absent(s3, bucket, "signed-trailer")


def test_streaming_unsigned_trailer_put_from_botocore_round_trips(
    gw: RunningGateway, bucket: str
) -> None:
    """botocore only sends trailing checksums over TLS; the test moves them to the trailer."""
    client = boto_client(gw, request_checksum_calculation="when_supported")

    def use_trailer(params: Any, **_: Any) -> None:
        params["context"]["checksum"]["request_algorithm"]["in"] = "trailer"

    client.meta.events.register("before-call.s3.PutObject", use_trailer)
    seen = _record_headers(client)
    client.put_object(Bucket=bucket, Key="trailer", Body=DATA, ChecksumAlgorithm="CRC32")
    assert seen[-1]["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert seen[-1]["x-amz-trailer"] == "x-amz-checksum-crc32"
    got = client.get_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == DATA
    assert got["ChecksumCRC32"] == base64.b64encode(zlib.crc32(DATA).to_bytes(4, "big")).decode()


def test_streaming_unsigned_trailer_with_a_wrong_checksum_stores_nothing(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    body = rawhttp.unsigned_chunks([DATA[:8192], DATA[8192:]], {"x-amz-checksum-crc32": wrong})
    response = rawhttp.signed(
        gw,
        "PUT",
        object_path(bucket, "bad-trailer"),
        body=body,
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(DATA)),
            "x-amz-trailer": "x-amz-checksum-crc32",
        },
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )
    assert (response.status, response.code) == (400, "BadDigest")
    _absent(s3, bucket, "bad-trailer")


# ---------------------------------------------------------------------------- presigned URLs


@pytest.mark.parametrize("addressing", ["path", "virtual"])
def test_presigned_get_and_put_urls_work(
    gw: RunningGateway, s3: Any, bucket: str, addressing: str
) -> None:
    client = boto_client(gw, addressing=addressing)
    put_url = client.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "pre signed"}, ExpiresIn=300
    )
    assert rawhttp.fetch(gw, put_url, "PUT", body=DATA).status == 200
    get_url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "pre signed"}, ExpiresIn=300
    )
    got = rawhttp.fetch(gw, get_url)
    assert (got.status, got.body) == (200, DATA)
    assert s3.get_object(Bucket=bucket, Key="pre signed")["Body"].read() == DATA


def test_presigned_get_url_works_with_urllib(gw: RunningGateway, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="urllib", Body=b"fetched by urllib")
    url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "urllib", "ResponseContentType": "text/x-test"},
        ExpiresIn=60,
    )
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"fetched by urllib"
        assert response.headers["Content-Type"] == "text/x-test"


def test_expired_presigned_url_is_refused(gw: RunningGateway, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="old", Body=b"x")
    # Signed 20 minutes ago for 60 seconds: expired (the clock-skew rule does not apply).
    url = rawhttp.presign(
        gw,
        "GET",
        object_path(bucket, "old"),
        when=datetime.now(UTC) - timedelta(minutes=20),
        expires=60,
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url, timeout=30)
    assert exc.value.code == 403
    assert b"<Code>AccessDenied</Code>" in exc.value.read()
    exc.value.close()


# ---------------------------------------------------------------------------- digests


def test_content_md5_mismatch_is_bad_digest_and_stores_nothing(s3: Any, bucket: str) -> None:
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="md5", Body=DATA, ContentMD5=wrong)
    assert _error(exc) == ("BadDigest", 400)
    _absent(s3, bucket, "md5")


def test_correct_content_md5_is_accepted(s3: Any, bucket: str) -> None:
    right = base64.b64encode(hashlib.md5(DATA).digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5", Body=DATA, ContentMD5=right)
    assert s3.get_object(Bucket=bucket, Key="md5")["Body"].read() == DATA


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


CHECKSUMS = {
    "CRC32": lambda d: _b64(zlib.crc32(d).to_bytes(4, "big")),
    "CRC32C": lambda d: _b64(awscrt.checksums.crc32c(d).to_bytes(4, "big")),
    "CRC64NVME": lambda d: _b64(awscrt.checksums.crc64nvme(d).to_bytes(8, "big")),
    "SHA1": lambda d: _b64(hashlib.sha1(d).digest()),
    "SHA256": lambda d: _b64(hashlib.sha256(d).digest()),
}


@pytest.mark.parametrize("algorithm", sorted(CHECKSUMS))
def test_correct_checksum_is_stored_and_returned(s3: Any, bucket: str, algorithm: str) -> None:
    expected = CHECKSUMS[algorithm](DATA)
    put = s3.put_object(Bucket=bucket, Key="sum", Body=DATA, **{f"Checksum{algorithm}": expected})
    assert put[f"Checksum{algorithm}"] == expected
    got = s3.get_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert got["Body"].read() == DATA
    assert got[f"Checksum{algorithm}"] == expected
    head = s3.head_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == expected


@pytest.mark.parametrize("algorithm", sorted(CHECKSUMS))
def test_wrong_checksum_is_bad_digest_and_stores_nothing(
    s3: Any, bucket: str, algorithm: str
) -> None:
    wrong = CHECKSUMS[algorithm](DATA + b"!")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="sum", Body=DATA, **{f"Checksum{algorithm}": wrong})
    assert _error(exc) == ("BadDigest", 400)
    _absent(s3, bucket, "sum")


def test_wrong_content_sha256_is_refused_and_stores_nothing(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    response = rawhttp.signed(
        gw,
        "PUT",
        object_path(bucket, "sha"),
        body=DATA,
        payload_hash=hashlib.sha256(b"not the body").hexdigest(),
    )
    assert (response.status, response.code) == (400, "XAmzContentSHA256Mismatch")
    _absent(s3, bucket, "sha")


# ---------------------------------------------------------------------------- who and when


@pytest.mark.parametrize("shift", [timedelta(minutes=-16), timedelta(minutes=16)])
def test_clock_skew_over_15_minutes_is_refused(
    gw: RunningGateway, bucket: str, shift: timedelta
) -> None:
    response = rawhttp.signed(
        gw, "GET", object_path(bucket), query="list-type=2", when=datetime.now(UTC) + shift
    )
    assert (response.status, response.code) == (403, "RequestTimeTooSkewed")


def test_clock_skew_within_15_minutes_is_accepted(gw: RunningGateway, bucket: str) -> None:
    response = rawhttp.signed(
        gw,
        "GET",
        object_path(bucket),
        query="list-type=2",
        when=datetime.now(UTC) - timedelta(minutes=10),
    )
    assert response.status == 200


def _client_with(gw: RunningGateway, access_key: str, secret_key: str, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=gw.endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
    )


def test_unknown_access_key_is_refused(gw: RunningGateway, bucket: str) -> None:
    client = _client_with(gw, "AKIDNOSUCHKEY000000", "x" * 40)
    with pytest.raises(ClientError) as exc:
        client.list_objects_v2(Bucket=bucket)
    assert _error(exc) == ("InvalidAccessKeyId", 403)


def test_wrong_secret_is_signature_does_not_match(gw: RunningGateway, bucket: str) -> None:
    client = _client_with(gw, gw.tenants["demo"].access_key, "wrong-secret" * 3)
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert _error(exc) == ("SignatureDoesNotMatch", 403)


def test_anonymous_requests_are_refused(gw: RunningGateway, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="public?", Body=b"no")
    anonymous = _client_with(gw, "unused", "unused", signature_version=UNSIGNED)
    for call in (
        lambda: anonymous.get_object(Bucket=bucket, Key="public?"),
        lambda: anonymous.put_object(Bucket=bucket, Key="anon", Body=b"x"),
        lambda: anonymous.list_objects_v2(Bucket=bucket),
        anonymous.list_buckets,
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _error(exc) == ("AccessDenied", 403)
    _absent(s3, bucket, "anon")


def test_sigv4_header_auth_works_virtual_hosted(gw: RunningGateway, bucket: str) -> None:
    client = virtual_client(gw)
    client.put_object(Bucket=bucket, Key="dir/virtual key", Body=b"v")
    assert client.get_object(Bucket=bucket, Key="dir/virtual key")["Body"].read() == b"v"
    raw = rawhttp.signed(gw, "GET", "/dir/virtual%20key", host=f"{bucket}.localhost:{gw.port}")
    assert (raw.status, raw.body) == (200, b"v")


# ------------------------------------------------------------------ signed headers, region


def test_a_presigned_put_with_an_added_retention_header_is_refused(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    url = boto_client(gw).generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "kept"}, ExpiresIn=300
    )
    parts = urlsplit(url)
    forged = rawhttp.send(
        gw,
        "PUT",
        f"{parts.path}?{parts.query}",
        headers={"Host": parts.netloc, "x-blindstore-retention-until": "1971-01-01"},
        body=b"x",
    )
    assert (forged.status, forged.code) == (403, "AccessDenied")
    assert forged.error()["HeadersNotSigned"] == "x-blindstore-retention-until"
    _absent(s3, bucket, "kept")
    # The URL itself, as issued, still works.
    assert rawhttp.fetch(gw, url, "PUT", body=b"x").status == 200


def _signed_for_region(gw: RunningGateway, region: str, path: str) -> tuple[AWSRequest, str]:
    target = f"http://127.0.0.1:{gw.port}{path}"
    request = AWSRequest(method="GET", url=target)
    S3SigV4Auth(rawhttp.credentials(gw), "s3", region).add_auth(request)
    return request, target


def test_a_request_signed_for_another_region_is_refused_naming_the_gateways(
    gw: RunningGateway, bucket: str
) -> None:
    request, _ = _signed_for_region(gw, "eu-west-1", object_path(bucket))
    headers = {name: str(value) for name, value in request.headers.items()}
    raw = rawhttp.send(gw, "GET", object_path(bucket), headers=headers)
    assert (raw.status, raw.code) == (400, "AuthorizationHeaderMalformed")
    region = gw.settings.s3.region
    assert raw.error()["Region"] == region
    assert raw.error()["Message"] == (
        f"The authorization header is malformed; the region 'eu-west-1' is wrong; "
        f"expecting '{region}'"
    )


def test_a_presigned_url_for_another_region_is_refused_naming_the_gateways(
    gw: RunningGateway, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="regional", Body=b"x")
    request = AWSRequest(method="GET", url=f"{gw.endpoint}{object_path(bucket, 'regional')}")
    S3SigV4QueryAuth(rawhttp.credentials(gw), "s3", "eu-west-1", expires=300).add_auth(request)
    raw = rawhttp.fetch(gw, request.url)
    assert (raw.status, raw.code) == (400, "AuthorizationQueryParametersError")
    assert raw.error()["Region"] == gw.settings.s3.region
