"""The conversation database: durable settings, migrations, damage, quarantine, search, full disk."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from model_store import conversations as conversations_module
from model_store.conversations import ConversationStore, NewerDatabaseError
from model_store.errors import DiskFullError
from model_store.store_writer import StoreWriter


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "conversations.db"


def chat(store: ConversationStore, title: str, *texts: str):
    conversation = store.create_conversation(title=title)
    parent = None
    for index, text in enumerate(texts):
        parent = store.add_message(conversation.id, parent_id=parent, role=("user", "assistant")[index % 2],
                                   content=text).id
    return conversation


def test_pragmas_that_keep_data_safe(db_path: Path) -> None:
    store = ConversationStore(db_path)
    db = store._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA user_version").fetchone()[0] == conversations_module.SCHEMA_VERSION


def test_messages_survive_reopening_with_their_tree_and_current_leaf(db_path: Path) -> None:
    store = ConversationStore(db_path)
    conversation = store.create_conversation(title="Trip")
    question = store.add_message(conversation.id, parent_id=None, role="user", content="Where to?")
    first = store.add_message(conversation.id, parent_id=question.id, role="assistant", content="Rome")
    second = store.add_message(conversation.id, parent_id=question.id, role="assistant", content="Oslo")
    store.set_current_leaf(conversation.id, first.id)
    store.close()

    reopened = ConversationStore(db_path)
    assert reopened.conversation(conversation.id).current_leaf_id == first.id
    assert [m.content for m in reopened.messages(conversation.id)] == ["Where to?", "Rome", "Oslo"]
    assert {m.parent_id for m in reopened.messages(conversation.id)[1:]} == {question.id}
    assert second.id in {m.id for m in reopened.messages(conversation.id)}


def test_list_is_pinned_first_then_newest(db_path: Path) -> None:
    store = ConversationStore(db_path)
    old = chat(store, "old", "hi")
    pinned = chat(store, "pinned", "hi")
    new = chat(store, "new", "hi")
    store.set_pinned(pinned.id, True)
    assert [c.title for c in store.conversations()] == ["pinned", "new", "old"]
    assert old.id != new.id


def test_delete_can_be_undone_and_purged(db_path: Path) -> None:
    store = ConversationStore(db_path)
    conversation = chat(store, "bye", "hello")
    store.delete(conversation.id)
    assert store.conversations() == []
    store.undo_delete(conversation.id)
    assert [c.id for c in store.conversations()] == [conversation.id]
    store.delete(conversation.id)
    assert store.conversation_ids() == {conversation.id}  # in the bin, it can still come back
    assert store.purge_deleted(older_than_s=-1) == 1
    assert store.message_count() == 0  # messages go with their conversation
    assert store.conversation_ids() == set()


def test_search_finds_words_across_conversations(db_path: Path) -> None:
    store = ConversationStore(db_path)
    chat(store, "Cooking", "How do I bake sourdough bread?", "Use a starter.")
    chat(store, "Travel", "Is the bread good in Paris?", "Very.")
    gone = chat(store, "Deleted", "bread everywhere")
    store.delete(gone.id)
    hits = store.search("bread")
    assert {hit.title for hit in hits} == {"Cooking", "Travel"}
    assert all("[bread]" in hit.snippet for hit in hits)
    assert [hit.title for hit in store.search("sourd")] == ["Cooking"]  # the last word is a prefix
    assert store.search('") OR 1=1 --') == []  # user text is quoted, never FTS syntax


def test_rtl_emoji_and_a_megabyte_message_are_kept_exactly(db_path: Path) -> None:
    store = ConversationStore(db_path)
    texts = ["مرحبا بالعالم", "שלום 👋🏽 family: 👨‍👩‍👧", "x" * 1_000_000]
    conversation = chat(store, "Mixed", *texts)
    store.close()
    assert [m.content for m in ConversationStore(db_path).messages(conversation.id)] == texts
    assert ConversationStore(db_path).search("مرحبا")[0].conversation_id == conversation.id


def test_unfinished_replies_become_interrupted(db_path: Path) -> None:
    store = ConversationStore(db_path)
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, parent_id=None, role="user", content="Hi")
    store.add_message(conversation.id, parent_id=question.id, role="assistant", content="Hel", status="streaming")
    assert store.mark_unfinished_as_interrupted() == 1
    assert store.messages(conversation.id)[-1].status == "interrupted"


def test_a_migration_backs_up_first_and_runs_once(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ConversationStore(db_path)
    chat(store, "Before the upgrade", "keep me")
    store.close()
    step = "ALTER TABLE conversations ADD COLUMN colour TEXT; CREATE TABLE runs (n); INSERT INTO runs VALUES (1)"
    current = conversations_module.SCHEMA_VERSION
    monkeypatch.setattr(conversations_module, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(conversations_module.MIGRATIONS, current + 1, step)
    ConversationStore(db_path).close()
    upgraded = ConversationStore(db_path)
    assert upgraded._db.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    assert upgraded._db.execute("PRAGMA user_version").fetchone()[0] == current + 1
    backup = db_path.with_name(f"conversations.v{current}-backup.db")
    assert sqlite3.connect(backup).execute("SELECT title FROM conversations").fetchall() == [("Before the upgrade",)]
    assert [c.title for c in upgraded.conversations()] == ["Before the upgrade"]


def test_a_version_1_file_gains_thinking_sources_and_thinking_time_and_keeps_every_message(db_path: Path) -> None:
    old = sqlite3.connect(db_path, isolation_level=None)
    old.executescript(conversations_module.MIGRATIONS[1] + ";PRAGMA user_version = 1;")
    old.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES ('c', 'Old', 1, 1)")
    for index in range(5):
        old.execute("INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at) "
                    "VALUES (?, 'c', ?, ?, ?, ?)",
                    (f"m{index}", f"m{index - 1}" if index else None, ("user", "assistant")[index % 2],
                     f"text {index}", index))
    old.close()
    store = ConversationStore(db_path)
    messages = store.messages("c")
    assert [m.content for m in messages] == [f"text {index}" for index in range(5)]
    assert {(m.thinking, m.sources) for m in messages} == {("", "[]")}
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == conversations_module.SCHEMA_VERSION
    assert {m.thinking_seconds for m in messages} == {None}
    backup = db_path.with_name("conversations.v1-backup.db")
    assert sqlite3.connect(backup).execute("SELECT count(*) FROM messages").fetchone()[0] == 5
    store.update_message("m4", "answer", "complete", thinking="hmm", sources='[{"file": "a.pdf"}]')
    store.close()
    reopened = ConversationStore(db_path)
    last = reopened.messages("c")[-1]
    assert (last.content, last.thinking, last.sources) == ("answer", "hmm", '[{"file": "a.pdf"}]')
    reopened.update_message("m4", "answer 2", "complete", thinking_seconds=3.5)
    reopened.update_message("m4", "answer 3", "complete")  # None keeps thinking, sources and thinking time
    assert (reopened.messages("c")[-1].thinking, reopened.messages("c")[-1].thinking_seconds) == ("hmm", 3.5)
    added = reopened.add_message("c", parent_id="m4", role="user", content="q", thinking="", sources="[1]")
    assert reopened.messages("c")[-1] == added
    assert reopened.search("hmm") == []  # thinking is not searched as text


def test_a_database_from_a_newer_hearth_is_refused_and_left_alone(db_path: Path) -> None:
    store = ConversationStore(db_path)
    chat(store, "Future", "hello")
    store._db.execute("PRAGMA user_version = 99")
    store.close()
    before = hashlib.sha256(db_path.read_bytes()).hexdigest()
    with pytest.raises(NewerDatabaseError, match="newer version of Hearth"):
        ConversationStore(db_path)
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == before


def test_a_file_that_is_not_a_database_is_set_aside(db_path: Path) -> None:
    db_path.write_bytes(b"this is not sqlite at all" * 100)
    store = ConversationStore(db_path)
    assert "damaged" in store.notices[0]
    kept = list(db_path.parent.glob("conversations.damaged-*.db"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not sqlite")
    chat(store, "Fresh start", "works")
    assert [c.title for c in store.conversations()] == ["Fresh start"]


def test_a_truncated_database_keeps_what_can_be_read(db_path: Path) -> None:
    store = ConversationStore(db_path)
    for index in range(40):
        chat(store, f"chat {index}", f"message {index} " * 200, "reply " * 200)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = db_path.read_bytes()
    db_path.write_bytes(data[: len(data) * 2 // 3])
    recovered = ConversationStore(db_path)
    assert recovered.notices and "damaged" in recovered.notices[0]
    assert recovered.integrity_ok()
    titles = [c.title for c in recovered.conversations()]
    assert len(titles) < 40  # part of it is gone with the cut...
    for conversation in recovered.conversations():  # ...and what came back is whole
        assert len(recovered.messages(conversation.id)) == 2


def test_a_conversation_with_bad_rows_is_quarantined_and_the_rest_still_open(db_path: Path) -> None:
    store = ConversationStore(db_path)
    good = chat(store, "good", "hello", "hi")
    bad = chat(store, "bad", "hello", "hi")
    store._db.execute("UPDATE messages SET role = 'robot' WHERE conversation_id = ?", (bad.id,))
    assert store.messages(bad.id) == []
    assert "set aside, not deleted" in store.notices[0]
    assert [c.id for c in store.conversations()] == [good.id]
    assert len(store.messages(good.id)) == 2
    assert store._db.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", (bad.id,)).fetchone()[0] == 2


def test_a_full_disk_raises_a_clear_error_and_keeps_what_was_saved(db_path: Path) -> None:
    store = ConversationStore(db_path)
    conversation = chat(store, "Saved", "before the disk filled up")
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own 'disk full' (SQLITE_FULL)
    with pytest.raises(DiskFullError, match="disk is full"):
        store.add_message(conversation.id, parent_id=None, role="user", content="y" * 200_000)
    assert [m.content for m in store.messages(conversation.id)] == ["before the disk filled up"]
    assert store.integrity_ok()


def test_the_writer_applies_writes_in_order_and_reports_errors(db_path: Path) -> None:
    reader = ConversationStore(db_path)
    errors = []
    writer = StoreWriter(db_path, on_error=errors.append)
    conversation_id = conversations_module.new_id()
    writer.submit("create_conversation", conversation_id=conversation_id, title="Queued")
    for index in range(50):
        writer.submit("add_message", conversation_id, parent_id=None, role="user", content=f"m{index}")
    writer.submit("add_message", conversation_id, parent_id=None, role="robot", content="bad")
    writer.submit("rename", conversation_id, "Renamed after the error")
    assert writer.flush(timeout=30)
    assert [m.content for m in reader.messages(conversation_id)] == [f"m{index}" for index in range(50)]
    assert reader.conversation(conversation_id).title == "Renamed after the error"
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    writer.close()
