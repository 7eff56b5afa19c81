"""Hearth's main window: the conversation, the message box, Send/Stop and the status bar."""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.chat_view import ChatView
from gui.composer import Composer
from gui.demo_notice import DemoNotice
from gui.inference_worker import LoadRequest, ModelReady, ReplyRequest
from gui.preferences import cpu_signature, engine_preferences, sampling_params
from gui.settings_dialog import SettingsDialog
from inference.engine import ReplyStats
from inference.hardware import CpuFacts
from inference.session import ModelChoice
from model_store.settings import Settings, SettingsStore

USER_NAME = "You"


class MainWindow(QMainWindow):
    """The chat window. Talks to the inference worker only through signals.

    Signals:
        load_requested(LoadRequest): ask the worker to load a model.
        reply_requested(ReplyRequest): ask the worker for a reply.
    """

    load_requested = Signal(object)
    reply_requested = Signal(object)

    def __init__(self, settings: SettingsStore, cpu: CpuFacts) -> None:
        super().__init__()
        self._settings_store = settings
        self._settings = settings.load()
        self._cpu = cpu
        self._model_choice: ModelChoice | None = None
        self._model: ModelReady | None = None
        self._messages: list[dict[str, str]] = []
        self._active: ReplyRequest | None = None
        self._next_request_id = 1

        self.setWindowTitle("Hearth")
        self.resize(960, 720)
        self.chat_view = ChatView()
        self.demo_notice = DemoNotice()
        self.demo_notice.dismissed.connect(self._on_demo_notice_dismissed)
        self.demo_notice.hide()
        self.composer = Composer()
        self.composer.setPlaceholderText("Loading the model…")
        self.composer.submitted.connect(self.send_message)
        self.send_button = QPushButton("Send")
        self.send_button.setAccessibleName("Send message")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send_message)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName("Stop reply")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.clicked.connect(self.stop_reply)
        self.stop_button.hide()
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.stop_reply)
        self._build_menu()
        self._build_layout()
        self._build_status_bar()
        self._update_controls()

    # ----------------------------------------------------------------- actions

    @Slot()
    def send_message(self) -> None:
        """Send the composer's text as the next user message, if a reply can start."""
        text = self.composer.toPlainText().strip()
        if not text or self._model is None or self._active is not None:
            return
        self.composer.clear()
        self._messages.append({"role": "user", "content": text})
        self.chat_view.add_message("user", USER_NAME, text)
        self.chat_view.begin_reply(self._model.display_name)
        self._active = ReplyRequest(
            request_id=self._next_request_id,
            messages=tuple(self._messages),
            params=sampling_params(self._settings),
            cancel=threading.Event(),
        )
        self._next_request_id += 1
        self.status_message.setText("Generating…")
        self._update_controls()
        self.reply_requested.emit(self._active)

    @Slot()
    def open_model_file(self) -> None:
        """Ask for a GGUF file and load it in place of the current model."""
        if self._active is not None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open a model file", str(Path.home()), "GGUF models (*.gguf)")
        if path:
            self.load_model(ModelChoice(path=Path(path)))

    def load_model(self, choice: ModelChoice | None = None) -> None:
        """Ask the worker to load ``choice`` (None: the default model) with the current settings."""
        self._model_choice = choice
        measured = self._settings.measured_threads.get(cpu_signature(self._cpu))
        self.load_requested.emit(
            LoadRequest(
                choice=choice,
                prefs=engine_preferences(self._settings),
                measured_threads=measured,
                state_cache_bytes=self._settings.state_cache_mb << 20,
                tune_threads=measured is None,
            )
        )

    @Slot()
    def open_settings(self) -> None:
        """Show the Settings dialog and apply what the user chose."""
        dialog = SettingsDialog(self._settings, max_threads=self._cpu.logical_cores, parent=self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, settings: Settings) -> None:
        """Save new settings; reload the model when where or how it runs has changed."""
        reload = engine_preferences(settings) != engine_preferences(self._settings) or (
            settings.state_cache_mb != self._settings.state_cache_mb
        )
        self._settings = settings
        self._settings_store.save(settings)
        if reload and self._active is None:
            self.load_model(self._model_choice)

    @Slot()
    def stop_reply(self) -> None:
        """Stop the reply in progress; the worker ends it within one token."""
        if self._active is not None:
            self._active.cancel.set()
            self.status_message.setText("Stopping…")

    # ------------------------------------------------------------ worker slots

    @Slot(str)
    def on_model_loading(self, message: str) -> None:
        self._model = None
        self.demo_notice.hide()
        self.status_message.setText(message)
        self._update_controls()

    @Slot(object)
    def on_model_ready(self, ready: ModelReady) -> None:
        self._model = ready
        self.model_label.setText(ready.display_name)
        self.engine_label.setText(ready.plan.summary())
        self.engine_label.setToolTip(f"{ready.plan.reason}\nChat format: {ready.chat_format}.")
        self.status_message.setText(f"Ready · loaded in {ready.load_s:.1f} s")
        self.composer.setPlaceholderText(f"Message {ready.display_name}  (Enter to send, Shift+Enter for a new line)")
        self.demo_notice.setVisible(ready.is_demo and not self._settings.demo_notice_dismissed)
        self._update_controls()
        self.composer.setFocus()

    @Slot(str)
    def on_model_failed(self, message: str) -> None:
        self._model = None
        self.status_message.setText("The model could not be loaded.")
        self.composer.setPlaceholderText("No model loaded")
        self.chat_view.add_notice(message)
        self._update_controls()

    @Slot(int)
    def on_threads_measured(self, threads: int) -> None:
        self._settings.measured_threads[cpu_signature(self._cpu)] = threads
        self._settings_store.save(self._settings)

    @Slot(str)
    def on_engine_stopped(self, reason: str) -> None:
        self.chat_view.add_notice(f"{reason} Your conversation is kept; Hearth is restarting the engine.")

    @Slot(int, str)
    def on_reply_chunk(self, request_id: int, text: str) -> None:
        if self._active is not None and request_id == self._active.request_id:
            self.chat_view.append_reply(text)

    @Slot(int, object)
    def on_reply_finished(self, request_id: int, stats: ReplyStats) -> None:
        note = "Reached the reply length limit" if stats.finish_reason == "length" else None
        self._end_reply(request_id, stats, note=note, status="Ready")

    @Slot(int, object)
    def on_reply_cancelled(self, request_id: int, stats: ReplyStats) -> None:
        self._end_reply(request_id, stats, note="Stopped", status="Stopped")

    @Slot(int, str)
    def on_reply_failed(self, request_id: int, message: str) -> None:
        self._end_reply(request_id, None, note="Interrupted", status="The reply failed.")
        self.chat_view.add_notice(message)

    # ---------------------------------------------------------------- helpers

    def _end_reply(self, request_id: int, stats: ReplyStats | None, *, note: str | None, status: str) -> None:
        if self._active is None or request_id != self._active.request_id:
            return
        text = self.chat_view.end_reply(note)
        if text:
            self._messages.append({"role": "assistant", "content": text})
        self._active = None
        self.status_message.setText(status)
        if stats is not None:
            self._show_reply_stats(stats)
        self._update_controls()

    def _show_reply_stats(self, stats: ReplyStats) -> None:
        if stats.completion_tokens:
            self.speed_label.setText(f"{stats.tokens_per_s:.1f} tok/s · first token {stats.ttft_s:.2f} s")
        if stats.context_window:
            self.context_label.setText(f"Context {stats.context_used:,} / {stats.context_window:,}")
            self.context_label.setToolTip(
                f"This turn used {stats.context_used:,} of the model's {stats.context_window:,}-token window "
                f"({stats.prompt_tokens_evaluated:,} of {stats.prompt_tokens:,} prompt tokens had to be computed; "
                "the rest came from the cache)."
            )
        if stats.dropped_messages:
            self.chat_view.add_notice(
                f"This conversation no longer fits in the model's {stats.context_window:,}-token context window: "
                f"the oldest {stats.dropped_messages} messages were left out of what the model saw "
                "(the system prompt is always kept). They are still here."
            )

    @Slot()
    def _on_demo_notice_dismissed(self) -> None:
        self._settings.demo_notice_dismissed = True
        self._settings_store.save(self._settings)

    def _update_controls(self) -> None:
        generating = self._active is not None
        self.send_button.setVisible(not generating)
        self.send_button.setEnabled(self._model is not None)
        self.stop_button.setVisible(generating)

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_action = file_menu.addAction("&Open model file…")
        open_action.setShortcut(QKeySequence.StandardKey.Open)
        open_action.triggered.connect(self.open_model_file)
        settings_action = file_menu.addAction("&Settings…")
        # The platform's Preferences key where it has one (macOS: Cmd+,); Ctrl+, everywhere.
        settings_action.setShortcuts(
            [*QKeySequence.keyBindings(QKeySequence.StandardKey.Preferences), QKeySequence("Ctrl+,")]
        )
        settings_action.triggered.connect(self.open_settings)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)

    def _build_layout(self) -> None:
        input_row = QHBoxLayout()
        input_row.setContentsMargins(16, 8, 16, 12)
        input_row.setSpacing(8)
        input_row.addWidget(self.composer, 1)
        input_row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        input_row.addWidget(self.stop_button, 0, Qt.AlignmentFlag.AlignBottom)
        column = QVBoxLayout()
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.demo_notice)
        column.addWidget(self.chat_view, 1)
        column.addLayout(input_row)
        central = QWidget()
        central.setLayout(column)
        self.setCentralWidget(central)

    def _build_status_bar(self) -> None:
        self.status_message = QLabel("Starting…")
        self.status_message.setAccessibleName("Status")
        self.model_label = QLabel("")
        self.model_label.setAccessibleName("Model")
        self.engine_label = QLabel("")
        self.engine_label.setAccessibleName("Engine and device")
        self.speed_label = QLabel("")
        self.speed_label.setAccessibleName("Speed of the last reply")
        self.context_label = QLabel("")
        self.context_label.setAccessibleName("Context window used")
        bar = self.statusBar()
        bar.setStyleSheet("QStatusBar QLabel { padding: 2px 10px; }")
        bar.addWidget(self.status_message, 1)
        for label in (self.model_label, self.engine_label, self.context_label, self.speed_label):
            bar.addPermanentWidget(label)
