"""VaultSession: logins, renewal at 2/3 of the TTL, re-login, recovery — on a manual clock.

``FakeVault`` is a state-holding stand-in for the auth endpoints (tokens with TTL and max TTL,
AppRole secret ids, single-use wrapping tokens, Kubernetes JWTs); it raises what ``HvacAuthApi``
raises after translation. The real endpoints are exercised in tests/integration/test_vault_auth.py.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from blindstore.errors import ConfigError, KeyServiceError, KeyServiceUnavailable
from blindstore.keys.vaultauth import (
    AppRoleLogin,
    KubernetesLogin,
    LoginMethod,
    Secret,
    StaticToken,
    TokenLease,
    VaultSession,
)
from tests.unit.keys.fakes import ManualClock

pytestmark = pytest.mark.anyio

ROLE_ID = "role-id-1"
SECRET_ID = "secret-id-1"
JWT = "jwt-of-the-gateway"


@dataclass
class _Token:
    expires_at: float
    max_expires_at: float
    renewable: bool


@dataclass
class FakeVault:
    """Auth endpoints with state, on ``clock``; ``down`` makes every call unreachable."""

    clock: ManualClock
    ttl: float = 30.0
    max_ttl: float = 90.0
    renewable: bool = True
    down: bool = False
    #: The next renewal answers something unparseable (a bug on either side).
    garble_next_renewal: bool = False
    tokens: dict[str, _Token] = field(default_factory=dict)
    wrapping: dict[str, str] = field(default_factory=lambda: {"wrap-1": SECRET_ID})
    secret_ids: set[str] = field(default_factory=lambda: {SECRET_ID})
    jwts: set[str] = field(default_factory=lambda: {JWT})
    calls: list[str] = field(default_factory=list)
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def issue(self, ttl: float | None = None, *, renewable: bool | None = None) -> str:
        token = f"tok-{next(self._serial)}"
        ttl = self.ttl if ttl is None else ttl
        now = self.clock()
        self.tokens[token] = _Token(
            now + ttl if ttl else math.inf,
            now + self.max_ttl if ttl else math.inf,
            self.renewable if renewable is None else renewable,
        )
        return token

    def revoke(self, token: str) -> None:
        del self.tokens[token]

    def login(self, method: str, mount: str, credentials: Mapping[str, str]) -> TokenLease:
        self._enter(f"login {method} {mount}")
        if method == "approle" and (
            credentials["role_id"] != ROLE_ID or credentials["secret_id"] not in self.secret_ids
        ):
            raise KeyServiceError(f"Vault login (method approle, mount {mount}): refused")
        if method == "kubernetes" and credentials["jwt"] not in self.jwts:
            raise KeyServiceError(f"Vault login (method kubernetes, mount {mount}): refused")
        token = self.issue()
        return TokenLease(token, self.ttl, self.renewable)

    def unwrap(self, wrapping_token: str) -> Mapping[str, Any]:
        self._enter("unwrap")
        secret_id = self.wrapping.pop(wrapping_token, None)
        if secret_id is None:
            raise KeyServiceError("wrapping token is not valid or does not exist")
        return {"secret_id": secret_id}

    def lookup_self(self, token: str) -> TokenLease:
        self._enter("lookup-self")
        state = self._valid(token)
        left = state.expires_at - self.clock()
        return TokenLease(token, 0 if math.isinf(left) else left, state.renewable)

    def renew_self(self, token: str, increment: int) -> TokenLease:
        self._enter("renew-self")
        if self.garble_next_renewal:
            self.garble_next_renewal = False
            raise ValueError("malformed answer")
        state = self._valid(token)
        if not state.renewable:
            raise KeyServiceError("lease is not renewable")
        now = self.clock()
        state.expires_at = min(now + increment, state.max_expires_at)
        return TokenLease(token, state.expires_at - now, state.renewable)

    def _enter(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise KeyServiceUnavailable(f"{call}: Vault unreachable")

    def _valid(self, token: str) -> _Token:
        state = self.tokens.get(token)
        if state is None or state.expires_at <= self.clock():
            self.tokens.pop(token, None)
            raise KeyServiceError("permission denied")
        return state


@dataclass
class TokenHolder:
    """What the session needs of an hvac client: a settable ``token``."""

    token: str = ""


def _events(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The event names (the text before ``:``) of the warnings and errors logged."""
    return [
        record.getMessage().split(":", 1)[0]
        for record in caplog.records
        if record.levelno >= logging.WARNING
    ]


def _approle() -> AppRoleLogin:
    return AppRoleLogin(Secret("role id", ROLE_ID), secret_id=Secret("secret id", SECRET_ID))


def _session(
    vault: FakeVault, method: LoginMethod | None = None, **options: float
) -> tuple[VaultSession, TokenHolder]:
    holder = TokenHolder()
    session = VaultSession(holder, method or _approle(), vault, clock=vault.clock, **options)  # type: ignore[arg-type]
    return session, holder


async def test_approle_login_gives_the_client_its_token() -> None:
    vault = FakeVault(ManualClock())
    session, holder = _session(vault)
    await session.start()
    assert holder.token in vault.tokens
    assert vault.calls == ["login approle approle"]


async def test_token_is_renewed_at_two_thirds_of_its_ttl() -> None:
    clock = ManualClock()
    vault = FakeVault(clock, ttl=30, max_ttl=300)
    session, holder = _session(vault)
    await session.start()
    token = holder.token
    assert (session.next_action, session.next_due) == ("renew", clock() + 20)
    clock.advance(19)
    await session.tick()
    assert session.renewals == 0
    clock.advance(1)
    await session.tick()
    assert session.renewals == 1
    assert holder.token == token  # renewal keeps the token
    assert vault.tokens[token].expires_at == clock() + 30
    assert session.next_due == clock() + 20


async def test_token_capped_by_its_max_ttl_is_replaced_by_a_fresh_login() -> None:
    clock = ManualClock()
    vault = FakeVault(clock, ttl=30, max_ttl=45)
    session, holder = _session(vault)
    await session.start()
    first = holder.token
    clock.advance(20)
    await session.tick()  # renewal granted 25 s, not 30: capped by the max TTL
    assert session.next_action == "login"
    clock.advance(session.next_due - clock())
    await session.tick()
    assert session.logins == 2
    assert holder.token != first
    assert clock() < vault.tokens[first].expires_at  # replaced before it expired


async def test_refused_renewal_logs_in_again_at_once() -> None:
    clock = ManualClock()
    vault = FakeVault(clock)
    session, holder = _session(vault)
    await session.start()
    vault.revoke(holder.token)
    clock.advance(20)
    await session.tick()
    assert holder.token in vault.tokens
    assert session.logins == 2
    assert session.next_action == "renew"


async def test_unreachable_vault_delays_the_renewal_but_not_past_expiry() -> None:
    clock = ManualClock()
    vault = FakeVault(clock, ttl=30, max_ttl=300)
    session, holder = _session(vault, retry_min=1.0, retry_max=60.0)
    await session.start()
    clock.advance(20)
    vault.down = True
    for _ in range(4):
        await session.tick()
        assert session.next_due < session.expires_at
        clock.advance(session.next_due - clock())
    vault.down = False
    await session.tick()
    assert session.renewals == 1
    assert holder.token in vault.tokens


async def test_unreachable_vault_at_startup_is_retried_in_the_background(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    vault = FakeVault(clock, down=True)
    session, holder = _session(vault, retry_min=1.0)
    await session.start()
    assert holder.token == ""
    assert session.next_action == "login"
    assert _events(caplog) == ["vault_login_deferred"]
    vault.down = False
    clock.advance(session.next_due - clock())
    await session.tick()
    assert holder.token in vault.tokens


async def test_refused_login_at_startup_names_method_and_mount_but_no_secret() -> None:
    vault = FakeVault(ManualClock(), secret_ids=set())
    session, _ = _session(vault)
    with pytest.raises(KeyServiceError, match=r"method approle, mount approle") as raised:
        await session.start()
    assert SECRET_ID not in str(raised.value)


async def test_static_token_is_renewed_then_reported_at_its_max_ttl(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    vault = FakeVault(clock, ttl=30, max_ttl=45)
    token = vault.issue()
    session, holder = _session(vault, StaticToken(Secret("Vault token", token)))
    await session.start()
    assert holder.token == token
    clock.advance(20)
    await session.tick()  # capped: it cannot log in, so it warns before expiry
    assert session.next_action == "warn"
    clock.advance(session.next_due - clock())
    caplog.clear()
    await session.tick()
    assert _events(caplog) == ["vault_token_expiring"]
    assert token not in caplog.text
    assert session.next_due == math.inf
    assert session.logins == 1


async def test_static_token_serves_while_its_lookup_waits_for_vault() -> None:
    clock = ManualClock()
    vault = FakeVault(clock, down=True)
    token = vault.issue()
    session, holder = _session(vault, StaticToken(Secret("Vault token", token)))
    await session.start()
    assert holder.token == token
    assert session.next_action == "login"
    vault.down = False
    clock.advance(session.next_due - clock())
    await session.tick()
    assert session.next_action == "renew"


async def test_token_without_ttl_is_left_alone() -> None:
    clock = ManualClock()
    vault = FakeVault(clock)
    root = vault.issue(ttl=0)
    session, _ = _session(vault, StaticToken(Secret("Vault token", root)))
    await session.start()
    assert (session.next_action, session.next_due) == ("none", math.inf)


async def test_wrapped_secret_id_is_unwrapped_once_and_kept_for_later_logins() -> None:
    clock = ManualClock()
    vault = FakeVault(clock, ttl=30, renewable=False)
    method = AppRoleLogin(
        Secret("role id", ROLE_ID), wrapped_secret_id=Secret("wrapped secret id", "wrap-1")
    )
    session, holder = _session(vault, method)
    await session.start()
    clock.advance(20)
    await session.tick()  # not renewable: a second login, with the same unwrapped secret id
    assert session.logins == 2
    assert vault.calls.count("unwrap") == 1
    assert holder.token in vault.tokens


async def test_a_used_wrapping_token_is_refused_with_a_clear_error() -> None:
    vault = FakeVault(ManualClock())
    vault.wrapping.clear()
    method = AppRoleLogin(
        Secret("role id", ROLE_ID), wrapped_secret_id=Secret("wrapped secret id", "wrap-1")
    )
    session, _ = _session(vault, method)
    with pytest.raises(KeyServiceError, match="already used, has expired") as raised:
        await session.start()
    assert "wrap-1" not in str(raised.value)


async def test_kubernetes_jwt_file_is_read_again_at_each_login(tmp_path: Path) -> None:
    clock = ManualClock()
    vault = FakeVault(clock, ttl=30, renewable=False, jwts={"jwt-a", "jwt-b"})
    jwt_file = tmp_path / "token"
    jwt_file.write_text("jwt-a\n")
    method = KubernetesLogin("gw", Secret("Kubernetes service-account token", file=jwt_file))
    session, _ = _session(vault, method)
    await session.start()
    vault.jwts.discard("jwt-a")  # the kubelet rotated the projected token
    jwt_file.write_text("jwt-b\n")
    clock.advance(20)
    await session.tick()
    assert session.logins == 2


async def test_missing_kubernetes_jwt_file_is_a_config_error(tmp_path: Path) -> None:
    method = KubernetesLogin("gw", Secret("Kubernetes service-account token", file=tmp_path / "x"))
    session, _ = _session(FakeVault(ManualClock()), method)
    with pytest.raises(ConfigError, match=r"Kubernetes service-account token file .*/x"):
        await session.start()


def test_empty_secret_file_is_a_config_error(tmp_path: Path) -> None:
    empty = tmp_path / "secret-id"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"secret id file .* is empty"):
        Secret("AppRole secret id", file=empty).read()


def test_approle_needs_exactly_one_kind_of_secret_id() -> None:
    with pytest.raises(ConfigError):
        AppRoleLogin(Secret("role id", ROLE_ID))
    with pytest.raises(ConfigError):
        AppRoleLogin(
            Secret("role id", ROLE_ID),
            secret_id=Secret("secret id", SECRET_ID),
            wrapped_secret_id=Secret("wrapped", "wrap-1"),
        )


async def test_recover_after_expiry_logs_in_again() -> None:
    clock = ManualClock()
    vault = FakeVault(clock)
    session, holder = _session(vault, relogin_interval=5.0)
    await session.start()
    expired = holder.token
    vault.revoke(expired)
    clock.advance(6)
    assert await session.recover(expired)
    assert holder.token != expired
    assert holder.token in vault.tokens


async def test_recover_with_a_token_already_replaced_retries_without_a_call() -> None:
    vault = FakeVault(ManualClock())
    session, _ = _session(vault)
    await session.start()
    calls = len(vault.calls)
    assert await session.recover("an-older-token")
    assert len(vault.calls) == calls


async def test_recover_refuses_a_retry_when_a_policy_denied_a_valid_token() -> None:
    clock = ManualClock()
    vault = FakeVault(clock)
    session, holder = _session(vault)
    await session.start()
    clock.advance(10)
    assert not await session.recover(holder.token)
    assert session.logins == 1


async def test_recover_does_not_log_in_again_right_after_a_login() -> None:
    clock = ManualClock()
    vault = FakeVault(clock)
    session, holder = _session(vault, relogin_interval=5.0)
    await session.start()
    vault.revoke(holder.token)
    assert not await session.recover(holder.token)
    assert session.logins == 1


async def test_recover_of_a_revoked_static_token_reports_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vault = FakeVault(ManualClock())
    token = vault.issue()
    session, _ = _session(vault, StaticToken(Secret("Vault token", token)))
    await session.start()
    vault.revoke(token)
    caplog.clear()
    assert not await session.recover(token)
    assert not await session.recover(token)
    assert _events(caplog) == ["vault_token_invalid"]  # reported once, not per request


async def test_recover_while_vault_is_down_fails_closed() -> None:
    clock = ManualClock()
    vault = FakeVault(clock, down=True)
    session, _ = _session(vault)
    await session.start()  # deferred
    with pytest.raises(KeyServiceUnavailable):
        await session.recover("")


async def test_background_loop_renews_on_the_injected_clock() -> None:
    clock = ManualClock()
    vault = FakeVault(clock, ttl=30, max_ttl=300)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)
        if len(slept) == 4:
            raise anyio.get_cancelled_exc_class()
        await anyio.lowlevel.checkpoint()

    holder = TokenHolder()
    session = VaultSession(holder, _approle(), vault, clock=clock, sleep=sleep)
    await session.start()
    with pytest.raises(anyio.get_cancelled_exc_class()):
        await session.run()
    assert slept == [20, 20, 20, 20]
    assert session.renewals == 3


async def test_background_loop_survives_an_unexpected_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    vault = FakeVault(clock, ttl=30, max_ttl=300, garble_next_renewal=True)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)
        if len(slept) == 3:
            raise anyio.get_cancelled_exc_class()
        await anyio.lowlevel.checkpoint()

    session = VaultSession(TokenHolder(), _approle(), vault, clock=clock, sleep=sleep)
    await session.start()
    with pytest.raises(anyio.get_cancelled_exc_class()):
        await session.run()
    assert _events(caplog) == ["vault_renewal_failed"]
    assert session.renewals == 1  # retried after 1 s, then renewed
    assert slept[:2] == [20, 1]
