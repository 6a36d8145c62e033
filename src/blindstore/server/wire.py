"""Glue between the pure S3 wire modules (sigv4, chunked, checksums) and ASGI requests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from blindstore import provision
from blindstore.errors import (
    EntityTooLarge,
    InvalidAccessKeyId,
    InvalidArgument,
    KeyServiceError,
    KeyShredded,
    MissingContentLength,
)
from blindstore.gateway import Gateway, Principal
from blindstore.keys import justification
from blindstore.s3 import chunked, sigv4
from blindstore.s3.checksums import BodyVerifier
from blindstore.server.body import receive_body

if TYPE_CHECKING:
    from blindstore.catalog.base import AccessKey, Tenant
    from blindstore.server.handlers import Context
    from blindstore.server.request import S3Request

log = structlog.get_logger("blindstore.auth")

#: Credentials are re-read from the catalog after this long, so a revoked key stops working
#: within it.
CREDENTIAL_CACHE_SECONDS = 10.0


class VerifiedBody:
    """``BodyCheck`` over the s3.checksums verifier: one pass of each digest per byte."""

    __slots__ = ("_digests", "_md5", "_verifier")

    def __init__(self, verifier: BodyVerifier) -> None:
        self._verifier = verifier
        self._digests: dict[str, str] | None = None
        self._md5 = ""

    def update(self, data: bytes) -> None:
        self._verifier.update(data)

    def update_md5(self, data: bytes) -> None:
        self._verifier.update_md5(data)

    def update_others(self, data: bytes) -> None:
        self._verifier.update_others(data)

    def add_trailers(self, trailers: Mapping[str, str]) -> None:
        self._verifier.add_trailers(trailers)

    def verify(self) -> None:
        digests = self._verifier.finish()
        self._md5 = digests.md5.hex()
        algorithm = self._verifier.algorithm
        self._digests = {algorithm.value.lower(): digests.checksums[algorithm]} if algorithm else {}

    def md5_hex(self) -> str:
        return self._md5

    def checksums(self) -> dict[str, str]:
        return dict(self._digests or {})


@dataclass(frozen=True, slots=True)
class AuthContext:
    principal: Principal
    result: sigv4.AuthResult

    def check_small_body(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Verify the digests of a body read whole (XML documents)."""
        verifier = BodyVerifier.from_headers(headers, payload_sha256=self.result.payload_sha256)
        verifier.update(body)
        verifier.finish()

    def copy_check(self) -> VerifiedBody:
        """A check for bytes the gateway itself produces (copies): computes the ETag only."""
        return VerifiedBody(BodyVerifier())


@dataclass(frozen=True, slots=True)
class _CachedKey:
    secret: str = field(repr=False)
    tenant: Tenant
    #: The sealed value ``secret`` was unsealed from.
    sealed: str = field(repr=False)
    expires: float


class Authenticator:
    """SigV4 verification with a short-lived cache of access keys.

    ``region`` (``s3.region``), when given, is the only signing region accepted, as S3 refuses
    a request signed for another region. Secrets are unsealed under the credentials key of
    ``key_prefix`` (``vault.key_prefix``) and kept in clear in this cache only.
    """

    def __init__(
        self,
        gateway: Gateway,
        *,
        clock: Callable[[], float] = time.time,
        region: str | None = None,
        key_prefix: str = "hgw-",
    ) -> None:
        self.gateway = gateway
        self.clock = clock
        self.region = region
        self.key_prefix = key_prefix
        self._cache: dict[str, _CachedKey] = {}

    async def _lookup(self, access_key_id: str) -> tuple[str, Tenant]:
        """The secret and tenant of a key: from the cache, else unsealed by Transit.

        After ``CREDENTIAL_CACHE_SECONDS`` the catalog row is read again (a revoked key stops
        working); if it still holds the sealed value the cached secret came from, for the same
        tenant, the secret is reused without a Transit call, so a Vault outage does not lock out
        clients already known. An unknown key while Vault is unreachable →
        ``KeyServiceUnavailable`` (503): it may well be valid.
        """
        now = time.monotonic()
        cached = self._cache.get(access_key_id)
        if cached is not None and cached.expires > now:
            return cached.secret, cached.tenant
        self._cache.pop(access_key_id, None)
        found = await self.gateway.lookup_access_key(access_key_id)
        if found is None:
            raise InvalidAccessKeyId(AWSAccessKeyId=access_key_id)
        key, tenant = found
        if (
            cached is not None
            and key.sealed_secret is not None
            and key.sealed_secret == cached.sealed
            and key.tenant_id == cached.tenant.tenant_id
        ):
            secret: str | None = cached.secret
        else:
            secret = await self._unseal(key, tenant)
        if secret is None or key.sealed_secret is None:
            # A secret still in clear is never trusted (a catalog writer could have put it
            # there): the gateway seals those before it listens.
            raise InvalidAccessKeyId(AWSAccessKeyId=access_key_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[access_key_id] = _CachedKey(
            secret, tenant, key.sealed_secret, now + CREDENTIAL_CACHE_SECONDS
        )
        return secret, tenant

    async def _unseal(self, key: AccessKey, tenant: Tenant) -> str | None:
        why = justification.Justification(
            tenant=tenant.name, principal=key.access_key_id, op="Authenticate"
        )
        try:
            with justification.justified(why):
                return await provision.open_secret(
                    self.gateway.keys, key, key_prefix=self.key_prefix
                )
        except KeyServiceError as exc:
            # Tampered, or moved from another key id or tenant: not this key's secret.
            log.warning(
                "credentials.unseal_refused", access_key_id=key.access_key_id, error=str(exc)
            )
            return None

    def forget(self, access_key_id: str) -> None:
        """Drop a (revoked) key from the cache: refused from the next request on."""
        self._cache.pop(access_key_id, None)

    async def authenticate(self, request: S3Request) -> AuthContext:
        signed = sigv4.SigV4Request(
            method=request.method,
            raw_path=request.raw_path,
            raw_query=request.raw_query,
            headers=request.headers,
        )
        now = datetime.fromtimestamp(self.clock(), UTC)
        claim = sigv4.parse_signature(signed, now, region=self.region)
        secret, tenant = await self._lookup(claim.access_key_id)
        result = sigv4.verify_signature(claim, secret)
        if tenant.shredded is not None or tenant.key_name in self.gateway.revoked_keys:
            raise KeyShredded(
                "This tenant's keys were destroyed (crypto-shredding): "
                "its data can never be read again."
            )
        return AuthContext(Principal(result.access_key_id, tenant), result)


def request_body(ctx: Context, *, max_size: int) -> tuple[AsyncIterator[bytes], VerifiedBody]:
    """The decoded plaintext body of a PUT/UploadPart and the check that verifies it.

    For aws-chunked bodies the payload is released before each chunk's signature is verified;
    the check (run by the gateway before the blob lands) is what makes the upload all-or-nothing.
    """
    headers = ctx.request.headers
    result = ctx.auth.result
    idle = ctx.settings.limits.body_idle_timeout_seconds
    check = VerifiedBody(BodyVerifier.from_headers(headers, payload_sha256=result.payload_sha256))
    length_header = headers.get("content-length")
    wire_length: int | None = None
    if length_header is not None:
        try:
            wire_length = int(length_header)
        except ValueError:
            raise InvalidArgument("Invalid Content-Length", ArgumentName="Content-Length") from None
    elif "chunked" not in headers.get("transfer-encoding", ""):
        raise MissingContentLength()
    mode = result.payload_mode
    if not mode.is_aws_chunked:
        if wire_length is not None and wire_length > max_size:
            raise EntityTooLarge(ProposedSize=str(wire_length), MaxSizeAllowed=str(max_size))
        raw = receive_body(ctx.receive, idle_timeout=idle, expected_length=wire_length)
        return _capped(raw, max_size), check

    decoded_length = chunked.decoded_content_length(headers)
    if decoded_length > max_size:
        raise EntityTooLarge(ProposedSize=str(decoded_length), MaxSizeAllowed=str(max_size))
    decoder = chunked.AwsChunkedDecoder(
        mode,
        decoded_length=decoded_length,
        signing=result.chunk_signing,
        expected_trailers=chunked.declared_trailers(headers),
    )
    raw = receive_body(ctx.receive, idle_timeout=idle, expected_length=wire_length)

    async def decoded() -> AsyncIterator[bytes]:
        async for data in raw:
            for piece in decoder.feed(data):
                yield piece
        check.add_trailers(decoder.finish())

    return decoded(), check


async def _capped(body: AsyncIterator[bytes], max_size: int) -> AsyncIterator[bytes]:
    total = 0
    async for data in body:
        total += len(data)
        if total > max_size:
            raise EntityTooLarge(MaxSizeAllowed=str(max_size))
        yield data
