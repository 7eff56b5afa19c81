"""Start the Qt application: the window, the inference thread, and the wiring between them."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from gui.inference_worker import InferenceWorker, WorkerThread
from gui.main_window import MainWindow
from inference.hardware import CpuFacts, Hardware
from inference.session import ModelChoice
from model_store.settings import SettingsStore

log = logging.getLogger(__name__)


def connect_worker(window: MainWindow, worker: InferenceWorker) -> None:
    """Wire the window and the worker. Every cross-thread connection is made here, to slots."""
    window.load_requested.connect(worker.load_model)
    window.reply_requested.connect(worker.generate)
    worker.model_loading.connect(window.on_model_loading)
    worker.model_ready.connect(window.on_model_ready)
    worker.model_failed.connect(window.on_model_failed)
    worker.threads_measured.connect(window.on_threads_measured)
    worker.engine_stopped.connect(window.on_engine_stopped)
    worker.reply_chunk.connect(window.on_reply_chunk)
    worker.reply_finished.connect(window.on_reply_finished)
    worker.reply_cancelled.connect(window.on_reply_cancelled)
    worker.reply_failed.connect(window.on_reply_failed)


def build_ui(
    *,
    choose_model: Callable[[], ModelChoice],
    probe_hardware: Callable[[], Hardware],
    settings: SettingsStore,
    cache_dir: Path | None = None,
) -> tuple[MainWindow, WorkerThread]:
    """Create the window and its inference thread, wired and started; the default model starts loading."""
    window = MainWindow(settings, CpuFacts.probe())
    worker_thread = WorkerThread(InferenceWorker(choose_model, probe_hardware, cache_dir))
    connect_worker(window, worker_thread.worker)
    worker_thread.start()
    window.load_model(None)
    return window, worker_thread


def shut_down(window: MainWindow, worker_thread: WorkerThread) -> None:
    """Stop any reply, then stop the inference thread and free the model."""
    window.stop_reply()
    worker_thread.stop()


def run_app(
    *,
    choose_model: Callable[[], ModelChoice],
    probe_hardware: Callable[[], Hardware],
    settings: SettingsStore,
    cache_dir: Path,
) -> int:
    """Show the window and run the event loop until the user quits; returns the exit code."""
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Hearth")
    app.setApplicationDisplayName("Hearth")
    window, worker_thread = build_ui(
        choose_model=choose_model, probe_hardware=probe_hardware, settings=settings, cache_dir=cache_dir
    )
    app.aboutToQuit.connect(lambda: shut_down(window, worker_thread))
    window.show()
    QTimer.singleShot(0, _log_start_time)
    return app.exec()


def _log_start_time() -> None:
    started = psutil.Process().create_time()
    log.info("Window shown %.2f s after the process started", time.time() - started)
