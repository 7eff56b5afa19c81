"""Shared fixtures. Every test gets its own Hearth folders; no test may leave a thread running."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from model_store.builtin_model import ensure_builtin_model, packaged_gemma_chunks  # noqa: E402
from model_store.paths import AppPaths  # noqa: E402
from model_store.registry import ModelRegistry  # noqa: E402
from tests.gguf_factory import write_tiny_gguf  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send Hearth's folders and the Hugging Face cache to this test's tmp_path."""
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path / "hearth-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")  # the test Hub speaks plain HTTP


@pytest.fixture(autouse=True)
def _no_dangling_threads():
    """Fail a test that leaves a Python or Qt worker thread running."""
    before = set(threading.enumerate())
    yield
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    assert not leftover, f"threads left running: {leftover}"


@pytest.fixture
def app_paths(tmp_path: Path) -> AppPaths:
    """Hearth's folders under tmp_path, created."""
    paths = AppPaths.under(tmp_path / "hearth")
    paths.create()
    return paths


@pytest.fixture(scope="session")
def builtin_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real built-in model, installed once per test session."""
    paths = AppPaths.under(tmp_path_factory.mktemp("builtin"))
    paths.create()
    model = ensure_builtin_model(ModelRegistry(paths.registry_file), paths.models_dir, packaged_gemma_chunks())
    return model.path


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A small valid GGUF file (no real weights) written with the gguf package."""
    return write_tiny_gguf(tmp_path / "tiny.gguf")
