"""The model manager window against a local Hub: search, judge, download with progress, cancel, install, delete."""

from __future__ import annotations

from pathlib import Path

import pytest
from keyring.backends import fail
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from gui.download_manager import DownloadManager
from gui.model_manager import ROLE, ModelManager
from inference.hardware import CpuFacts, Hardware
from model_store.credentials import TokenStore
from model_store.downloads import ModelDownloader
from model_store.hub import HubClient
from model_store.registry import ModelRegistry
from tests.gguf_factory import write_tiny_gguf

pytestmark = pytest.mark.gui


def laptop() -> Hardware:
    return Hardware(cpu=CpuFacts(4, 8), ram_total_bytes=16 << 30, ram_available_bytes=12 << 30)


@pytest.fixture
def manager(qtbot, hub, tmp_path: Path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    registry = ModelRegistry(models_dir / "models.json")
    downloads = DownloadManager(ModelDownloader(models_dir, registry, endpoint=hub.endpoint))
    window = ModelManager(hub=HubClient(endpoint=hub.endpoint), downloads=downloads, registry=registry,
                          tokens=TokenStore(fail.Keyring()), probe_hardware=laptop, models_dir=models_dir)
    qtbot.addWidget(window)
    window.show()
    yield window, models_dir, registry
    downloads.shutdown()


def click(qtbot, list_widget, row: int) -> None:
    item = list_widget.item(row)
    list_widget.setCurrentItem(item)
    qtbot.mouseClick(list_widget.viewport(), Qt.MouseButton.LeftButton, pos=list_widget.visualItemRect(item).center())


def open_tiny_repo(qtbot, window) -> None:
    assert window.results.count() > 0  # the recommended list before any search
    window.search_box.setText("tiny")
    window.search()
    qtbot.waitUntil(lambda: window.results.count() == 1 and window.results.item(0).data(ROLE) ==
                    "acme/Tiny-Chat-GGUF", timeout=10_000)
    click(qtbot, window.results, 0)
    qtbot.waitUntil(lambda: window.files.count() == 2 and "✔ CPU" in window.files.item(1).text(), timeout=10_000)


def test_search_judge_download_and_cancel(qtbot, manager, hub) -> None:
    window, models_dir, registry = manager
    open_tiny_repo(qtbot, window)
    assert window.files.item(0).text().startswith("Q4_K_M")
    assert "Runs on the CPU" in window.files.item(1).toolTip()

    hub.behaviour.throttle_bytes_per_s = 400_000  # ~8 s for the 3 MB file: time to watch and cancel
    window.files.setCurrentRow(1)
    window._download_selected()
    assert window.tabs.currentIndex() == 1
    key = "acme/Tiny-Chat-GGUF/tiny-chat.Q8_0.gguf"
    qtbot.waitUntil(lambda: key in window._rows and window._rows[key][1].value() > 50, timeout=10_000)
    assert "MB/s" in window._rows[key][2].text()
    qtbot.mouseClick(window._rows[key][3], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Cancelled" in window._rows[key][2].text(), timeout=10_000)
    assert not list(models_dir.rglob("*.part")) and registry.all() == []


def test_install_use_and_delete(qtbot, manager, monkeypatch: pytest.MonkeyPatch) -> None:
    window, models_dir, registry = manager
    open_tiny_repo(qtbot, window)
    window.files.setCurrentRow(0)
    window._download_selected()
    qtbot.waitUntil(lambda: window.installed.count() == 1, timeout=10_000)
    assert "Installed and verified" in next(iter(window._rows.values()))[2].text()
    window.installed.setCurrentRow(0)
    qtbot.waitUntil(lambda: "parameters" in window.facts.text(), timeout=10_000)
    with qtbot.waitSignal(window.use_requested) as used:
        window._use_selected()
    assert used.args[0].path.name == "tiny-chat.Q4_K_M.gguf"
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.Yes)
    window._delete_selected()
    assert registry.all() == [] and not list(models_dir.rglob("*.gguf"))


def test_import_validates_first(qtbot, manager, tmp_path: Path) -> None:
    window, _, registry = manager
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model")
    window.import_file(bad)
    qtbot.waitUntil(lambda: "not a GGUF model file" in window.installed_status.text(), timeout=10_000)
    assert registry.all() == []


def test_without_a_keyring_the_token_tab_says_it_is_kept_in_memory(qtbot, manager) -> None:
    window, _, _ = manager
    window.token_box.setText("hf_test")
    window._save_token()  # the keyring is asked off the GUI thread
    qtbot.waitUntil(lambda: "in memory only" in window.token_status.text(), timeout=10_000)
    assert "until Hearth quits" in window.token_status.text()


def test_an_unreachable_hub_is_said_plainly(qtbot, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    registry = ModelRegistry(tmp_path / "models.json")
    downloads = DownloadManager(ModelDownloader(tmp_path, registry, endpoint="http://127.0.0.1:9"))
    window = ModelManager(hub=HubClient(endpoint="http://127.0.0.1:9"), downloads=downloads, registry=registry,
                          tokens=TokenStore(fail.Keyring()), probe_hardware=laptop, models_dir=models_dir)
    qtbot.addWidget(window)
    window.search("qwen")
    qtbot.waitUntil(lambda: "cannot be reached" in window.find_status.text(), timeout=10_000)


def test_an_imported_embedding_model_is_said_to_search_documents_and_is_not_used_to_chat(
        qtbot, manager, tmp_path: Path) -> None:
    window, _, registry = manager
    embedder = write_tiny_gguf(tmp_path / "bge-small.gguf", architecture="bert")
    window.import_file(embedder)
    qtbot.waitUntil(lambda: window.installed.count() == 1, timeout=10_000)
    window.installed.setCurrentRow(0)
    qtbot.waitUntil(lambda: "embedding model" in window.facts.text(), timeout=10_000)
    used = []
    window.use_requested.connect(used.append)
    window._use_selected()
    assert used == [] and "cannot chat" in window.installed_status.text()
