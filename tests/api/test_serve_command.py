"""``hearth serve``: headless, no Qt and no torch imported, the URL printed and never the token."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "serve-test-token-0123456789"


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-X", "importtime", str(REPO / "main.py"), "serve", *args]


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("HEARTH_API_TOKEN", "QT_QPA_PLATFORM")}
    # No keyring for these runs: a developer's own keyring is never written by a test.
    return {**env, "HEARTH_HOME": str(tmp_path / "home"), "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            **extra}


def imported(stderr: str) -> set[str]:
    """Top-level modules named in ``-X importtime`` output."""
    return {match.group(1).split(".")[0] for match in re.finditer(r"^import time:.*\|\s+(\S+)$", stderr, re.M)}


@pytest.mark.slow
def test_serve_answers_requests_without_qt_or_torch(tmp_path: Path, builtin_model_path: Path) -> None:
    errors = (tmp_path / "stderr.txt").open("w+")  # a file: -X importtime writes more than a pipe holds
    process = subprocess.Popen(serve_command("--port", "0", "--model", str(builtin_model_path)), cwd=REPO,
                               env=environment(tmp_path, HEARTH_API_TOKEN=TOKEN), stdout=subprocess.PIPE,
                               stderr=errors, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Serving" in line:
                break
        url = re.search(r"on (http://127\.0\.0\.1:\d+/v1)", "".join(lines))
        assert url, "".join(lines)
        lines.append(process.stdout.readline())  # where the token comes from
        with httpx.Client(base_url=url.group(1), timeout=60) as http:
            assert http.get("/models").status_code == 401
            models = http.get("/models", headers={"Authorization": f"Bearer {TOKEN}"}).json()
            assert [model["id"] for model in models["data"]] == [builtin_model_path.stem]
            reply = http.post("/chat/completions", headers={"Authorization": f"Bearer {TOKEN}"}, json={
                "model": builtin_model_path.stem, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
            assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl+C
        try:
            out, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        errors.close()
    err = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == 0, err[-2000:]
    printed = "".join(lines) + out
    assert "HEARTH_API_TOKEN" in printed and TOKEN not in printed + err
    modules = imported(err)
    assert "uvicorn" in modules and "llama_cpp" in modules  # the check sees the imports, the engine's too
    assert not modules & {"PySide6", "shiboken6", "torch"}, sorted(modules & {"PySide6", "shiboken6", "torch"})


def test_serve_on_a_network_address_warns_before_anything(tmp_path: Path) -> None:
    result = subprocess.run(serve_command("--host", "0.0.0.0", "--port", "0", "--model", str(tmp_path / "none.gguf")),
                            cwd=REPO, env=environment(tmp_path, HEARTH_API_TOKEN=TOKEN), capture_output=True,
                            text=True, timeout=120)
    assert "anyone on your network who gets the token can use the model" in result.stderr
    assert result.returncode == 1 and "could not be loaded" in result.stderr  # that model does not exist
    assert TOKEN not in result.stdout + result.stderr


def test_serve_without_a_keyring_or_a_token_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(serve_command("--port", "0"), cwd=REPO, env=environment(tmp_path), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "Set HEARTH_API_TOKEN" in result.stderr


def test_serve_takes_its_options_before_or_after_the_command() -> None:
    from main import parse_args

    assert parse_args([]).command is None
    args = parse_args(["--model", "a.gguf", "serve", "--port", "0"])
    assert (args.command, args.model, args.port, args.host) == ("serve", Path("a.gguf"), 0, None)
    args = parse_args(["serve", "--model", "b.gguf", "--host", "::1", "--home", "h"])
    assert (args.model, args.host, args.home) == (Path("b.gguf"), "::1", Path("h"))
