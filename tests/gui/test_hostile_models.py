"""Every malformed model file of the hostile corpus, imported in the model manager and loaded in the window's
worker: each gets a sentence naming it, nothing is registered, and the app goes on (a good model loads after)."""

from __future__ import annotations

from pathlib import Path

import pytest
from keyring.backends import fail
from PySide6.QtCore import QObject, Signal, Slot

from gui.download_manager import DownloadManager
from gui.inference_worker import InferenceWorker, WorkerThread
from inference.model_owner import LoadRequest
from gui.model_manager import ModelManager
from inference.hardware import probe_hardware
from inference.selector import Preferences
from inference.session import ModelChoice
from model_store.credentials import TokenStore
from model_store.downloads import ModelDownloader
from model_store.hub import HubClient
from model_store.registry import ModelRegistry
from tests.bad_inputs import write_corpus

pytestmark = [pytest.mark.gui, pytest.mark.slow]
RAW_ERRORS = ("Traceback", "Something unexpected", "Error:", "struct.error")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def test_the_model_manager_refuses_every_hostile_file_with_a_sentence(qtbot, tmp_path: Path, corpus) -> None:
    registry = ModelRegistry(tmp_path / "models.json")
    downloads = DownloadManager(ModelDownloader(tmp_path, registry, endpoint="http://127.0.0.1:9"))
    window = ModelManager(hub=HubClient(endpoint="http://127.0.0.1:9"), downloads=downloads, registry=registry,
                          tokens=TokenStore(fail.Keyring()), probe_hardware=probe_hardware, models_dir=tmp_path)
    qtbot.addWidget(window)
    try:
        for file in (file for file in corpus if not file.expected_valid):
            window.import_file(file.path)
            qtbot.waitUntil(lambda: not window.installed_status.text().startswith("Checking"), timeout=10_000)
            said = window.installed_status.text()
            assert file.path.name in said and not any(raw in said for raw in RAW_ERRORS), (file.problem, said)
        assert registry.all() == []
    finally:
        downloads.shutdown()


class Loads(QObject):
    """Asks the worker for loads as the window does; records what it answers."""

    load = Signal(object)

    def __init__(self, worker: InferenceWorker) -> None:
        super().__init__()
        self.answers: list[tuple[str, object]] = []
        self.load.connect(worker.load_model)
        worker.model_ready.connect(self._on_ready)
        worker.model_failed.connect(self._on_failed)

    @Slot(object)
    def _on_ready(self, ready: object) -> None:
        self.answers.append(("ready", ready))

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.answers.append(("failed", message))


def test_the_window_s_worker_refuses_hostile_files_and_then_loads_a_good_one(qtbot, corpus,
                                                                            builtin_model_path: Path) -> None:
    # Every file the validator accepts (they reach llama.cpp), and a sample of the refused ones.
    refused = [file for file in corpus if not file.expected_valid]
    sample = [file for file in corpus if file.expected_valid] + refused[:: max(1, len(refused) // 12)]
    worker = InferenceWorker(lambda: None, probe_hardware)
    thread = WorkerThread(worker)
    loads = Loads(worker)
    thread.start()
    try:
        for number, file in enumerate(sample, 1):
            loads.load.emit(LoadRequest(ModelChoice(path=file.path), Preferences(), measured={}))
            qtbot.waitUntil(lambda: len(loads.answers) == number, timeout=60_000)
            kind, message = loads.answers[-1]
            assert kind == "failed" and not any(raw in message for raw in RAW_ERRORS), (file.problem, message)
        loads.load.emit(LoadRequest(ModelChoice(path=builtin_model_path), Preferences(), measured={}))
        qtbot.waitUntil(lambda: len(loads.answers) == len(sample) + 1, timeout=60_000)
        assert loads.answers[-1][0] == "ready"
    finally:
        thread.stop()
