"""How long the window's GUI thread stalls while the disk or the keyring makes it wait. Prints one JSON object.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/stalls.py

The figure is ``gui_stall_max_ms``: the worst lateness of a 5 ms heartbeat
timer on the GUI thread (tests/gui/heartbeat.py) over three situations, each
made slow for real where we can:

- ``keyring``: the model manager is opened (and a token saved) while the
  Secret Service is locked. A real gnome-keyring on a private D-Bus, holding
  a token, locked; its unlock prompt (gcr-prompter, on an Xvfb display when
  there is one) stays open, so every keyring call really waits on it.
- ``database``: conversations are renamed, opened and searched while another
  SQLite connection holds the database's write lock (a real lock, for
  ``HOLD_S``): the writer's commit, and any flush, waits behind it. The old
  window flushed on the GUI thread here.
- ``settings``: settings are saved three times, the last two while the first
  is still in its fsync (the newest replaces the one waiting). Slowing an fsync for real
  needs a slow device (root, a FUSE or device-mapper delay), so instead the
  real ``os.fsync`` is made to take ``SLOW_FSYNC_S`` longer and the thread
  that calls it is recorded: ``gui_thread_fsyncs`` must be 0.

:func:`stall_figures` runs this in a fresh process and returns the object.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.keyring_daemon import lock_default_collection, missing_programs, private_secret_service  # noqa: E402

MAX_STALL_MS = 50
HOLD_S = 1.5
SLOW_FSYNC_S = 0.4
KEYRING_WATCH_S = 2.0
TOKEN = "hf_StallFigureToken0123456789abcdefgh"


def stall_figures() -> dict:
    """Run the measurements in a fresh process (own QApplication, own D-Bus) and return their JSON object."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run([sys.executable, str(Path(__file__).resolve())], capture_output=True, text=True,
                            env=env, timeout=300, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ helpers


def wait_until(app, condition, timeout_s: float = 30.0) -> None:
    """Run the event loop until ``condition()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        app.processEvents()
        time.sleep(0.001)


def run_events(app, seconds: float) -> None:
    """Run the event loop for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.001)


class Phase:
    """The heartbeat's ticks from now on."""

    def __init__(self, heartbeat) -> None:
        self._heartbeat = heartbeat
        self._start = len(heartbeat.lateness_ms)

    def worst_ms(self) -> float:
        ticks = self._heartbeat.lateness_ms[self._start:]
        return round(max(ticks), 1) if ticks else 0.0

    def ticks(self) -> int:
        return len(self._heartbeat.lateness_ms) - self._start


def make_window(folder: Path):
    """A real MainWindow on a real conversation database with two conversations (no model: none is needed)."""
    from gui.main_window import MainWindow
    from inference.hardware import CpuFacts
    from model_store.conversations import ConversationStore
    from model_store.settings import Settings, SettingsStore
    from model_store.store_writer import StoreWriter

    folder.mkdir(parents=True, exist_ok=True)
    store = ConversationStore(folder / "conversations.db")
    ids = []
    for title, text in (("Lanterns", "a copper lantern by the harbour"), ("Owls", "an owl in the orchard")):
        conversation = store.create_conversation(title=title)
        store.add_message(conversation.id, parent_id=None, role="user", content=text)
        ids.append(conversation.id)
    errors: list[Exception] = []
    writer = StoreWriter(store.path, on_error=errors.append)
    settings = SettingsStore(folder / "settings.json")
    settings.save(Settings())
    window = MainWindow(settings, CpuFacts.probe(), store, writer)
    window.show()
    return window, store, writer, settings, ids, errors


def close_window(window, store, writer) -> None:
    window.close_storage()
    window.close()
    window.deleteLater()
    writer.close()
    store.close()


# ----------------------------------------------------------------- database


def database_stalls(app, folder: Path) -> dict:
    """The window renames, opens and searches while another connection holds the database's write lock."""
    from tests.gui.heartbeat import Heartbeat

    window, store, writer, _, (lanterns, owls), errors = make_window(folder)
    heartbeat = Heartbeat()
    try:
        wait_until(app, lambda: window.panel.session.conversation_id == owls)  # the newest opens first
        run_events(app, 0.2)
        blocker = sqlite3.connect(store.path, timeout=0, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # SQLite's write lock: every other writer waits for it
        flush_waited: list[float] = []

        def flush_elsewhere() -> None:  # what the GUI thread used to do here, timed on another thread
            started = time.perf_counter()
            writer.flush(30)
            flush_waited.append(time.perf_counter() - started)

        phase = Phase(heartbeat)
        released = 0.0
        try:
            window._rename(lanterns, "Lanterns, renamed while the disk is busy")
            flusher = threading.Thread(target=flush_elsewhere, name="flush-probe", daemon=True)
            flusher.start()
            window.open_conversation(lanterns)
            window.sidebar.search_box.setText("lantern")
            run_events(app, HOLD_S)
            still_waiting = writer.pending > 0 and flusher.is_alive()
            deferred = window.panel.session.conversation_id == owls  # the open waits for the write, not the GUI
        finally:
            blocker.execute("ROLLBACK")
            released = time.perf_counter()
            blocker.close()
        wait_until(app, lambda: window.panel.session.conversation_id == lanterns
                   and window.sidebar.list_view.model() is window.sidebar.hits
                   and window.sidebar.hits.rowCount() == 1)
        opened_after_ms = (time.perf_counter() - released) * 1000
        flusher.join(10)
        title = store.conversation(lanterns).title
        return {
            "stall_max_ms": phase.worst_ms(),
            "ticks": phase.ticks(),
            "lock_held_s": HOLD_S,
            "flush_waited_ms": round(flush_waited[0] * 1000) if flush_waited else None,
            "writes_waited_behind_lock": still_waiting,
            "open_deferred_until_written": deferred,
            "opened_after_release_ms": round(opened_after_ms, 1),
            "rename_saved": title == "Lanterns, renamed while the disk is busy",
            "write_errors": len(errors),
        }
    finally:
        heartbeat.stop()
        close_window(window, store, writer)


# ----------------------------------------------------------------- settings


@contextlib.contextmanager
def slow_fsync(delay_s: float) -> Iterator[list[str]]:
    """Make every Python ``os.fsync`` take ``delay_s`` longer; yields the names of the threads that called it."""
    real = os.fsync
    callers: list[str] = []

    def fsync(fd) -> None:
        callers.append(threading.current_thread().name)
        time.sleep(delay_s)  # stands in for a slow disk; the real fsync still runs
        real(fd)

    os.fsync = fsync
    try:
        yield callers
    finally:
        os.fsync = real


def settings_stalls(app, folder: Path) -> dict:
    """Three settings saves from the window while every fsync is slow; who called fsync, and what landed."""
    from tests.gui.heartbeat import Heartbeat

    window, store, writer, settings_store, _, _ = make_window(folder)
    heartbeat = Heartbeat()
    try:
        run_events(app, 0.2)
        phase = Phase(heartbeat)
        with slow_fsync(SLOW_FSYNC_S) as callers:
            started = time.perf_counter()
            window._on_demo_notice_dismissed()
            asked_s = time.perf_counter() - started
            wait_until(app, lambda: callers)  # the first save is inside its fsync now
            started = time.perf_counter()
            window.apply_settings(replace(window._settings, temperature=0.3))
            window.apply_settings(replace(window._settings, temperature=0.2, top_k=12))  # replaces the one before
            asked_ms = (asked_s + time.perf_counter() - started) * 1000
            wait_until(app, lambda: window._settings_saver.wait(0))
            run_events(app, 0.1)
        saved = settings_store.load()
        return {
            "stall_max_ms": phase.worst_ms(),
            "ticks": phase.ticks(),
            "fsync_delay_s": SLOW_FSYNC_S,
            "three_saves_asked_ms": round(asked_ms, 2),
            "fsyncs": len(callers),
            "gui_thread_fsyncs": sum(1 for name in callers if name == threading.main_thread().name),
            "saved_last_settings": saved.temperature == 0.2 and saved.top_k == 12 and saved.demo_notice_dismissed,
            "file_is_valid_json": json.loads((folder / "settings.json").read_text()) is not None,
        }
    finally:
        heartbeat.stop()
        close_window(window, store, writer)


# ------------------------------------------------------------------ keyring


def keyring_available() -> str:
    """'' when a real Secret Service can be started here, else why not."""
    return missing_programs()


@contextlib.contextmanager
def locked_keyring(folder: Path, token: str = TOKEN) -> Iterator[dict]:
    """A real, locked Secret Service holding ``token`` (tests/keyring_daemon.py), its unlock prompt on Xvfb.

    With Xvfb installed the prompt (gcr-prompter) opens on a private display
    and stays open, so a keyring call waits on it as on a desktop; without it
    the prompt fails at once and the call raises. Yields ``{"prompt_stays_open": bool}``.
    """
    from keyring.backends import SecretService

    from model_store.credentials import ACCOUNT, SERVICE

    with private_secret_service(folder, prompt_display=True) as session:
        SecretService.Keyring().set_password(SERVICE, ACCOUNT, token)
        lock_default_collection()
        yield {"prompt_stays_open": session.prompt_stays_open}


def keyring_stalls(app, folder: Path) -> dict:
    """Open the model manager from the window, and save a token, while the keyring is locked."""
    from keyring.backends import SecretService

    from gui.download_manager import DownloadManager
    from gui.model_manager import CHECKING_KEYRING, ModelManager
    from inference.hardware import CpuFacts, Hardware
    from model_store.credentials import TokenStore
    from model_store.downloads import ModelDownloader
    from model_store.hub import HubClient
    from model_store.registry import ModelRegistry
    from tests.gui.heartbeat import Heartbeat

    with locked_keyring(folder) as keyring_info:
        tokens = TokenStore(SecretService.Keyring())
        tokens.preload()  # as main.py does: finding the backend is not what is measured
        window, store, writer, _, _, _ = make_window(folder / "profile")
        models_dir = folder / "models"
        models_dir.mkdir()
        registry = ModelRegistry(models_dir / "models.json")
        hub = HubClient(endpoint="http://127.0.0.1:9")
        downloads = DownloadManager(ModelDownloader(models_dir, registry, endpoint=hub.endpoint, token=tokens.get))
        hardware = Hardware(cpu=CpuFacts(4, 8), ram_total_bytes=16 << 30, ram_available_bytes=12 << 30)
        window.set_model_manager(lambda: ModelManager(
            hub=hub, downloads=downloads, registry=registry, tokens=tokens, probe_hardware=lambda: hardware,
            models_dir=models_dir, parent=window))
        heartbeat = Heartbeat()
        try:
            run_events(app, 0.2)
            phase = Phase(heartbeat)
            started = time.perf_counter()
            window.open_model_manager()
            opened_ms = (time.perf_counter() - started) * 1000
            manager = window._model_manager
            manager.tabs.setCurrentIndex(3)
            run_events(app, KEYRING_WATCH_S / 2)
            manager.token_box.setText("hf_AnotherTokenTypedWhileLocked")
            manager._save_token()
            run_events(app, KEYRING_WATCH_S / 2)
            status = manager.token_status.text()
            waiting = manager._token_call.busy
            return {
                "stall_max_ms": phase.worst_ms(),
                "ticks": phase.ticks(),
                "open_model_manager_ms": round(opened_ms, 1),
                "watched_s": KEYRING_WATCH_S,
                "prompt_stays_open": keyring_info["prompt_stays_open"],
                "keyring_call_still_waiting": waiting,
                "tab_says": status,
                "tab_says_checking": status == CHECKING_KEYRING,
            }
        finally:
            heartbeat.stop()
            manager = window._model_manager
            if manager is not None:
                manager.close()
            downloads.shutdown()
            close_window(window, store, writer)


# --------------------------------------------------------------------- main


def main() -> None:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="hearth-stalls-") as tmp:
        folder = Path(tmp)
        why_not = keyring_available()
        figures["keyring"] = keyring_stalls(app, folder / "keyring") if not why_not else {"not_measured": why_not}
        figures["database"] = database_stalls(app, folder / "database")
        figures["settings"] = settings_stalls(app, folder / "settings")
    measured = [part["stall_max_ms"] for part in figures.values() if "stall_max_ms" in part]
    figures["gui_stall_max_ms"] = max(measured)
    figures["limit_ms"] = MAX_STALL_MS
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
