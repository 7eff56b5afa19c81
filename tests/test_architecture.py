"""House rules: inference/ and model_store/ never import Qt, and inference/ never imports model_store/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
QT_FREE_PACKAGES = ("inference", "model_store")
QT_MODULES = ("PySide6", "shiboken6", "PyQt5", "PyQt6", "qtpy")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", QT_FREE_PACKAGES)
def test_no_qt_import_in_source(package: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_modules(path) & set(QT_MODULES))
        for path in (REPO / package).rglob("*.py")
    }
    assert {file: qt for file, qt in offenders.items() if qt} == {}


def test_importing_the_core_loads_no_qt() -> None:
    modules = [
        f"{path.parent.name}.{path.stem}"
        for package in QT_FREE_PACKAGES
        for path in (REPO / package).glob("*.py")
        if path.stem != "__init__"
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_inference_never_imports_model_store() -> None:
    # Sentences for people that name both packages' errors belong at the edge (gui/messages.py), not in the core.
    offenders = {
        str(path.relative_to(REPO)) for path in (REPO / "inference").rglob("*.py")
        if "model_store" in imported_modules(path)
    }
    assert offenders == set()


def _full_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_http_layer_is_a_front_end_the_engine_never_imports() -> None:
    # inference/api is imported by main.py's `serve` and the app's switch (gui/api_switch.py, with its part of the
    # Settings dialog, which reads only the config) only.
    importers = {
        str(path.relative_to(REPO)) for path in REPO.rglob("*.py")
        if ".venv" not in path.parts and "tests" not in path.parts and not path.is_relative_to(REPO / "inference" / "api")
        and any(name == "inference.api" or name.startswith("inference.api.") for name in _full_imports(path))
    }
    assert importers <= {"main.py", "gui/api_switch.py", "gui/settings_dialog.py"}, importers
    web_stack = {"starlette", "uvicorn", "fastapi", "sse_starlette"}
    engine_side = {
        str(path.relative_to(REPO)) for path in (REPO / "inference").rglob("*.py")
        if not path.is_relative_to(REPO / "inference" / "api") and imported_modules(path) & web_stack
    }
    assert engine_side == set()


def test_the_window_starts_without_the_web_stack() -> None:
    code = ("import sys, gui.app, gui.settings_dialog\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'openai')))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
