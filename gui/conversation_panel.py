"""The right-hand side of the window: one conversation, its message box, and everything you do to it.

Sending, streaming into the view, Stop, editing any message, regenerating,
continuing an interrupted reply and moving between versions (``‹ 2/3 ›``) all
happen here, through a :class:`ChatSession` that saves each change.

A message sent while the model is still loading is saved and shown at once;
it waits (one at a time, with a note saying so) and its reply starts by
itself when the model is ready. Stop ends the wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from gui.chat_session import ChatSession
from gui.chat_view import ChatView, MessageView
from gui.composer import Composer
from inference.model_owner import ReplyRequest
from inference.engine import ReplyStats, SamplingParams
from model_store.conversations import Message

USER_NAME = "You"
SAVE_CHECK_MS = 200  # a paused reply's unsaved text is saved within a second and this


class ConversationPanel(QWidget):
    """Shows a :class:`ChatSession` and turns the user's actions into replies and saved changes.

    Signals:
        reply_requested(ReplyRequest): the worker should generate this reply.
        conversation_changed(): a message was added or a title may have changed (refresh the sidebar).
        reply_ended(ReplyStats): a reply finished or was stopped; the stats are for the status bar.
        notice(str): something to tell the user in the status bar.

    States: no model (nothing can be sent), loading (a message can be sent and
    waits), ready, waiting (a sent message waits for the model; Stop ends the
    wait) and generating (Stop ends the reply).
    """

    reply_requested = Signal(object)
    conversation_changed = Signal()
    reply_ended = Signal(object)
    notice = Signal(str)

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
        self._editing_id: str | None = None
        self._next_request_id = 1
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
        row = QHBoxLayout()
        row.setContentsMargins(16, 8, 16, 12)
        row.setSpacing(8)
        row.addWidget(self.composer, 1)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.stop_button, 0, Qt.AlignmentFlag.AlignBottom)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.chat_view, 1)
        column.addWidget(self.editing_banner)
        column.addWidget(self.waiting_banner)
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
        self.session.append_reply_text(self._reply_id, text)
        self.chat_view.stream_text(self.session.tree.get(self._reply_id).content)

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
            messages = self.session.prompt_for(reply)
        else:
            reply = self.session.start_reply(parent.id, self.model_name or "")
            messages = self.session.prompt_for(parent)
        self._reply_id = reply.id
        if redraw or resume is not None:
            self.show_branch()
        else:
            self.chat_view.append_message(self._view(reply))
        self.chat_view.start_stream(reply.id)
        self._save_timer.start()
        self.active = ReplyRequest(
            request_id=self._next_request_id, messages=tuple(messages), params=self._sampling(),
            cancel=threading.Event(), remote=self._remote(),
        )
        self._next_request_id += 1
        self.update_controls()
        self.reply_requested.emit(self.active)

    def _end_reply(self, request_id: int, status: str, state: str, stats: ReplyStats | None) -> bool:
        if self.active is None or request_id != self.active.request_id:
            return False
        self._save_timer.stop()
        message = self.session.finish_reply(self._reply_id, status)
        self.chat_view.update_message(self._view(message, state=state))
        self.active, self._reply_id = None, None
        self.update_controls()
        if stats is not None:
            self.reply_ended.emit(stats)
        return True

    @Slot()
    def _save_if_due(self) -> None:
        if self._reply_id is not None:
            self.session.save_if_due(self._reply_id)

    @Slot(str, str)
    def _on_action(self, action: str, message_id: str) -> None:
        if action == "earlier":
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
        elif action == "regenerate":
            self.regenerate(message_id)
        elif action == "continue" and self.model_name is not None:
            message = self.session.tree.get(message_id)
            self.session.tree.current_leaf_id = message.id
            self._start_reply(message, resume=message)

    def _view(self, message: Message, *, state: str = "") -> MessageView:
        author = USER_NAME if message.role == "user" else (message.model or self.model_name or "Assistant")
        if not state and message.status == "interrupted":
            state = "Interrupted"
        return MessageView(
            id=message.id, role=message.role, author=author, content=message.content,
            position=self.session.tree.position(message.id), state=state,
            can_continue=message.role == "assistant" and message.status == "interrupted",
        )

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
