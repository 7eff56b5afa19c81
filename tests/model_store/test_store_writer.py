"""The conversation writer keeps saving whatever its callbacks do, and tells without blocking when writes are in."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from model_store.conversations import ConversationStore, new_id
from model_store.store_writer import StoreWriter


def test_an_on_error_that_raises_does_not_end_saving(tmp_path: Path) -> None:
    path = tmp_path / "conversations.db"
    reader = ConversationStore(path)
    reports: list[Exception] = []

    def broken_report(exc: Exception) -> None:
        reports.append(exc)
        raise RuntimeError("the window is not there yet")

    writer = StoreWriter(path, on_error=broken_report)
    conversation_id = new_id()
    writer.submit("create_conversation", conversation_id=conversation_id, title="Kept")
    writer.submit("add_message", conversation_id, parent_id=None, role="robot", content="refused")
    writer.submit("add_message", conversation_id, parent_id=None, role="user", content="after the first error")
    writer.submit("add_message", conversation_id, parent_id=None, role="robot", content="refused again")
    writer.submit("rename", conversation_id, "Still saving")
    assert writer.flush(timeout=30)
    assert len(reports) == 2 and all(isinstance(exc, ValueError) for exc in reports)
    assert [m.content for m in reader.messages(conversation_id)] == ["after the first error"]
    assert reader.conversation(conversation_id).title == "Still saving"
    writer.close()
    reader.close()
    again = sqlite3.connect(path)  # in the real file, for anyone who opens it
    assert again.execute("SELECT title FROM conversations").fetchall() == [("Still saving",)]
    again.close()


def test_a_callback_that_raises_does_not_end_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "conversations.db"
    ConversationStore(path).close()
    writer = StoreWriter(path, on_error=lambda exc: None)
    writer.when_done(lambda: 1 / 0)
    conversation_id = new_id()
    writer.submit("create_conversation", conversation_id=conversation_id, title="After a broken callback")
    assert writer.flush(timeout=30)
    reader = ConversationStore(path)
    assert reader.conversation(conversation_id).title == "After a broken callback"
    writer.close()
    reader.close()


def test_while_another_connection_holds_the_write_lock_nothing_waits_but_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "conversations.db"
    reader = ConversationStore(path)
    writer = StoreWriter(path, on_error=lambda exc: None)
    blocker = sqlite3.connect(path, timeout=0, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # a real SQLite write lock: the writer's commit waits for it
    done = threading.Event()
    conversation_id = new_id()
    started = time.perf_counter()
    writer.submit("create_conversation", conversation_id=conversation_id, title="Behind the lock")
    writer.when_done(done.set)
    asked_s = time.perf_counter() - started
    try:
        assert not done.wait(1.0)
        assert writer.pending == 1
        assert reader.conversation(conversation_id) is None  # reads do not wait either (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert done.wait(10)
    assert writer.pending == 0
    assert reader.conversation(conversation_id).title == "Behind the lock"
    assert asked_s < 0.5  # submitting did not wait for the lock (held for 1 s above)
    writer.close()
    reader.close()
