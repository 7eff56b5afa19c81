"""Hearth's main window: conversations on the left, the open one on the right, the model in the status bar."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from gui.background import LatestSaver
from gui.chat_session import ChatSession
from gui.conversation_dialog import ConversationDialog
from gui.conversation_panel import ConversationPanel
from gui.demo_notice import DemoNotice
from gui.messages import describe_error
from gui.model_picker import LOCAL, MANAGE, ModelPicker, provider_id_of, provider_key
from gui.preferences import cpu_signature, engine_preferences, sampling_params
from gui.settings_dialog import SettingsDialog
from gui.sidebar import Sidebar
from inference.engine import ExecutionPlan, ReplyStats, SamplingParams
from inference.hardware import CpuFacts
from inference.model_owner import LoadRequest, ModelReady, ReplyRequest, ThreadsChosen
from inference.session import ModelChoice
from model_store.conversation_io import export_json, export_markdown, import_json
from model_store.conversations import Conversation, ConversationStore
from model_store.providers import Provider, ProviderStore
from model_store.settings import Settings, SettingsStore
from model_store.store_writer import StoreWriter

UNDO_DELETE_MS = 10_000
OPENING = "Opening the conversation (waiting for the disk to save the last changes)…"


def engine_tooltip(plan: ExecutionPlan, chat_format: str, *, threads: str = "") -> str:
    """Why the model runs where it does, the CPU kernels in use, the thread choice and the chat format."""
    lines = [plan.reason]
    if threads:
        lines.append(threads)
    if (plan.device == "CPU" or plan.partly_on_gpu) and plan.cpu_variant:
        kernels = "built into this llama.cpp" if plan.cpu_variant == "built-in" else \
            f"{plan.cpu_variant} (the best of llama.cpp's builds that this processor runs safely)"
        lines.append(f"CPU kernels: {kernels}.")
    lines.append(f"Chat format: {chat_format}.")
    return "\n".join(lines)


class MainWindow(QMainWindow):
    """The chat window. Talks to the inference worker only through signals.

    The GUI thread never waits for the disk: conversation writes are queued to
    the :class:`StoreWriter` (what needs them committed first runs when the
    writer says so) and settings are saved by a :class:`LatestSaver`.

    Signals:
        load_requested(LoadRequest): ask the worker to load a model.
        reply_requested(ReplyRequest): ask the worker for a reply.
        storage_failed(str): a background save failed (emitted from the writer's thread).
    """

    load_requested = Signal(object)
    reply_requested = Signal(object)
    storage_failed = Signal(str)
    # Emitted on the writer's thread once queued writes are committed; carries what to run next.
    _writes_done = Signal(object)

    def __init__(
        self, settings: SettingsStore, cpu: CpuFacts, store: ConversationStore, writer: StoreWriter
    ) -> None:
        super().__init__()
        self._settings_store = settings
        self._settings = settings.load()
        self._cpu = cpu
        self._store = store
        self._writer = writer
        self._model_choice: ModelChoice | None = None
        self._model: ModelReady | None = None
        self._deleted_id: str | None = None
        self._deleted_session: ChatSession | None = None  # the open conversation, if that is what was deleted
        self._opening = 0  # counts open requests: one answered late gives way to a newer one
        self._searching = 0  # the same for searches
        self._deleted_here: set[str] = set()  # the store lists them until their delete is written
        self._sidebar_refresh_queued = False
        self._storage_closed = False
        self._settings_saver = LatestSaver(self._settings_store.save, self)
        self._settings_saver.failed.connect(self._show_status)
        self._writes_done.connect(self._run_after_writes)
        self._notices_shown: list[str] = []
        self._make_model_manager: Callable[[], QDialog] | None = None
        self._model_manager: QDialog | None = None
        self._providers: ProviderStore | None = None
        self._saved_providers: list[Provider] = []
        self._make_providers_dialog: Callable[[], QDialog] | None = None
        self._loading: str | None = None  # what the local model is doing while it is not ready
        self._api = None  # the local API server's switch (gui/api_switch.py), when the app has one
        self._load_failed = False
        self.documents = None  # gui.documents.DocumentsController, when the app chats with documents

        self.setWindowTitle("Hearth")
        self.resize(1180, 760)
        self.sidebar = Sidebar()
        self.panel = ConversationPanel(sampling=self._sampling, remote=self._remote_target)
        self.panel.reply_requested.connect(self._request_reply)
        self.panel.conversation_changed.connect(self._open_conversation_changed)
        self.panel.reply_ended.connect(self._show_reply_stats)
        self.panel.notice.connect(self._show_status)
        self.demo_notice = DemoNotice()
        self.demo_notice.dismissed.connect(self._on_demo_notice_dismissed)
        self.demo_notice.hide()
        self.storage_failed.connect(self._on_storage_failed)
        self._wire_sidebar()
        self._build_layout()
        self._build_status_bar()
        self._build_menus()
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.panel.stop_reply)
        latest = store.conversations()
        # Read at once: nothing of this window's is queued yet (at most the purge of long-deleted chats).
        self._open_now(self._opening, latest[0].id if latest else None, None)

    def bring_to_front(self) -> None:
        """Show and raise the window (another Hearth start asked for it)."""
        self.showNormal()
        self.raise_()
        self.activateWindow()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 - Qt override
        """Redraw the conversation in the new colours when the light/dark theme changes."""
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "panel") and self.panel.active is None:
            self.panel.chat_view.refresh_theme()
            if self.panel.session is not None:
                self.panel.show_branch()

    # ----------------------------------------------------------- conversations

    def open_conversation(self, conversation_id: str | None, *, focus_message: str | None = None) -> None:
        """Show a saved conversation (None: a new, empty one).

        A saved one is read once the writes queued so far are committed: at
        once when there are none, otherwise when the writer is done with them
        (the window goes on meanwhile; a newer request replaces this one).
        """
        if not self._may_switch():
            return
        self._opening += 1
        if conversation_id is None:
            self._open_now(self._opening, None, focus_message)
            return
        if self._writer.pending:
            self._show_status(OPENING)
        self.after_writes(partial(self._open_now, self._opening, conversation_id, focus_message))

    def _may_switch(self) -> bool:
        """False (and says why) while a reply runs or a message waits for the model."""
        if self.panel.active is not None:
            self._show_status("Stop the reply before switching conversations.")
            return False
        if self.panel.waiting is not None:
            self._show_status("Your message is waiting for the model: press Stop to stop waiting before switching.")
            return False
        return True

    def _open_now(self, opening: int, conversation_id: str | None, focus_message: str | None) -> None:
        if opening != self._opening or not self._may_switch():
            return
        if self.status_message.text() == OPENING:
            self.status_message.setText("")
        conversation = self._store.conversation(conversation_id) if conversation_id else None
        self._show_session(ChatSession(self._store, self._writer, conversation), focus_message)

    def _show_session(self, session: ChatSession, focus_message: str | None = None) -> None:
        self.panel.open(session, focus_message=focus_message)
        conversation = session.conversation
        self._show_answerer()
        if conversation and conversation.model and not provider_id_of(conversation.model) and \
                conversation.model != self._model_path():
            if Path(conversation.model).is_file():
                self.load_model(ModelChoice(path=Path(conversation.model)))
            else:
                self._show_status(f"This conversation's model ({Path(conversation.model).name}) is no longer there.")
        for notice in self._store.notices[len(self._notices_shown):]:
            self.panel.chat_view.add_notice(notice)
        self._notices_shown = list(self._store.notices)
        self.refresh_sidebar()
        self.panel.composer.setFocus()

    @Slot()
    def new_conversation(self) -> None:
        """Start an empty conversation (saved with its first message)."""
        self.open_conversation(None)

    @Slot()
    def refresh_sidebar(self) -> None:
        """Reload the conversation list, with the open conversation as the newest.

        It does not wait for queued writes (that would block on the disk): the
        open conversation, which may not be written yet, comes from memory, a
        conversation deleted here is left out at once, and the list is read
        again once the writes queued now are in (pins, titles of the others).
        """
        listed = [c for c in self._store.conversations() if c.id not in self._deleted_here]
        if self._writer.pending and not self._sidebar_refresh_queued:
            self._sidebar_refresh_queued = True
            self._writer.when_done(partial(self._writes_done.emit, self._refresh_sidebar_after_writes))
        self._show_with_open_conversation(listed)

    @Slot()
    def _open_conversation_changed(self) -> None:
        """A message was added to the open conversation, or its title changed: move its row to the top.

        Only the open conversation changed, so the list is rebuilt from what the
        sidebar shows, without reading the store on the GUI thread at every
        message (the reply's document search would wait for it); a conversation
        not listed yet (its first message) reads the list.
        """
        current = self.panel.session.conversation
        shown = self.sidebar.conversations.rows()
        if current is None or not any(c.id == current.id for c in shown):
            self.refresh_sidebar()
            return
        self._show_with_open_conversation(shown)

    def _show_with_open_conversation(self, listed: list[Conversation]) -> None:
        """Show ``listed`` with the open conversation as in memory (ahead of the queued writes), as the newest."""
        current = self.panel.session.conversation
        if current is not None:
            others = [c for c in listed if c.id != current.id]
            pinned = [c for c in others if c.pinned]
            listed = [current, *pinned] if current.pinned else [*pinned, current]
            listed += [c for c in others if not c.pinned]
        self.sidebar.show_conversations(listed, self.panel.session.conversation_id)

    def _refresh_sidebar_after_writes(self) -> None:
        self._sidebar_refresh_queued = False
        self.refresh_sidebar()

    @Slot()
    def open_conversation_settings(self) -> None:
        """Edit this conversation's system prompt and reply settings, or apply a preset.

        The dialog opens once queued writes (a preset saved a moment ago) are committed.
        """
        self.after_writes(partial(self._edit_conversation_settings, self.panel.session))

    def _edit_conversation_settings(self, session: ChatSession) -> None:
        if session is not self.panel.session:
            return  # another conversation was opened meanwhile
        provider = self._answering_provider()
        # "Keep this model" names what answers now: the provider's model, or the loaded local one.
        model_name = f"{provider.model} · {provider.name}" if provider else (
            self._model.display_name if self._model else "")
        answering = provider_key(provider.id) if provider else self._model_path()
        dialog = ConversationDialog(
            system_prompt=session.system_prompt,
            sampling=self._sampling(),
            presets=self._store.presets(),
            model_name=model_name,
            uses_model=bool(session.model and session.model == answering),
            thinking_format=self._model.thinking if self._model and not provider else "",
            parent=self,
        )
        dialog.preset_saved.connect(lambda name, values: self._writer.submit("save_preset", name, values))
        if dialog.exec():
            session.update_settings(
                system_prompt=dialog.system_prompt(),
                model=answering if dialog.keep_model.isChecked() else "",
                settings=dialog.sampling_values(),
            )
            self._show_answerer()
            self.refresh_sidebar()

    @Slot()
    def export_conversation(self) -> None:
        """Save the branch on screen as Markdown or JSON."""
        session = self.panel.session
        if not session.branch():
            self._show_status("There is nothing to export yet.")
            return
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export conversation", str(Path.home() / f"{session.conversation.title}.md"),
            "Markdown (*.md);;JSON (*.json)",
        )
        if not path:
            return
        as_json = path.endswith(".json") or "JSON" in chosen
        text = export_json(session.conversation, session.branch()) if as_json else \
            export_markdown(session.conversation, session.branch())
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            self._show_status(describe_error(exc))
            return
        self._show_status(f"Exported to {path}")

    @Slot()
    def import_conversation(self) -> None:
        """Add a conversation from a JSON file exported by Hearth."""
        path, _ = QFileDialog.getOpenFileName(self, "Import conversation", str(Path.home()), "JSON (*.json)")
        if not path:
            return
        try:
            conversation_id = import_json(Path(path).read_text(encoding="utf-8"), self._writer)
        except (OSError, ValueError) as exc:
            self._show_status(f"That file could not be imported: {exc}")
            return
        self.open_conversation(conversation_id)

    # ------------------------------------------------------------------ model

    @Slot()
    def open_collections(self) -> None:
        """File › Document collections…: folders any conversation can chat with."""
        if self.documents is None:
            self._show_status("Documents are not available in this window.")
            return
        self.documents.open_collections()

    def set_providers(self, providers: ProviderStore, make_dialog: Callable[[], QDialog]) -> None:
        """The saved providers (remote OpenAI-compatible servers) and how to build File › Providers…."""
        self._providers = providers
        self._make_providers_dialog = make_dialog
        self._saved_providers = providers.list()
        self._show_answerer()

    @Slot()
    def open_providers(self) -> None:
        """Show File › Providers…; the model picker lists what it saved."""
        if self._make_providers_dialog is None:
            return
        dialog = self._make_providers_dialog()
        dialog.exec()
        self._saved_providers = self._providers.list()
        self._show_answerer()

    @Slot(str)
    def _on_model_chosen(self, key: str) -> None:
        """The model picker: answer this conversation with the local model or a provider's."""
        if key == MANAGE:
            self.open_providers()
            return
        if self.panel.busy:
            self._show_answerer()
            self._show_status("The model can change once this reply ends (Stop ends it now).")
            return
        session = self.panel.session
        session.choose_model("" if key == LOCAL else key)
        self._show_answerer()
        if session.conversation is not None:
            self.refresh_sidebar()

    def _answering_provider(self) -> Provider | None:
        """The provider whose model answers the open conversation, or None for the local model."""
        session = self.panel.session
        provider_id = provider_id_of(session.model) if session is not None else None
        return next((p for p in self._saved_providers if p.id == provider_id), None)

    def _remote_target(self):
        """For a reply: how to reach the answering provider (read on the reply's thread: the key is in the
        keyring), or None for the local model."""
        provider = self._answering_provider()
        return partial(self._providers.target, provider.id) if provider is not None else None

    def _show_answerer(self) -> None:
        """Show, in the picker, the status bar and the message box, which model answers the open conversation."""
        provider = self._answering_provider()
        session = self.panel.session
        if session is not None and provider_id_of(session.model) and provider is None:
            self._show_status("This conversation's provider is no longer saved; the local model answers it.")
        local_name = self._model.display_name if self._model else ""
        self.model_picker.show_choices(local_name, self._saved_providers,
                                       provider_key(provider.id) if provider else LOCAL)
        self.demo_notice.setVisible(provider is None and self._model is not None and self._model.is_demo
                                    and not self._settings.demo_notice_dismissed)
        if provider is not None:
            self.engine_label.setText(f"{provider.name} · remote")
            self.engine_label.setToolTip(f"Replies come from {provider.base_url} (model {provider.model}).")
            self.panel.set_model(f"{provider.model} · {provider.name}")
            return
        if self._model is not None:
            self.engine_label.setText(self._model.plan.summary())
            self.engine_label.setToolTip(engine_tooltip(self._model.plan, self._model.chat_format))
            self.panel.set_model(self._model.display_name)
            return
        self.engine_label.setText("")
        if self._loading is not None:
            self.panel.set_loading(self._loading)
        elif self._load_failed:
            self.panel.set_model(None)

    def set_api_switch(self, api) -> None:
        """The local API server's switch: Settings turns it on and off and shows its token; the status bar says."""
        self._api = api
        api.status_changed.connect(self._show_api_status)

    @property
    def settings(self) -> Settings:
        """The settings in effect."""
        return self._settings

    @Slot(str, str)
    def _show_api_status(self, text: str, tooltip: str) -> None:
        self.api_label.setText(text)
        self.api_label.setToolTip(tooltip)
        self.api_label.setVisible(bool(text))
        if tooltip and text != "API on":
            self.panel.chat_view.add_notice(tooltip)

    def set_model_manager(self, make: Callable[[], QDialog]) -> None:
        """How to build the model manager (it is created on first use and kept)."""
        self._make_model_manager = make

    @Slot()
    def open_model_manager(self) -> None:
        """Show the model manager: find, download, keep and pick models."""
        if self._make_model_manager is None:
            return
        if self._model_manager is None:
            self._model_manager = self._make_model_manager()
            self._model_manager.use_requested.connect(self._use_installed_model)
        self._model_manager.show()
        self._model_manager.raise_()
        self._model_manager.activateWindow()
        self._model_manager.search_box.setFocus()

    @Slot(object)
    def _use_installed_model(self, model) -> None:
        self.load_model(ModelChoice(path=model.path, display_name=model.display_name, is_demo=model.is_demo))

    def load_model(self, choice: ModelChoice | None = None) -> None:
        """Ask the worker to load ``choice`` (None: the default model) with the current settings."""
        self._model_choice = choice
        self._loading, self._load_failed = "Preparing the model…", False
        if self.panel.active is None and self._answering_provider() is None:
            self.panel.set_loading(self._loading)  # Send works from now on: the message waits
        self.load_requested.emit(
            LoadRequest(
                choice=choice,
                prefs=engine_preferences(self._settings),
                measured=dict(self._settings.measured_threads.get(cpu_signature(self._cpu), {})),
                state_cache_bytes=self._settings.state_cache_mb << 20,
            )
        )

    @Slot()
    def open_model_file(self) -> None:
        """Ask for a GGUF file and load it in place of the current model."""
        if self.panel.active is not None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open a model file", str(Path.home()), "GGUF models (*.gguf)")
        if path:
            self.load_model(ModelChoice(path=Path(path)))

    @Slot()
    def open_settings(self) -> None:
        """Show the Settings dialog and apply what the user chose."""
        gpus = self._model.gpus if self._model else ()
        api = self._api
        dialog = SettingsDialog(self._settings, max_threads=self._cpu.logical_cores, gpus=gpus,
                                api_token=api.token if api else None,
                                regenerate_api_token=api.regenerate_token if api else None, parent=self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, settings: Settings) -> None:
        """Save new settings; reload the model when where or how it runs has changed."""
        reload = engine_preferences(settings) != engine_preferences(self._settings) or (
            settings.state_cache_mb != self._settings.state_cache_mb
        )
        # Measurements may have arrived while the dialog was open: they are not the dialog's to drop.
        self._settings = replace(settings, measured_threads=self._settings.measured_threads)
        self._save_settings()
        if self._api is not None:
            self._api.apply(self._settings)
        if reload and self.panel.active is None:
            self.load_model(self._model_choice)

    def stop_reply(self) -> None:
        """Stop the reply in progress."""
        self.panel.stop_reply()

    def close_storage(self, timeout: float = 5.0) -> bool:
        """At shutdown, before the store closes: drop what still waits for queued writes, and wait until the
        settings asked to be saved are on disk. False if that took longer than ``timeout``."""
        self._storage_closed = True
        return self._settings_saver.wait(timeout)

    # ------------------------------------------------------------ worker slots

    @Slot(str)
    def on_model_loading(self, message: str) -> None:
        self._model = None
        self._loading = message
        if self._answering_provider() is None:
            self.panel.set_loading(message)
        self.demo_notice.hide()
        self.status_message.setText(message)

    @Slot(object)
    def on_model_ready(self, ready: ModelReady) -> None:
        self._model, self._loading = ready, None
        self.panel.thinking_format = ready.thinking or "think-tags"  # tags at a reply's start are thinking anyway
        self.panel.thinking_replay = ready.thinking_replay
        self.panel.thinking_opens = ready.thinking_opens
        self.status_message.setText(f"Ready · loaded in {ready.load_s:.1f} s")
        self._show_answerer()  # last: a waiting message's reply starts here
        self.panel.composer.setFocus()

    @Slot(str)
    def on_model_failed(self, message: str) -> None:
        self._model, self._loading, self._load_failed = None, None, True
        self._show_answerer()
        self.status_message.setText("The model could not be loaded.")
        self.panel.chat_view.add_notice(message)

    @Slot(object)
    def on_threads_measured(self, chosen: ThreadsChosen) -> None:
        """Keep the thread count measured for the loaded model, and show the plan it runs with now."""
        self._settings.measured_threads.setdefault(cpu_signature(self._cpu), {})[chosen.model_key] = chosen.measured
        self._save_settings()
        if self._model is not None:
            self._model = replace(self._model, plan=chosen.plan)
            if self._answering_provider() is not None:
                return
            self.engine_label.setText(chosen.plan.summary())
            self.engine_label.setToolTip(engine_tooltip(chosen.plan, self._model.chat_format,
                                                        threads=f"Threads, measured since: {chosen.reason}"))

    @Slot(str)
    def on_engine_stopped(self, reason: str) -> None:
        self.panel.chat_view.add_notice(f"{reason} Your conversation is kept; Hearth is restarting the engine.")

    # --------------------------------------------------------------- helpers

    def _save_settings(self) -> None:
        """Save a snapshot of the settings off the GUI thread (the file is written with fsync)."""
        self._settings_saver.save(copy.deepcopy(self._settings))

    def after_writes(self, then: Callable[[], None]) -> None:
        """Run ``then`` on the GUI thread once every queued write is committed: now if none is queued."""
        if not self._writer.pending:
            then()
            return
        self._writer.when_done(partial(self._writes_done.emit, then))

    @Slot(object)
    def _run_after_writes(self, then: Callable[[], None]) -> None:
        if not self._storage_closed:
            then()

    def context_length(self) -> int:
        """The answering model's context window in tokens, which documents are fitted into: a provider's
        as saved (else an assumed one), or the loaded local model's (4,096 until one is ready)."""
        provider = self._answering_provider()
        if provider is not None:
            return provider.usable_context
        return self._model.plan.n_ctx if self._model is not None else 4096

    def _sampling(self) -> SamplingParams:
        """Reply settings: the user's defaults, overridden by the open conversation's own."""
        params = sampling_params(self._settings)
        session = self.panel.session
        overrides = session.conversation.settings if session and session.conversation else {}
        known = {key: value for key, value in overrides.items() if hasattr(params, key)}
        return replace(params, **known)

    def _model_path(self) -> str:
        """The loaded model's file ('' for the default model, which is not remembered per conversation)."""
        return str(self._model_choice.path) if self._model_choice else ""

    @Slot(object)
    def _show_reply_stats(self, stats: ReplyStats) -> None:
        self.status_message.setText({"cancelled": "Stopped"}.get(stats.finish_reason, "Ready"))
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
            self.panel.chat_view.add_notice(
                f"This conversation no longer fits in the model's {stats.context_window:,}-token context window: "
                f"the oldest {stats.dropped_messages} messages were left out of what the model saw "
                "(the system prompt is always kept). They are still here."
            )

    @Slot(object)
    def _request_reply(self, request: ReplyRequest) -> None:
        self.reply_requested.emit(request)

    @Slot(str)
    def _show_status(self, text: str) -> None:
        self.status_message.setText(text)

    @Slot(str)
    def _on_storage_failed(self, message: str) -> None:
        self.status_message.setText(message)
        self.panel.chat_view.add_notice(f"{message} Hearth keeps trying; nothing on screen is lost while it runs.")

    @Slot()
    def _on_demo_notice_dismissed(self) -> None:
        self._settings.demo_notice_dismissed = True
        self._save_settings()

    @Slot(str, str)
    def _rename(self, conversation_id: str, title: str) -> None:
        self._writer.submit("rename", conversation_id, title)
        session = self.panel.session
        if session.conversation_id == conversation_id:
            session.conversation = replace(session.conversation, title=title)

    @Slot(str, bool)
    def _pin(self, conversation_id: str, pinned: bool) -> None:
        self._writer.submit("set_pinned", conversation_id, pinned)
        session = self.panel.session
        if session.conversation_id == conversation_id:
            session.conversation = replace(session.conversation, pinned=pinned)
        self.refresh_sidebar()

    @Slot(str)
    def _delete(self, conversation_id: str) -> None:
        session = self.panel.session
        current = session.conversation_id == conversation_id
        # The open conversation is taken from memory, which may be ahead of the queued writes.
        conversation = session.conversation if current else self._store.conversation(conversation_id)
        self._writer.submit("delete", conversation_id)
        self._deleted_here.add(conversation_id)
        self._deleted_id = conversation_id
        self._deleted_session = session if current else None
        title = conversation.title if conversation else "the conversation"
        self.status_message.setText(f"Deleted “{title}”.")
        self.undo_button.show()
        QTimer.singleShot(UNDO_DELETE_MS, self.undo_button.hide)
        if self.panel.session.conversation_id == conversation_id:
            self.new_conversation()
        else:
            self.refresh_sidebar()

    @Slot()
    def _undo_delete(self) -> None:
        if self._deleted_id is None:
            return
        self._writer.submit("undo_delete", self._deleted_id)
        self._deleted_here.discard(self._deleted_id)
        if self._deleted_session is not None and self._may_switch():
            self._opening += 1  # a slower open still on its way gives way to this one
            self._show_session(self._deleted_session)  # it is all in memory: no need to wait for the disk
        else:
            self.open_conversation(self._deleted_id)
        self._deleted_id = None
        self._deleted_session = None
        self.undo_button.hide()
        self.status_message.setText("Restored.")

    @Slot(str)
    def _search(self, text: str) -> None:
        self._searching += 1
        self.after_writes(partial(self._show_hits, self._searching, text))  # the newest words too

    def _show_hits(self, searching: int, text: str) -> None:
        if searching == self._searching and self.sidebar.search_box.text().strip() == text:
            self.sidebar.show_hits(self._store.search(text))

    def _wire_sidebar(self) -> None:
        self.sidebar.new_chat_requested.connect(self.new_conversation)
        self.sidebar.conversation_chosen.connect(self.open_conversation)
        self.sidebar.hit_chosen.connect(lambda c, m: self.open_conversation(c, focus_message=m))
        self.sidebar.search_changed.connect(self._search)
        self.sidebar.rename_requested.connect(self._rename)
        self.sidebar.pin_requested.connect(self._pin)
        self.sidebar.delete_requested.connect(self._delete)

    def _build_menus(self) -> None:
        def action(menu, text: str, slot, *keys) -> QAction:
            item = menu.addAction(text)
            shortcuts = []
            for key in keys:
                for sequence in QKeySequence.keyBindings(key) if isinstance(key, QKeySequence.StandardKey) else \
                        [QKeySequence(key)]:
                    if sequence not in shortcuts:  # the same key twice would make the shortcut ambiguous
                        shortcuts.append(sequence)
            item.setShortcuts(shortcuts)
            item.triggered.connect(slot)
            return item

        file_menu = self.menuBar().addMenu("&File")
        action(file_menu, "&New chat", self.new_conversation, QKeySequence.StandardKey.New, "Ctrl+N")
        action(file_menu, "&Models…", self.open_model_manager, "Ctrl+M")
        action(file_menu, "&Open model file…", self.open_model_file, QKeySequence.StandardKey.Open)
        action(file_menu, "&Providers…", self.open_providers)
        action(file_menu, "&Document collections…", self.open_collections)
        file_menu.addSeparator()
        action(file_menu, "&Export conversation…", self.export_conversation, "Ctrl+Shift+S")
        action(file_menu, "&Import conversation…", self.import_conversation)
        file_menu.addSeparator()
        # The platform's Preferences key where it has one (macOS: Cmd+,); Ctrl+, everywhere.
        action(file_menu, "&Settings…", self.open_settings, QKeySequence.StandardKey.Preferences, "Ctrl+,")
        action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        chat_menu = self.menuBar().addMenu("&Chat")
        action(chat_menu, "&Regenerate reply", lambda: self.panel.regenerate(), "Ctrl+R")
        action(chat_menu, "&Edit last message", lambda: self.panel.edit(), "Ctrl+E")
        action(chat_menu, "&Search all chats", self.sidebar.focus_search, QKeySequence.StandardKey.Find, "Ctrl+F")
        action(chat_menu, "Conversation &settings…", self.open_conversation_settings, "Ctrl+Shift+,")

    def _build_layout(self) -> None:
        right = QWidget()
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.demo_notice)
        column.addWidget(self.panel, 1)
        splitter = QSplitter()
        splitter.addWidget(self.sidebar)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 920])
        self.setCentralWidget(splitter)

    def _build_status_bar(self) -> None:
        self.status_message = QLabel("Starting…")
        self.status_message.setAccessibleName("Status")
        self.undo_button = QPushButton("Undo")
        self.undo_button.setAccessibleName("Undo delete")
        self.undo_button.clicked.connect(self._undo_delete)
        self.undo_button.hide()
        self.model_picker = ModelPicker()
        self.model_picker.chosen.connect(self._on_model_chosen)
        self.engine_label = QLabel("")
        self.engine_label.setAccessibleName("Engine and device")
        self.speed_label = QLabel("")
        self.speed_label.setAccessibleName("Speed of the last reply")
        self.context_label = QLabel("")
        self.context_label.setAccessibleName("Context window used")
        self.api_label = QLabel("")
        self.api_label.setAccessibleName("Local API server")
        self.api_label.hide()
        bar = self.statusBar()
        bar.setStyleSheet("QStatusBar QLabel { padding: 2px 10px; }")
        bar.addWidget(self.status_message, 1)
        bar.addWidget(self.undo_button)
        for label in (self.api_label, self.model_picker, self.engine_label, self.context_label, self.speed_label):
            bar.addPermanentWidget(label)
