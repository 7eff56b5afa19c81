"""End to end: the real window, the real built-in model, streamed replies, Stop, a responsive UI, saved chats."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from dataclasses import replace

import pytest
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QApplication

from gui.app import build_ui, shut_down
from gui.inference_worker import InferenceWorker
from gui.main_window import MainWindow
from gui.preferences import cpu_signature
from gui.sidebar import ID_ROLE
from inference.hardware import CpuFacts, probe_hardware
from inference.session import ModelChoice
from inference.thread_tuning import measurement_key
from model_store.paths import AppPaths
from model_store.settings import MeasuredThreads, Settings, SettingsStore
from tests.gui.heartbeat import Heartbeat

pytestmark = [pytest.mark.gui, pytest.mark.slow]

# Generous: a frame is ~16 ms; this catches real freezes (a blocking load or
# per-token work on the GUI thread), not scheduler noise on a busy 2-core CI box.
MAX_UI_STALL_MS = 250


class WorkerEvents(QObject):
    """Re-emits the worker's signals on the GUI thread, where qtbot.waitSignal can watch them.

    (waitSignal on a signal emitted in another thread would run its callback there.)
    """

    reply_chunk = Signal(int, str)
    reply_finished = Signal(int, object)
    reply_cancelled = Signal(int, object)

    def __init__(self, worker: InferenceWorker) -> None:
        super().__init__()
        self.chunks = 0
        self._worker = worker
        worker.reply_chunk.connect(self._on_chunk)
        worker.reply_finished.connect(self._on_finished)
        worker.reply_cancelled.connect(self._on_cancelled)

    def engine_pid(self) -> int:
        """The engine process of the loaded model (read for the test only)."""
        return self._worker.owner.engine_pid

    @Slot(int, str)
    def _on_chunk(self, request_id: int, text: str) -> None:
        self.chunks += 1
        self.reply_chunk.emit(request_id, text)

    @Slot(int, object)
    def _on_finished(self, request_id: int, stats: object) -> None:
        self.reply_finished.emit(request_id, stats)

    @Slot(int, object)
    def _on_cancelled(self, request_id: int, stats: object) -> None:
        self.reply_cancelled.emit(request_id, stats)


@pytest.fixture
def chat(qtbot, builtin_model_path: Path, app_paths: AppPaths):
    """The real window with the built-in model loading in the background.

    The heartbeat starts once the window is built and shown (building it is
    synchronous by nature, before anything is on screen) and runs through the
    model load and every reply.
    """
    def choose() -> ModelChoice:
        return ModelChoice(path=builtin_model_path, display_name="Gemma 3 270M (demo)", is_demo=True)

    ui = open_window(qtbot, choose, app_paths)
    heartbeat = Heartbeat()
    events = WorkerEvents(ui.worker_thread.worker)
    qtbot.waitUntil(lambda: ui.window.panel.model_name is not None, timeout=60_000)
    yield ui.window, events, heartbeat
    heartbeat.stop()
    shut_down(ui)


def open_window(qtbot, choose, app_paths: AppPaths, *, measured: bool = True, model: Path | None = None):
    """The window, loading the model ``choose`` picks. With ``measured``, the threads for ``model`` (default:
    that one) count as measured already, so no measurement runs in the background during the test."""
    store = SettingsStore(app_paths.settings_file)
    cpu = CpuFacts.probe()
    if not app_paths.settings_file.exists():
        path = model or choose().path
        known = {}
        if measured and path.is_file():
            # A figure no reply falls below, so the slow-reply re-check never starts either.
            known = {cpu_signature(cpu): {measurement_key(path.name, path.stat().st_size): MeasuredThreads(
                threads=cpu.physical_cores, tokens_per_s=0.1, model=path.name, model_size=path.stat().st_size)}}
        store.save(Settings(temperature=0.7, seed=7, max_tokens=64, measured_threads=known))
    ui = build_ui(choose_model=choose, probe_hardware=probe_hardware, settings=store,
                  conversations_file=app_paths.conversations_file)
    qtbot.addWidget(ui.window)
    ui.window.show()
    return ui


def type_text(qtbot, widget, text: str) -> None:
    """Type like a person: the event loop runs between keystrokes.

    (``qtbot.keyClicks`` sends every key in one go, which blocks the loop the
    heartbeat measures for as long as the typing takes.)
    """
    for character in text:
        qtbot.keyClicks(widget, character)
        QApplication.processEvents()


def assert_no_stall(heartbeat: Heartbeat) -> None:
    worst = sorted(heartbeat.lateness_ms)[-5:]
    assert worst[-1] < MAX_UI_STALL_MS, f"the GUI thread stalled; the latest ticks (ms): {worst}"


def send(qtbot, window: MainWindow, text: str) -> None:
    type_text(qtbot, window.panel.composer, text)
    qtbot.keyClick(window.panel.composer, Qt.Key.Key_Return)


def branch(window: MainWindow) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in window.panel.session.branch()]


def test_a_reply_streams_into_the_window(qtbot, chat) -> None:
    window, events, heartbeat = chat
    assert window.demo_notice.isVisible()
    assert "llama.cpp" in window.engine_label.text() and "CPU" in window.engine_label.text()
    assert "thread" in window.engine_label.text()
    assert "CPU kernels: " in window.engine_label.toolTip()  # which of llama.cpp's CPU builds runs here

    with qtbot.waitSignal(events.reply_finished, timeout=60_000) as finished:
        send(qtbot, window, "What is the capital of Japan?")
        assert window.panel.stop_button.isVisible()
        # The window stays usable while the model works: resize it and scroll.
        window.resize(700, 500)
        window.panel.chat_view.verticalScrollBar().setValue(0)
    stats = finished.args[1]

    assert window.panel.composer.toPlainText() == ""
    transcript = window.panel.chat_view.toPlainText()
    assert "What is the capital of Japan?" in transcript
    role, reply = branch(window)[-1]
    assert role == "assistant" and reply.strip()
    assert reply in transcript
    assert events.chunks >= 2 or stats.completion_tokens < 2, "the reply should arrive in several chunks"
    assert "tok/s" in window.speed_label.text()
    assert window.panel.send_button.isVisible() and not window.panel.stop_button.isVisible()

    lateness = sorted(heartbeat.lateness_ms)
    print(f"UI lateness over {len(lateness)} beats: p95 {lateness[int(len(lateness) * 0.95)]:.1f} ms, max {lateness[-1]:.1f} ms")
    assert len(lateness) > 50
    assert lateness[-1] < MAX_UI_STALL_MS, f"the GUI stalled {lateness[-1]:.0f} ms"


def test_stop_ends_a_long_reply_quickly(qtbot, chat) -> None:
    window, events, heartbeat = chat
    window.apply_settings(replace(window._settings, temperature=0.9, seed=11, max_tokens=2000))
    with qtbot.waitSignal(events.reply_chunk, timeout=60_000):
        send(qtbot, window, "Write a very long story about a dragon and a village.")
    with qtbot.waitSignal(events.reply_cancelled, timeout=10_000) as cancelled:
        stop_pressed = time.perf_counter()
        qtbot.keyClick(window.panel.composer, Qt.Key.Key_Escape)
    stop_latency = time.perf_counter() - stop_pressed
    stats = cancelled.args[1]

    assert stats.finish_reason == "cancelled"
    assert stats.completion_tokens < 2000
    assert stop_latency < 2.0, f"Stop took {stop_latency:.2f} s"
    assert "[Stopped]" in window.panel.chat_view.toPlainText()
    assert window.status_message.text() == "Stopped"

    # The conversation goes on after a stop.
    with qtbot.waitSignal(events.reply_finished, timeout=60_000):
        window.apply_settings(replace(window._settings, temperature=0.7, seed=7, max_tokens=32))
        send(qtbot, window, "Thanks. What is two plus two?")
    assert [role for role, _ in branch(window)] == ["user", "assistant", "user", "assistant"]
    assert_no_stall(heartbeat)


def test_shift_enter_adds_a_line_instead_of_sending(qtbot, chat) -> None:
    window, *_ = chat
    type_text(qtbot, window.panel.composer, "first line")
    qtbot.keyClick(window.panel.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    type_text(qtbot, window.panel.composer, "second line")
    assert window.panel.composer.toPlainText() == "first line\nsecond line"
    assert branch(window) == []


def test_dismissing_the_demo_notice_is_remembered(qtbot, chat, app_paths: AppPaths) -> None:
    window, *_ = chat
    qtbot.mouseClick(window.demo_notice.findChild(type(window.panel.send_button)), Qt.MouseButton.LeftButton)
    assert not window.demo_notice.isVisible()
    # Saved off the GUI thread.
    qtbot.waitUntil(lambda: SettingsStore(app_paths.settings_file).load().demo_notice_dismissed, timeout=5_000)


def test_a_bad_model_file_is_reported_and_the_window_stays_up(qtbot, tmp_path: Path, app_paths: AppPaths) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x01" * 10)
    ui = open_window(qtbot, lambda: ModelChoice(path=bad), app_paths)
    window = ui.window
    try:
        qtbot.waitUntil(lambda: "incomplete" in window.panel.chat_view.toPlainText(), timeout=30_000)
        assert window.status_message.text() == "The model could not be loaded."
        assert not window.panel.send_button.isEnabled()
        assert window.isVisible()
    finally:
        shut_down(ui)


def test_the_window_survives_the_engine_being_killed_mid_reply(qtbot, chat) -> None:
    window, events, heartbeat = chat
    window.apply_settings(replace(window._settings, max_tokens=400, temperature=0.9))
    with qtbot.waitSignal(events.reply_chunk, timeout=60_000):
        send(qtbot, window, "Tell me a story about a lighthouse keeper.")
    os.kill(events.engine_pid(), signal.SIGKILL)
    # The reply fails first, then the worker reports the stopped engine: wait for both to reach the window.
    qtbot.waitUntil(lambda: window.panel.active is None
                    and "Your conversation is kept" in window.panel.chat_view.toPlainText(), timeout=30_000)
    transcript = window.panel.chat_view.toPlainText()
    assert "[Interrupted]" in transcript
    assert "The engine stopped: it was killed (SIGKILL)" in transcript
    assert "Your conversation is kept" in transcript
    assert branch(window)[0] == ("user", "Tell me a story about a lighthouse keeper.")
    assert window.panel.session.branch()[-1].status == "interrupted"

    # The model comes back in a fresh engine process and the conversation goes on.
    qtbot.waitUntil(window.panel.send_button.isEnabled, timeout=60_000)
    window.apply_settings(replace(window._settings, max_tokens=16))
    with qtbot.waitSignal(events.reply_finished, timeout=60_000):
        send(qtbot, window, "Are you back?")
    assert branch(window)[-2] == ("user", "Are you back?")
    assert branch(window)[-1][0] == "assistant"
    assert_no_stall(heartbeat)


def test_conversations_are_saved_listed_searched_and_reopened(qtbot, builtin_model_path: Path,
                                                               app_paths: AppPaths, monkeypatch) -> None:
    def choose() -> ModelChoice:
        return ModelChoice(path=builtin_model_path, display_name="Gemma 3 270M (demo)", is_demo=True)

    ui = open_window(qtbot, choose, app_paths)
    window = ui.window
    events = WorkerEvents(ui.worker_thread.worker)
    try:
        qtbot.waitUntil(window.panel.send_button.isEnabled, timeout=60_000)
        with qtbot.waitSignal(events.reply_finished, timeout=60_000):
            send(qtbot, window, "Tell me about **volcanoes** please")
        first_id = window.panel.session.conversation_id
        qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # Ctrl+N: a new chat
        assert window.panel.session.conversation_id is None and branch(window) == []
        with qtbot.waitSignal(events.reply_finished, timeout=60_000):
            send(qtbot, window, "What do penguins eat?")
        titles = [window.sidebar.conversations.index(row).data()
                  for row in range(window.sidebar.conversations.rowCount())]
        assert titles == ["What do penguins eat?", "Tell me about volcanoes please"]

        # Ctrl+F, type, click the hit: the volcano conversation opens on that message.
        qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
        assert window.sidebar.search_box.hasFocus()
        qtbot.keyClicks(window.sidebar.search_box, "volcan")
        qtbot.waitUntil(lambda: window.sidebar.list_view.model() is window.sidebar.hits
                        and window.sidebar.hits.rowCount() >= 1, timeout=5_000)
        hits = window.sidebar.hits
        assert {hits.index(row).data(ID_ROLE) for row in range(hits.rowCount())} == {first_id}
        index = hits.index(0)
        qtbot.mouseClick(window.sidebar.list_view.viewport(), Qt.MouseButton.LeftButton,
                         pos=window.sidebar.list_view.visualRect(index).center())
        assert window.panel.session.conversation_id == first_id
        assert "volcan" in window.panel.chat_view.textCursor().selectedText().lower()

        # A message in the older conversation moves it to the top, from memory: the store is not read again.
        reads = []
        listed = window._store.conversations
        monkeypatch.setattr(window._store, "conversations", lambda: reads.append(1) or listed())
        window.sidebar.search_box.clear()
        with qtbot.waitSignal(events.reply_finished, timeout=60_000):
            send(qtbot, window, "And what is lava?")
        titles = [window.sidebar.conversations.index(row).data()
                  for row in range(window.sidebar.conversations.rowCount())]
        assert titles == ["Tell me about volcanoes please", "What do penguins eat?"]
        assert window.sidebar.list_view.currentIndex().data(ID_ROLE) == first_id
        assert reads == []
    finally:
        shut_down(ui)

    # A restart shows both conversations, the newest open.
    again = open_window(qtbot, choose, app_paths)
    try:
        assert [c.title for c in again.store.conversations()] == ["Tell me about volcanoes please",
                                                                  "What do penguins eat?"]
        assert branch(again.window)[0] == ("user", "Tell me about **volcanoes** please")
    finally:
        shut_down(again)


def test_editing_and_regenerating_keep_every_version(qtbot, chat) -> None:
    window, events, _ = chat
    with qtbot.waitSignal(events.reply_finished, timeout=60_000):
        send(qtbot, window, "Name a colour.")
    first_reply = branch(window)[-1]
    with qtbot.waitSignal(events.reply_finished, timeout=60_000):
        qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)  # Ctrl+R: regenerate
    assert window.panel.session.tree.position(window.panel.session.branch()[-1].id) == (2, 2)
    assert "2/2" in window.panel.chat_view.toPlainText()

    qtbot.keyClick(window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)  # Ctrl+E: edit my last message
    assert window.panel.composer.toPlainText() == "Name a colour."
    assert window.panel.editing_banner.isVisible()
    window.panel.composer.clear()
    with qtbot.waitSignal(events.reply_finished, timeout=60_000):
        send(qtbot, window, "Name a fruit.")
    assert branch(window)[0] == ("user", "Name a fruit.")
    session = window.panel.session
    question = session.branch()[0]
    assert session.tree.position(question.id) == (2, 2)

    session.switch_sibling(question.id, -1)  # what the ‹ link does
    window.panel.show_branch()
    assert branch(window)[0] == ("user", "Name a colour.")
    assert session.branch()[-1].content in {first_reply[1]} | {m.content for m in session.tree.siblings(
        session.branch()[-1].id)}
    assert len(session.tree) == 5  # 2 questions, 3 replies: nothing was destroyed


def test_delete_can_be_undone(qtbot, chat) -> None:
    window, events, _ = chat
    with qtbot.waitSignal(events.reply_finished, timeout=60_000):
        send(qtbot, window, "Remember this.")
    conversation_id = window.panel.session.conversation_id
    window.sidebar.delete_requested.emit(conversation_id)
    assert window.undo_button.isVisible()
    assert window.sidebar.conversations.rowCount() == 0
    qtbot.mouseClick(window.undo_button, Qt.MouseButton.LeftButton)
    assert window.panel.session.conversation_id == conversation_id
    assert branch(window)[0] == ("user", "Remember this.")


def test_a_database_from_a_newer_hearth_is_left_alone_and_the_app_still_works(qtbot, tmp_path: Path,
                                                                            app_paths: AppPaths) -> None:
    import sqlite3

    db = sqlite3.connect(app_paths.conversations_file)
    db.execute("PRAGMA user_version = 99")
    db.close()
    before = app_paths.conversations_file.read_bytes()
    ui = open_window(qtbot, lambda: ModelChoice(path=tmp_path / "no-model.gguf"), app_paths)
    try:
        transcript = ui.window.panel.chat_view.toPlainText()
        assert "saved by a newer version of Hearth" in transcript
        assert "not kept after you quit" in transcript
        assert ui.window.isVisible()
    finally:
        shut_down(ui)
    assert app_paths.conversations_file.read_bytes() == before


class GatedModel:
    """The default model, held back until the test opens the gate: the window stays 'preparing the model'."""

    def __init__(self, path: Path, display_name: str = "Gemma 3 270M (demo)") -> None:
        self.gate = threading.Event()
        self._choice = ModelChoice(path=path, display_name=display_name, is_demo=True)

    def __call__(self) -> ModelChoice:
        self.gate.wait(60)  # on the worker's thread, like the real first start unpacking the built-in model
        return self._choice


def test_a_message_sent_while_the_model_loads_is_answered_once_it_is_ready(qtbot, builtin_model_path: Path,
                                                                          app_paths: AppPaths) -> None:
    model = GatedModel(builtin_model_path)
    # A first start: nothing measured yet, so the model starts with one thread per physical core.
    ui = open_window(qtbot, model, app_paths, measured=False, model=builtin_model_path)
    window = ui.window
    panel = window.panel
    events = WorkerEvents(ui.worker_thread.worker)
    try:
        qtbot.waitUntil(lambda: "Preparing" in window.status_message.text(), timeout=10_000)
        assert panel.send_button.isEnabled() and panel.send_button.isVisible()
        send(qtbot, window, "What is the capital of France?")

        # Shown and saved at once; a note says why no reply comes yet; Stop can end the wait.
        assert panel.composer.toPlainText() == ""
        assert branch(window) == [("user", "What is the capital of France?")]
        assert "What is the capital of France?" in panel.chat_view.toPlainText()
        assert panel.waiting_banner.isVisible()
        assert "Hearth will answer as soon as the model is ready (preparing the model…)" in \
            panel.waiting_banner.text()
        assert panel.stop_button.isVisible() and not panel.send_button.isVisible()
        assert [c.title for c in window._store.conversations()] in ([], ["What is the capital of France?"])

        # A second message while one waits stays in the box, with a sentence saying why.
        type_text(qtbot, panel.composer, "And of Spain?")
        qtbot.keyClick(panel.composer, Qt.Key.Key_Return)
        assert panel.composer.toPlainText() == "And of Spain?"
        assert "one message at a time" in window.status_message.text()
        assert len(branch(window)) == 1

        with qtbot.waitSignal(events.reply_finished, timeout=90_000):
            model.gate.set()
        assert not panel.waiting_banner.isVisible()
        assert [role for role, _ in branch(window)] == ["user", "assistant"]
        assert branch(window)[-1][1].strip()
        assert window._model.plan.n_threads == CpuFacts.probe().physical_cores
        assert panel.send_button.isVisible() and panel.send_button.isEnabled()
        assert panel.composer.toPlainText() == "And of Spain?"  # ready to send now
    finally:
        model.gate.set()
        shut_down(ui)


def test_stop_ends_the_wait_and_regenerate_answers_later(qtbot, builtin_model_path: Path,
                                                         app_paths: AppPaths) -> None:
    model = GatedModel(builtin_model_path)
    ui = open_window(qtbot, model, app_paths, model=builtin_model_path)
    window = ui.window
    panel = window.panel
    events = WorkerEvents(ui.worker_thread.worker)
    try:
        qtbot.waitUntil(lambda: "Preparing" in window.status_message.text(), timeout=10_000)
        send(qtbot, window, "Say hello.")
        assert panel.waiting is not None
        qtbot.keyClick(panel.composer, Qt.Key.Key_Escape)
        assert panel.waiting is None and not panel.waiting_banner.isVisible()
        assert panel.send_button.isVisible() and not panel.stop_button.isVisible()
        assert "Stopped waiting" in window.status_message.text()
        assert branch(window) == [("user", "Say hello.")]  # kept

        model.gate.set()
        qtbot.waitUntil(lambda: panel.model_name is not None, timeout=60_000)
        assert panel.active is None and branch(window) == [("user", "Say hello.")]  # nobody asked for a reply
        with qtbot.waitSignal(events.reply_finished, timeout=60_000):
            qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)  # Ctrl+R answers it
        assert [role for role, _ in branch(window)] == ["user", "assistant"]
    finally:
        model.gate.set()
        shut_down(ui)


def test_a_waiting_message_outlives_a_failed_load_and_the_next_model_answers_it(
        qtbot, tmp_path: Path, builtin_model_path: Path, app_paths: AppPaths) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x01" * 10)
    model = GatedModel(bad, display_name="Broken")
    ui = open_window(qtbot, model, app_paths, model=builtin_model_path)
    window = ui.window
    panel = window.panel
    events = WorkerEvents(ui.worker_thread.worker)
    try:
        qtbot.waitUntil(lambda: "Preparing" in window.status_message.text(), timeout=10_000)
        send(qtbot, window, "Are you there?")
        model.gate.set()
        qtbot.waitUntil(lambda: "incomplete" in panel.chat_view.toPlainText(), timeout=30_000)
        assert window.status_message.text() == "The model could not be loaded."
        assert panel.waiting is not None and panel.waiting_banner.isVisible()
        assert "Your message is kept" in panel.waiting_banner.text()
        assert not panel.send_button.isVisible() and panel.stop_button.isVisible()
        assert branch(window) == [("user", "Are you there?")]

        with qtbot.waitSignal(events.reply_finished, timeout=60_000):
            window.load_model(ModelChoice(path=builtin_model_path))
        assert [role for role, _ in branch(window)] == ["user", "assistant"]
        assert panel.waiting is None
    finally:
        model.gate.set()
        shut_down(ui)
