"""The access token lives in a real Secret Service (gnome-keyring on a private D-Bus), or in memory only."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from keyring.backends import fail

from model_store.credentials import ACCOUNT, SERVICE, TokenStore


def test_the_token_is_kept_in_the_secret_service_and_nowhere_else(secret_service, tmp_path: Path) -> None:
    store = TokenStore(secret_service)
    assert store.persistent and store.get() is None
    store.set("  hf_SecretValue123  ")
    assert TokenStore(secret_service).get() == "hf_SecretValue123"  # a later start finds it
    found = subprocess.run(["secret-tool", "lookup", "service", SERVICE, "username", ACCOUNT],
                           capture_output=True, text=True, env=os.environ).stdout
    assert found == "hf_SecretValue123"
    hearth_home = Path(os.environ["HEARTH_HOME"])
    for folder in (hearth_home, Path.home() / ".cache" / "huggingface"):
        for path in folder.rglob("*") if folder.exists() else []:
            if path.is_file():
                assert b"hf_SecretValue123" not in path.read_bytes(), path
    store.clear()
    assert TokenStore(secret_service).get() is None


def test_without_a_keyring_the_token_stays_in_memory_and_the_app_says_so() -> None:
    store = TokenStore(fail.Keyring())
    assert not store.persistent
    assert "kept only until Hearth quits" in store.problem
    store.set("hf_abc")
    assert store.get() == "hf_abc"
    assert TokenStore(fail.Keyring()).get() is None  # not written anywhere


def test_a_keyring_that_breaks_falls_back_to_memory() -> None:
    class Broken:
        def get_password(self, *_):
            raise RuntimeError("locked")

        def set_password(self, *_):
            raise RuntimeError("locked")

    store = TokenStore(Broken())
    store.set("hf_xyz")
    assert store.get() == "hf_xyz" and "refused" in store.problem
