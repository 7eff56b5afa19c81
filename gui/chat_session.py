"""The conversation on screen: its message tree, its settings, and every write to the store.

Plain Python (no widgets): the window asks it what to show and tells it what
happened; it keeps the tree in memory and queues each change for the
background writer, so the window never waits for the disk. A streaming reply
is saved as it grows, at most ``SAVE_INTERVAL_S`` apart, so a crash loses at
most about a second of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from inference.document_prompt import Source, question_with_sources, sources_from_json
from model_store.conversation_tree import ConversationTree
from model_store.conversations import Conversation, ConversationStore, Message, new_id
from model_store.store_writer import StoreWriter

SAVE_INTERVAL_S = 1.0
TITLE_LENGTH = 48
_MARKDOWN_MARKS = str.maketrans("", "", "*_`#>")


class ChatSession:
    """One conversation being read and written.

    Args:
        store: reads (on the caller's thread).
        writer: queued writes.
        conversation: the conversation to open, or None for a new one (created in the
            database with its first message).
        clock: seconds, for the save interval (injected by tests).
    """

    def __init__(
        self,
        store: ConversationStore,
        writer: StoreWriter,
        conversation: Conversation | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._writer = writer
        self._clock = clock
        self.conversation = conversation
        messages = store.messages(conversation.id) if conversation else []
        self.tree = ConversationTree(messages, conversation.current_leaf_id if conversation else None)
        self._last_save: dict[str, float] = {}
        self._saved_text: dict[str, tuple[str, str]] = {}  # (content, thinking) last saved
        self._model_for_new = ""  # the model chosen before the first message (kept with the conversation)

    @property
    def conversation_id(self) -> str | None:
        """The conversation's id, or None while it has no message yet."""
        return self.conversation.id if self.conversation else None

    @property
    def model(self) -> str:
        """Which model answers: '' (the loaded one), a model file's path, or a provider's key."""
        return self.conversation.model if self.conversation else self._model_for_new

    @property
    def system_prompt(self) -> str:
        """This conversation's system prompt ('' for none)."""
        return self.conversation.system_prompt if self.conversation else ""

    def branch(self) -> list[Message]:
        """The messages on screen, oldest first."""
        return self.tree.branch()

    def prompt_for(self, last: Message, *, with_thinking: bool = False) -> list[dict[str, str]]:
        """What the model sees to write or continue ``last``'s reply: system prompt + the branch up to it.

        A reply's thinking is left out (the model sees only answers), unless ``with_thinking``
        (the model's template reads it back): then assistant messages carry it as ``reasoning_content``.
        A question that was answered from documents reads as the model saw it, with its passages
        (rebuilt from the sources stored on its reply), so the prompt cache still holds it.
        """
        path = []
        message: Message | None = last
        answer: Message | None = None  # the message after ``message`` on the branch
        while message is not None:
            entry = {"role": message.role, "content": message.content}
            if message.role == "user" and answer is not None and answer.sources not in ("", "[]"):
                entry["content"] = question_with_sources(message.content, sources_from_json(answer.sources))
            if with_thinking and message.role == "assistant" and message.thinking:
                entry["reasoning_content"] = message.thinking
            path.append(entry)
            answer = message
            message = self.tree.get(message.parent_id) if message.parent_id else None
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt.strip() else []
        return system + path[::-1]

    def sources_before(self, last: Message) -> list[Source]:
        """The document passages already given to the model on the branch up to ``last``, by number."""
        found: dict[int, Source] = {}
        message: Message | None = last
        while message is not None:
            if message.role == "assistant" and message.sources not in ("", "[]"):
                found.update((s.number, s) for s in sources_from_json(message.sources) if not s.earlier)
            message = self.tree.get(message.parent_id) if message.parent_id else None
        return [found[n] for n in sorted(found)]

    # --------------------------------------------------------------- writing

    def add_user_message(self, text: str, *, instead_of: str | None = None) -> Message:
        """Add the user's message after the branch on screen, or as an edit: a sibling of ``instead_of``."""
        if instead_of is not None:
            parent_id = self.tree.get(instead_of).parent_id
        else:
            parent_id = self.tree.current_leaf_id
        self._ensure_conversation(text)
        return self._add(parent_id, "user", text, "complete")

    def add_edited_reply(self, message_id: str, text: str) -> Message:
        """An edited assistant message: a new sibling holding ``text``; the original stays."""
        return self._add(self.tree.get(message_id).parent_id, "assistant", text, "complete")

    def start_reply(self, parent_id: str, model: str) -> Message:
        """An empty assistant message under ``parent_id`` that the reply will fill."""
        return self._add(parent_id, "assistant", "", "streaming", model=model)

    def resume_reply(self, message_id: str) -> Message:
        """Mark an interrupted reply as streaming again, to continue it."""
        self._last_save[message_id] = self._clock()
        return self.tree.update(message_id, content=self.tree.get(message_id).content, status="streaming")

    def append_reply_text(self, message_id: str, text: str) -> None:
        """Add streamed text; it is saved when the last save is ``SAVE_INTERVAL_S`` old."""
        message = self.tree.get(message_id)
        self.tree.update(message_id, content=message.content + text, status="streaming")
        self.save_if_due(message_id)

    def set_reply_text(self, message_id: str, *, content: str, thinking: str) -> None:
        """The streaming reply's whole answer and thinking so far; saved like :meth:`append_reply_text`."""
        self.tree.update(message_id, content=content, status="streaming", thinking=thinking)
        self.save_if_due(message_id)

    def save_if_due(self, message_id: str) -> None:
        """Save the reply's text if it changed and the last save is ``SAVE_INTERVAL_S`` old.

        Called on a timer too: text that arrived just after a save is not left
        unsaved when the model pauses.
        """
        message = self.tree.get(message_id)
        if (message.content, message.thinking) != self._saved_text.get(message_id) and \
                self._clock() - self._last_save.get(message_id, 0.0) >= SAVE_INTERVAL_S:
            self._save(message)

    def set_sources(self, message_id: str, sources: str) -> None:
        """Store the passages (JSON, ``inference.document_prompt.sources_json``) a reply is given."""
        message = self.tree.set_sources(message_id, sources)
        self._writer.submit("update_message", message.id, message.content, message.status, sources=sources)

    def finish_reply(self, message_id: str, status: str, *, thinking_seconds: float | None = None) -> Message:
        """The reply ended ('complete') or broke off ('interrupted'); save its final text.

        ``thinking_seconds``: how long the model thought before answering, when it did (None keeps what is stored).
        """
        message = self.tree.get(message_id)
        message = self.tree.update(message_id, content=message.content.rstrip(), status=status,
                                   thinking=message.thinking.rstrip(), thinking_seconds=thinking_seconds)
        self._save(message)
        self._last_save.pop(message_id, None)
        self._saved_text.pop(message_id, None)
        return message

    def switch_sibling(self, message_id: str, step: int) -> None:
        """Show another version of ``message_id`` (``step`` = -1 or +1)."""
        leaf = self.tree.switch_sibling(message_id, step)
        if self.conversation:
            self._writer.submit("set_current_leaf", self.conversation.id, leaf)

    def update_settings(self, *, system_prompt: str, model: str, settings: dict[str, Any]) -> None:
        """Store this conversation's own system prompt, model and reply settings."""
        self._ensure_conversation("")
        self.conversation = replace(self.conversation, system_prompt=system_prompt, model=model, settings=settings)
        self._writer.submit(
            "update_conversation", self.conversation.id, system_prompt=system_prompt, model=model, settings=settings
        )

    def choose_model(self, model: str) -> None:
        """Answer with ``model`` from now on (see :attr:`model`); a new chat keeps it once its first message is saved."""
        if self.conversation is None:
            self._model_for_new = model
            return
        self.update_settings(system_prompt=self.conversation.system_prompt, model=model,
                             settings=self.conversation.settings)

    # -------------------------------------------------------------- internals

    def _ensure_conversation(self, first_text: str) -> None:
        if self.conversation is not None:
            return
        plain = first_text.translate(_MARKDOWN_MARKS)  # a title shows no Markdown syntax
        title = " ".join(plain.split())[:TITLE_LENGTH] or "New chat"
        now = time.time()
        self.conversation = Conversation(id=new_id(), title=title, created_at=now, updated_at=now)
        self._writer.submit("create_conversation", conversation_id=self.conversation.id, title=title, created_at=now)
        if self._model_for_new:
            self.update_settings(system_prompt="", model=self._model_for_new, settings={})

    def _add(self, parent_id: str | None, role: str, text: str, status: str, *, model: str = "") -> Message:
        message = Message(
            id=new_id(), conversation_id=self.conversation.id, parent_id=parent_id, role=role, content=text,
            created_at=time.time(), status=status, model=model,
        )
        self.tree.add(message)
        self._writer.submit(
            "add_message", message.conversation_id, parent_id=parent_id, role=role, content=text, status=status,
            model=model, message_id=message.id, created_at=message.created_at,
        )
        if status == "streaming":
            self._last_save[message.id] = self._clock()
        return message

    def _save(self, message: Message) -> None:
        self._last_save[message.id] = self._clock()
        self._saved_text[message.id] = (message.content, message.thinking)
        self._writer.submit("update_message", message.id, message.content, message.status, thinking=message.thinking,
                            thinking_seconds=message.thinking_seconds)

