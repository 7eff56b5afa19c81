"""Export to Markdown and JSON, and import JSON back as a new conversation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_store.conversation_io import export_json, export_markdown, import_json
from model_store.conversations import ConversationStore
from model_store.store_writer import StoreWriter


@pytest.fixture
def stores(tmp_path: Path):
    path = tmp_path / "conversations.db"
    store = ConversationStore(path)
    writer = StoreWriter(path, on_error=lambda exc: None)
    yield store, writer
    writer.close()
    store.close()


def sample(store: ConversationStore):
    conversation = store.create_conversation(title="Rivers", system_prompt="Be brief.")
    question = store.add_message(conversation.id, parent_id=None, role="user", content="Longest river? 🌊")
    store.add_message(conversation.id, parent_id=question.id, role="assistant", content="The Nile.", model="demo")
    return store.conversation(conversation.id), store.messages(conversation.id)


def test_markdown_export_reads_like_the_conversation(stores) -> None:
    store, _ = stores
    conversation, branch = sample(store)
    text = export_markdown(conversation, branch)
    assert text.startswith("# Rivers")
    assert "> System prompt: Be brief." in text
    assert "**You:**\n\nLongest river? 🌊" in text
    assert "**Assistant (demo):**\n\nThe Nile." in text


def test_json_round_trip_makes_a_new_identical_conversation(stores) -> None:
    store, writer = stores
    conversation, branch = sample(store)
    new_id = import_json(export_json(conversation, branch), writer)
    writer.flush()
    imported = store.conversation(new_id)
    assert new_id != conversation.id
    assert (imported.title, imported.system_prompt) == ("Rivers", "Be brief.")
    assert [(m.role, m.content) for m in store.messages(new_id)] == [(m.role, m.content) for m in branch]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"format": "something else"}', "not a conversation exported by Hearth"),
        ('{"format": "hearth-conversation", "version": 9, "messages": []}', "newer version"),
        ('{"format": "hearth-conversation", "version": 1, "messages": [{"role": "robot", "content": "x"}]}',
         "malformed"),
    ],
)
def test_bad_imports_are_refused_with_a_reason(stores, text: str, words: str) -> None:
    store, writer = stores
    with pytest.raises(ValueError, match=words):
        import_json(text, writer)
    writer.flush()
    assert store.conversations() == []


def test_not_json_at_all(stores) -> None:
    _, writer = stores
    with pytest.raises(json.JSONDecodeError):
        import_json("not json", writer)


def test_thinking_is_exported_collapsed_and_imported_back(stores) -> None:
    store, writer = stores
    conversation = store.create_conversation(title="Sums")
    question = store.add_message(conversation.id, parent_id=None, role="user", content="2+2?")
    store.add_message(conversation.id, parent_id=question.id, role="assistant", content="4.",
                      thinking="Add <two> and two.", sources='[{"n": 1}]', thinking_seconds=12.4)
    conversation, branch = store.conversation(conversation.id), store.messages(conversation.id)
    markdown = export_markdown(conversation, branch)
    assert ("<details><summary>Thought for 12 s</summary>\n\n<pre>Add &lt;two&gt; and two.</pre>\n\n</details>\n\n4."
            in markdown)
    imported = import_json(export_json(conversation, branch), writer)
    writer.flush()
    answer = store.messages(imported)[-1]
    assert (answer.content, answer.thinking, answer.sources) == ("4.", "Add <two> and two.", '[{"n": 1}]')
    assert answer.thinking_seconds == 12.4
    assert store.messages(imported)[0].thinking_seconds is None
    assert store.messages(imported)[0].thinking == ""
