"""Transit client pieces that need no server: token resolution, error translation, settings."""

from __future__ import annotations

import socket
from pathlib import Path

import hvac.exceptions
import pytest
import requests
import stamina

from blindstore.errors import ConfigError, KeyServiceError, KeyServiceUnavailable
from blindstore.keys.transit import TransitKeyWrapper, _map_errors, resolve_token

pytestmark = pytest.mark.anyio


def test_an_explicit_token_wins(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    environ = {"VAULT_TOKEN": "from-env"}
    assert resolve_token("explicit", token_file, environ) == "explicit"


def test_a_token_file_wins_over_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  from-file\n")
    assert resolve_token(None, token_file, {"VAULT_TOKEN": "from-env"}) == "from-file"


@pytest.mark.parametrize(
    ("environ", "token"),
    [({"VAULT_TOKEN": "v", "BAO_TOKEN": "b"}, "v"), ({"BAO_TOKEN": "b"}, "b")],
)
def test_the_environment_gives_the_token_last(environ: dict[str, str], token: str) -> None:
    assert resolve_token(None, None, environ) == token


def test_no_token_anywhere_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="VAULT_TOKEN"):
        resolve_token(None, None, {})


def test_an_empty_or_missing_token_file_is_a_config_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        resolve_token(None, empty, {"VAULT_TOKEN": "ignored"})
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_token(None, tmp_path / "missing", {})


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (hvac.exceptions.InvalidRequest("cipher: message authentication failed"), KeyServiceError),
        (hvac.exceptions.Forbidden("permission denied"), KeyServiceError),
        (hvac.exceptions.Unauthorized(), KeyServiceError),
        (hvac.exceptions.InvalidPath(), KeyServiceError),
        (hvac.exceptions.VaultDown("sealed"), KeyServiceUnavailable),
        (hvac.exceptions.InternalServerError(), KeyServiceUnavailable),
        (hvac.exceptions.BadGateway(), KeyServiceUnavailable),
        (hvac.exceptions.RateLimitExceeded(), KeyServiceUnavailable),
        (hvac.exceptions.UnexpectedError(), KeyServiceUnavailable),
        (requests.exceptions.ConnectionError(), KeyServiceUnavailable),
        (requests.exceptions.ReadTimeout(), KeyServiceUnavailable),
        (requests.exceptions.ConnectTimeout(), KeyServiceUnavailable),
    ],
)
def test_foreign_errors_are_translated_once(raised: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as translated, _map_errors():
        raise raised
    assert translated.value.__cause__ is raised


def test_a_forbidden_answer_is_a_refusal_not_an_outage() -> None:
    with pytest.raises(KeyServiceError), _map_errors():
        raise hvac.exceptions.Forbidden("permission denied")


async def test_an_unreachable_server_is_unavailable_after_the_retries() -> None:
    with socket.socket() as reserved:  # bound, never listening: connections are refused
        reserved.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{reserved.getsockname()[1]}"
        wrapper = TransitKeyWrapper(url=url, token="t", retry_attempts=3)
        with stamina.set_testing(True, attempts=3), pytest.raises(KeyServiceUnavailable):
            await wrapper.new_data_key("hgw-t-any", bytes(16))
        await wrapper.close()
    assert wrapper.vault_calls == 3
    assert wrapper.stats.failed_calls == 3


@pytest.mark.parametrize("mount", ["", "../sys", "transit/../sys", "a b"])
def test_an_unsafe_mount_is_refused(mount: str) -> None:
    with pytest.raises(ValueError, match="mount"):
        TransitKeyWrapper(url="http://127.0.0.1:1", token="t", mount=mount)


@pytest.mark.parametrize("key_name", ["", "../sys/seal", "a/b", "-x", "a" * 129])
async def test_an_unsafe_key_name_is_refused_before_any_call(key_name: str) -> None:
    wrapper = TransitKeyWrapper(url="http://127.0.0.1:1", token="t")
    with pytest.raises(ValueError, match="key name"):
        await wrapper.new_data_key(key_name, bytes(16))
    await wrapper.close()
    assert wrapper.vault_calls == 0


def test_either_a_client_factory_or_url_and_token_is_required() -> None:
    with pytest.raises(ValueError, match="client_factory"):
        TransitKeyWrapper()
    with pytest.raises(ValueError, match="not both"):
        TransitKeyWrapper(lambda: None, url="http://127.0.0.1:1", token="t")
