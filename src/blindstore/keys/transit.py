"""OpenBao/Vault Transit as the key service, through ``hvac``.

DEKs and object ids are generated here; Transit only wraps them (``transit/encrypt``) and unwraps
them (``transit/decrypt``) under a derived tenant key, with ``context = dek_context(tenant,
object)``. Never ``associated_data``: ``rewrap`` drops it (SECURITY-NOTES §2.1), while the context
survives rotation. Both directions use ``batch_input`` so that the pool and the micro-batcher pay
one round trip for many DEKs.

hvac is blocking: every call runs in a worker thread (bounded by a capacity limiter) over one
keep-alive ``requests.Session``. hvac/requests exceptions are translated once, in ``_map_errors``:
unreachable, timed out, 5xx, 429 → ``KeyServiceUnavailable`` (retried a few times, then the
gateway fails closed with 503); anything Vault refuses (400/401/403/404) → ``KeyServiceError``.

The token may change under a running wrapper: with ``auth`` (a ``VaultSession``, keys/vaultauth.py)
a call refused with 403 asks it to recover (log in again if the token expired) and is retried once.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread
import hvac
import hvac.exceptions
import requests  # type: ignore[import-untyped,unused-ignore]
import stamina
from requests.adapters import HTTPAdapter  # type: ignore[import-untyped,unused-ignore]

from blindstore.errors import ConfigError, KeyServiceError, KeyServiceUnavailable
from blindstore.keys import justification
from blindstore.keys.base import DataKey, WrappedDek, dek_context, parse_key_version

DEK_SIZE = 32
OBJECT_ID_SIZE = 16
#: Items per Transit call. OpenBao (≥ 2.4.1) refuses request bodies with more than
#: ``max_request_json_strings`` (default 1000) JSON strings, keys included: a batch item costs 4,
#: so 249 items is its ceiling; 240 leaves room for the request's own keys.
DEFAULT_MAX_BATCH_ITEMS = 240

#: The only key type blindstore accepts, with the settings SECURITY-NOTES §2.1/§2.6 require.
KEY_SETTINGS: Mapping[str, object] = {
    "type": "aes256-gcm96",
    "derived": True,
    "exportable": False,
    "allow_plaintext_backup": False,
}

_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_MOUNT_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")

#: Returns a configured ``hvac.Client`` (untyped library, hence ``Any``).
ClientFactory = Callable[[], Any]

# Statuses that say "try again later" rather than "no": sealed/standby (503), proxies (502, 504),
# rate limiting (429), internal errors (500) and anything unexpected.
_TRANSIENT_VAULT_ERRORS = (
    hvac.exceptions.VaultDown,
    hvac.exceptions.BadGateway,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.RateLimitExceeded,
    hvac.exceptions.VaultNotInitialized,
    hvac.exceptions.UnexpectedError,
)


def resolve_token(
    token: str | None,
    token_file: str | os.PathLike[str] | None,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """The Vault token: ``token`` if given, else the content of ``token_file``, else
    ``VAULT_TOKEN`` (or OpenBao's ``BAO_TOKEN``) from ``environ``. None of them → ``ConfigError``.
    """
    if token:
        return token
    if token_file is not None:
        path = Path(token_file)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the Vault token file {path}: {exc.strerror}") from exc
        if not text:
            raise ConfigError(f"the Vault token file {path} is empty")
        return text
    for variable in ("VAULT_TOKEN", "BAO_TOKEN"):
        if environ.get(variable):
            return environ[variable]
    raise ConfigError("no Vault token: set vault.token, vault.token_file or VAULT_TOKEN")


class TokenRecovery(Protocol):
    """Who can replace a refused token (``VaultSession``)."""

    async def recover(self, failed_token: str) -> bool:
        """After a 403 on a call made with ``failed_token``: whether a retry may succeed."""
        ...


def make_client(
    url: str,
    token: str,
    *,
    connect_timeout: float = 2.0,
    read_timeout: float = 10.0,
    verify: bool | str = True,
    cert: tuple[str, str] | None = None,
    pool_size: int = 16,
    session: Any = None,
) -> Any:
    """An ``hvac.Client`` over one keep-alive session sized for ``pool_size`` concurrent calls.

    ``trust_env`` is off: proxies and CA bundles come from our settings only, and requests then
    skips re-reading the environment on every call. ``cert`` is a client certificate and key
    (PEM files) for mutual TLS. ``token=""`` is a client without a token (hvac would read
    ``VAULT_TOKEN`` or ``~/.vault-token`` for ``None``); ``session`` shares another client's
    connections and TLS settings.
    """
    if session is not None:
        return hvac.Client(
            url=url,
            token=token,
            timeout=(connect_timeout, read_timeout),
            verify=session.verify,
            cert=session.cert,
            session=session,
        )
    session = requests.Session()
    session.trust_env = False
    session.verify = verify
    session.cert = cert
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return hvac.Client(
        url=url,
        token=token,
        timeout=(connect_timeout, read_timeout),
        verify=verify,
        cert=cert,
        session=session,
    )


def check_key_name(key_name: str) -> None:
    """Reject names that are not one plain Transit path segment (no ``/``, no ``..``)."""
    if _KEY_NAME.fullmatch(key_name) is None:
        raise ValueError(f"invalid Transit key name {key_name!r}")


@dataclass(slots=True)
class TransitStats:
    """Counters for metrics: round trips (retries included) and DEKs moved."""

    vault_calls: int = 0
    items_wrapped: int = 0
    items_unwrapped: int = 0
    failed_calls: int = 0


class TransitKeyWrapper:
    """``BatchKeyWrapper`` over a Transit mount; give ``client_factory`` or ``url`` + ``token``.

    ``retry_attempts`` / ``retry_timeout`` bound the retries of transient failures (stamina,
    exponential backoff with jitter; ``stamina.set_testing`` disables the waits in tests).
    ``max_batch_items`` splits larger batches into several calls; raise it only together with
    the server's ``max_request_json_strings`` (4 strings per item).
    """

    def __init__(
        self,
        client_factory: ClientFactory | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        mount: str = "transit",
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        verify: bool | str = True,
        max_concurrency: int = 16,
        retry_attempts: int = 3,
        retry_timeout: float = 5.0,
        max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS,
        rng: Callable[[int], bytes] = secrets.token_bytes,
        auth: TokenRecovery | None = None,
    ) -> None:
        if max_batch_items < 1:
            raise ValueError("max_batch_items must be at least 1")
        segments = mount.split("/")
        if not all(_MOUNT_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments):
            raise ValueError(f"invalid Transit mount {mount!r}")
        if client_factory is None:
            if url is None or token is None:
                raise ValueError("TransitKeyWrapper needs client_factory, or url and token")
            self._client = make_client(
                url,
                token,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                verify=verify,
                pool_size=max_concurrency,
            )
        elif url is not None or token is not None:
            raise ValueError("give either client_factory or url and token, not both")
        else:
            self._client = client_factory()
        self._prefix = f"/v1/{mount}"
        self._limiter = anyio.CapacityLimiter(max_concurrency)
        self._retry_attempts = retry_attempts
        self._retry_timeout = retry_timeout
        self._max_batch_items = max_batch_items
        self._rng = rng
        self._auth = auth
        self.stats = TransitStats()

    @property
    def vault_calls(self) -> int:
        """HTTP round trips made to Vault so far (each retry counts)."""
        return self.stats.vault_calls

    async def create_key(self, key_name: str) -> None:
        """Create the tenant key if missing; an existing key with other settings is refused."""
        check_key_name(key_name)
        path = f"{self._prefix}/keys/{key_name}"
        data = _data(await self._call("post", path, dict(KEY_SETTINGS)))
        if data is None:
            # Vault answers 204 without a body where OpenBao returns the key; read it back.
            data = _data(await self._call("get", path, None)) or {}
        wrong = sorted(name for name, value in KEY_SETTINGS.items() if data.get(name) != value)
        if wrong:
            raise KeyServiceError(
                f"Transit key {key_name} exists with unsafe settings: {', '.join(wrong)}"
            )

    async def wrap_batch(self, key_name: str, tenant_id: bytes, count: int) -> list[DataKey]:
        """``count`` fresh DEKs under fresh object ids, wrapped by ``transit/encrypt`` calls of
        up to ``max_batch_items`` each (one call for any pool up to that size); all or nothing.
        """
        check_key_name(key_name)
        if count < 1:
            raise ValueError("batch size must be at least 1")
        keys: list[DataKey] = []
        for start in range(0, count, self._max_batch_items):
            chunk = min(self._max_batch_items, count - start)
            keys.extend(await self._wrap_chunk(key_name, tenant_id, chunk))
        return keys

    async def unwrap_batch(
        self, key_name: str, items: Sequence[WrappedDek]
    ) -> list[bytes | KeyServiceError]:
        """Unwrap many DEKs with ``transit/decrypt`` calls of up to ``max_batch_items`` each;
        a refused item fails alone."""
        check_key_name(key_name)
        outcomes: list[bytes | KeyServiceError] = []
        sendable: list[int] = []
        for index, item in enumerate(items):
            try:
                parse_key_version(item.wrapped)
            except KeyServiceError as exc:
                outcomes.append(exc)  # malformed: not worth a Vault round trip
                continue
            outcomes.append(b"")
            sendable.append(index)
        for start in range(0, len(sendable), self._max_batch_items):
            chunk = sendable[start : start + self._max_batch_items]
            results = await self._unwrap_chunk(key_name, [items[i] for i in chunk])
            for index, result in zip(chunk, results, strict=True):
                outcomes[index] = result
        return outcomes

    async def new_data_key(
        self,
        key_name: str,
        tenant_id: bytes,
        *,
        bucket: str | None = None,
        size: int | None = None,
        pooled: bool = True,
    ) -> DataKey:
        """One DEK, one round trip (the pool in ``KeyService`` amortises this); ``bucket``,
        ``size`` and ``pooled`` only matter to ``KeyService``."""
        return (await self.wrap_batch(key_name, tenant_id, 1))[0]

    async def unwrap(
        self, key_name: str, tenant_id: bytes, object_id: bytes, wrapped: str
    ) -> bytes:
        """One DEK, one round trip (``KeyService`` caches and coalesces these)."""
        item = WrappedDek(tenant_id, object_id, wrapped)
        outcome = (await self.unwrap_batch(key_name, [item]))[0]
        if isinstance(outcome, KeyServiceError):
            raise outcome
        return outcome

    def forget(self, tenant_id: bytes, object_id: bytes) -> None:
        """Nothing is cached at this layer."""

    def remember(
        self,
        key_name: str,
        tenant_id: bytes,
        object_id: bytes,
        wrapped: str,
        dek: bytes,
        *,
        size: int | None = None,
    ) -> None:
        """Nothing is cached at this layer."""

    async def hmac(self, key_name: str, data: bytes) -> bytes:
        """The HMAC-SHA-256 of ``data`` under ``key_name``'s version 1 (``transit/hmac``), raw.

        Pinned to version 1 so that rotating the key never changes a digest already stored.
        """
        check_key_name(key_name)
        body = {"input": _b64(data), "key_version": 1}
        value = (
            _data(await self._call("post", f"{self._prefix}/hmac/{key_name}", body)) or {}
        ).get("hmac")
        prefix = "vault:v1:"
        if not isinstance(value, str) or not value.startswith(prefix):
            raise KeyServiceError("unexpected Transit response: no hmac")
        try:
            return base64.b64decode(value.removeprefix(prefix), validate=True)
        except binascii.Error as exc:
            raise KeyServiceError("unexpected Transit response: malformed hmac") from exc

    async def check_health(self) -> None:
        """Return if Vault answers ``sys/health`` as initialised and unsealed (standbys count:
        they forward Transit calls); ``KeyServiceUnavailable`` otherwise. One request, no
        retries and no token (readiness probes it; a caller that gives up abandons the thread).
        """
        await anyio.to_thread.run_sync(
            self._request,
            "get",
            "/v1/sys/health?standbyok=true&perfstandbyok=true",
            None,
            abandon_on_cancel=True,
        )

    async def close(self) -> None:
        """Close the keep-alive connections."""
        self._client.adapter.close()

    async def _wrap_chunk(self, key_name: str, tenant_id: bytes, count: int) -> list[DataKey]:
        rng = self._rng
        object_ids = [rng(OBJECT_ID_SIZE) for _ in range(count)]
        deks = [rng(DEK_SIZE) for _ in range(count)]
        batch_input = [
            {"plaintext": _b64(dek), "context": _b64(dek_context(tenant_id, object_id))}
            for object_id, dek in zip(object_ids, deks, strict=True)
        ]
        response = await self._call(
            "post", f"{self._prefix}/encrypt/{key_name}", {"batch_input": batch_input}
        )
        keys: list[DataKey] = []
        for object_id, dek, result in zip(
            object_ids, deks, _batch_results(response, count), strict=True
        ):
            wrapped = result.get("ciphertext")
            if result.get("error") or not isinstance(wrapped, str):
                raise KeyServiceError(f"Transit refused to wrap: {result.get('error')}")
            keys.append(DataKey(object_id, dek, wrapped, key_name, parse_key_version(wrapped)))
        self.stats.items_wrapped += count
        return keys

    async def _unwrap_chunk(
        self, key_name: str, items: Sequence[WrappedDek]
    ) -> list[bytes | KeyServiceError]:
        batch_input = [
            {
                "ciphertext": item.wrapped,
                "context": _b64(dek_context(item.tenant_id, item.object_id)),
            }
            for item in items
        ]
        # With partial_failure_response_code a mixed batch answers 200 with per-item errors.
        body = {"batch_input": batch_input, "partial_failure_response_code": 200}
        response = await self._call("post", f"{self._prefix}/decrypt/{key_name}", body)
        self.stats.items_unwrapped += len(items)
        return [_plaintext_dek(result) for result in _batch_results(response, len(items))]

    async def _call(self, method: str, path: str, body: Mapping[str, object] | None) -> Any:
        """``_call_once``; refused with 403, retried once if ``auth`` replaced the token."""
        if self._auth is None:
            return await self._call_once(method, path, body)
        token = self._client.token
        try:
            return await self._call_once(method, path, body)
        except KeyServiceError as exc:
            if not isinstance(exc.__cause__, hvac.exceptions.Forbidden):
                raise
            if not await self._auth.recover(token or ""):
                raise
        return await self._call_once(method, path, body)

    async def _call_once(self, method: str, path: str, body: Mapping[str, object] | None) -> Any:
        # Read here, in the caller's context, not in the worker thread.
        why = justification.header_value(justification.current())
        response: Any = None
        async for attempt in stamina.retry_context(
            on=KeyServiceUnavailable,
            attempts=self._retry_attempts,
            timeout=self._retry_timeout,
            wait_initial=0.05,
            wait_max=1.0,
        ):
            with attempt:
                self.stats.vault_calls += 1
                try:
                    response = await anyio.to_thread.run_sync(
                        self._request, method, path, body, why, limiter=self._limiter
                    )
                except (KeyServiceError, KeyServiceUnavailable):
                    self.stats.failed_calls += 1
                    raise
        return response

    def _request(
        self, method: str, path: str, body: Mapping[str, object] | None, why: str | None = None
    ) -> Any:
        """One HTTP request (worker thread), with the key-access justification header if there
        is one. Returns the decoded JSON body."""
        # A fresh dict per call: hvac adds the token header to the one it is given.
        headers = {justification.HEADER: why} if why else None
        with _map_errors():
            try:
                return self._client.adapter.request(method, path, json=body, headers=headers)
            except hvac.exceptions.InvalidRequest as exc:
                # When every item of a batch fails, Vault answers 400 with the per-item errors.
                if _has_batch_results(exc.json):
                    return exc.json
                raise


@contextmanager
def _map_errors() -> Iterator[None]:
    """The one translation point from hvac/requests exceptions to the blindstore error tree."""
    try:
        yield
    except _TRANSIENT_VAULT_ERRORS as exc:
        raise KeyServiceUnavailable(f"key service unavailable: {exc}") from exc
    except hvac.exceptions.VaultError as exc:
        raise KeyServiceError(f"key service refused: {exc}") from exc
    except requests.exceptions.SSLError as exc:
        raise KeyServiceUnavailable(f"key service unreachable: {describe_tls_error(exc)}") from exc
    except requests.exceptions.RequestException as exc:
        # Connection refused/reset, TLS failures and timeouts: the service is not there.
        raise KeyServiceUnavailable(f"key service unreachable: {type(exc).__name__}") from exc


def describe_tls_error(exc: BaseException) -> str:
    """A short reason for a failed TLS handshake, pointing at the setting that fixes it."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            "TLS certificate of the Vault server is not trusted"
            " (set vault.ca_cert to the CA bundle that signed it)"
        )
    return f"TLS handshake failed ({type(exc).__name__}; check vault.ca_cert and the client cert)"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _data(response: object) -> dict[str, Any] | None:
    """The ``data`` object of a Vault JSON response, if there is one."""
    if isinstance(response, dict):
        data = response.get("data")
        if isinstance(data, dict):
            return data
    return None


def _has_batch_results(response: object) -> bool:
    data = _data(response)
    return data is not None and isinstance(data.get("batch_results"), list)


def _batch_results(response: object, expected: int) -> list[dict[str, Any]]:
    data = _data(response)
    results = data.get("batch_results") if data is not None else None
    if not isinstance(results, list):
        raise KeyServiceError("unexpected Transit response: no batch_results")
    if len(results) != expected or not all(isinstance(r, dict) for r in results):
        raise KeyServiceError("unexpected Transit response: batch_results do not match")
    return results


def _plaintext_dek(result: Mapping[str, Any]) -> bytes | KeyServiceError:
    if result.get("error"):
        return KeyServiceError(f"Transit refused to unwrap: {result['error']}")
    try:
        dek = base64.b64decode(result.get("plaintext") or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        return KeyServiceError("Transit returned a malformed plaintext")
    if len(dek) != DEK_SIZE:
        return KeyServiceError("Transit returned a plaintext that is not a 32-byte DEK")
    return dek
