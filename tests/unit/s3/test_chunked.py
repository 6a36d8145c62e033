"""The aws-chunked decoder, fed whole, byte by byte and in random slices."""

from __future__ import annotations

import hashlib
import hmac
import io
import random
from collections.abc import Iterator

import pytest
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum, CrtCrc64NvmeChecksum

from blindstore.errors import (
    IncompleteBody,
    InvalidArgument,
    InvalidRequest,
    MissingContentLength,
    SignatureDoesNotMatch,
)
from blindstore.s3.chunked import (
    MAX_LINE,
    AwsChunkedDecoder,
    declared_trailers,
    decoded_content_length,
    stored_content_encoding,
)
from blindstore.s3.sigv4 import EMPTY_SHA256, ChunkSigningContext, PayloadMode, derive_signing_key

# The AWS documentation's "Example: PUT Object" for STREAMING-AWS4-HMAC-SHA256-PAYLOAD.
DOC_SIGNING = ChunkSigningContext(
    signing_key=derive_signing_key(
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1"
    ),
    amz_date="20130524T000000Z",
    scope="20130524/us-east-1/s3/aws4_request",
    seed_signature="4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
)
DOC_BODY = (
    b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"
    + b"a" * 65536
    + b"\r\n"
    + b"400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"
    + b"a" * 1024
    + b"\r\n"
    + b"0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n"
    + b"\r\n"
)
DOC_PAYLOAD = b"a" * 66560

SIGNING = ChunkSigningContext(
    signing_key=derive_signing_key("secret", "20250314", "eu-west-3"),
    amz_date="20250314T150926Z",
    scope="20250314/eu-west-3/s3/aws4_request",
    seed_signature="ab" * 32,
)


def _slices(body: bytes, how: str) -> Iterator[bytes]:
    if how == "whole":
        yield body
    elif how == "bytes":
        yield from (body[i : i + 1] for i in range(len(body)))
    else:
        rng = random.Random(f"{how}:{len(body)}")
        position = 0
        while position < len(body):
            step = rng.randint(1, 700)
            yield body[position : position + step]
            position += step


def _decode(decoder: AwsChunkedDecoder, body: bytes, how: str = "whole") -> bytes:
    out = bytearray()
    for piece in _slices(body, how):
        for payload in decoder.feed(piece):
            out += payload
    decoder.finish()
    return bytes(out)


def _sign(signing: ChunkSigningContext, string_to_sign: str) -> str:
    return hmac.new(signing.signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _signed_body(
    payload: bytes,
    chunk_size: int,
    signing: ChunkSigningContext = SIGNING,
    trailers: dict[str, str] | None = None,
) -> bytes:
    """An aws-chunked body signed as the AWS specification describes, written independently."""
    chunks = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    previous = signing.seed_signature
    body = bytearray()
    for chunk in chunks:
        digest = hashlib.sha256(chunk).hexdigest()
        previous = _sign(
            signing,
            "\n".join(
                [
                    "AWS4-HMAC-SHA256-PAYLOAD",
                    signing.amz_date,
                    signing.scope,
                    previous,
                    EMPTY_SHA256,
                    digest,
                ]
            ),
        )
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode()
        if chunk:
            body += chunk + b"\r\n"
    if trailers is not None:
        canonical = "".join(f"{name}:{value}\n" for name, value in trailers.items())
        body += canonical.replace("\n", "\r\n").encode()
        trailer_hash = hashlib.sha256(canonical.encode()).hexdigest()
        lines = ["AWS4-HMAC-SHA256-TRAILER", signing.amz_date, signing.scope, previous]
        signature = _sign(signing, "\n".join([*lines, trailer_hash]))
        body += f"x-amz-trailer-signature:{signature}\r\n".encode()
    return bytes(body + b"\r\n")


def _unsigned_trailer_body(payload: bytes, chunk_size: int) -> bytes:
    """What botocore's own aws-chunked writer sends with STREAMING-UNSIGNED-PAYLOAD-TRAILER."""
    wrapper = AwsChunkedWrapper(
        io.BytesIO(payload),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=chunk_size,
    )
    return wrapper.read()


def _crc32_b64(payload: bytes) -> str:
    checksum = Crc32Checksum()
    checksum.update(payload)
    return checksum.b64digest()


def _doc_decoder() -> AwsChunkedDecoder:
    return AwsChunkedDecoder(
        PayloadMode.STREAMING_SIGNED, decoded_length=len(DOC_PAYLOAD), signing=DOC_SIGNING
    )


# Signed chunks.


def test_the_aws_documentation_first_chunk_signature_is_reproduced() -> None:
    body = _signed_body(DOC_PAYLOAD, 65536, DOC_SIGNING)
    assert body == DOC_BODY
    assert body.startswith(
        b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    )


@pytest.mark.parametrize("how", ["whole", "bytes", "random-1", "random-2"])
def test_the_aws_documentation_example_decodes(how: str) -> None:
    decoder = _doc_decoder()
    assert _decode(decoder, DOC_BODY, how) == DOC_PAYLOAD
    assert decoder.done
    assert decoder.decoded_bytes == len(DOC_PAYLOAD)
    assert decoder.trailers == {}


@pytest.mark.parametrize("size", [0, 1, 8191, 8192, 8193, 70000])
@pytest.mark.parametrize("how", ["whole", "random-3"])
def test_signed_bodies_of_many_sizes_decode(size: int, how: str) -> None:
    payload = random.Random(size).randbytes(size)
    decoder = AwsChunkedDecoder(PayloadMode.STREAMING_SIGNED, decoded_length=size, signing=SIGNING)
    assert _decode(decoder, _signed_body(payload, 8192), how) == payload


@pytest.mark.parametrize("position", [200, 30000, 65600, 66000])
def test_a_flipped_payload_byte_fails_its_chunk_signature(position: int) -> None:
    body = bytearray(DOC_BODY)
    assert body[position] == ord("a")
    body[position] ^= 1
    with pytest.raises(SignatureDoesNotMatch):
        _decode(_doc_decoder(), bytes(body))


def test_a_wrong_final_chunk_signature_fails() -> None:
    body = DOC_BODY.replace(b"b6c6ea8a", b"b6c6ea8b")
    with pytest.raises(SignatureDoesNotMatch):
        _decode(_doc_decoder(), body)


def test_a_wrong_seed_signature_fails_the_first_chunk() -> None:
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_SIGNED,
        decoded_length=len(DOC_PAYLOAD),
        signing=ChunkSigningContext(
            DOC_SIGNING.signing_key, DOC_SIGNING.amz_date, DOC_SIGNING.scope, "0" * 64
        ),
    )
    with pytest.raises(SignatureDoesNotMatch):
        _decode(decoder, DOC_BODY)


def test_reordered_chunks_fail_the_signature_chain() -> None:
    payload = b"a" * 100 + b"b" * 100
    body = _signed_body(payload, 100)
    chunk = len(b"64;chunk-signature=") + 64 + 2 + 100 + 2
    swapped = body[chunk : 2 * chunk] + body[:chunk] + body[2 * chunk :]
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_SIGNED, decoded_length=len(payload), signing=SIGNING
    )
    with pytest.raises(SignatureDoesNotMatch):
        _decode(decoder, swapped)


def test_a_chunk_without_a_signature_is_malformed_in_signed_mode() -> None:
    decoder = AwsChunkedDecoder(PayloadMode.STREAMING_SIGNED, decoded_length=1, signing=SIGNING)
    with pytest.raises(InvalidRequest, match="chunk-signature"):
        decoder.feed(b"1\r\nx\r\n")


def test_payload_is_released_before_its_chunk_is_verified() -> None:
    # The documented contract: bytes flow out at once; only finish() says the body is good.
    decoder = _doc_decoder()
    header_end = DOC_BODY.index(b"\r\n") + 2
    assert decoder.feed(DOC_BODY[: header_end + 10]) == [b"a" * 10]
    assert not decoder.done


def test_a_slice_of_pure_payload_is_passed_through_without_a_copy() -> None:
    decoder = _doc_decoder()
    header_end = DOC_BODY.index(b"\r\n") + 2
    decoder.feed(DOC_BODY[:header_end])
    middle = DOC_BODY[header_end : header_end + 4096]
    assert decoder.feed(middle)[0] is middle


# Trailers.


@pytest.mark.parametrize("chunk_size", [1, 1000, 8192, 1 << 20])
@pytest.mark.parametrize("how", ["whole", "bytes", "random-4"])
def test_botocore_unsigned_trailer_bodies_decode(chunk_size: int, how: str) -> None:
    payload = random.Random(chunk_size).randbytes(3000)
    body = _unsigned_trailer_body(payload, chunk_size)
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
        decoded_length=len(payload),
        expected_trailers={"x-amz-checksum-crc32"},
    )
    assert _decode(decoder, body, how) == payload
    assert decoder.trailers == {"x-amz-checksum-crc32": _crc32_b64(payload)}


def test_a_botocore_crc64nvme_trailer_is_exposed() -> None:
    payload = b"hello world"
    wrapper = AwsChunkedWrapper(
        io.BytesIO(payload),
        checksum_cls=CrtCrc64NvmeChecksum,
        checksum_name="x-amz-checksum-crc64nvme",
    )
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
        decoded_length=len(payload),
        expected_trailers=declared_trailers({"x-amz-trailer": "x-amz-checksum-crc64nvme"}),
    )
    assert _decode(decoder, wrapper.read()) == payload
    assert set(decoder.trailers) == {"x-amz-checksum-crc64nvme"}


def test_an_empty_unsigned_trailer_body_decodes() -> None:
    decoder = AwsChunkedDecoder(PayloadMode.STREAMING_UNSIGNED_TRAILER, decoded_length=0)
    assert _decode(decoder, b"0\r\n\r\n") == b""


@pytest.mark.parametrize("how", ["whole", "bytes", "random-5"])
def test_signed_trailer_bodies_decode_and_verify(how: str) -> None:
    payload = b"z" * 20000
    trailers = {"x-amz-checksum-crc32": _crc32_b64(payload)}
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_SIGNED_TRAILER,
        decoded_length=len(payload),
        signing=SIGNING,
        expected_trailers=trailers.keys(),
    )
    assert _decode(decoder, _signed_body(payload, 8192, trailers=trailers), how) == payload
    assert decoder.trailers == trailers


def test_a_tampered_signed_trailer_fails() -> None:
    payload = b"z" * 100
    real = _crc32_b64(payload)
    body = _signed_body(payload, 64, trailers={"x-amz-checksum-crc32": real})
    tampered = body.replace(real.encode(), b"AAAAAA==")
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_SIGNED_TRAILER,
        decoded_length=len(payload),
        signing=SIGNING,
        expected_trailers={"x-amz-checksum-crc32"},
    )
    with pytest.raises(SignatureDoesNotMatch):
        _decode(decoder, tampered)


def test_a_signed_trailer_without_its_signature_fails() -> None:
    payload = b"z" * 100
    body = _signed_body(payload, 64, trailers={"x-amz-checksum-crc32": _crc32_b64(payload)})
    start = body.index(b"x-amz-trailer-signature:")
    stripped = body[:start] + b"\r\n"
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_SIGNED_TRAILER,
        decoded_length=len(payload),
        signing=SIGNING,
        expected_trailers={"x-amz-checksum-crc32"},
    )
    with pytest.raises(SignatureDoesNotMatch):
        _decode(decoder, stripped)


def test_an_undeclared_trailer_is_refused() -> None:
    decoder = AwsChunkedDecoder(PayloadMode.STREAMING_UNSIGNED_TRAILER, decoded_length=0)
    with pytest.raises(InvalidRequest, match="x-amz-checksum-crc32"):
        decoder.feed(b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n")


def test_a_missing_declared_trailer_is_an_incomplete_body() -> None:
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
        decoded_length=0,
        expected_trailers={"x-amz-checksum-crc32"},
    )
    with pytest.raises(IncompleteBody, match="x-amz-checksum-crc32"):
        _decode(decoder, b"0\r\n\r\n")


def test_trailers_are_refused_in_a_mode_without_them() -> None:
    body = DOC_BODY[:-2] + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    with pytest.raises(InvalidRequest, match="trailers"):
        _decode(_doc_decoder(), body)


def test_a_trailer_signature_in_unsigned_mode_is_refused() -> None:
    decoder = AwsChunkedDecoder(PayloadMode.STREAMING_UNSIGNED_TRAILER, decoded_length=0)
    with pytest.raises(InvalidRequest, match="x-amz-trailer-signature"):
        _decode(decoder, b"0\r\nx-amz-trailer-signature:" + b"a" * 64 + b"\r\n\r\n")


# Lengths and framing.


def test_more_payload_than_declared_is_refused_at_once() -> None:
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_SIGNED, decoded_length=len(DOC_PAYLOAD) - 1, signing=DOC_SIGNING
    )
    with pytest.raises(IncompleteBody, match="x-amz-decoded-content-length"):
        decoder.feed(DOC_BODY)


def test_less_payload_than_declared_is_an_incomplete_body() -> None:
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_SIGNED, decoded_length=len(DOC_PAYLOAD) + 1, signing=DOC_SIGNING
    )
    with pytest.raises(IncompleteBody, match="x-amz-decoded-content-length"):
        decoder.feed(DOC_BODY)


def test_a_body_truncated_anywhere_is_an_incomplete_body() -> None:
    payload = b"0123456789"
    body = _unsigned_trailer_body(payload, 4)
    # Ending right after the last trailer line (final empty line omitted) is accepted.
    tolerated = len(body) - 2
    for cut in range(len(body)):
        decoder = AwsChunkedDecoder(
            PayloadMode.STREAMING_UNSIGNED_TRAILER,
            decoded_length=len(payload),
            expected_trailers={"x-amz-checksum-crc32"},
        )
        decoder.feed(body[:cut])
        if cut == tolerated:
            assert decoder.finish() == {"x-amz-checksum-crc32": _crc32_b64(payload)}
        else:
            with pytest.raises(IncompleteBody):
                decoder.finish()


def test_a_signed_body_truncated_anywhere_is_an_incomplete_body() -> None:
    body = _signed_body(b"abcdef", 4)
    for cut in range(len(body) - 2):
        decoder = AwsChunkedDecoder(PayloadMode.STREAMING_SIGNED, decoded_length=6, signing=SIGNING)
        decoder.feed(body[:cut])
        with pytest.raises(IncompleteBody):
            decoder.finish()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"zz\r\n", "chunk size"),
        (b"0x3\r\nabc\r\n0\r\n\r\n", "chunk size"),
        (b"+3\r\nabc\r\n0\r\n\r\n", "chunk size"),
        (b"\r\n", "chunk size"),
        (b"3\nabc\r\n0\r\n\r\n", "CRLF"),
        (b"3\r\nabcX\n0\r\n\r\n", "CRLF"),
        (b"3\r\nabc\rX0\r\n\r\n", "CRLF"),
        (b"3;ext=1\r\nabc\r\n0\r\n\r\n", "extension"),
        (b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:A\r\n\r\nextra", "after the final chunk"),
        (b"3\r\nabc\r\n0\r\nno colon here\r\n\r\n", "trailer line"),
        (b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:A\n\r\n", "CRLF"),
        (b"1" * (MAX_LINE + 1), "too long"),
    ],
)
def test_malformed_framing_is_refused(body: bytes, message: str) -> None:
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
        decoded_length=3,
        expected_trailers={"x-amz-checksum-crc32"},
    )
    with pytest.raises(InvalidRequest, match=message):
        _decode(decoder, body, "bytes")


def test_an_oversized_trailer_section_is_refused() -> None:
    lines = [f"x-amz-meta-{index}:{'v' * 4000}\r\n".encode() for index in range(5)]
    decoder = AwsChunkedDecoder(
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
        decoded_length=0,
        expected_trailers={f"x-amz-meta-{index}" for index in range(5)},
    )
    decoder.feed(b"0\r\n" + b"".join(lines[:4]))
    with pytest.raises(InvalidRequest, match="too long"):
        decoder.feed(lines[4])


def test_the_decoder_refuses_modes_that_are_not_aws_chunked() -> None:
    with pytest.raises(ValueError, match="aws-chunked"):
        AwsChunkedDecoder(PayloadMode.UNSIGNED, decoded_length=0)
    with pytest.raises(ValueError, match="ChunkSigningContext"):
        AwsChunkedDecoder(PayloadMode.STREAMING_SIGNED, decoded_length=0)


# Header helpers.


def test_decoded_content_length_is_required_and_numeric() -> None:
    assert decoded_content_length({"x-amz-decoded-content-length": "66560"}) == 66560
    with pytest.raises(MissingContentLength):
        decoded_content_length({})
    for bad in ["-1", "1e3", "٣", "9" * 20]:
        with pytest.raises(InvalidArgument):
            decoded_content_length({"x-amz-decoded-content-length": bad})


def test_declared_trailers_are_lower_cased_names() -> None:
    assert declared_trailers({}) == frozenset()
    assert declared_trailers({"x-amz-trailer": " X-Amz-Checksum-CRC32 , x-b"}) == {
        "x-amz-checksum-crc32",
        "x-b",
    }


@pytest.mark.parametrize(
    ("header", "stored"),
    [
        (None, None),
        ("aws-chunked", None),
        ("AWS-Chunked, gzip", "gzip"),
        ("gzip,aws-chunked", "gzip"),
        ("br", "br"),
    ],
)
def test_aws_chunked_is_not_stored_as_a_content_encoding(
    header: str | None, stored: str | None
) -> None:
    assert stored_content_encoding(header) == stored
