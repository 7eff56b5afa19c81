"""Start the Qt application: the window, the inference thread, the conversation store, and their wiring."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication

from gui.api_switch import ApiSwitch
from gui.download_manager import DownloadManager
from gui.inference_worker import InferenceWorker, WorkerThread
from gui.main_window import MainWindow
from gui.messages import describe_error
from gui.model_manager import ModelManager
from gui.providers_dialog import ProvidersDialog
from gui.single_instance import SingleInstance
from gui.theme import follow_system_theme
from inference.hardware import CpuFacts, Hardware
from inference.session import ModelChoice
from model_store.api_token import ApiTokenStore
from model_store.conversations import ConversationStore, ConversationStoreError
from model_store.credentials import TokenStore
from model_store.downloads import ModelDownloader
from model_store.errors import DiskFullError
from model_store.hub import HubClient
from model_store.providers import ProviderStore
from model_store.registry import ModelRegistry
from model_store.settings import SettingsStore
from model_store.store_writer import StoreWriter

log = logging.getLogger(__name__)

PURGE_DELETED_AFTER_S = 30 * 24 * 3600
# The desktop entry's name without ".desktop" (packaging/linux): docks match the window to it, Wayland's app id.
DESKTOP_ID = "io.github.hearth.Hearth"
# In the PyInstaller bundle the icon keeps this path relative to the bundle's root (packaging/hearth.spec).
ICON_FILE = Path(__file__).resolve().parent.parent / "packaging" / "icons" / "hearth.svg"


@dataclass
class ModelServices:
    """The model manager's parts, built in main.py."""

    hub: HubClient
    downloader: ModelDownloader
    registry: ModelRegistry
    tokens: TokenStore
    models_dir: Path


@dataclass
class Ui:
    """What :func:`build_ui` made, for :func:`shut_down`."""

    window: MainWindow
    worker_thread: WorkerThread
    store: ConversationStore
    writer: StoreWriter
    downloads: DownloadManager | None = None
    api: ApiSwitch | None = None
    documents: object | None = None  # gui.documents.DocumentTasks


class StorageErrors:
    """Carries the writer's error reports to the window; the ones that come before it exists wait for it.

    ``report`` runs on the writer's thread, possibly while the window is
    still being built (the first write is queued before it); ``attach``
    hands the window everything reported so far and later reports go
    straight to it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window: MainWindow | None = None
        self._waiting: list[str] = []

    def report(self, exc: Exception) -> None:
        """Tell the window that a save failed (queued while there is no window yet)."""
        message = describe_error(exc)
        with self._lock:
            window = self._window
            if window is None:
                self._waiting.append(message)
                return
        window.storage_failed.emit(message)

    def attach(self, window: MainWindow) -> None:
        """From now on, tell ``window``; show it what was reported before (call on the GUI thread)."""
        with self._lock:
            self._window = window
            waiting, self._waiting = self._waiting, []
        for message in waiting:
            window.storage_failed.emit(message)


def connect_worker(window: MainWindow, worker: InferenceWorker) -> None:
    """Wire the window and the worker. Every cross-thread connection is made here, to slots."""
    panel = window.panel
    window.load_requested.connect(worker.load_model)
    window.reply_requested.connect(worker.generate)
    worker.model_loading.connect(window.on_model_loading)
    worker.model_ready.connect(window.on_model_ready)
    worker.model_failed.connect(window.on_model_failed)
    worker.threads_measured.connect(window.on_threads_measured)
    worker.engine_stopped.connect(window.on_engine_stopped)
    worker.reply_chunk.connect(panel.on_reply_chunk)
    worker.reply_finished.connect(panel.on_reply_finished)
    worker.reply_cancelled.connect(panel.on_reply_cancelled)
    worker.reply_failed.connect(panel.on_reply_failed)


def open_conversation_store(path: Path) -> ConversationStore:
    """The conversation database; if it cannot be used, a temporary one whose notice says why."""
    try:
        store = ConversationStore(path)
    except (ConversationStoreError, DiskFullError) as exc:
        log.error("Conversation database unusable: %s", exc)
        store = ConversationStore(Path(tempfile.mkdtemp(prefix="hearth-")) / "conversations.db")
        store.notices.append(f"{describe_error(exc)} New conversations in this session are not kept after you quit.")
        return store
    store.mark_unfinished_as_interrupted()
    return store


def build_ui(
    *,
    choose_model: Callable[[], ModelChoice],
    probe_hardware: Callable[[], Hardware],
    settings: SettingsStore,
    conversations_file: Path,
    cache_dir: Path | None = None,
    models: ModelServices | None = None,
    providers: ProviderStore | None = None,
    api_tokens: ApiTokenStore | None = None,
    documents_file: Path | None = None,
    find_embedder: Callable[[], object | None] | None = None,
) -> Ui:
    """Create the window, its store and its inference thread, wired and started; the default model starts loading.

    With ``providers``, conversations can answer with a provider's model (File › Providers…); with
    ``api_tokens``, Settings can switch on the local API server, which shares the window's model; with
    ``documents_file``, conversations chat with documents (attachments and collections, indexed there),
    searched by meaning too when ``find_embedder`` gives an installed embedding model.
    """
    store = open_conversation_store(conversations_file)
    errors = StorageErrors()
    writer = StoreWriter(store.path, on_error=errors.report)
    writer.submit("purge_deleted", PURGE_DELETED_AFTER_S)
    window = MainWindow(settings, CpuFacts.probe(), store, writer)
    errors.attach(window)
    downloads = None
    if models is not None:
        downloads = DownloadManager(models.downloader)
        window.set_model_manager(lambda: ModelManager(
            hub=models.hub, downloads=downloads, registry=models.registry, tokens=models.tokens,
            probe_hardware=probe_hardware, models_dir=models.models_dir, parent=window,
        ))
        downloads.resume_pending()
    if providers is not None:
        window.set_providers(providers, lambda: ProvidersDialog(providers, parent=window))
    worker_thread = WorkerThread(InferenceWorker(choose_model, probe_hardware, cache_dir))
    connect_worker(window, worker_thread.worker)
    api = None
    if api_tokens is not None:
        api = ApiSwitch(worker_thread.worker.owner, api_tokens)
        window.set_api_switch(api)
    worker_thread.start()
    window.load_model(None)
    if api is not None:
        api.apply(window.settings)
    documents = open_documents(window, documents_file, find_embedder) if documents_file is not None else None
    if documents is not None:  # once the purge above is written: attachments of chats deleted for good go too
        window.after_writes(lambda: documents.forget_other_conversations(store.conversation_ids()))
    return Ui(window, worker_thread, store, writer, downloads, api, documents)


def open_documents(window: MainWindow, path: Path, find_embedder: Callable[[], object | None] | None = None):
    """Open the document index at ``path``, wire it into ``window`` and re-index its collections.

    ``find_embedder`` (called off the GUI thread) gives an installed embedding model, or None.
    """
    from gui.documents import DocumentsController, DocumentTasks

    try:
        from model_store.documents.index import open_index
        index, damaged = open_index(path)
    except Exception as exc:  # noqa: BLE001 - the window works without documents, and says why
        log.warning("Documents are off: %s", exc)
        window.panel.chat_view.add_notice(f"Chatting with documents is not available: {describe_error(exc)}")
        return None
    if damaged:
        window.panel.chat_view.add_notice(damaged)
    tasks = DocumentTasks(index)
    window.documents = DocumentsController(window, tasks)
    tasks.index_all()  # incremental: unchanged files are skipped
    if find_embedder is not None:
        tasks.use_embedder(find_embedder)
    return tasks


def shut_down(ui: Ui) -> None:
    """Stop any reply, stop the inference thread and free the model, then finish saving."""
    ui.window.stop_reply()
    if ui.api is not None:
        ui.api.close()  # its streams are cancelled: the model owner then stops within a token
    if ui.downloads is not None:
        ui.downloads.shutdown()  # partial files stay: the next start resumes them
    ui.worker_thread.stop()
    if ui.documents is not None:
        ui.documents.close()
    if not ui.window.close_storage():
        log.warning("The settings were still being saved when Hearth quit")
    ui.writer.close()
    ui.store.close()


def run_app(
    *,
    choose_model: Callable[[], ModelChoice],
    probe_hardware: Callable[[], Hardware],
    settings: SettingsStore,
    conversations_file: Path,
    cache_dir: Path,
    models: ModelServices | None = None,
    providers: ProviderStore | None = None,
    api_tokens: ApiTokenStore | None = None,
    documents_file: Path | None = None,
    find_embedder: Callable[[], object | None] | None = None,
) -> int:
    """Show the window and run the event loop until the user quits; returns the exit code."""
    _keep_bundle_libraries_to_ourselves()
    _keep_secrets_out_of_core_dumps()
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Hearth")
    app.setApplicationDisplayName("Hearth")
    QGuiApplication.setDesktopFileName(DESKTOP_ID)
    app.setWindowIcon(QIcon(str(ICON_FILE)))
    instance = SingleInstance(conversations_file.parent)
    if not instance.acquire():
        return 0  # the running Hearth was asked to show its window
    follow_system_theme(app)
    ui = build_ui(choose_model=choose_model, probe_hardware=probe_hardware, settings=settings,
                  conversations_file=conversations_file, cache_dir=cache_dir, models=models, providers=providers,
                  api_tokens=api_tokens, documents_file=documents_file, find_embedder=find_embedder)
    instance.activated.connect(ui.window.bring_to_front)
    app.aboutToQuit.connect(lambda: shut_down(ui))
    ui.window.show()
    QTimer.singleShot(0, _log_start_time)
    code = app.exec()
    instance.release()
    return code


def _keep_bundle_libraries_to_ourselves() -> None:
    """In the frozen app, programs the window starts (a browser for a link) must not load the bundle's Qt.

    PyInstaller's launcher points LD_LIBRARY_PATH at the bundle. The dynamic
    loader read it when this process started, so dropping it here changes only
    what child processes see; the engine process is the bundle's own program,
    whose launcher sets it again.
    """
    if getattr(sys, "frozen", False) and sys.platform.startswith("linux"):
        original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = original


def _keep_secrets_out_of_core_dumps() -> None:
    """On Linux, make this process non-dumpable: a crash writes no core file, and the access token is in memory.

    It also keeps other programs of the same user from attaching to it (ptrace,
    /proc/<pid>/mem). The engine runs in a process of its own, started with
    exec, which is dumpable again: its crashes can still be debugged.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_dumpable = 4
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
        log.warning("Could not keep core dumps off (errno %d)", ctypes.get_errno())


def _log_start_time() -> None:
    seconds = time.time() - psutil.Process().create_time()
    log.info("Window shown %.2f s after the process started", seconds)
    report = os.environ.get("HEARTH_STARTUP_REPORT")
    if report:  # for the installer's smoke test: how long it took, and what was imported on the way
        Path(report).write_text(json.dumps({"window_shown_s": seconds, "modules": sorted(sys.modules)}), encoding="utf-8")
