"""``main.py --self-test``: one JSON line, exit code 0 on success, a sentence (never a traceback) on failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gguf_factory import write_tiny_gguf

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def self_test(*args: str) -> tuple[int, dict, str]:
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--self-test", *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {result.stdout!r}"
    return result.returncode, json.loads(lines[0]), result.stderr


def test_builtin_model(tmp_path: Path) -> None:
    code, report, _ = self_test("--home", str(tmp_path / "home"))
    assert code == 0
    assert report["ok"] is True
    assert (report["engine"], report["device"]) == ("llama.cpp", "CPU")
    assert report["model"] == "Gemma 3 270M (demo)"
    assert 1 <= report["tokens"] <= 32
    assert report["tokens_per_s"] > 0 and report["ttft_s"] > 0
    assert (tmp_path / "home" / "data" / "models" / "builtin" / "gemma-3-270m-q4_k_m.gguf").is_file()
    assert (tmp_path / "home" / "logs" / "hearth.log").is_file()


def test_an_explicit_model_file(builtin_model_path: Path) -> None:
    code, report, _ = self_test("--model", str(builtin_model_path))
    assert code == 0 and report["ok"] is True


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "missing.gguf"


def _not_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "notes.gguf"
    path.write_text("These are my notes, not a model.", encoding="utf-8")
    return path


def _truncated(tmp_path: Path, builtin_model_path: Path) -> Path:
    path = tmp_path / "truncated.gguf"
    with builtin_model_path.open("rb") as source:
        path.write_bytes(source.read(builtin_model_path.stat().st_size // 2))
    return path


def _wrong_architecture(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "future.gguf", architecture="mamba9")


@pytest.mark.parametrize(
    ("make", "words"),
    [(_missing, "does not exist"), (_not_gguf, "not a GGUF model file"), (_truncated, "incomplete"),
     (_wrong_architecture, "an architecture this version of Hearth cannot run")],
    ids=["missing", "not-gguf", "truncated", "wrong-architecture"],
)
def test_bad_model_files_give_a_clean_error(tmp_path: Path, builtin_model_path: Path, make, words: str) -> None:
    path = make(tmp_path, builtin_model_path) if make is _truncated else make(tmp_path)
    code, report, stderr = self_test("--model", str(path))
    assert code == 1
    assert report["ok"] is False
    assert words in report["error"]
    assert "Traceback" not in stderr
