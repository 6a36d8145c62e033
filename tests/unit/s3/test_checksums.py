"""Body checksums against known values and botocore's own checksum implementations."""

from __future__ import annotations

import base64
import hashlib
import io
import random

import pytest
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    BaseChecksum,
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)

from blindstore.errors import BadDigest, InvalidDigest, InvalidRequest, XAmzContentSHA256Mismatch
from blindstore.s3.checksums import (
    BodyVerifier,
    ChecksumAlgorithm,
    checksum,
    composite_checksum,
    full_object_crc,
    new_hasher,
)
from blindstore.s3.chunked import AwsChunkedDecoder, declared_trailers
from blindstore.s3.sigv4 import PayloadMode

BOTOCORE = {
    ChecksumAlgorithm.CRC32: Crc32Checksum,
    ChecksumAlgorithm.CRC32C: CrtCrc32cChecksum,
    ChecksumAlgorithm.CRC64NVME: CrtCrc64NvmeChecksum,
    ChecksumAlgorithm.SHA1: Sha1Checksum,
    ChecksumAlgorithm.SHA256: Sha256Checksum,
}
PAYLOADS = [b"", b"a", b"123456789", random.Random(7).randbytes(100_003)]


def _botocore_b64(algorithm: ChecksumAlgorithm, data: bytes) -> str:
    implementation: BaseChecksum = BOTOCORE[algorithm]()
    implementation.update(data)
    return implementation.b64digest()


def _b64_int(value: int, size: int) -> str:
    return base64.b64encode(value.to_bytes(size, "big")).decode()


def _b64_hex(digest: str) -> str:
    return base64.b64encode(bytes.fromhex(digest)).decode()


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _verified(headers: dict[str, str], body: bytes, **kwargs: str | None) -> BodyVerifier:
    verifier = BodyVerifier.from_headers(headers, payload_sha256=kwargs.get("payload_sha256"))
    for start in range(0, len(body), 1000):
        verifier.update(memoryview(body)[start : start + 1000])
    return verifier


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        # The "123456789" check values of each CRC's catalogue entry.
        (ChecksumAlgorithm.CRC32, _b64_int(0xCBF43926, 4)),
        (ChecksumAlgorithm.CRC32C, _b64_int(0xE3069283, 4)),
        (ChecksumAlgorithm.CRC64NVME, _b64_int(0xAE8B14860A799888, 8)),
        (ChecksumAlgorithm.SHA1, _b64_hex("f7c3bc1d808e04732adf679965ccc34ca7ae3441")),
        (
            ChecksumAlgorithm.SHA256,
            _b64_hex("15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"),
        ),
    ],
)
def test_checksums_match_known_values(algorithm: ChecksumAlgorithm, expected: str) -> None:
    assert checksum(algorithm, b"123456789") == expected


@pytest.mark.parametrize("algorithm", list(ChecksumAlgorithm))
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: f"{len(p)}B")
def test_streamed_checksums_match_botocore(algorithm: ChecksumAlgorithm, payload: bytes) -> None:
    hasher = new_hasher(algorithm)
    view = memoryview(payload)
    for start in range(0, len(payload), 4099):
        hasher.update(view[start : start + 4099])
    assert base64.b64encode(hasher.digest()).decode() == _botocore_b64(algorithm, payload)
    assert len(hasher.digest()) == algorithm.digest_size


def test_algorithm_headers_and_names() -> None:
    assert ChecksumAlgorithm.CRC64NVME.header == "x-amz-checksum-crc64nvme"
    assert ChecksumAlgorithm.from_name(" crc32c ") is ChecksumAlgorithm.CRC32C
    with pytest.raises(InvalidRequest, match="CRC64NVME"):
        ChecksumAlgorithm.from_name("MD5")


# Content-MD5 and the ETag.


def test_the_md5_is_always_computed_and_gives_the_etag() -> None:
    digests = _verified({}, b"hello").finish()
    assert digests.etag == '"5d41402abc4b2a76b9719d911017c592"'
    assert digests.content_md5 == _md5_b64(b"hello")
    assert digests.size == 5
    assert digests.checksums == {}


def test_a_matching_content_md5_verifies() -> None:
    body = PAYLOADS[3]
    assert _verified({"content-md5": _md5_b64(body)}, body).finish().size == len(body)


def test_a_wrong_content_md5_is_a_bad_digest() -> None:
    with pytest.raises(BadDigest, match="Content-MD5"):
        _verified({"content-md5": _md5_b64(b"other")}, b"hello").finish()


@pytest.mark.parametrize("value", ["not base64!", "AAAA", base64.b64encode(b"x" * 17).decode()])
def test_an_invalid_content_md5_is_an_invalid_digest(value: str) -> None:
    with pytest.raises(InvalidDigest):
        BodyVerifier.from_headers({"content-md5": value})


# x-amz-checksum-* headers.


@pytest.mark.parametrize("algorithm", list(ChecksumAlgorithm))
def test_a_matching_checksum_header_verifies(algorithm: ChecksumAlgorithm) -> None:
    body = PAYLOADS[3]
    value = _botocore_b64(algorithm, body)
    headers = {algorithm.header: value, "x-amz-sdk-checksum-algorithm": algorithm.value}
    assert _verified(headers, body).finish().checksums == {algorithm: value}


@pytest.mark.parametrize("algorithm", list(ChecksumAlgorithm))
def test_a_wrong_checksum_header_is_a_bad_digest(algorithm: ChecksumAlgorithm) -> None:
    headers = {algorithm.header: _botocore_b64(algorithm, b"other")}
    with pytest.raises(BadDigest, match=algorithm.value):
        _verified(headers, b"body").finish()


@pytest.mark.parametrize("value", ["", "%%%%", "AAAAAAAA", base64.b64encode(b"x" * 3).decode()])
def test_an_invalid_checksum_header_is_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="x-amz-checksum-crc32"):
        BodyVerifier.from_headers({"x-amz-checksum-crc32": value})


def test_two_checksum_headers_are_refused() -> None:
    headers = {
        "x-amz-checksum-crc32": checksum(ChecksumAlgorithm.CRC32, b""),
        "x-amz-checksum-sha1": checksum(ChecksumAlgorithm.SHA1, b""),
    }
    with pytest.raises(InvalidRequest, match="single"):
        BodyVerifier.from_headers(headers)


def test_a_declared_algorithm_must_match_the_checksum_header() -> None:
    headers = {
        "x-amz-checksum-crc32": checksum(ChecksumAlgorithm.CRC32, b""),
        "x-amz-sdk-checksum-algorithm": "SHA256",
    }
    with pytest.raises(InvalidRequest, match="x-amz-sdk-checksum-algorithm"):
        BodyVerifier.from_headers(headers)


def test_a_declared_algorithm_without_a_value_is_computed() -> None:
    digests = _verified({"x-amz-sdk-checksum-algorithm": "crc64nvme"}, b"abc").finish()
    assert digests.checksums == {
        ChecksumAlgorithm.CRC64NVME: _botocore_b64(ChecksumAlgorithm.CRC64NVME, b"abc")
    }


def test_extra_algorithms_are_computed_without_expectations() -> None:
    verifier = BodyVerifier.from_headers(
        {}, extra=[ChecksumAlgorithm.CRC32C, ChecksumAlgorithm.SHA1]
    )
    verifier.update(b"abc")
    assert verifier.finish().checksums == {
        ChecksumAlgorithm.CRC32C: _botocore_b64(ChecksumAlgorithm.CRC32C, b"abc"),
        ChecksumAlgorithm.SHA1: _botocore_b64(ChecksumAlgorithm.SHA1, b"abc"),
    }


# The payload SHA-256 of x-amz-content-sha256.


def test_a_matching_payload_sha256_verifies() -> None:
    body = PAYLOADS[3]
    verifier = _verified({}, body, payload_sha256=hashlib.sha256(body).hexdigest())
    assert verifier.finish().size == len(body)


def test_a_wrong_payload_sha256_is_a_content_sha256_mismatch() -> None:
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(XAmzContentSHA256Mismatch) as caught:
        _verified({}, b"body", payload_sha256=wrong).finish()
    assert caught.value.fields["S3ComputedContentSHA256"] == hashlib.sha256(b"body").hexdigest()


def test_one_sha256_serves_both_the_payload_hash_and_the_checksum_header() -> None:
    body = b"shared"
    headers = {"x-amz-checksum-sha256": checksum(ChecksumAlgorithm.SHA256, body)}
    verifier = _verified(headers, body, payload_sha256=hashlib.sha256(body).hexdigest())
    assert verifier.finish().checksums == {
        ChecksumAlgorithm.SHA256: checksum(ChecksumAlgorithm.SHA256, body)
    }
    wrong_header = {"x-amz-checksum-sha256": checksum(ChecksumAlgorithm.SHA256, b"x")}
    verifier = _verified(wrong_header, body, payload_sha256=hashlib.sha256(body).hexdigest())
    with pytest.raises(BadDigest):
        verifier.finish()


# Trailers.


@pytest.mark.parametrize(
    ("algorithm", "implementation"),
    [
        (ChecksumAlgorithm.CRC32, Crc32Checksum),
        (ChecksumAlgorithm.CRC32C, CrtCrc32cChecksum),
        (ChecksumAlgorithm.CRC64NVME, CrtCrc64NvmeChecksum),
        (ChecksumAlgorithm.SHA256, Sha256Checksum),
    ],
)
def test_a_botocore_trailer_checksum_verifies_through_the_decoder(
    algorithm: ChecksumAlgorithm, implementation: type[BaseChecksum]
) -> None:
    payload = PAYLOADS[3]
    body = AwsChunkedWrapper(
        io.BytesIO(payload),
        checksum_cls=implementation,
        checksum_name=algorithm.header,
        chunk_size=16384,
    ).read()
    headers = {
        "x-amz-trailer": algorithm.header,
        "x-amz-sdk-checksum-algorithm": algorithm.value,
        "x-amz-decoded-content-length": str(len(payload)),
    }
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
        decoded_length=len(payload),
        expected_trailers=declared_trailers(headers),
    )
    verifier = BodyVerifier.from_headers(headers)
    for piece in decoder.feed(body):
        verifier.update(piece)
    verifier.add_trailers(decoder.finish())

    assert verifier.finish().checksums == {algorithm: decoder.trailers[algorithm.header]}


def test_a_wrong_trailer_checksum_is_a_bad_digest() -> None:
    verifier = BodyVerifier.from_headers({"x-amz-trailer": "x-amz-checksum-crc32"})
    verifier.update(b"body")
    verifier.add_trailers({"x-amz-checksum-crc32": checksum(ChecksumAlgorithm.CRC32, b"x")})
    with pytest.raises(BadDigest, match="CRC32"):
        verifier.finish()


def test_a_missing_trailer_checksum_is_refused() -> None:
    verifier = BodyVerifier.from_headers({"x-amz-trailer": "x-amz-checksum-crc32"})
    with pytest.raises(InvalidRequest, match="trailer is missing"):
        verifier.add_trailers({})
    with pytest.raises(InvalidRequest, match="trailer is missing"):
        verifier.finish()


def test_an_invalid_trailer_checksum_is_refused() -> None:
    verifier = BodyVerifier.from_headers({"x-amz-trailer": "x-amz-checksum-crc32"})
    with pytest.raises(InvalidRequest, match="trailer is invalid"):
        verifier.add_trailers({"x-amz-checksum-crc32": "nope"})


@pytest.mark.parametrize("trailer", ["x-amz-checksum-md5", "x-amz-meta-a", "a, b"])
def test_an_unsupported_trailer_declaration_is_refused(trailer: str) -> None:
    with pytest.raises(InvalidRequest, match="x-amz-trailer"):
        BodyVerifier.from_headers({"x-amz-trailer": trailer})


def test_a_checksum_header_and_a_checksum_trailer_together_are_refused() -> None:
    headers = {
        "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-checksum-crc32": checksum(ChecksumAlgorithm.CRC32, b""),
    }
    with pytest.raises(InvalidRequest, match="single"):
        BodyVerifier.from_headers(headers)


# Multipart checksums.


@pytest.mark.parametrize("algorithm", list(ChecksumAlgorithm))
def test_the_composite_checksum_hashes_the_binary_part_checksums(
    algorithm: ChecksumAlgorithm,
) -> None:
    parts = [b"part one", b"part two", b"three"]
    values = [checksum(algorithm, part) for part in parts]
    binary = b"".join(base64.b64decode(value) for value in values)
    assert composite_checksum(algorithm, values) == f"{checksum(algorithm, binary)}-3"


def test_a_composite_checksum_refuses_an_invalid_part_value() -> None:
    with pytest.raises(InvalidRequest, match="part 2"):
        composite_checksum(ChecksumAlgorithm.CRC32, ["AAAAAA==", "AAAAAAAAAAA="])


@pytest.mark.parametrize(
    "algorithm",
    [ChecksumAlgorithm.CRC32, ChecksumAlgorithm.CRC32C, ChecksumAlgorithm.CRC64NVME],
)
def test_the_full_object_crc_equals_the_crc_of_the_whole_object(
    algorithm: ChecksumAlgorithm,
) -> None:
    data = PAYLOADS[3]
    parts = [data[:1], data[1:50_000], data[50_000:50_000], data[50_000:]]
    combined = full_object_crc(algorithm, [(checksum(algorithm, p), len(p)) for p in parts])
    assert combined == _botocore_b64(algorithm, data)


def test_the_full_object_type_is_only_for_crcs() -> None:
    with pytest.raises(InvalidRequest, match="FULL_OBJECT"):
        full_object_crc(ChecksumAlgorithm.SHA256, [(checksum(ChecksumAlgorithm.SHA256, b""), 0)])


def test_split_updates_equal_a_single_update() -> None:
    """The gateway hashes MD5 and the other digests in two threads; the result must not change."""
    data = bytes(range(256)) * 5000
    whole = BodyVerifier(checksum_algorithm=ChecksumAlgorithm.CRC32C, payload_sha256=None)
    split = BodyVerifier(checksum_algorithm=ChecksumAlgorithm.CRC32C, payload_sha256=None)
    whole.update(data)
    split.update_md5(data)
    split.update_others(data)
    assert whole.finish() == split.finish()
