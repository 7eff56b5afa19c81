"""Fit a conversation into the model's context window.

Policy: when the prompt plus room for the reply would overflow the window,
leave out the oldest turns, a user turn and what follows it at a time, so the
kept history still starts with the user. The system prompt and the newest
message are always kept; if the newest message alone does not fit, that is an
error for the caller to show, never a silent truncation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from inference.chat_format import Message

Encoded = TypeVar("Encoded", bound=Sequence)


def fit_messages(
    messages: Sequence[Message], encode: Callable[[Sequence[Message]], Encoded], budget: int
) -> tuple[Encoded, int]:
    """Encode the longest recent part of ``messages`` that fits in ``budget`` tokens.

    Returns the encoded prompt and how many messages were left out. The
    result may still exceed ``budget`` when nothing more can be dropped.
    """
    system = [m for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    dropped = 0
    encoded = encode(messages)
    while len(encoded) > budget and dropped < len(turns) - 1:
        dropped += 1
        while dropped < len(turns) - 1 and turns[dropped]["role"] != "user":
            dropped += 1
        encoded = encode(system + turns[dropped:])
    return encoded, dropped
