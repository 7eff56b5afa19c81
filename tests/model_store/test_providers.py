"""Saved providers: a JSON file that never holds a key, and keys in a real Secret Service."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from keyring.backends import fail

from inference.remote_engine import ASSUMED_CONTEXT
from model_store.credentials import SERVICE, TokenStore
from model_store.errors import ProviderNotFoundError
from model_store.providers import (
    Provider,
    ProviderStore,
    base_url_problem,
    key_account,
    new_provider_id,
)

KEY = "sk-provider-Secret-9137"


@pytest.fixture
def providers_file(tmp_path: Path) -> Path:
    return Path(os.environ["HEARTH_HOME"]) / "config" / "providers.json"


def store_with(backend, providers_file: Path) -> ProviderStore:
    return ProviderStore(providers_file, keys=lambda pid: TokenStore(backend, account=key_account(pid)))


def test_a_provider_and_its_key_survive_a_restart_and_the_key_is_only_in_the_keyring(
    secret_service, providers_file: Path, tmp_path: Path
) -> None:
    store = store_with(secret_service, providers_file)
    lab = Provider(id=new_provider_id(), name=" Lab box ", base_url=" http://gpu-box:8000/v1/ ", model="qwen3-8b")
    store.save(lab, KEY)

    later = store_with(secret_service, providers_file)  # a later start
    saved = later.get(lab.id)
    assert saved == Provider(id=lab.id, name="Lab box", base_url="http://gpu-box:8000/v1", model="qwen3-8b")
    assert later.list() == [saved]
    assert later.api_key(lab.id) == KEY
    target = later.target(lab.id)
    assert (target.base_url, target.model, target.api_key, target.label) == \
        ("http://gpu-box:8000/v1", "qwen3-8b", KEY, "Lab box")
    assert KEY not in repr(target)

    found = subprocess.run(["secret-tool", "lookup", "service", SERVICE, "username", key_account(lab.id)],
                           capture_output=True, text=True, env=os.environ).stdout
    assert found == KEY
    data = json.loads(providers_file.read_text(encoding="utf-8"))
    assert data["version"] == 1 and data["providers"][0]["id"] == lab.id
    for folder in (Path(os.environ["HEARTH_HOME"]), providers_file.parent):
        for path in folder.rglob("*"):
            if path.is_file():
                assert KEY.encode() not in path.read_bytes(), path


def test_editing_without_a_key_keeps_it_and_an_empty_key_forgets_it(secret_service, providers_file: Path) -> None:
    store = store_with(secret_service, providers_file)
    pid = new_provider_id()
    store.save(Provider(pid, "Lab", "http://lab:8000/v1", "a"), KEY)
    store.save(Provider(pid, "Lab renamed", "http://lab:8000/v1", "b"), None)
    assert store.api_key(pid) == KEY and [p.name for p in store.list()] == ["Lab renamed"]
    store.save(Provider(pid, "Lab renamed", "http://lab:8000/v1", "b"), "")
    assert store.api_key(pid) is None and store.target(pid).api_key is None


def test_removing_a_provider_deletes_its_key(secret_service, providers_file: Path) -> None:
    store = store_with(secret_service, providers_file)
    keep, drop = new_provider_id(), new_provider_id()
    store.save(Provider(keep, "Keep", "http://a/v1", "m"), "sk-keep")
    store.save(Provider(drop, "Drop", "http://b/v1", "m"), KEY)
    assert store.remove(drop).name == "Drop"
    assert store.remove(drop) is None
    later = store_with(secret_service, providers_file)
    assert [p.id for p in later.list()] == [keep] and later.api_key(drop) is None
    assert later.api_key(keep) == "sk-keep"
    with pytest.raises(ProviderNotFoundError):
        later.target(drop)


def test_without_a_keyring_the_key_is_kept_in_memory_and_the_store_says_so(providers_file: Path) -> None:
    store = store_with(fail.Keyring(), providers_file)
    pid = new_provider_id()
    store.save(Provider(pid, "Lab", "http://lab/v1", "m"), KEY)
    assert store.api_key(pid) == KEY and "kept only until Hearth quits" in store.key_problem(pid)
    assert KEY not in providers_file.read_text(encoding="utf-8")
    assert store_with(fail.Keyring(), providers_file).api_key(pid) is None  # never written anywhere


def test_a_damaged_list_is_set_aside(providers_file: Path) -> None:
    providers_file.parent.mkdir(parents=True)
    providers_file.write_text('{"version": 1, "providers": [{"id": ', encoding="utf-8")
    store = store_with(fail.Keyring(), providers_file)
    assert store.list() == []
    assert providers_file.with_suffix(".corrupt.json").exists()


def test_the_context_window_is_kept_and_a_list_from_before_it_reads_as_not_known(providers_file: Path) -> None:
    providers_file.parent.mkdir(parents=True)
    providers_file.write_text(json.dumps({"version": 1, "providers": [
        {"id": "old", "name": "Old", "base_url": "http://h:1/v1", "model": "m"},  # saved before the field
        {"id": "odd", "name": "Odd", "base_url": "http://h:2/v1", "model": "m", "context_window": "lots"},
    ]}), encoding="utf-8")
    store = store_with(fail.Keyring(), providers_file)
    assert [p.context_window for p in store.list()] == [0, 0]
    assert store.get("old").usable_context == ASSUMED_CONTEXT
    store.save(Provider("vllm", "vLLM box", "http://h:3/v1", "qwen", context_window=32768), None)
    reopened = store_with(fail.Keyring(), providers_file)
    assert reopened.get("vllm").context_window == reopened.get("vllm").usable_context == 32768


@pytest.mark.parametrize(("url", "phrase"), [
    ("", "Enter the server's base URL"),
    ("localhost:8000/v1", "must start with http:// or https://"),
    ("ftp://host/v1", "must start with http:// or https://"),
    ("http:///v1", "needs a host name"),
    ("http://host:port/v1", "must be a number"),
])
def test_bad_base_urls_are_explained(url: str, phrase: str) -> None:
    assert phrase in base_url_problem(url)


def test_good_base_urls_pass() -> None:
    for url in ("http://localhost:11434/v1", "https://api.example.com/v1/", " http://10.0.0.5:8000/v1 "):
        assert base_url_problem(url) == ""
