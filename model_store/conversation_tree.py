"""A conversation's messages as a tree, and which branch of it is on screen.

Editing a message or regenerating a reply adds a sibling; nothing is
overwritten. The branch shown runs from a root to the current leaf; moving to
another sibling shows that sibling's most recent continuation.
"""

from __future__ import annotations

from dataclasses import replace

from model_store.conversations import Message


class ConversationTree:
    """All messages of one conversation, held in memory for the window.

    Args:
        messages: every message of the conversation, in creation order.
        current_leaf_id: the last message of the branch on screen (None: the newest message).
    """

    def __init__(self, messages: list[Message], current_leaf_id: str | None = None) -> None:
        self._messages: dict[str, Message] = {}
        self._children: dict[str | None, list[str]] = {}
        for message in messages:
            self._insert(message)
        if current_leaf_id not in self._messages:
            current_leaf_id = messages[-1].id if messages else None
        self.current_leaf_id = current_leaf_id

    def __len__(self) -> int:
        return len(self._messages)

    def get(self, message_id: str) -> Message:
        """The message with this id."""
        return self._messages[message_id]

    def add(self, message: Message) -> None:
        """Add a message (its parent must be here already); it becomes the current leaf."""
        self._insert(message)
        self.current_leaf_id = message.id

    def update(self, message_id: str, *, content: str, status: str, thinking: str | None = None,
               thinking_seconds: float | None = None) -> Message:
        """Change a message's text and status (and its thinking and thinking time, unless None);
        returns the new message."""
        message = replace(self._messages[message_id], content=content, status=status)
        if thinking is not None:
            message = replace(message, thinking=thinking)
        if thinking_seconds is not None:
            message = replace(message, thinking_seconds=thinking_seconds)
        self._messages[message_id] = message
        return message

    def set_sources(self, message_id: str, sources: str) -> Message:
        """Set a message's sources (JSON); returns the new message."""
        message = replace(self._messages[message_id], sources=sources)
        self._messages[message_id] = message
        return message

    def branch(self) -> list[Message]:
        """The messages on screen, from the root to the current leaf."""
        path = []
        message_id = self.current_leaf_id
        while message_id is not None:
            message = self._messages[message_id]
            path.append(message)
            message_id = message.parent_id
        return path[::-1]

    def siblings(self, message_id: str) -> list[Message]:
        """The message and its alternatives (same parent), oldest first."""
        parent = self._messages[message_id].parent_id
        return [self._messages[i] for i in self._children[parent]]

    def position(self, message_id: str) -> tuple[int, int]:
        """(1-based index among its siblings, number of siblings), e.g. (2, 3) for '< 2/3 >'."""
        ids = self._children[self._messages[message_id].parent_id]
        return ids.index(message_id) + 1, len(ids)

    def switch_sibling(self, message_id: str, step: int) -> str:
        """Show the sibling ``step`` places away (±1), continued to its newest leaf; returns the new leaf id."""
        ids = self._children[self._messages[message_id].parent_id]
        target = ids[(ids.index(message_id) + step) % len(ids)]
        self.current_leaf_id = self.newest_leaf(target)
        return self.current_leaf_id

    def newest_leaf(self, message_id: str) -> str:
        """Follow the most recent child from ``message_id`` down to a leaf."""
        while self._children.get(message_id):
            message_id = self._children[message_id][-1]
        return message_id

    def _insert(self, message: Message) -> None:
        self._messages[message.id] = message
        self._children.setdefault(message.parent_id, []).append(message.id)
