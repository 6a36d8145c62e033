"""vault.auth settings: each method's required fields, conflicts refused, secrets never echoed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from blindstore import runtime
from blindstore.config import KUBERNETES_JWT_FILE, Settings, VaultSettings, load
from blindstore.errors import ConfigError
from blindstore.keys.vaultauth import AppRoleLogin, KubernetesLogin, StaticToken


def _load(tmp_path: Path, vault: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "blindstore.yaml"
    path.write_text(f"vault:\n{vault}", encoding="utf-8")
    return load(path, environ or {})


def test_token_settings_without_auth_keep_working(tmp_path: Path) -> None:
    settings = _load(tmp_path, "  token_file: /run/secrets/t\n")
    assert settings.vault.auth.method == "token"
    assert settings.vault.token_file == Path("/run/secrets/t")


def test_vault_token_variable_still_supplies_a_static_token(tmp_path: Path) -> None:
    settings = _load(tmp_path, "  addr: https://bao:8200\n", {"VAULT_TOKEN": "from-env"})
    assert settings.vault.token is not None
    assert settings.vault.token.get_secret_value() == "from-env"


def test_vault_token_variable_is_ignored_by_approle(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        "  auth: {method: approle, role_id_file: /r, secret_id_file: /s}\n",
        {"VAULT_TOKEN": "ambient"},
    )
    assert settings.vault.token is None


def test_approle_defaults_to_the_approle_mount() -> None:
    vault = VaultSettings.model_validate(
        {"auth": {"method": "approle", "role_id": "r", "wrapped_secret_id_file": "/w"}}
    )
    assert vault.auth.method == "approle"
    assert vault.auth.mount == "approle"


def test_kubernetes_defaults_to_the_pod_service_account_token() -> None:
    vault = VaultSettings.model_validate({"auth": {"method": "kubernetes", "role": "gw"}})
    assert vault.auth.method == "kubernetes"
    assert (vault.auth.mount, vault.auth.jwt_file) == ("kubernetes", KUBERNETES_JWT_FILE)


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"method": "approle", "secret_id": "s"}, "one of role_id, role_id_file is required"),
        ({"method": "approle", "role_id": "r"}, "one of secret_id, secret_id_file"),
        (
            {"method": "approle", "role_id": "r", "secret_id": "s", "wrapped_secret_id": "w"},
            "give only one of secret_id, wrapped_secret_id",
        ),
        (
            {"method": "approle", "role_id": "r", "role_id_file": "/r", "secret_id": "s"},
            "give only one of role_id, role_id_file",
        ),
        ({"method": "kubernetes"}, r"auth\.kubernetes\.role: Field required"),
        ({"method": "kubernetes", "role": "gw", "secret_id": "s"}, "Extra inputs"),
        ({"method": "approle", "role": "gw", "role_id": "r", "secret_id": "s"}, "Extra inputs"),
        ({"method": "ldap"}, "does not match any of the expected tags"),
        ({"method": "approle", "mount": "../x", "role_id": "r", "secret_id": "s"}, "mount"),
    ],
)
def test_incomplete_or_conflicting_auth_is_refused(
    tmp_path: Path, auth: dict[str, Any], message: str
) -> None:
    inline = ", ".join(f"{key}: {value!r}" for key, value in auth.items())
    with pytest.raises(ConfigError, match=message) as raised:
        _load(tmp_path, f"  auth: {{{inline}}}\n")
    assert "input_value" not in str(raised.value)  # pydantic's echo of the input is dropped


def test_static_token_cannot_be_combined_with_a_login_method(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"vault\.token cannot be combined with"):
        _load(tmp_path, "  token: hvs.secret\n  auth: {method: kubernetes, role: gw}\n")


def test_token_and_token_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give only one of token, token_file"):
        _load(tmp_path, "  token: hvs.secret\n  token_file: /t\n")


def test_client_certificate_needs_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"client_cert and vault\.client_key go together"):
        _load(tmp_path, "  token: t\n  client_cert: /c.pem\n")


def test_invalid_settings_never_echo_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(
            tmp_path,
            "  token: hvs.VERY-SECRET\n  auth: {method: approle, role_id: ROLE-SECRET, "
            "secret_id: SECRET-ID}\n",
        )
    for secret in ("VERY-SECRET", "ROLE-SECRET", "SECRET-ID"):
        assert secret not in str(raised.value)


def test_login_method_follows_the_settings(tmp_path: Path) -> None:
    def method(vault: dict[str, Any]) -> object:
        return runtime.login_method(VaultSettings.model_validate(vault))

    assert isinstance(method({"token": "t"}), StaticToken)
    approle = method(
        {"auth": {"method": "approle", "role_id": "r", "wrapped_secret_id_file": str(tmp_path)}}
    )
    assert isinstance(approle, AppRoleLogin)
    assert approle.secret_id is None
    assert approle.wrapped_secret_id is not None
    kubernetes = method({"auth": {"method": "kubernetes", "role": "gw", "mount": "k8s/prod"}})
    assert isinstance(kubernetes, KubernetesLogin)
    assert (kubernetes.mount, kubernetes.jwt.file) == ("k8s/prod", KUBERNETES_JWT_FILE)


def test_missing_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"vault": {"token": "t", "ca_cert": str(tmp_path / "missing.pem")}}
    )
    with pytest.raises(ConfigError, match=r"vault.ca_cert: .*missing.pem"):
        runtime.vault_session(settings)


def test_example_deployment_settings_are_valid() -> None:
    example = Path(__file__).parents[3] / "deploy" / "blindstore.example.yaml"
    settings = load(example, {"VAULT_TOKEN": "ignored with approle"})
    assert settings.vault.auth.method == "approle"
    assert settings.vault.token is None
