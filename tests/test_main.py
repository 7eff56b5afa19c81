"""main.py's wiring: the objects it builds and what they share."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from model_store.builtin_model import BUILTIN_MODEL_ID
from model_store.paths import AppPaths
from model_store.registry import InstalledModel

pytestmark = pytest.mark.slow  # a first launch copies and hashes the built-in model


def wiring(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """What main.py hands the app, without running the window."""
    import gui.app
    import main as hearth

    handed = {}

    def run_app(**kwargs) -> int:
        handed.update(kwargs)
        return 0

    monkeypatch.setattr(gui.app, "run_app", run_app)
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        assert hearth.main(["--home", str(home)]) == 0
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:  # main() logs to the home's file
            root.removeHandler(handler)
            handler.close()
    return handed


def test_a_first_launch_then_a_save_through_the_window_keeps_the_builtin_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_gguf: Path
) -> None:
    home = tmp_path / "home"
    handed = wiring(home, monkeypatch)
    choice = handed["choose_model"]()  # the inference thread's first step: installs the built-in model
    assert choice.is_demo
    registry = handed["models"].registry
    stat = tiny_gguf.stat()
    registry.add(InstalledModel(id=f"local/{tiny_gguf}", display_name="tiny", path=tiny_gguf, sha256="",
                                size_bytes=stat.st_size, mtime_ns=stat.st_mtime_ns))  # an import in the window
    saved = json.loads(AppPaths.under(home).registry_file.read_text(encoding="utf-8"))
    assert [entry["id"] for entry in saved["models"]] == [BUILTIN_MODEL_ID, f"local/{tiny_gguf}"]
    assert saved["default"] == BUILTIN_MODEL_ID
