"""The right-hand side of the window: one conversation, its message box, and everything you do to it.

Sending, streaming into the view, Stop, editing any message, regenerating,
continuing an interrupted reply and moving between versions (``‹ 2/3 ›``) all
happen here, through a :class:`ChatSession` that saves each change.

A message sent while the model is still loading is saved and shown at once;
it waits (one at a time, with a note saying so) and its reply starts by
itself when the model is ready. Stop ends the wait.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from gui.attach_button import AttachButton
from gui.chat_session import ChatSession
from gui.chat_view import ChatView, MessageView
from gui.composer import Composer
from gui.documents import AttachmentChips
from inference.document_prompt import Source, sources_from_json, sources_json
from inference.model_owner import ReplyRequest
from inference.engine import ReplyStats, SamplingParams
from inference.thinking import ThinkingSplitter
from model_store.conversations import Message

USER_NAME = "You"
SAVE_CHECK_MS = 200  # a paused reply's unsaved text is saved within a second and this
SEARCHING = "*Searching your documents…*"
_CITATION = re.compile(r"\[(\d{1,2})\](?!\()")


class ConversationPanel(QWidget):
    """Shows a :class:`ChatSession` and turns the user's actions into replies and saved changes.

    Signals:
        reply_requested(ReplyRequest): the worker should generate this reply.
        conversation_changed(): a message was added or a title may have changed (refresh the sidebar).
        reply_ended(ReplyStats): a reply finished or was stopped; the stats are for the status bar.
        notice(str): something to tell the user in the status bar.
        attach_requested(): the paperclip was clicked.
        detach_requested(str): an attachment chip's × was clicked (the file's path).
        citation_clicked(Source): a reply's ``[n]`` or Sources link was clicked.
        conversation_shown(): another conversation is on screen.

    States: no model (nothing can be sent), loading (a message can be sent and
    waits), ready, waiting (a sent message waits for the model; Stop ends the
    wait) and generating (Stop ends the reply).
    """

    reply_requested = Signal(object)
    conversation_changed = Signal()
    reply_ended = Signal(object)
    notice = Signal(str)
    attach_requested = Signal()
    detach_requested = Signal(str)
    citation_clicked = Signal(object)
    conversation_shown = Signal()

    def __init__(
        self,
        sampling: Callable[[], SamplingParams],
        parent: QWidget | None = None,
        *,
        remote: Callable[[], object | None] = lambda: None,
    ) -> None:
        super().__init__(parent)
        self._sampling = sampling
        self._remote = remote  # the provider's model that answers this conversation, or None for the local one
        self.session: ChatSession | None = None
        self.model_name: str | None = None
        self.loading: str | None = None  # what is being loaded, e.g. "Loading Gemma 3 270M…"
        self.active: ReplyRequest | None = None
        self.waiting: Message | None = None  # the user's message waiting for the model to be ready
        self._reply_id: str | None = None
        # How replies show thinking: "think-tags" (also a provider's reasoning_content), "harmony" or "".
        self.thinking_format = "think-tags"
        self.thinking_replay = False  # the model's template reads earlier thinking back
        self.thinking_opens = False  # the model's template opens <think> in the prompt
        self._splitter = ThinkingSplitter("")
        self._editing_id: str | None = None
        self._next_request_id = 1
        self._documents = None  # gui.documents.DocumentTasks, when documents are on
        self._documents_context: Callable[[], int] = lambda: 4096  # the loaded model's n_ctx
        self._searching = False  # the active reply waits for its documents
        self._sources: dict[str, list[Source]] = {}  # reply id -> the passages it was given
        self._save_timer = QTimer(self)
        self._save_timer.setInterval(SAVE_CHECK_MS)
        self._save_timer.timeout.connect(self._save_if_due)

        self.chat_view = ChatView()
        self.chat_view.action_requested.connect(self._on_action)
        self.editing_banner = QLabel()
        self.editing_banner.setAccessibleName("Editing a message")
        self.editing_banner.setContentsMargins(16, 4, 16, 0)
        self.editing_banner.hide()
        self.waiting_banner = QLabel()
        self.waiting_banner.setAccessibleName("Waiting for the model")
        self.waiting_banner.setWordWrap(True)
        self.waiting_banner.setContentsMargins(16, 4, 16, 0)
        self.waiting_banner.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.waiting_banner.hide()
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
        self.attach_button = AttachButton()
        self.attach_button.clicked.connect(self.attach_requested)
        self.chips = AttachmentChips()
        self.chips.remove_requested.connect(self.detach_requested)
        row = QHBoxLayout()
        row.setContentsMargins(16, 8, 16, 12)
        row.setSpacing(8)
        row.addWidget(self.composer, 1)
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.stop_button, 0, Qt.AlignmentFlag.AlignBottom)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.chat_view, 1)
        column.addWidget(self.editing_banner)
        column.addWidget(self.waiting_banner)
        column.addWidget(self.chips)
        column.addLayout(row)
        self.update_controls()

    # ------------------------------------------------------------ conversation

    def open(self, session: ChatSession, *, focus_message: str | None = None) -> None:
        """Show ``session`` (a reply in progress must have ended first)."""
        self.session = session
        self._cancel_editing()
        if focus_message is not None:
            session.tree.current_leaf_id = session.tree.newest_leaf(focus_message)
        self.show_branch()
        if focus_message is not None:
            self.chat_view.scroll_to_message(focus_message)
        self.update_controls()
        self.conversation_shown.emit()

    def set_documents(self, documents, n_ctx: Callable[[], int]) -> None:
        """Search ``documents`` (a :class:`gui.documents.DocumentTasks`) before each reply that has any."""
        self._documents = documents
        self._documents_context = n_ctx
        documents.retrieved.connect(self._on_retrieved)

    def show_branch(self, *, show_all: bool = False) -> None:
        """Redraw the branch on screen."""
        self.chat_view.show_messages([self._view(m) for m in self.session.branch()], show_all=show_all)

    @property
    def busy(self) -> bool:
        """A reply is being written, or a sent message waits for the model."""
        return self.active is not None or self.waiting is not None

    def set_model(self, name: str | None) -> None:
        """The model that will answer is ready (None: no model could be loaded).

        A message waiting for the model is answered now.
        """
        self.model_name = name
        self.loading = None
        if name:
            self.composer.setPlaceholderText(f"Message {name}  (Enter to send, Shift+Enter for a new line)")
        else:
            self.composer.setPlaceholderText("No model loaded: choose one in File › Models…")
        self.update_controls()
        if name and self.waiting is not None:
            question, self.waiting = self.waiting, None
            self.waiting_banner.hide()
            self._start_reply(question)
        elif self.waiting is not None:
            self._show_waiting()

    def set_loading(self, status: str) -> None:
        """A model is being prepared or loaded (``status`` says which); a message sent now waits for it."""
        self.model_name = None
        self.loading = status
        self.composer.setPlaceholderText("Type a message: Hearth answers as soon as the model is ready")
        if self.waiting is not None:
            self._show_waiting()
        self.update_controls()

    # ----------------------------------------------------------------- actions

    @Slot()
    def send_message(self) -> None:
        """Send the composer's text: a new message, or the edit being made."""
        text = self.composer.toPlainText().strip()
        if not text or self.session is None:
            return
        if self.busy:
            # One message at a time: this one stays in the box, to send when the reply ends.
            self.notice.emit("Hearth answers one message at a time: this one stays here until the reply to "
                             "your last message ends (Stop ends it now).")
            return
        if self.model_name is None and self.loading is None and (
                self._editing_id is None or self.session.tree.get(self._editing_id).role == "user"):
            self.notice.emit("No model is loaded, so nothing can answer yet: choose one in File › Models…")
            return
        editing, self._editing_id = self._editing_id, None
        self.editing_banner.hide()
        if editing is not None and self.session.tree.get(editing).role == "assistant":
            self.composer.clear()
            self.session.add_edited_reply(editing, text)
            self.show_branch()
            self.conversation_changed.emit()
            return
        self.composer.clear()
        question = self.session.add_user_message(text, instead_of=editing)
        if editing is None:
            self.chat_view.append_message(self._view(question))
        else:
            self.show_branch()
        if self.model_name is None:
            self.waiting = question
            self._show_waiting()
            self.update_controls()
        else:
            self._start_reply(question)
        self.conversation_changed.emit()

    @Slot()
    def stop_reply(self) -> None:
        """Stop the reply in progress (within a token), or stop waiting for the model; or leave editing mode."""
        if self.active is not None:
            self.active.cancel.set()
            if self._searching:  # nothing was sent to the model yet: end the reply now
                self._searching = False
                self._end_reply(self.active.request_id, "complete", "Stopped", None)
        elif self.waiting is not None:
            self.waiting = None
            self.waiting_banner.hide()
            self.update_controls()
            self.notice.emit("Stopped waiting. Your message is kept; Chat › Regenerate reply (Ctrl+R) answers it.")
        elif self._editing_id is not None:
            self._cancel_editing()

    def regenerate(self, message_id: str | None = None) -> None:
        """Write a new version of an assistant reply (default: the last one on screen).

        When the branch ends with a message of yours that has no reply (its
        wait was stopped, or the model failed to load), this answers it.
        """
        if self.busy or self.model_name is None or self.session is None:
            return
        last = self.session.branch()[-1] if self.session.branch() else None
        if message_id is None and last is not None and last.role == "user":
            self._start_reply(last)
            return
        target = self._message(message_id) or self._last("assistant")
        if target is None or target.role != "assistant":
            return
        parent = self.session.tree.get(target.parent_id)
        self._start_reply(parent, redraw=True)

    def edit(self, message_id: str | None = None) -> None:
        """Put a message (default: the last of yours) in the message box; sending makes a new version of it."""
        target = self._message(message_id) or self._last("user")
        if target is None or self.busy:
            return
        self._editing_id = target.id
        who = "your message" if target.role == "user" else "the reply"
        self.editing_banner.setText(f"Editing {who}: sending keeps the original as an earlier version. Esc cancels.")
        self.editing_banner.show()
        self.composer.setPlainText(target.content)
        self.composer.setFocus()

    # ----------------------------------------------------------- worker slots

    @Slot(int, str)
    def on_reply_chunk(self, request_id: int, text: str) -> None:
        if self.active is None or request_id != self.active.request_id:
            return
        self._splitter.feed(text)
        self._show_split()

    @Slot(int, object)
    def on_reply_finished(self, request_id: int, stats: ReplyStats) -> None:
        state = "Reached the reply length limit" if stats.finish_reason == "length" else ""
        self._end_reply(request_id, "complete", state, stats)

    @Slot(int, object)
    def on_reply_cancelled(self, request_id: int, stats: ReplyStats) -> None:
        self._end_reply(request_id, "complete", "Stopped", stats)

    @Slot(int, str)
    def on_reply_failed(self, request_id: int, message: str) -> None:
        if self._end_reply(request_id, "interrupted", "Interrupted", None):
            self.chat_view.add_notice(message)

    # -------------------------------------------------------------- internals

    def _start_reply(self, parent: Message, *, redraw: bool = False, resume: Message | None = None) -> None:
        if resume is not None:
            reply = self.session.resume_reply(resume.id)
            messages = self.session.prompt_for(reply, with_thinking=self.thinking_replay)
        else:
            reply = self.session.start_reply(parent.id, self.model_name or "")
            messages = self.session.prompt_for(parent, with_thinking=self.thinking_replay)
        self._reply_id = reply.id
        remote = self._remote()
        # A provider's reasoning_content arrives framed as <think>…</think> (inference.remote_engine).
        self._splitter = ThinkingSplitter("think-tags" if remote is not None else self.thinking_format,
                                          starts_thinking=remote is None and self.thinking_opens)
        if resume is not None and resume.content:  # the answer goes on: no more thinking
            self._splitter = ThinkingSplitter("")
        self._splitter.answer, self._splitter.thinking = reply.content, reply.thinking
        if redraw or resume is not None:
            self.show_branch()
        else:
            self.chat_view.append_message(self._view(reply))
        self.chat_view.start_stream(reply.id)
        self._save_timer.start()
        self.active = ReplyRequest(
            request_id=self._next_request_id, messages=tuple(messages), params=self._sampling(),
            cancel=threading.Event(), remote=remote,
        )
        self._next_request_id += 1
        self.update_controls()
        if resume is None and self._wants_documents():
            self._searching = True
            self.chat_view.stream_text(SEARCHING)
            settings = self.session.conversation.settings if self.session.conversation else {}
            self._documents.retrieve(
                self.active.request_id, list(messages), conversation_id=self.session.conversation_id,
                collection_ids=list(settings.get("collections", [])), n_ctx=self._documents_context(),
                max_tokens=self.active.params.max_tokens, cancel=self.active.cancel,
                earlier=self.session.sources_before(parent),
            )
            return
        self.reply_requested.emit(self.active)

    def _wants_documents(self) -> bool:
        if self._documents is None or self.session is None or self.session.conversation is None:
            return False
        return bool(self.chips.titles) or bool(self.session.conversation.settings.get("collections"))

    @Slot(int, object)
    def _on_retrieved(self, request_id: int, prompt) -> None:
        if self.active is None or request_id != self.active.request_id or not self._searching:
            return
        self._searching = False
        if prompt is None or self.active.cancel.is_set():
            self._end_reply(request_id, "complete", "Stopped", None)
            return
        # The engine starts first: the notices, the stored sources and the view follow while it reads the prompt.
        self.active = replace(self.active, messages=tuple(prompt.messages))
        self.reply_requested.emit(self.active)
        for sentence in prompt.notices:
            self.chat_view.add_notice(sentence)
        if prompt.sources:  # stored on the reply: its citations outlive a rebuilt index, and later turns reuse them
            self._sources[self._reply_id] = list(prompt.sources)
            self.session.set_sources(self._reply_id, sources_json(prompt.sources))
        self.chat_view.stream_text("")

    def _end_reply(self, request_id: int, status: str, state: str, stats: ReplyStats | None) -> bool:
        if self.active is None or request_id != self.active.request_id:
            return False
        self._save_timer.stop()
        self._splitter.finish()  # a held-back partial tag is text after all
        self._show_split()
        self._searching = False
        message = self.session.finish_reply(self._reply_id, status,
                                            thinking_seconds=self.chat_view.thinking_seconds(self._reply_id))
        self.chat_view.update_message(self._view(message, state=state))
        self.active, self._reply_id = None, None
        self.update_controls()
        if stats is not None:
            self.reply_ended.emit(stats)
        return True

    def _show_split(self) -> None:
        """Store and show the streaming reply's thinking and answer so far."""
        splitter = self._splitter
        self.session.set_reply_text(self._reply_id, content=splitter.answer, thinking=splitter.thinking)
        if splitter.thinking:
            self.chat_view.stream_thinking(splitter.thinking)
        self.chat_view.stream_text(splitter.answer)

    @Slot()
    def _save_if_due(self) -> None:
        if self._reply_id is not None:
            self.session.save_if_due(self._reply_id)

    @Slot(str, str)
    def _on_action(self, action: str, message_id: str) -> None:
        if action == "cite":
            reply_id, _, number = message_id.rpartition(":")
            source = next((s for s in self._message_sources(reply_id) if str(s.number) == number), None)
            if source is not None:
                self.citation_clicked.emit(source)
        elif action == "earlier":
            self.show_branch(show_all=True)
        elif self.active is not None:
            self.notice.emit("Stop the reply first.")
        elif self.waiting is not None:
            self.notice.emit("Your message is waiting for the model: press Stop to stop waiting first.")
        elif action in ("previous", "next"):
            self.session.switch_sibling(message_id, -1 if action == "previous" else 1)
            self.show_branch()
        elif action == "edit":
            self.edit(message_id)
        elif action in ("regenerate", "continue") and self.model_name is None:
            self.notice.emit("The model is still loading: try again when it is ready." if self.loading
                             else "No model is loaded: choose one in File › Models…")
        elif action == "regenerate":
            self.regenerate(message_id)
        elif action == "continue":
            message = self.session.tree.get(message_id)
            self.session.tree.current_leaf_id = message.id
            self._start_reply(message, resume=message)

    def _view(self, message: Message, *, state: str = "") -> MessageView:
        author = USER_NAME if message.role == "user" else (message.model or self.model_name or "Assistant")
        if not state and message.status == "interrupted":
            state = "Interrupted"
        content = message.content
        sources = self._message_sources(message.id) if message.role == "assistant" else []
        if sources and message.status != "streaming":
            content = _with_citation_links(message.id, content, sources)
        return MessageView(
            id=message.id, role=message.role, author=author, content=content,
            position=self.session.tree.position(message.id), state=state,
            can_continue=message.role == "assistant" and message.status == "interrupted", thinking=message.thinking,
            thinking_seconds=message.thinking_seconds,
        )

    def _message_sources(self, message_id: str) -> list[Source]:
        if message_id not in self._sources and self.session is not None:
            try:
                stored = getattr(self.session.tree.get(message_id), "sources", "[]")
            except KeyError:
                return []
            self._sources[message_id] = sources_from_json(stored)
        return self._sources.get(message_id, [])

    def _message(self, message_id: str | None) -> Message | None:
        return self.session.tree.get(message_id) if message_id and self.session else None

    def _last(self, role: str) -> Message | None:
        branch = self.session.branch() if self.session else []
        return next((m for m in reversed(branch) if m.role == role), None)

    def _cancel_editing(self) -> None:
        if self._editing_id is not None:
            self._editing_id = None
            self.editing_banner.hide()
            self.composer.clear()

    def _show_waiting(self) -> None:
        if self.loading is not None:
            what = self.loading[:1].lower() + self.loading[1:]
            text = f"Hearth will answer as soon as the model is ready ({what}). Stop (Esc) stops waiting."
        else:
            # The failure itself is said above, in the conversation.
            text = "Your message is kept: Hearth answers it as soon as a model loads (File › Models…). " \
                   "Stop (Esc) stops waiting."
        self.waiting_banner.setText(text)
        self.waiting_banner.show()

    def update_controls(self) -> None:
        """Send or Stop, enabled as the state allows.

        Send works while the model loads (the message waits); Stop replaces it
        while a reply is written or a message waits; with no model at all
        Send is off.
        """
        busy = self.busy
        self.send_button.setVisible(not busy)
        self.send_button.setEnabled(self.model_name is not None or self.loading is not None)
        self.stop_button.setVisible(busy)
        self.stop_button.setToolTip("Stop waiting for the model (Esc)" if self.waiting is not None and
                                    self.active is None else "Stop the reply (Esc)")


def _with_citation_links(message_id: str, content: str, sources: list[Source]) -> str:
    """The reply with its ``[n]`` markers as links and a Sources line listing them (file · page)."""
    numbers = {s.number for s in sources}

    def link(match: re.Match) -> str:
        n = int(match.group(1))
        return f"[\\[{n}\\]](cite:{message_id}:{n})" if n in numbers else match.group(0)

    listed = " · ".join(f"[{s.number}. {s.label.replace('[', '(').replace(']', ')')}](cite:{message_id}:{s.number})"
                        for s in sources)
    return _CITATION.sub(link, content) + f"\n\n*Sources:* {listed}"
