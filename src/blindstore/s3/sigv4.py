"""AWS Signature Version 4 verification for S3 requests (sans-IO).

Two mechanisms are accepted, the ``Authorization`` header and presigned query parameters. Both
end in the canonical request S3 itself builds:

* the path is the raw path as sent on the wire: S3 neither normalises it nor encodes it a second
  time, so ``a//b/../c`` and ``%2F`` are signed exactly as they travel;
* the query is decoded and re-encoded with the AWS rules (unreserved characters kept, every other
  byte ``%XX``), then sorted by encoded name and value. A ``+`` in the raw query is a space, as
  in form encoding; the gateway's query parser must decode the same way, or a signed request
  could be read differently from how it was signed;
* header values are trimmed and inner runs of ASCII whitespace collapse to one space, as AWS's
  signers do (botocore, the AWS CRT, the JS and Java SDKs); other characters Python calls
  whitespace (U+001F, U+00A0...) are kept as sent, or a value a CRT or Go client signed with
  them would not verify;
* the payload hash is the ``x-amz-content-sha256`` value, a hex digest or one of the literal
  streaming modes; presigned URLs use ``UNSIGNED-PAYLOAD``.

Every ``x-amz-*`` header present must be signed (as S3 requires), and so must every
``x-blindstore-*`` header (provenance, retention, data subject), so a third party cannot add
metadata, a copy source, a payload mode, a retention date or a legal basis to a captured request
or a presigned URL.

The credential scope's region must be the gateway's (``s3.region``) when one is given, as S3
answers for a request signed for another region.

The work is split so that an asynchronous credential store fits: :func:`parse_signature` does
everything that needs no secret (syntax, clock, canonical request), :func:`verify_signature` the
HMAC. :func:`authenticate` chains both around a synchronous ``lookup``.

Errors: ``AccessDenied`` (anonymous, expired presigned URL, unsigned ``x-amz-*`` or
``x-blindstore-*`` header, session token), ``InvalidRequest`` (Signature Version 2, missing
``x-amz-content-sha256``), ``InvalidArgument`` (two mechanisms at once, bad
``x-amz-content-sha256``), ``AuthorizationHeaderMalformed`` /
``AuthorizationQueryParametersError`` (syntax, scope, region not ``s3.region``),
``InvalidAccessKeyId``, ``RequestTimeTooSkewed``, ``SignatureDoesNotMatch``, and
``NotImplementedOperation`` for SigV4a streaming.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from functools import lru_cache
from urllib.parse import quote_from_bytes, unquote, unquote_to_bytes

from blindstore.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    ClientError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    NotImplementedOperation,
    RequestTimeTooSkewed,
    SignatureDoesNotMatch,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINATOR = "aws4_request"
#: S3 refuses requests whose time differs from the server's by more than this.
MAX_SKEW = timedelta(minutes=15)
#: Longest validity of a presigned URL (seven days), as S3.
MAX_PRESIGNED_EXPIRES = 604_800
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: Wire strings are held as ``str`` decoded with this pair, which round-trips any byte sequence.
WIRE_ENCODING = "utf-8"
WIRE_ERRORS = "surrogateescape"

_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SCOPE_DATE = re.compile(r"[0-9]{8}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_ACCESS_KEY_ID = re.compile(r"[\x21-\x7e]{1,128}")
_REGION = re.compile(r"[A-Za-z0-9-]{1,64}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_UNRESERVED_ONLY = re.compile(r"[A-Za-z0-9_.~-]*")
#: What AWS's signers trim and collapse in header values: ASCII whitespace only.
_ASCII_WHITESPACE = " \t\n\v\f\r"
_ASCII_WHITESPACE_RUN = re.compile(r"[ \t\n\v\f\r]+")
#: Headers that must be covered by the signature when present: S3's own, and the gateway's
#: (their values decide retention, legal basis and data subject).
_MUST_BE_SIGNED_PREFIXES = ("x-amz-", "x-blindstore-")

_USE_SIGV4 = (
    "The authorization mechanism you have provided is not supported. "
    "Please use AWS4-HMAC-SHA256 (Signature Version 4)."
)
_SESSION_TOKENS = "Temporary credentials (X-Amz-Security-Token) are not supported by this gateway."
_QUERY_AUTH_REQUIRED = (
    "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
    "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
)
_QUERY_AUTH_PARAMS = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
    }
)


class PayloadMode(StrEnum):
    """How the request body is protected, read from ``x-amz-content-sha256``."""

    #: The header holds the hex SHA-256 of the whole body (``AuthResult.payload_sha256``).
    SHA256 = "sha256"
    UNSIGNED = "UNSIGNED-PAYLOAD"
    STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

    @property
    def is_aws_chunked(self) -> bool:
        """The body is ``aws-chunked`` framed and must go through ``chunked.AwsChunkedDecoder``."""
        return self.value.startswith("STREAMING-")

    @property
    def signs_chunks(self) -> bool:
        """Every chunk carries a signature chained from the request's seed signature."""
        return self in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER)

    @property
    def has_trailer(self) -> bool:
        """Trailing headers (checksums) follow the final chunk."""
        return self.value.endswith("-TRAILER")


_LITERAL_MODES = {mode.value: mode for mode in PayloadMode if mode is not PayloadMode.SHA256}


@dataclass(frozen=True, slots=True)
class SigV4Request:
    """The parts of an HTTP request that SigV4 covers, as they were on the wire.

    ``headers`` has lower-case names; a header sent several times has its values joined by
    ``","``. Strings must give back the wire bytes when encoded with ``WIRE_ENCODING`` and
    ``WIRE_ERRORS``: build this with :meth:`from_asgi` rather than from decoded URLs.
    """

    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, str]

    @property
    def host(self) -> str | None:
        """The ``Host`` header (virtual-hosted bucket and port included), if any."""
        return self.headers.get("host")

    @classmethod
    def from_asgi(
        cls,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        headers: Iterable[tuple[bytes, bytes]],
    ) -> SigV4Request:
        """Build from an ASGI scope's ``method``, ``raw_path``, ``query_string`` and ``headers``."""
        # Some servers leave the query on raw_path; a literal "?" can only be that separator.
        path, _, _ = raw_path.partition(b"?")
        merged: dict[str, str] = {}
        for raw_name, raw_value in headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode(WIRE_ENCODING, WIRE_ERRORS).strip(" \t")
            previous = merged.get(name)
            merged[name] = value if previous is None else f"{previous},{value}"
        return cls(
            method=method,
            raw_path=path.decode(WIRE_ENCODING, WIRE_ERRORS),
            raw_query=query_string.decode(WIRE_ENCODING, WIRE_ERRORS),
            headers=merged,
        )


@dataclass(frozen=True, slots=True)
class ChunkSigningContext:
    """What an ``aws-chunked`` verifier needs to check chunk and trailer signatures."""

    signing_key: bytes = field(repr=False)
    amz_date: str
    scope: str
    seed_signature: str


@dataclass(frozen=True, slots=True)
class SignatureClaim:
    """A syntactically valid, timely SigV4 claim, not yet checked against a secret."""

    access_key_id: str
    scope_date: str
    region: str
    amz_date: str
    request_time: datetime
    signature: str
    canonical_request: str
    payload_mode: PayloadMode
    payload_sha256: str | None
    presigned: bool

    @property
    def scope(self) -> str:
        """The credential scope: ``date/region/s3/aws4_request``."""
        return f"{self.scope_date}/{self.region}/{SERVICE}/{TERMINATOR}"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """A request whose signature verified."""

    access_key_id: str
    region: str
    payload_mode: PayloadMode
    #: Lower-case hex SHA-256 the body must have; only in ``PayloadMode.SHA256``.
    payload_sha256: str | None
    presigned: bool
    request_time: datetime
    chunk_signing: ChunkSigningContext


#: Returns the secret access key for an access key id, or None if the id is unknown.
SecretLookup = Callable[[str], str | None]


def authenticate(
    request: SigV4Request,
    lookup: SecretLookup,
    now: datetime,
    *,
    region: str | None = None,
) -> AuthResult:
    """Verify ``request``'s SigV4 signature at time ``now``; raise the S3 error otherwise.

    ``region``, when given, is the only region accepted in the credential scope.
    """
    claim = parse_signature(request, now, region=region)
    secret = lookup(claim.access_key_id)
    if secret is None:
        raise InvalidAccessKeyId(AWSAccessKeyId=claim.access_key_id)
    return verify_signature(claim, secret)


def parse_signature(
    request: SigV4Request, now: datetime, *, region: str | None = None
) -> SignatureClaim:
    """Check everything that needs no secret: syntax, scope, clock; build the canonical request."""
    pairs = _query_pairs(request.raw_query)
    authorization = request.headers.get("authorization")
    presigned = any(name in _QUERY_AUTH_PARAMS for name, _ in pairs)
    if authorization is not None and presigned:
        raise InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified"
        )
    if authorization is not None:
        return _parse_header_auth(request, authorization, pairs, _utc(now), region)
    if presigned:
        return _parse_query_auth(request, pairs, _utc(now), region)
    if any(name in ("AWSAccessKeyId", "Signature") for name, _ in pairs):
        raise InvalidRequest(_USE_SIGV4)
    raise AccessDenied("Anonymous access is not allowed: sign requests with Signature Version 4.")


def verify_signature(claim: SignatureClaim, secret: str) -> AuthResult:
    """Compare the claimed signature with the one ``secret`` gives, in constant time."""
    signing_key = derive_signing_key(secret, claim.scope_date, claim.region)
    canonical_hash = hashlib.sha256(
        claim.canonical_request.encode(WIRE_ENCODING, WIRE_ERRORS)
    ).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{claim.amz_date}\n{claim.scope}\n{canonical_hash}"
    expected = hmac.digest(signing_key, string_to_sign.encode("ascii"), "sha256").hex()
    if not hmac.compare_digest(expected, claim.signature):
        raise SignatureDoesNotMatch(
            AWSAccessKeyId=claim.access_key_id,
            StringToSign=string_to_sign,
            SignatureProvided=claim.signature,
        )
    return AuthResult(
        access_key_id=claim.access_key_id,
        region=claim.region,
        payload_mode=claim.payload_mode,
        payload_sha256=claim.payload_sha256,
        presigned=claim.presigned,
        request_time=claim.request_time,
        chunk_signing=ChunkSigningContext(
            signing_key=signing_key,
            amz_date=claim.amz_date,
            scope=claim.scope,
            seed_signature=claim.signature,
        ),
    )


@lru_cache(maxsize=256)
def derive_signing_key(secret: str, scope_date: str, region: str, service: str = SERVICE) -> bytes:
    """The SigV4 signing key; cached because the four-HMAC chain costs more than a request."""
    key = hmac.digest(f"AWS4{secret}".encode(), scope_date.encode(), "sha256")
    for part in (region, service, TERMINATOR):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def canonical_query(raw_query: str) -> str:
    """The canonical query string of ``raw_query`` (every parameter kept), as S3 builds it."""
    return _join_query(_query_pairs(raw_query))


def _parse_header_auth(
    request: SigV4Request,
    authorization: str,
    pairs: list[tuple[str, str]],
    now: datetime,
    expected_region: str | None,
) -> SignatureClaim:
    error = AuthorizationHeaderMalformed
    credential, signed_headers, signature = _split_authorization(authorization)
    access_key_id, scope_date, region = _parse_credential(credential, error, expected_region)
    if not _SIGNATURE.fullmatch(signature):
        raise error("The authorization header is malformed; Signature must be 64 hex digits.")
    headers = request.headers
    if "x-amz-security-token" in headers:
        raise AccessDenied(_SESSION_TOKENS)
    amz_date, request_time = _header_request_time(headers)
    if amz_date[:8] != scope_date:
        raise error(
            "The authorization header is malformed; Invalid credential date. "
            "Date is not the same as X-Amz-Date."
        )
    if abs(request_time - now) > MAX_SKEW:
        raise _too_skewed(request_time, now)
    declared = headers.get("x-amz-content-sha256")
    if declared is None:
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    payload_mode, payload_sha256 = _payload_mode(declared)
    canonical = _canonical_request(
        request, _join_query(pairs), _signed_header_names(signed_headers, error), signed_headers
    )
    return SignatureClaim(
        access_key_id=access_key_id,
        scope_date=scope_date,
        region=region,
        amz_date=amz_date,
        request_time=request_time,
        signature=signature,
        canonical_request=f"{canonical}\n{declared}",
        payload_mode=payload_mode,
        payload_sha256=payload_sha256,
        presigned=False,
    )


def _parse_query_auth(
    request: SigV4Request,
    pairs: list[tuple[str, str]],
    now: datetime,
    expected_region: str | None,
) -> SignatureClaim:
    error = AuthorizationQueryParametersError
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in _QUERY_AUTH_PARAMS:
            if name in params:
                raise error(f"{name} must appear only once.")
            params[name] = unquote(value)
    if "X-Amz-Security-Token" in params or "x-amz-security-token" in request.headers:
        raise AccessDenied(_SESSION_TOKENS)
    try:
        algorithm = params["X-Amz-Algorithm"]
        credential = params["X-Amz-Credential"]
        amz_date = params["X-Amz-Date"]
        expires_text = params["X-Amz-Expires"]
        signed_headers = params["X-Amz-SignedHeaders"]
        signature = params["X-Amz-Signature"]
    except KeyError:
        raise error(_QUERY_AUTH_REQUIRED) from None
    if algorithm != ALGORITHM:
        raise error(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    access_key_id, scope_date, region = _parse_credential(credential, error, expected_region)
    if not _SIGNATURE.fullmatch(signature):
        raise error("X-Amz-Signature must be 64 lower-case hex digits.")
    if not (expires_text.isascii() and expires_text.isdigit()):
        raise error("X-Amz-Expires should be a number")
    expires = int(expires_text)
    if expires > MAX_PRESIGNED_EXPIRES:
        raise error(
            f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRES}"
        )
    request_time = _parse_amz_date(amz_date)
    if request_time is None:
        raise error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    if amz_date[:8] != scope_date:
        raise error("Invalid credential date. Date is not the same as X-Amz-Date.")
    if request_time - now > MAX_SKEW:
        raise _too_skewed(request_time, now)
    expiry = request_time + timedelta(seconds=expires)
    if now > expiry:
        raise AccessDenied(
            "Request has expired",
            **{"X-Amz-Expires": expires_text},
            Expires=_iso(expiry),
            ServerTime=_iso(now),
        )
    # botocore and the other SDKs put a signed x-amz-content-sha256 header in the canonical
    # request when one is sent with a presigned URL; without it the payload is unsigned.
    declared = request.headers.get("x-amz-content-sha256", PayloadMode.UNSIGNED.value)
    payload_mode, payload_sha256 = _payload_mode(declared)
    query = _join_query([pair for pair in pairs if pair[0] != "X-Amz-Signature"])
    canonical = _canonical_request(
        request, query, _signed_header_names(signed_headers, error), signed_headers
    )
    return SignatureClaim(
        access_key_id=access_key_id,
        scope_date=scope_date,
        region=region,
        amz_date=amz_date,
        request_time=request_time,
        signature=signature,
        canonical_request=f"{canonical}\n{declared}",
        payload_mode=payload_mode,
        payload_sha256=payload_sha256,
        presigned=True,
    )


def _split_authorization(authorization: str) -> tuple[str, str, str]:
    """``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` -> the three values."""
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm == "AWS":
        raise InvalidRequest(_USE_SIGV4)
    if algorithm != ALGORITHM:
        raise AuthorizationHeaderMalformed(
            f"The authorization header is malformed; the algorithm must be {ALGORITHM}."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals or name in fields:
            raise AuthorizationHeaderMalformed(
                f"The authorization header is malformed; cannot parse {part.strip()!r}."
            )
        fields[name] = value
    try:
        credential = fields.pop("Credential")
        signed_headers = fields.pop("SignedHeaders")
        signature = fields.pop("Signature")
    except KeyError:
        raise AuthorizationHeaderMalformed(
            "The authorization header is malformed; it needs Credential, SignedHeaders "
            "and Signature."
        ) from None
    if fields:
        raise AuthorizationHeaderMalformed(
            f"The authorization header is malformed; unexpected {', '.join(sorted(fields))}."
        )
    return credential, signed_headers, signature


def _parse_credential(
    credential: str, error: type[ClientError], expected_region: str | None
) -> tuple[str, str, str]:
    """``AKID/YYYYMMDD/region/s3/aws4_request`` -> (access key id, scope date, region)."""
    parts = credential.rsplit("/", 4)
    if len(parts) != 5:
        raise error(
            f"The credential is malformed; expecting '<AKID>/<YYYYMMDD>/<REGION>/{SERVICE}/"
            f"{TERMINATOR}', got {credential!r}."
        )
    access_key_id, scope_date, region, service, terminator = parts
    if not _ACCESS_KEY_ID.fullmatch(access_key_id):
        raise error("The credential is malformed; the access key id is invalid.")
    if not _SCOPE_DATE.fullmatch(scope_date):
        raise error(f"The credential is malformed; invalid date {scope_date!r}.")
    if not _REGION.fullmatch(region):
        raise error(f"The credential is malformed; invalid region {region!r}.")
    if service != SERVICE:
        raise error(
            f"The credential is malformed; incorrect service {service!r}. "
            f"This endpoint belongs to {SERVICE!r}."
        )
    if terminator != TERMINATOR:
        raise error(
            f"The credential is malformed; incorrect terminal {terminator!r}. "
            f"This endpoint uses {TERMINATOR!r}."
        )
    if expected_region is not None and region != expected_region:
        # S3's wording for each mechanism; the Region element names the one to sign for.
        context = (
            "The authorization header is malformed"
            if error is AuthorizationHeaderMalformed
            else "Error parsing the X-Amz-Credential parameter"
        )
        raise error(
            f"{context}; the region '{region}' is wrong; expecting '{expected_region}'",
            Region=expected_region,
        )
    return access_key_id, scope_date, region


def _signed_header_names(signed_headers: str, error: type[ClientError]) -> list[str]:
    names = signed_headers.split(";")
    if any(not _HEADER_NAME.fullmatch(name) for name in names) or len(set(names)) != len(names):
        raise error(
            "SignedHeaders must be distinct lower-case header names separated by ';', got "
            f"{signed_headers!r}."
        )
    if "host" not in names:
        raise error("The host header must be signed.")
    return names


def _canonical_request(
    request: SigV4Request, query: str, signed_names: list[str], signed_headers: str
) -> str:
    """The canonical request without its final payload-hash line."""
    headers = request.headers
    signed = set(signed_names)
    unsigned = sorted(
        name for name in headers if name.startswith(_MUST_BE_SIGNED_PREFIXES) and name not in signed
    )
    if unsigned:
        raise AccessDenied(
            "There were headers present in the request which were not signed",
            HeadersNotSigned=", ".join(unsigned),
        )
    lines = []
    for name in signed_names:
        value = headers.get(name)
        if value is None:
            raise SignatureDoesNotMatch(f"The signed header {name!r} is missing from the request.")
        lines.append(f"{name}:{canonical_header_value(value)}\n")
    path = request.raw_path or "/"
    return f"{request.method}\n{path}\n{query}\n{''.join(lines)}\n{signed_headers}"


def canonical_header_value(value: str) -> str:
    """SigV4's ``Trimall``: trim, and turn each run of ASCII whitespace into one space.

    Not ``str.split()``: that also splits on U+001C-U+001F, U+0085, U+00A0 and the other
    Unicode spaces, which AWS's signers (the CRT, Go, Java) keep as they are.
    """
    return _ASCII_WHITESPACE_RUN.sub(" ", value.strip(_ASCII_WHITESPACE))


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, each re-encoded the AWS way."""
    if not raw_query:
        return []
    pairs = []
    for segment in raw_query.split("&"):
        if segment:
            name, _, value = segment.partition("=")
            pairs.append((_aws_encode(name), _aws_encode(value)))
    return pairs


def _join_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _aws_encode(component: str) -> str:
    """Decode a raw query component, then percent-encode every byte but the unreserved ones."""
    if _UNRESERVED_ONLY.fullmatch(component):
        return component
    raw = unquote_to_bytes(component.replace("+", " ").encode(WIRE_ENCODING, WIRE_ERRORS))
    return quote_from_bytes(raw, safe="")


def _payload_mode(declared: str) -> tuple[PayloadMode, str | None]:
    if _HEX_SHA256.fullmatch(declared):
        return PayloadMode.SHA256, declared.lower()
    mode = _LITERAL_MODES.get(declared)
    if mode is not None:
        return mode, None
    if declared.startswith("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"):
        raise NotImplementedOperation("Signature Version 4A (ECDSA) streaming is not supported.")
    raise InvalidArgument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-UNSIGNED-PAYLOAD-TRAILER or a "
        "valid sha256 value.",
        ArgumentName="x-amz-content-sha256",
        ArgumentValue=declared,
    )


def _header_request_time(headers: Mapping[str, str]) -> tuple[str, datetime]:
    """The request time from ``x-amz-date``, else ``Date``; with its ISO 8601 basic form."""
    amz_date = headers.get("x-amz-date")
    if amz_date is not None:
        parsed = _parse_amz_date(amz_date)
        if parsed is not None:
            return amz_date, parsed
    else:
        http_date = headers.get("date")
        if http_date is not None:
            try:
                parsed = parsedate_to_datetime(http_date)
            except (TypeError, ValueError):
                pass
            else:
                parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
                parsed = parsed.astimezone(UTC)
                return parsed.strftime("%Y%m%dT%H%M%SZ"), parsed
    raise AccessDenied("AWS authentication requires a valid Date or x-amz-date header")


def _parse_amz_date(text: str) -> datetime | None:
    if not _AMZ_DATE.fullmatch(text):
        return None
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _too_skewed(request_time: datetime, now: datetime) -> RequestTimeTooSkewed:
    return RequestTimeTooSkewed(
        RequestTime=_iso(request_time),
        ServerTime=_iso(now),
        MaxAllowedSkewMilliseconds=str(int(MAX_SKEW.total_seconds() * 1000)),
    )


def _utc(moment: datetime) -> datetime:
    """``now`` as an aware UTC datetime; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
