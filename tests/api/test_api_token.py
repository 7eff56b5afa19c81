"""The API token: made once, kept in a real Secret Service next to (not over) the Hugging Face token."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from keyring.backends import fail

from model_store.api_token import ACCOUNT, TOKEN_ENV, ApiTokenStore, api_token_from_env_or, token_from_env
from model_store.credentials import ACCOUNT as HF_ACCOUNT
from model_store.credentials import SERVICE, TokenStore
from model_store.settings import Settings, SettingsStore


def lookup(account: str) -> str:
    return subprocess.run(["secret-tool", "lookup", "service", SERVICE, "username", account],
                          capture_output=True, text=True, env=os.environ).stdout


def test_the_token_is_made_once_and_kept_in_the_keyring_under_its_own_account(secret_service) -> None:
    TokenStore(secret_service).set("hf_SecretValue123")
    store = ApiTokenStore(TokenStore(secret_service, account=ACCOUNT))
    token = store.token()
    assert len(token) >= 40 and store.persistent
    assert store.token() == token  # the same each time
    assert ApiTokenStore(TokenStore(secret_service, account=ACCOUNT)).token() == token  # and after a restart
    assert lookup(ACCOUNT) == token
    assert lookup(HF_ACCOUNT) == "hf_SecretValue123"  # the Hugging Face token keeps its own entry
    new = store.regenerate()
    assert new != token and lookup(ACCOUNT) == new and store.token() == new
    for path in Path(os.environ["HEARTH_HOME"]).rglob("*") if Path(os.environ["HEARTH_HOME"]).exists() else []:
        if path.is_file():
            assert new.encode() not in path.read_bytes(), path


def test_the_environment_overrides_the_keyring() -> None:
    store = ApiTokenStore(TokenStore(fail.Keyring(), account=ACCOUNT))
    assert api_token_from_env_or(store, {TOKEN_ENV: " from-env "}) == "from-env"
    assert token_from_env({TOKEN_ENV: "  "}) is None and token_from_env({}) is None
    generated = api_token_from_env_or(store, {})
    assert generated and generated == store.token()  # kept in memory for this run
    assert not store.persistent and "kept only until Hearth quits" in store.problem


def test_the_api_settings_round_trip_and_default_to_off_on_loopback(tmp_path: Path) -> None:
    defaults = Settings()
    assert (defaults.api_server_enabled, defaults.api_host, defaults.api_port) == (False, "127.0.0.1", 8765)
    store = SettingsStore(tmp_path / "settings.json")
    store.save(Settings(api_server_enabled=True, api_host="0.0.0.0", api_port=9000))
    loaded = store.load()
    assert (loaded.api_server_enabled, loaded.api_host, loaded.api_port) == (True, "0.0.0.0", 9000)
    (tmp_path / "settings.json").write_text('{"version": 2, "api_port": "8080", "api_server_enabled": 1}')
    damaged = store.load()
    assert (damaged.api_port, damaged.api_server_enabled) == (8765, False)
