"""Streaming integrity checks of a request body: Content-MD5, x-amz-checksum-*, payload SHA-256.

:class:`BodyVerifier` collects the expected values (from headers, and from aws-chunked trailers
once they arrive), is updated once with every plaintext slice, and checks everything at the end.
Each algorithm runs once per byte however many checks need it: the MD5 serves both the ETag and
``Content-MD5``; one SHA-256 serves both ``x-amz-checksum-sha256`` and ``x-amz-content-sha256``.

Values are S3's: base64 of the big-endian digest (``Content-MD5`` is base64 MD5). Errors:
``InvalidDigest`` (Content-MD5 not base64 of 16 bytes), ``InvalidRequest`` (bad or conflicting
checksum headers or trailers), ``BadDigest`` (a value does not match the body),
``XAmzContentSHA256Mismatch`` (the body does not match ``x-amz-content-sha256``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from awscrt import checksums as crt

from blindstore.errors import BadDigest, InvalidDigest, InvalidRequest, XAmzContentSHA256Mismatch

#: What the hashers accept without a copy.
Buffer = bytes | bytearray | memoryview


class ChecksumAlgorithm(StrEnum):
    """The ``x-amz-checksum-*`` algorithms, named as in ``x-amz-sdk-checksum-algorithm``."""

    CRC32 = "CRC32"
    CRC32C = "CRC32C"
    CRC64NVME = "CRC64NVME"
    SHA1 = "SHA1"
    SHA256 = "SHA256"

    @property
    def header(self) -> str:
        """The header (or trailer) carrying this checksum, e.g. ``x-amz-checksum-crc32``."""
        return f"x-amz-checksum-{self.value.lower()}"

    @property
    def digest_size(self) -> int:
        """Bytes in the binary checksum."""
        return _DIGEST_SIZES[self]

    @classmethod
    def from_name(cls, name: str) -> ChecksumAlgorithm:
        """Parse ``x-amz-sdk-checksum-algorithm`` (case-insensitive); InvalidRequest if unknown."""
        try:
            return cls(name.strip().upper())
        except ValueError:
            raise InvalidRequest(
                "Checksum algorithm provided is unsupported. Please try again with any of the "
                f"valid types: [{', '.join(cls)}]"
            ) from None


_DIGEST_SIZES = {
    ChecksumAlgorithm.CRC32: 4,
    ChecksumAlgorithm.CRC32C: 4,
    ChecksumAlgorithm.CRC64NVME: 8,
    ChecksumAlgorithm.SHA1: 20,
    ChecksumAlgorithm.SHA256: 32,
}
_BY_HEADER = {algorithm.header: algorithm for algorithm in ChecksumAlgorithm}


class Hasher(Protocol):
    """A running digest: hashlib objects and the CRC classes below."""

    def update(self, data: Buffer, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc32:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: Buffer, /) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


class _Crc32c:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: Buffer, /) -> None:
        self._value = crt.crc32c(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


class _Crc64Nvme:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: Buffer, /) -> None:
        self._value = crt.crc64nvme(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(8, "big")


def new_hasher(algorithm: ChecksumAlgorithm) -> Hasher:
    """A fresh running checksum for ``algorithm``."""
    if algorithm is ChecksumAlgorithm.CRC32:
        return _Crc32()
    if algorithm is ChecksumAlgorithm.CRC32C:
        return _Crc32c()
    if algorithm is ChecksumAlgorithm.CRC64NVME:
        return _Crc64Nvme()
    if algorithm is ChecksumAlgorithm.SHA1:
        return hashlib.sha1(usedforsecurity=False)
    return hashlib.sha256()


def checksum(algorithm: ChecksumAlgorithm, data: Buffer) -> str:
    """The S3 (base64) checksum of ``data`` in one call."""
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return _b64(hasher.digest())


@dataclass(frozen=True, slots=True)
class BodyDigests:
    """What a verified body hashed to."""

    size: int
    md5: bytes
    #: Base64 value of every checksum computed (declared ones and ``extra`` ones).
    checksums: Mapping[ChecksumAlgorithm, str]

    @property
    def etag(self) -> str:
        """The S3 ETag of a single-part object: hex MD5, quoted."""
        return f'"{self.md5.hex()}"'

    @property
    def content_md5(self) -> str:
        """The MD5 as a ``Content-MD5`` value (base64)."""
        return _b64(self.md5)


class BodyVerifier:
    """Hash a body once per algorithm and verify it against every declared value."""

    def __init__(
        self,
        *,
        content_md5: bytes | None = None,
        checksum_algorithm: ChecksumAlgorithm | None = None,
        expected_checksum: bytes | None = None,
        checksum_in_trailer: bool = False,
        payload_sha256: str | None = None,
        extra: Iterable[ChecksumAlgorithm] = (),
    ) -> None:
        """Expect these values; prefer :meth:`from_headers`, which validates the headers.

        ``content_md5`` and ``expected_checksum`` are raw digests. With ``checksum_in_trailer``
        the value of ``checksum_algorithm`` comes later through :meth:`add_trailers`.
        ``payload_sha256`` is the lower-case hex of ``x-amz-content-sha256``. ``extra``
        algorithms are computed (and returned) without an expected value.
        """
        if expected_checksum is not None and checksum_algorithm is None:
            raise ValueError("expected_checksum needs its checksum_algorithm")
        self._content_md5 = content_md5
        self._algorithm = checksum_algorithm
        self._expected = expected_checksum
        self._awaiting_trailer = checksum_in_trailer
        self._payload_sha256 = payload_sha256
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._checksums: dict[ChecksumAlgorithm, Hasher] = {}
        wanted = set(extra)
        if checksum_algorithm is not None:
            wanted.add(checksum_algorithm)
        if payload_sha256 is not None:
            wanted.add(ChecksumAlgorithm.SHA256)
        for algorithm in sorted(wanted):
            self._checksums[algorithm] = new_hasher(algorithm)
        # One flat tuple for the hot loop in update().
        self._hashers: tuple[Hasher, ...] = (self._md5, *self._checksums.values())
        self._size = 0

    @classmethod
    def from_headers(
        cls,
        headers: Mapping[str, str],
        *,
        payload_sha256: str | None = None,
        extra: Iterable[ChecksumAlgorithm] = (),
    ) -> BodyVerifier:
        """Read ``Content-MD5``, ``x-amz-checksum-*``, ``x-amz-sdk-checksum-algorithm`` and
        ``x-amz-trailer`` (lower-case header names); ``payload_sha256`` is
        ``AuthResult.payload_sha256``."""
        content_md5 = None
        md5_text = headers.get("content-md5")
        if md5_text is not None:
            content_md5 = _decode_b64(md5_text, 16)
            if content_md5 is None:
                raise InvalidDigest()
        present = [algorithm for header, algorithm in _BY_HEADER.items() if header in headers]
        trailer = _trailer_algorithm(headers.get("x-amz-trailer"))
        if len(present) + (trailer is not None) > 1:
            raise InvalidRequest(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not "
                "allowed."
            )
        algorithm = present[0] if present else trailer
        expected = None
        if present:
            expected = _decode_checksum(present[0], headers[present[0].header], "header")
        declared = headers.get("x-amz-sdk-checksum-algorithm")
        if declared is not None:
            sdk_algorithm = ChecksumAlgorithm.from_name(declared)
            if algorithm is not None and sdk_algorithm is not algorithm:
                raise InvalidRequest("Value for x-amz-sdk-checksum-algorithm header is invalid.")
            # Declared without a value: S3 computes it and returns it; so do we.
            algorithm = sdk_algorithm
        return cls(
            content_md5=content_md5,
            checksum_algorithm=algorithm,
            expected_checksum=expected,
            checksum_in_trailer=trailer is not None,
            payload_sha256=payload_sha256,
            extra=extra,
        )

    @property
    def size(self) -> int:
        """Bytes hashed so far."""
        return self._size

    @property
    def algorithm(self) -> ChecksumAlgorithm | None:
        """The checksum algorithm the client asked for (header, trailer or SDK declaration)."""
        return self._algorithm

    def update(self, data: Buffer) -> None:
        """Hash the next slice of plaintext body."""
        for hasher in self._hashers:
            hasher.update(data)
        self._size += len(data)

    def update_md5(self, data: Buffer) -> None:
        """The MD5 half of ``update``; with ``update_others`` it may run in another thread."""
        self._md5.update(data)

    def update_others(self, data: Buffer) -> None:
        """Everything ``update`` does but the MD5 (the two halves touch disjoint state)."""
        for hasher in self._hashers[1:]:
            hasher.update(data)
        self._size += len(data)

    def add_trailers(self, trailers: Mapping[str, str]) -> None:
        """Take the checksum value announced by ``x-amz-trailer`` from the decoded trailers."""
        if not self._awaiting_trailer or self._algorithm is None:
            return
        value = trailers.get(self._algorithm.header)
        if value is None:
            raise InvalidRequest(f"The {self._algorithm.header} trailer is missing.")
        self._expected = _decode_checksum(self._algorithm, value, "trailer")
        self._awaiting_trailer = False

    def finish(self) -> BodyDigests:
        """Check every expected value against the body; return the digests."""
        computed = {algorithm: hasher.digest() for algorithm, hasher in self._checksums.items()}
        if self._payload_sha256 is not None:
            actual = computed[ChecksumAlgorithm.SHA256].hex()
            if actual != self._payload_sha256:
                raise XAmzContentSHA256Mismatch(
                    ClientComputedContentSHA256=self._payload_sha256,
                    S3ComputedContentSHA256=actual,
                )
        md5 = self._md5.digest()
        if self._content_md5 is not None and md5 != self._content_md5:
            raise BadDigest("The Content-MD5 you specified did not match what we received.")
        if self._awaiting_trailer:
            assert self._algorithm is not None
            raise InvalidRequest(f"The {self._algorithm.header} trailer is missing.")
        expected = self._expected
        if (
            self._algorithm is not None
            and expected is not None
            and computed[self._algorithm] != expected
        ):
            raise BadDigest(
                f"The {self._algorithm.value} you specified did not match the calculated checksum."
            )
        return BodyDigests(
            size=self._size,
            md5=md5,
            checksums={algorithm: _b64(value) for algorithm, value in computed.items()},
        )


def composite_checksum(algorithm: ChecksumAlgorithm, part_checksums: Sequence[str]) -> str:
    """S3's COMPOSITE multipart checksum: the checksum of the parts' binary checksums, ``-N``."""
    hasher = new_hasher(algorithm)
    for index, value in enumerate(part_checksums, start=1):
        digest = _decode_b64(value, algorithm.digest_size)
        if digest is None:
            raise InvalidRequest(f"The {algorithm.value} checksum of part {index} is invalid.")
        hasher.update(digest)
    return f"{_b64(hasher.digest())}-{len(part_checksums)}"


def full_object_crc(algorithm: ChecksumAlgorithm, parts: Sequence[tuple[str, int]]) -> str:
    """S3's FULL_OBJECT multipart checksum: the CRC of the whole object, combined from each
    part's ``(base64 CRC, plaintext length)`` without reading the data again."""
    combine = _COMBINERS.get(algorithm)
    if combine is None:
        raise InvalidRequest(f"The FULL_OBJECT checksum type does not support {algorithm.value}.")
    total = 0
    for index, (value, length) in enumerate(parts, start=1):
        digest = _decode_b64(value, algorithm.digest_size)
        if digest is None:
            raise InvalidRequest(f"The {algorithm.value} checksum of part {index} is invalid.")
        crc = int.from_bytes(digest, "big")
        total = crc if index == 1 else combine(total, crc, length)
    return _b64(total.to_bytes(algorithm.digest_size, "big"))


_COMBINERS = {
    ChecksumAlgorithm.CRC32: crt.combine_crc32,
    ChecksumAlgorithm.CRC32C: crt.combine_crc32c,
    ChecksumAlgorithm.CRC64NVME: crt.combine_crc64nvme,
}


def _trailer_algorithm(x_amz_trailer: str | None) -> ChecksumAlgorithm | None:
    """The checksum announced in ``x-amz-trailer``; only one x-amz-checksum-* is supported."""
    if x_amz_trailer is None or not x_amz_trailer.strip():
        return None
    names = [name.strip().lower() for name in x_amz_trailer.split(",") if name.strip()]
    if len(names) != 1 or names[0] not in _BY_HEADER:
        raise InvalidRequest("The value specified in the x-amz-trailer header is not supported")
    return _BY_HEADER[names[0]]


def _decode_checksum(algorithm: ChecksumAlgorithm, value: str, where: str) -> bytes:
    digest = _decode_b64(value, algorithm.digest_size)
    if digest is None:
        raise InvalidRequest(f"Value for {algorithm.header} {where} is invalid.")
    return digest


def _decode_b64(value: str, size: int) -> bytes | None:
    """Strict base64 of exactly ``size`` bytes, else None."""
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == size else None


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
