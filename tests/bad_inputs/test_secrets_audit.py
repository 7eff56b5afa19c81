"""Hearth's three secrets (the Hugging Face token, the API server's token, a provider's key) never reach the disk:
each used for real, the app killed mid-reply, every file it touched searched."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.bad_inputs.secrets_audit import (
    SECRETS_SEARCHED,
    encoded_forms,
    new_provider_key,
    new_token,
    search_for_secrets,
    search_tree,
    secret_figures,
)
from tests.keyring_daemon import missing_programs

REPO = Path(__file__).resolve().parents[2]


def test_the_search_finds_a_planted_token_in_every_form(tmp_path: Path) -> None:
    token = new_token()
    planted = {
        "log.txt": f"2026-12-02 INFO GET /api/models Authorization: Bearer {token} 200".encode(),
        "basic.txt": b"Authorization: Basic " + base64.b64encode(f"user:{token}".encode()),
        "basic-shifted.txt": base64.b64encode(f"ab:{token}!".encode()),
        "urlsafe.txt": base64.urlsafe_b64encode(f"x{token}".encode()),
        "url.txt": f"http://hub/?token={quote(token, safe='')}&x=1".encode(),
        "qt-string.bin": b"\x00\x01" + f"token={token}".encode("utf-16-le"),
        "dump.hex": ("00ff" + token.encode().hex() + "00").encode(),
    }
    for name, data in planted.items():
        (tmp_path / "profile" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "profile" / name).write_bytes(data)
    (tmp_path / "profile" / "clean.txt").write_text(f"another token: {new_token()}")
    found = search_tree(tmp_path, encoded_forms(token))
    hit_files = {Path(hit["file"]).name for hit in found["hits"]}
    assert hit_files == set(planted)
    assert len(found["files"]) == len(planted) + 1


def test_each_hit_names_the_secret_found(tmp_path: Path) -> None:
    named = {"hf_token": new_token(), "api_token": "Zq3-" + new_token()[3:], "provider_key": new_provider_key()}
    (tmp_path / "a.log").write_text(f"key={named['provider_key']}")
    (tmp_path / "b.json").write_bytes(base64.b64encode(f"x:{named['api_token']}".encode()))
    (tmp_path / "c.txt").write_text("nothing here")
    found = search_for_secrets(tmp_path, named)
    found_where = {(hit["file"], hit["secret"]) for hit in found["hits"]}
    assert found_where == {("a.log", "provider_key"), ("b.json", "api_token")}
    assert {hit["form"] for hit in found["hits"]} >= {"raw", "base64@2"}


def test_the_window_process_cannot_dump_core() -> None:
    probe = ("import ctypes, sys; sys.path.insert(0, sys.argv[1]); from gui.app import _keep_secrets_out_of_core_dumps;"
             "libc = ctypes.CDLL(None); before = libc.prctl(3, 0, 0, 0, 0); _keep_secrets_out_of_core_dumps();"
             "print(before, libc.prctl(3, 0, 0, 0, 0))")  # 3: PR_GET_DUMPABLE
    if not sys.platform.startswith("linux"):
        pytest.skip("prctl is Linux's")
    result = subprocess.run([sys.executable, "-c", probe, str(REPO)], capture_output=True, text=True, check=True,
                            env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert result.stdout.split() == ["1", "0"]


@pytest.mark.slow
def test_used_secrets_are_on_no_disk_after_the_app_dies_mid_reply() -> None:
    why_not = missing_programs()
    if why_not:
        pytest.skip(why_not)
    figures = secret_figures()
    assert figures["secret_hits_on_disk"] == 0, figures
    assert figures["secrets_searched"] == ["hf_token", "api_token", "provider_key"] == list(SECRETS_SEARCHED)
    assert figures["hits_by_secret"] == {name: 0 for name in SECRETS_SEARCHED}, figures
    for end in ("killed", "crashed"):
        run = figures[end]
        assert run["hits"] == [], run
        for name in SECRETS_SEARCHED:  # each secret was saved where it belongs, and nowhere else...
            assert run["secrets"][name] == {"hits_on_disk": 0, "in_keyring": True}, (name, run)
        # ...and used: the Hub's gated repository, the app's own API server, the provider's server.
        assert run["gated_requests_served"] >= 2 and run["gated_download_verified"], run
        assert run["api_used"] == 200 and run["api_without_token"] == 401, run
        assert run["provider_without_key"] == 401 and run["provider_models_listed"] >= 1, run
        assert run["provider_reply_chars"] > 0 and run["provider_reply_status"] == "complete", run
        assert run["provider_reply_in_database"] == 1, run
        assert run["providers_file"]["exists"] and run["providers_file"]["secrets_in_it"] == [], run
        assert run["providers_file"]["providers"] == [{"name": "Audit provider", "model": "long-gemma3-it"}], run
        assert run["providers_file"]["fields"] == ["base_url", "context_window", "id", "model", "name"], run
        assert run["settings_file"] == {"api_server_enabled": True, "secrets_in_it": []}, run
        assert run["unfinished_reply_in_database"] and run["reply_chars_before_end"] >= 200, run  # mid-reply
        assert any(name.endswith("conversations.db-wal") for name in run["searched"]), run
        assert any(name.endswith("hearth.log") for name in run["searched"]), run
        assert any(name.endswith("providers.json") for name in run["searched"]), run
    assert figures["crashed"]["exit_status"] == -6 and figures["crashed"]["core_files"] == []
    if figures["core_control"] is not None:  # cores land where we search: the search does find a token in one
        assert figures["core_control"]["hits"] > 0, figures["core_control"]
