"""Export a conversation's branch to Markdown or JSON, and import Hearth's JSON back."""

from __future__ import annotations

import html
import json
import math
import time
from typing import Any

from model_store.conversations import ROLES, Conversation, Message, new_id
from model_store.store_writer import StoreWriter

FORMAT = "hearth-conversation"
FORMAT_VERSION = 1


def export_markdown(conversation: Conversation, branch: list[Message]) -> str:
    """The branch as a readable Markdown document."""
    lines = [f"# {conversation.title}", ""]
    if conversation.system_prompt.strip():
        lines += [f"> System prompt: {conversation.system_prompt.strip()}", ""]
    for message in branch:
        who = "You" if message.role == "user" else f"Assistant{f' ({message.model})' if message.model else ''}"
        lines += [f"**{who}:**", ""]
        if message.thinking.strip():
            # Collapsed, and escaped: thinking is plain text, never Markdown or HTML of the answer.
            summary = f"Thought for {message.thinking_seconds:.0f} s" if message.thinking_seconds is not None \
                else "Thinking"
            lines += [f"<details><summary>{summary}</summary>", "", "<pre>" + html.escape(message.thinking.strip())
                      + "</pre>", "", "</details>", ""]
        lines += [message.content, ""]
    return "\n".join(lines)


def export_json(conversation: Conversation, branch: list[Message]) -> str:
    """The branch as JSON that :func:`import_json` reads back."""
    data = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "title": conversation.title,
        "system_prompt": conversation.system_prompt,
        "settings": conversation.settings,
        "messages": [
            {"role": m.role, "content": m.content, "created_at": m.created_at, "model": m.model,
             "status": m.status, **({"thinking": m.thinking} if m.thinking else {}),
             **({"thinking_seconds": m.thinking_seconds} if m.thinking_seconds is not None else {}),
             **({"sources": m.sources} if m.sources != "[]" else {})}
            for m in branch
        ],
    }
    return json.dumps(data, ensure_ascii=False, indent=2)


def import_json(text: str, writer: StoreWriter) -> str:
    """Add the conversation in ``text`` (from :func:`export_json`) as a new one; returns its id.

    Raises:
        ValueError: the text is not a Hearth conversation, with what is wrong.
    """
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("it is not a conversation exported by Hearth")
    if not isinstance(data.get("version"), int) or data["version"] > FORMAT_VERSION:
        raise ValueError("it was exported by a newer version of Hearth")
    messages = data.get("messages")
    if not isinstance(messages, list) or not all(_valid_message(m) for m in messages):
        raise ValueError("its messages are malformed")
    conversation_id = new_id()
    now = time.time()
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    writer.submit(
        "create_conversation", conversation_id=conversation_id, title=str(data.get("title") or "Imported chat"),
        system_prompt=str(data.get("system_prompt") or ""), settings=settings, created_at=now,
    )
    parent = None
    for index, message in enumerate(messages):
        message_id = new_id()
        status = "interrupted" if message.get("status") in ("interrupted", "streaming") else "complete"
        writer.submit(
            "add_message", conversation_id, parent_id=parent, role=message["role"], content=message["content"],
            status=status, model=str(message.get("model") or ""), message_id=message_id,
            created_at=float(message.get("created_at") or now + index * 1e-3),
            thinking=message.get("thinking") if isinstance(message.get("thinking"), str) else "",
            sources=message.get("sources") if isinstance(message.get("sources"), str) else "[]",
            thinking_seconds=_seconds(message.get("thinking_seconds")),
        )
        parent = message_id
    return conversation_id


def _seconds(value: Any) -> float | None:
    """A stored thinking time: a finite, non-negative number of seconds, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _valid_message(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("role") in ROLES
        and isinstance(message.get("content"), str)
    )
