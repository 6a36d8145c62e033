"""A sans-IO decoder for ``Content-Encoding: aws-chunked`` request bodies.

Wire format (each line ends in CRLF)::

    hex-size[;chunk-signature=SIG]      chunk header, at most 4 KiB
    <size bytes of payload>
    ...                                 more chunks
    0[;chunk-signature=SIG]             final, empty chunk
    name:value                          trailers, only in the *-TRAILER modes
    [x-amz-trailer-signature:SIG]       only in STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER
    <empty line>

Chunk ``i``'s signature is ``HMAC(signing_key, "AWS4-HMAC-SHA256-PAYLOAD\\n" + amz_date + "\\n" +
scope + "\\n" + signature(i-1) + "\\n" + sha256("") + "\\n" + sha256(data_i))`` with the request's
seed signature as ``signature(-1)``. The trailer signature is ``HMAC(signing_key,
"AWS4-HMAC-SHA256-TRAILER\\n" + amz_date + "\\n" + scope + "\\n" + final chunk signature + "\\n" +
sha256(trailer lines, each "name:value\\n"))``.

**Contract.** To keep memory bounded, payload bytes are handed out as they arrive, *before* the
chunk that holds them is verified. The caller may encrypt and upload them, but must not make the
object visible (commit to the catalog, answer 200) until :meth:`AwsChunkedDecoder.finish` has
returned: only then are every signature, the framing and ``x-amz-decoded-content-length``
verified. On any exception, discard what was written.

Errors: ``SignatureDoesNotMatch`` (a chunk or trailer signature is wrong or missing),
``IncompleteBody`` (the body ends early, or its decoded length differs from
``x-amz-decoded-content-length``), ``InvalidRequest`` (malformed framing: bad chunk header,
missing CRLF, oversized line, undeclared or malformed trailer, bytes after the end). The ``0``
chunk must be followed by the final empty line; a body that ends right after the last trailer
line (or right after the ``0`` chunk in modes without trailers) is accepted, as S3 does.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Mapping

from blindstore.errors import (
    IncompleteBody,
    InvalidArgument,
    InvalidRequest,
    MissingContentLength,
    SignatureDoesNotMatch,
)
from blindstore.s3.sigv4 import EMPTY_SHA256, ChunkSigningContext, PayloadMode

#: Longest chunk-header or trailer line accepted, CRLF included.
MAX_LINE = 4096
#: Most bytes of trailer lines accepted in total.
MAX_TRAILER_SECTION = 16384
TRAILER_SIGNATURE = "x-amz-trailer-signature"

_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_CHUNK_SIGNATURE = re.compile(rb"chunk-signature=([0-9a-f]{64})")
_TRAILER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")

# Decoder states.
_HEADER = 0  # reading a chunk header line
_DATA = 1  # passing chunk payload through
_DATA_END = 2  # expecting the CRLF after chunk payload
_TRAILER = 3  # reading trailer lines (or the final empty line)
_DONE = 4


class AwsChunkedDecoder:
    """Decode an ``aws-chunked`` body fed in slices of any size; verify it as it goes.

    Buffers at most one header or trailer line; payload is passed through without copies when a
    fed slice holds only payload. After any exception the decoder is spent: discard the upload.
    """

    def __init__(
        self,
        mode: PayloadMode,
        *,
        decoded_length: int,
        signing: ChunkSigningContext | None = None,
        expected_trailers: Collection[str] = (),
    ) -> None:
        """Prepare for a body in ``mode``.

        ``decoded_length`` is ``x-amz-decoded-content-length``; ``signing`` comes from the
        verified request (required when the mode signs chunks); ``expected_trailers`` are the
        lower-case names declared in ``x-amz-trailer``, and exactly those must arrive.
        """
        if not mode.is_aws_chunked:
            raise ValueError(f"{mode} is not an aws-chunked payload mode")
        if mode.signs_chunks and signing is None:
            raise ValueError(f"{mode} needs the request's ChunkSigningContext")
        self._mode = mode
        self._signing = signing if mode.signs_chunks else None
        self._decoded_length = decoded_length
        self._expected_trailers = frozenset(expected_trailers)
        self._state = _HEADER
        self._line = bytearray()
        self._remaining = 0  # payload bytes left in the current chunk
        self._crlf_seen = 0  # bytes of the CRLF after chunk payload already matched
        self._decoded = 0
        self._chunk_hash = hashlib.sha256()
        self._chunk_signature = ""
        self._previous_signature = ""
        self._payload_prefix = ""
        if self._signing is not None:
            self._previous_signature = self._signing.seed_signature
            self._payload_prefix = (
                f"AWS4-HMAC-SHA256-PAYLOAD\n{self._signing.amz_date}\n{self._signing.scope}\n"
            )
        self._trailer_bytes = 0
        self._trailers: dict[str, str] = {}
        self._trailer_signature: str | None = None

    @property
    def done(self) -> bool:
        """The final empty line has been read and every check passed."""
        return self._state == _DONE

    @property
    def decoded_bytes(self) -> int:
        """Payload bytes handed out so far."""
        return self._decoded

    @property
    def trailers(self) -> Mapping[str, str]:
        """Trailing headers received (lower-case names), without the trailer signature."""
        return self._trailers

    def feed(self, data: bytes) -> list[bytes]:
        """Consume ``data``; return the payload slices it completed, in order (maybe none)."""
        out: list[bytes] = []
        position = 0
        end = len(data)
        while position < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, end - position)
                # A slice that is all payload goes out as is: no copy.
                piece = data if take == end else data[position : position + take]
                out.append(piece)
                self._remaining -= take
                self._decoded += take
                position += take
                if self._signing is not None:
                    self._chunk_hash.update(piece)
                    if self._remaining == 0:
                        self._verify_chunk(self._chunk_hash.hexdigest())
                        self._chunk_hash = hashlib.sha256()
                if self._remaining == 0:
                    self._state = _DATA_END
            elif state == _DATA_END:
                position = self._match_data_crlf(data, position)
            elif state == _DONE:
                raise InvalidRequest("Malformed aws-chunked body: bytes after the final chunk.")
            else:
                newline = data.find(b"\n", position)
                if newline < 0:
                    self._buffer_line(data[position:])
                    return out
                self._buffer_line(data[position : newline + 1])
                position = newline + 1
                line = bytes(self._line)
                self._line.clear()
                if state == _HEADER:
                    self._on_chunk_header(line)
                else:
                    self._on_trailer_line(line)
        return out

    def finish(self) -> Mapping[str, str]:
        """Declare the end of the body; return the trailers once everything is verified."""
        if self._state == _TRAILER and not self._line:
            # The final empty line may be omitted by a client that ends the stream right there.
            self._complete()
        if self._state != _DONE:
            raise IncompleteBody(
                "The aws-chunked body ended before its final chunk "
                f"({self._decoded} of {self._decoded_length} decoded bytes received)."
            )
        return self._trailers

    def _buffer_line(self, piece: bytes) -> None:
        limit = MAX_LINE if self._state == _HEADER else MAX_TRAILER_SECTION - self._trailer_bytes
        if len(self._line) + len(piece) > min(limit, MAX_LINE):
            raise InvalidRequest("Malformed aws-chunked body: a chunk or trailer line is too long.")
        self._line += piece

    def _match_data_crlf(self, data: bytes, position: int) -> int:
        expected = b"\r\n"
        while self._crlf_seen < 2 and position < len(data):
            if data[position] != expected[self._crlf_seen]:
                raise InvalidRequest(
                    "Malformed aws-chunked body: chunk data is not followed by CRLF."
                )
            self._crlf_seen += 1
            position += 1
        if self._crlf_seen == 2:
            self._crlf_seen = 0
            self._state = _HEADER
        return position

    def _on_chunk_header(self, line: bytes) -> None:
        if not line.endswith(b"\r\n"):
            raise InvalidRequest("Malformed aws-chunked body: chunk header not ended by CRLF.")
        size_text, separator, extension = line[:-2].partition(b";")
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise InvalidRequest("Malformed aws-chunked body: invalid chunk size.")
        size = int(size_text, 16)
        if self._signing is not None:
            match = _CHUNK_SIGNATURE.fullmatch(extension) if separator else None
            if match is None:
                raise InvalidRequest("Malformed aws-chunked body: missing chunk-signature.")
            self._chunk_signature = match.group(1).decode("ascii")
        elif separator:
            raise InvalidRequest("Malformed aws-chunked body: unexpected chunk extension.")
        if self._decoded + size > self._decoded_length:
            raise IncompleteBody(
                "The aws-chunked body holds more than x-amz-decoded-content-length "
                f"({self._decoded_length}) bytes."
            )
        if size:
            self._remaining = size
            self._state = _DATA
            return
        if self._decoded != self._decoded_length:
            raise IncompleteBody(
                f"The aws-chunked body decoded to {self._decoded} bytes, but "
                f"x-amz-decoded-content-length is {self._decoded_length}."
            )
        self._verify_chunk(EMPTY_SHA256)
        self._state = _TRAILER

    def _verify_chunk(self, data_hash: str) -> None:
        if self._signing is None:
            return
        string_to_sign = (
            f"{self._payload_prefix}{self._previous_signature}\n{EMPTY_SHA256}\n{data_hash}"
        )
        self._check(string_to_sign, self._chunk_signature)
        self._previous_signature = self._chunk_signature

    def _check(self, string_to_sign: str, provided: str) -> None:
        assert self._signing is not None
        expected = hmac.digest(self._signing.signing_key, string_to_sign.encode(), "sha256").hex()
        if not hmac.compare_digest(expected, provided):
            raise SignatureDoesNotMatch(
                "The chunk signature we calculated does not match the signature you provided.",
                StringToSign=string_to_sign,
                SignatureProvided=provided,
            )

    def _on_trailer_line(self, line: bytes) -> None:
        if not line.endswith(b"\r\n"):
            raise InvalidRequest("Malformed aws-chunked body: trailer line not ended by CRLF.")
        if line == b"\r\n":
            self._complete()
            return
        if not self._mode.has_trailer:
            raise InvalidRequest("Malformed aws-chunked body: trailers in a mode without them.")
        self._trailer_bytes += len(line)
        text = line[:-2].decode("utf-8", "replace")
        name, colon, value = text.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if not colon or not _TRAILER_NAME.fullmatch(name):
            raise InvalidRequest("Malformed aws-chunked body: invalid trailer line.")
        if self._trailer_signature is not None:
            raise InvalidRequest("Malformed aws-chunked body: trailer after the trailer signature.")
        if name == TRAILER_SIGNATURE:
            self._trailer_signature = value
            return
        if name in self._trailers or name not in self._expected_trailers:
            raise InvalidRequest(
                f"The trailer {name!r} was not declared in x-amz-trailer or was sent twice."
            )
        self._trailers[name] = value

    def _complete(self) -> None:
        missing = self._expected_trailers - self._trailers.keys()
        if missing:
            raise IncompleteBody(
                f"The aws-chunked body ended without the declared trailer(s) {sorted(missing)}."
            )
        if self._signing is not None and self._mode.has_trailer:
            signature = self._trailer_signature
            if signature is None or not _SIGNATURE.fullmatch(signature):
                raise SignatureDoesNotMatch("The trailer signature is missing or malformed.")
            canonical = "".join(f"{name}:{value}\n" for name, value in self._trailers.items())
            digest = hashlib.sha256(canonical.encode()).hexdigest()
            self._check(
                f"AWS4-HMAC-SHA256-TRAILER\n{self._signing.amz_date}\n{self._signing.scope}\n"
                f"{self._previous_signature}\n{digest}",
                signature,
            )
        elif self._trailer_signature is not None:
            raise InvalidRequest("Malformed aws-chunked body: unexpected x-amz-trailer-signature.")
        self._state = _DONE


def decoded_content_length(headers: Mapping[str, str]) -> int:
    """``x-amz-decoded-content-length``: required for aws-chunked bodies, as S3 requires it."""
    value = headers.get("x-amz-decoded-content-length")
    if value is None:
        raise MissingContentLength(
            "You must provide the x-amz-decoded-content-length header for aws-chunked uploads."
        )
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise InvalidArgument(
            "x-amz-decoded-content-length must be a non-negative integer.",
            ArgumentName="x-amz-decoded-content-length",
            ArgumentValue=value,
        )
    return int(value)


def declared_trailers(headers: Mapping[str, str]) -> frozenset[str]:
    """The lower-case trailer names announced in ``x-amz-trailer`` (empty if none)."""
    value = headers.get("x-amz-trailer", "")
    return frozenset(name.strip().lower() for name in value.split(",") if name.strip())


def stored_content_encoding(content_encoding: str | None) -> str | None:
    """``Content-Encoding`` without ``aws-chunked``: what the object keeps (None if nothing)."""
    if content_encoding is None:
        return None
    kept = [
        coding.strip()
        for coding in content_encoding.split(",")
        if coding.strip() and coding.strip().lower() != "aws-chunked"
    ]
    return ",".join(kept) or None
