"""The gateway's identity at OpenBao/Vault: logging in, keeping the token alive, logging in again.

    VaultSession ── sets the token of the hvac client the Transit wrapper uses
      ├── method: StaticToken | AppRoleLogin | KubernetesLogin       how a token is obtained
      ├── api:    AuthApi (HvacAuthApi over hvac; a fake in unit tests)
      └── tick(): renew at 2/3 of the TTL; log in again when renewal is capped (max TTL) or
                  refused; ``recover()`` after a Transit 403 on an expired token

A static token cannot log in again: it is renewed while renewable, and an error is logged when
it nears its end. Time is injected (``clock``, ``sleep``): unit tests drive ``tick()`` without
sleeping. hvac is blocking, so every Vault call runs in a worker thread. hvac/requests exceptions
are translated once, in ``_map_auth_errors``: refusals → ``KeyServiceError`` (which method, which
mount, what OpenBao said), unreachable → ``KeyServiceUnavailable``, an untrusted server
certificate → ``ConfigError`` naming ``vault.ca_cert``. Secrets (tokens, secret ids, JWTs) never
appear in messages or logs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import anyio
import anyio.to_thread
import hvac.exceptions
import requests  # type: ignore[import-untyped,unused-ignore]

from blindstore.background import start_background
from blindstore.errors import BlindstoreError, ConfigError, KeyServiceError, KeyServiceUnavailable
from blindstore.keys.transit import describe_tls_error

#: Standard logging, as the other edge modules: one-shot CLI commands keep a clean stdout, and
#: messages start with a stable event name (``vault_login``...) for alerting.
_log = logging.getLogger(__name__)

#: Renew (or log in again) when this fraction of the token's TTL has passed.
RENEW_FRACTION = 2 / 3

_TRANSIENT = (
    hvac.exceptions.VaultDown,
    hvac.exceptions.BadGateway,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.RateLimitExceeded,
    hvac.exceptions.VaultNotInitialized,
    hvac.exceptions.UnexpectedError,
)


@dataclass(frozen=True, slots=True)
class TokenLease:
    """A token and what Vault said of it: ``ttl`` seconds left (0: never expires)."""

    token: str = field(repr=False)
    ttl: float
    renewable: bool


class AuthApi(Protocol):
    """The Vault calls of logging in (blocking; run in worker threads)."""

    def login(self, method: str, mount: str, credentials: Mapping[str, str]) -> TokenLease:
        """``auth/<mount>/login`` with ``credentials``, without a token."""
        ...

    def unwrap(self, wrapping_token: str) -> Mapping[str, Any]:
        """``sys/wrapping/unwrap`` with ``wrapping_token``: the wrapped response's ``data``."""
        ...

    def lookup_self(self, token: str) -> TokenLease:
        """``auth/token/lookup-self``."""
        ...

    def renew_self(self, token: str, increment: int) -> TokenLease:
        """``auth/token/renew-self``, asking for ``increment`` seconds more."""
        ...


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential given by value or by file; a file is re-read at every use (rotation)."""

    what: str
    value: str | None = field(default=None, repr=False)
    file: Path | None = None

    def read(self) -> str:
        if self.value:
            return self.value
        if self.file is None:
            raise ConfigError(f"no {self.what} configured")
        try:
            text = self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the {self.what} file {self.file}: {exc.strerror}"
            ) from exc
        if not text:
            raise ConfigError(f"the {self.what} file {self.file} is empty")
        return text


class LoginMethod(Protocol):
    """How the gateway obtains a token."""

    @property
    def name(self) -> str:
        """``token``, ``approle`` or ``kubernetes``: for messages and logs."""
        ...

    @property
    def mount(self) -> str | None:
        """The auth mount (``None`` for a static token)."""
        ...

    @property
    def can_login(self) -> bool:
        """Whether ``obtain`` can produce a fresh token (a static token cannot)."""
        ...

    def obtain(self, api: AuthApi) -> TokenLease:
        """A token, with its TTL (blocking)."""
        ...

    def known_token(self) -> str | None:
        """The token usable before any call to Vault (a static token), else ``None``."""
        ...


@dataclass(slots=True)
class StaticToken:
    """A token given in the settings; "obtaining" it only looks up its TTL."""

    secret: Secret
    name: str = "token"
    mount: str | None = None
    can_login: bool = False

    def obtain(self, api: AuthApi) -> TokenLease:
        return api.lookup_self(self.secret.read())

    def known_token(self) -> str | None:
        return self.secret.read()


@dataclass(slots=True)
class AppRoleLogin:
    """AppRole: ``role_id`` + ``secret_id``, or a response-wrapped secret id unwrapped once.

    The unwrapped secret id is kept in memory for later logins (the wrapping token is single
    use); the role's secret ids must then allow more than one login (``secret_id_num_uses``).
    """

    role_id: Secret
    secret_id: Secret | None = None
    wrapped_secret_id: Secret | None = None
    mount: str = "approle"
    name: str = "approle"
    can_login: bool = True
    _unwrapped: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.secret_id is None) == (self.wrapped_secret_id is None):
            raise ConfigError("AppRole login needs a secret id or a wrapped secret id, not both")

    def obtain(self, api: AuthApi) -> TokenLease:
        role_id = self.role_id.read()
        secret_id = self.secret_id.read() if self.secret_id is not None else self._unwrap(api)
        return api.login(self.name, self.mount, {"role_id": role_id, "secret_id": secret_id})

    def known_token(self) -> str | None:
        return None

    def _unwrap(self, api: AuthApi) -> str:
        if self._unwrapped is not None:
            return self._unwrapped
        assert self.wrapped_secret_id is not None
        try:
            data = api.unwrap(self.wrapped_secret_id.read())
        except KeyServiceError as exc:
            raise KeyServiceError(
                "cannot unwrap the response-wrapped AppRole secret id: the wrapping token was "
                "already used, has expired or is not a wrapping token "
                f"({exc.message}). Deliver a fresh one; a use you did not make means it was "
                "intercepted."
            ) from exc
        secret_id = data.get("secret_id")
        if not isinstance(secret_id, str) or not secret_id:
            raise KeyServiceError("the response-wrapped token does not hold an AppRole secret id")
        self._unwrapped = secret_id
        return secret_id


@dataclass(slots=True)
class KubernetesLogin:
    """Kubernetes: the pod's service-account JWT, re-read at every login (projected tokens
    rotate), exchanged for a token of ``role``."""

    role: str
    jwt: Secret
    mount: str = "kubernetes"
    name: str = "kubernetes"
    can_login: bool = True

    def obtain(self, api: AuthApi) -> TokenLease:
        return api.login(self.name, self.mount, {"role": self.role, "jwt": self.jwt.read()})

    def known_token(self) -> str | None:
        return None


class HvacAuthApi:
    """``AuthApi`` over hvac, with a client of its own that carries no token (so no stale
    token is ever sent with a login), sharing ``session`` (connections, ``verify``, ``cert``).
    """

    def __init__(self, client: Any, *, addr: str) -> None:
        self._client = client
        self._addr = addr

    def login(self, method: str, mount: str, credentials: Mapping[str, str]) -> TokenLease:
        with _map_auth_errors(f"Vault login (method {method}, mount {mount})", self._addr):
            if method == "approle":
                response = self._client.auth.approle.login(
                    credentials["role_id"],
                    credentials["secret_id"],
                    use_token=False,
                    mount_point=mount,
                )
            elif method == "kubernetes":
                response = self._client.auth.kubernetes.login(
                    credentials["role"], credentials["jwt"], use_token=False, mount_point=mount
                )
            else:
                raise ConfigError(f"unknown Vault auth method {method!r}")
        return _lease_from_auth(response, f"Vault login (method {method}, mount {mount})")

    def unwrap(self, wrapping_token: str) -> Mapping[str, Any]:
        with _map_auth_errors("unwrapping the secret id", self._addr):
            response = self._client.adapter.post(
                "/v1/sys/wrapping/unwrap", headers={"X-Vault-Token": wrapping_token}
            )
        data = response.get("data") if isinstance(response, dict) else None
        return data if isinstance(data, dict) else {}

    def lookup_self(self, token: str) -> TokenLease:
        with _map_auth_errors("looking up the Vault token (method token)", self._addr):
            response = self._client.adapter.get(
                "/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}
            )
        data = response.get("data") if isinstance(response, dict) else None
        if not isinstance(data, dict):
            raise KeyServiceError("unexpected answer to auth/token/lookup-self")
        return TokenLease(token, float(data.get("ttl") or 0), bool(data.get("renewable")))

    def renew_self(self, token: str, increment: int) -> TokenLease:
        with _map_auth_errors("renewing the Vault token", self._addr):
            response = self._client.adapter.post(
                "/v1/auth/token/renew-self",
                json={"increment": f"{increment}s"},
                headers={"X-Vault-Token": token},
            )
        lease = _lease_from_auth(response, "renewing the Vault token")
        # Some servers hand back the same token without repeating it.
        return TokenLease(lease.token or token, lease.ttl, lease.renewable)


def _lease_from_auth(response: object, what: str) -> TokenLease:
    auth = response.get("auth") if isinstance(response, dict) else None
    if not isinstance(auth, dict) or not isinstance(auth.get("client_token"), str):
        raise KeyServiceError(f"{what}: unexpected answer (no auth.client_token)")
    return TokenLease(
        auth["client_token"], float(auth.get("lease_duration") or 0), bool(auth.get("renewable"))
    )


@contextmanager
def _map_auth_errors(what: str, addr: str) -> Iterator[None]:
    """The one translation point from hvac/requests exceptions for logins and renewals."""
    try:
        yield
    except _TRANSIENT as exc:
        raise KeyServiceUnavailable(f"{what}: Vault unavailable: {_said(exc)}") from exc
    except hvac.exceptions.VaultError as exc:
        raise KeyServiceError(f"{what}: refused: {_said(exc)}") from exc
    except requests.exceptions.SSLError as exc:
        raise ConfigError(f"{what} at {addr}: {describe_tls_error(exc)}") from exc
    except requests.exceptions.RequestException as exc:
        raise KeyServiceUnavailable(f"{what}: Vault unreachable ({type(exc).__name__})") from exc


def _said(exc: hvac.exceptions.VaultError) -> str:
    """What the server said (hvac appends the URL, which names no secret, but is noise)."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)
    return str(exc).split(", on ", 1)[0] or type(exc).__name__


Action = Literal["renew", "login", "warn", "none"]


class VaultSession:
    """Holds the token of ``client`` (an hvac client, or anything with a ``token`` attribute).

    ``async with session:`` logs in (a refused login or bad settings fail startup; an
    unreachable Vault is retried in the background, calls failing closed meanwhile) and runs
    the renewal loop until exit.
    """

    def __init__(
        self,
        client: Any,
        method: LoginMethod,
        api: AuthApi,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        retry_min: float = 1.0,
        retry_max: float = 30.0,
        relogin_interval: float = 1.0,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self.client = client
        self.method = method
        self._api = api
        self._clock = clock
        self._sleep = sleep
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._relogin_interval = relogin_interval
        self._limiter = limiter
        self._lock = anyio.Lock()
        self._lease: TokenLease | None = None
        #: The TTL a login granted: a renewal granting less was capped by the max TTL.
        self._full_ttl = 0.0
        self._expires_at = math.inf
        self._next_at = math.inf
        self._action: Action = "none"
        self._failures = 0
        self._last_login = -math.inf
        self._background: AsyncExitStack | None = None
        self._reported_invalid = False
        self.logins = 0
        self.renewals = 0

    @property
    def next_due(self) -> float:
        """When (``clock`` time) the next renewal or login is due; ``inf``: never."""
        return self._next_at

    @property
    def next_action(self) -> Action:
        return self._action

    @property
    def expires_at(self) -> float:
        """When the current token expires (``clock`` time); ``inf``: never or unknown."""
        return self._expires_at

    async def start(self) -> None:
        """The first login. Refusals and bad settings raise; an unreachable Vault is logged and
        the login retried by ``tick()``."""
        async with self._lock:
            # A static token serves even if its lookup must wait for Vault: calls then fail
            # closed (503) as Vault is down, rather than being sent without a token.
            self.client.token = self.method.known_token() or ""
            try:
                await self._login()
            except KeyServiceUnavailable as exc:
                _log.warning(
                    "vault_login_deferred: method %s: %s; retrying", self.method.name, exc.message
                )
                self._retry_later("login")

    async def tick(self) -> float:
        """Do what is due now (renew or log in again); the ``clock`` time of the next step."""
        async with self._lock:
            if self._clock() >= self._next_at:
                await self._step()
            return self._next_at

    async def run(self) -> None:
        """Renew and log in again, forever (the background task of ``async with``).

        A step that fails unexpectedly is logged and retried: a crash here would end the
        gateway's lifespan, and Transit calls still recover a token themselves."""
        while True:
            try:
                due = await self.tick()
            except Exception:
                _log.exception("vault_renewal_failed: unexpected error; retrying")
                self._retry_later(self._action)
                due = self._next_at
            await self._sleep(max(0.0, min(due - self._clock(), 3600.0)))

    async def recover(self, failed_token: str) -> bool:
        """After a 403 on a call made with ``failed_token``: whether a retry may succeed.

        True if the token has changed since, or if it no longer works (expired, revoked) and a
        fresh login succeeded. False for a refusal by policy (the token still looks itself up),
        for a static token, and within ``relogin_interval`` of the last login (no storms).
        """
        async with self._lock:
            current = self.client.token
            if current and current != failed_token:
                return True
            if current:
                try:
                    await self._in_thread(self._api.lookup_self, current)
                    return False  # the token is fine: a policy refused the call
                except KeyServiceError:
                    pass  # expired or revoked
                except BlindstoreError:
                    return False
            if not self.method.can_login:
                if not self._reported_invalid:  # once, not at every refused request
                    self._reported_invalid = True
                    _log.error(
                        "vault_token_invalid: the static Vault token expired or was revoked; "
                        "give a new one (vault.token/token_file) and restart"
                    )
                return False
            if self._clock() - self._last_login < self._relogin_interval:
                return False
            try:
                await self._login()
            except ConfigError as exc:
                raise KeyServiceUnavailable(exc.message) from exc
            except KeyServiceError as exc:
                _log.error("vault_login_failed: %s", exc.message)
                self._retry_later("login")
                raise
            return True

    async def __aenter__(self) -> VaultSession:
        await self.start()
        stack = AsyncExitStack()
        await start_background(stack, self.run)
        self._background = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        background, self._background = self._background, None
        if background is not None:
            # Not handing the caller's exception to the task group (it would wrap it).
            await background.aclose()

    async def _step(self) -> None:
        action = self._action
        if action == "renew":
            await self._renew()
        elif action == "login":
            try:
                await self._login()
            except (KeyServiceUnavailable, KeyServiceError, ConfigError) as exc:
                _log.error("vault_login_failed: %s", exc.message)
                if self.method.can_login or isinstance(exc, KeyServiceUnavailable):
                    self._retry_later("login")
                else:
                    self._schedule("none", math.inf)  # a refused static token stays refused
        elif action == "warn":
            left = max(0.0, self._expires_at - self._clock())
            _log.error(
                "vault_token_expiring: the static Vault token expires in %d s and cannot be "
                "renewed further; give a new one (vault.token/token_file) and restart, or use "
                "AppRole/Kubernetes auth",
                round(left),
            )
            self._schedule("none", math.inf)

    async def _login(self) -> None:
        lease = await self._in_thread(self.method.obtain, self._api)
        now = self._clock()
        self.client.token = lease.token
        self._lease = lease
        self._full_ttl = lease.ttl
        self._last_login = now
        self._failures = 0
        self.logins += 1
        _log.info(
            "vault_login: method %s, mount %s, ttl %g s, renewable %s",
            self.method.name,
            self.method.mount,
            lease.ttl,
            lease.renewable,
        )
        self._plan(lease, now, capped=False)

    async def _renew(self) -> None:
        lease = self._lease
        assert lease is not None
        increment = max(1, int(self._full_ttl))
        try:
            renewed = await self._in_thread(self._api.renew_self, lease.token, increment)
        except KeyServiceUnavailable as exc:
            _log.warning("vault_renew_failed: %s; retrying", exc.message)
            self._retry_later("renew")
            return
        except (KeyServiceError, ConfigError) as exc:
            # Refused (403): expired, revoked, or not renewable any more.
            _log.warning("vault_renew_refused: %s", exc.message)
            if self.method.can_login:
                self._schedule("login", self._clock())
                await self._step()
            else:
                _log.error(
                    "vault_token_invalid: the static Vault token can no longer be renewed; "
                    "give a new one (vault.token/token_file) and restart"
                )
                self._schedule("none", math.inf)
            return
        now = self._clock()
        self._failures = 0
        self.renewals += 1
        if renewed.token != lease.token:
            self.client.token = renewed.token
        self._lease = renewed
        capped = renewed.ttl < self._full_ttl
        _log.info(
            "vault_token_renewed: method %s, ttl %g s%s",
            self.method.name,
            renewed.ttl,
            " (capped by its max TTL)" if capped else "",
        )
        self._plan(renewed, now, capped=capped)

    def _plan(self, lease: TokenLease, now: float, *, capped: bool) -> None:
        """What to do next with a token just obtained or renewed at ``now``."""
        if lease.ttl <= 0:
            self._expires_at = math.inf
            self._schedule("none", math.inf)
            return
        self._expires_at = now + lease.ttl
        due = now + lease.ttl * RENEW_FRACTION
        if lease.renewable and not capped:
            self._schedule("renew", due)
        elif self.method.can_login:
            # At its max TTL (or never renewable): a fresh login before it expires.
            self._schedule("login", due)
        else:
            self._schedule("warn", due)

    def _retry_later(self, action: Action) -> None:
        """Back off (exponentially, up to ``retry_max``) but renew before the token expires."""
        now = self._clock()
        delay = min(self._retry_max, self._retry_min * 2**self._failures)
        self._failures += 1
        left = self._expires_at - now
        if action == "renew" and left > 2 * self._retry_min:
            delay = min(delay, left / 2)
        elif action == "renew":
            action = "login" if self.method.can_login else "renew"
        self._schedule(action, now + delay)

    def _schedule(self, action: Action, at: float) -> None:
        self._action = action
        self._next_at = at

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)
