"""The installed-model list, shared by the window and download threads."""

from __future__ import annotations

import threading
from pathlib import Path

from model_store.registry import InstalledModel, ModelRegistry


def model(n: int, tmp_path: Path) -> InstalledModel:
    return InstalledModel(id=f"hf/org/repo{n}/Q4_K_M", display_name=f"Model {n}", path=tmp_path / f"m{n}.gguf",
                          sha256="0" * 64, size_bytes=n, mtime_ns=n)


def test_downloads_finishing_together_are_all_kept(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models.json")
    start = threading.Barrier(8)

    def finish(n: int) -> None:
        start.wait()
        registry.add(model(n, tmp_path))

    threads = [threading.Thread(target=finish, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    reopened = ModelRegistry(tmp_path / "models.json")
    assert sorted(m.id for m in reopened.all()) == sorted(model(n, tmp_path).id for n in range(8))


def test_removing_the_default_picks_another(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models.json")
    registry.add(model(1, tmp_path))
    registry.add(model(2, tmp_path))
    assert registry.default().id == model(1, tmp_path).id
    assert registry.remove(model(1, tmp_path).id) == model(1, tmp_path)
    assert ModelRegistry(tmp_path / "models.json").default().id == model(2, tmp_path).id
    assert registry.remove("hf/unknown") is None
