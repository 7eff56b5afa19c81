"""Conversations on disk: one SQLite database that never loses what was written.

- WAL journal with ``synchronous=FULL`` (a commit survives a crash and a power
  cut), foreign keys on, every write committed at once.
- Messages form a tree: editing or regenerating adds a sibling, never
  overwrites. Each conversation remembers the leaf of the branch on screen.
- The schema is versioned (``PRAGMA user_version``); migrations back the file
  up first and run exactly once. A file from a newer Hearth is refused.
- A damaged file is set aside, never deleted: what can still be read is copied
  into a fresh database and ``notices`` says what happened. A conversation
  whose rows do not make sense is quarantined (hidden, kept) with a notice.
- Full-text search over every message with FTS5.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_store.errors import DiskFullError, ModelStoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
ROLES = ("system", "user", "assistant")
STATUSES = ("complete", "streaming", "interrupted")


class ConversationStoreError(ModelStoreError):
    """The conversation database cannot be used as it is."""


class NewerDatabaseError(ConversationStoreError):
    """The database was written by a newer version of Hearth."""


@dataclass(frozen=True)
class Conversation:
    """A conversation's own facts (its messages are read separately)."""

    id: str
    title: str
    created_at: float
    updated_at: float
    pinned: bool = False
    system_prompt: str = ""
    model: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    current_leaf_id: str | None = None


@dataclass(frozen=True)
class Message:
    """One message. ``parent_id`` links it into the conversation's tree."""

    id: str
    conversation_id: str
    parent_id: str | None
    role: str
    content: str
    created_at: float
    status: str = "complete"
    model: str = ""
    thinking: str = ""  # a reasoning model's thinking before its answer; never sent back to the model
    sources: str = "[]"  # JSON list of the document passages the answer cites
    thinking_seconds: float | None = None  # how long the model thought before it answered (None: unknown)


@dataclass(frozen=True)
class SearchHit:
    """A message that matches a search, with the matching words marked in ``snippet``."""

    conversation_id: str
    message_id: str
    title: str
    role: str
    snippet: str


def new_id() -> str:
    """A fresh id for a conversation or message (made by the caller, so writes can be queued)."""
    return uuid.uuid4().hex


_SCHEMA_V1 = """
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    system_prompt TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    settings_json TEXT NOT NULL DEFAULT '{}',
    current_leaf_id TEXT,
    deleted_at REAL,
    quarantined TEXT
);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id TEXT REFERENCES messages(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'complete',
    created_at REAL NOT NULL,
    model TEXT NOT NULL DEFAULT ''
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, created_at);
CREATE INDEX messages_by_parent ON messages(parent_id);
CREATE INDEX conversations_by_recency ON conversations(pinned DESC, updated_at DESC);
CREATE TABLE presets (name TEXT PRIMARY KEY, settings_json TEXT NOT NULL);
CREATE VIRTUAL TABLE message_fts USING fts5(content, content='messages', content_rowid='rowid',
                                            tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
    INSERT INTO message_fts(rowid, content) VALUES (new.rowid, new.content);
END;
CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
    INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
END;
CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.rowid, old.content);
    INSERT INTO message_fts(rowid, content) VALUES (new.rowid, new.content);
END;
"""

# Thinking is kept apart from the text (search and prompts read ``content`` only); sources are JSON.
_SCHEMA_V2 = """
ALTER TABLE messages ADD COLUMN thinking TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN sources TEXT NOT NULL DEFAULT '[]'
"""

# "Thought for 12 s" is shown again when a conversation is reopened.
_SCHEMA_V3 = "ALTER TABLE messages ADD COLUMN thinking_seconds REAL"

# Version -> the SQL that brings the schema from the version before up to it (run in one transaction).
MIGRATIONS = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3}


class ConversationStore:
    """All reads and writes of conversations. One instance per thread (SQLite connections are not shared).

    Args:
        path: the database file; created if missing.

    Raises:
        NewerDatabaseError: the file comes from a newer Hearth (it is left untouched).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.notices: list[str] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open_checked()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                raise DiskFullError("The disk is full: Hearth cannot open its conversation database.") from exc
            self._db = self._salvage(exc)

    # ------------------------------------------------------------ conversations

    def create_conversation(
        self,
        *,
        conversation_id: str | None = None,
        title: str = "New chat",
        system_prompt: str = "",
        model: str = "",
        settings: dict[str, Any] | None = None,
        created_at: float | None = None,
    ) -> Conversation:
        """Add an empty conversation and return it."""
        now = created_at or time.time()
        conversation = Conversation(
            id=conversation_id or new_id(), title=title, created_at=now, updated_at=now,
            system_prompt=system_prompt, model=model, settings=dict(settings or {}),
        )
        self._write(
            "INSERT INTO conversations (id, title, created_at, updated_at, system_prompt, model, settings_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (conversation.id, title, now, now, system_prompt, model, json.dumps(conversation.settings)),
        )
        return conversation

    def conversations(self) -> list[Conversation]:
        """Conversations shown in the sidebar: pinned first, then most recently used."""
        rows = self._db.execute(
            "SELECT * FROM conversations WHERE deleted_at IS NULL AND quarantined IS NULL "
            "ORDER BY pinned DESC, updated_at DESC"
        ).fetchall()
        return [self._conversation(row) for row in rows]

    def conversation_ids(self) -> set[str]:
        """Every conversation's id, those in the bin and those quarantined too."""
        return {row[0] for row in self._db.execute("SELECT id FROM conversations")}

    def conversation(self, conversation_id: str) -> Conversation | None:
        """One conversation by id, or None (also for deleted or quarantined ones)."""
        row = self._db.execute(
            "SELECT * FROM conversations WHERE id = ? AND deleted_at IS NULL AND quarantined IS NULL",
            (conversation_id,),
        ).fetchone()
        return self._conversation(row) if row else None

    def rename(self, conversation_id: str, title: str) -> None:
        """Give a conversation a new title."""
        self._write("UPDATE conversations SET title = ? WHERE id = ?", (title.strip() or "Untitled", conversation_id))

    def set_pinned(self, conversation_id: str, pinned: bool) -> None:
        """Pin a conversation to the top of the list, or unpin it."""
        self._write("UPDATE conversations SET pinned = ? WHERE id = ?", (int(pinned), conversation_id))

    def update_conversation(
        self, conversation_id: str, *, system_prompt: str, model: str, settings: dict[str, Any]
    ) -> None:
        """Store a conversation's own system prompt, model and reply settings."""
        self._write(
            "UPDATE conversations SET system_prompt = ?, model = ?, settings_json = ? WHERE id = ?",
            (system_prompt, model, json.dumps(settings), conversation_id),
        )

    def delete(self, conversation_id: str) -> None:
        """Move a conversation to the bin; :meth:`undo_delete` brings it back."""
        self._write("UPDATE conversations SET deleted_at = ? WHERE id = ?", (time.time(), conversation_id))

    def undo_delete(self, conversation_id: str) -> None:
        """Bring back a conversation deleted with :meth:`delete`."""
        self._write("UPDATE conversations SET deleted_at = NULL WHERE id = ?", (conversation_id,))

    def purge_deleted(self, older_than_s: float) -> int:
        """Remove for good conversations deleted more than ``older_than_s`` ago; returns how many."""
        cursor = self._write(
            "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at < ?", (time.time() - older_than_s,)
        )
        return cursor.rowcount

    # ----------------------------------------------------------------- messages

    def add_message(
        self,
        conversation_id: str,
        *,
        parent_id: str | None,
        role: str,
        content: str,
        status: str = "complete",
        model: str = "",
        message_id: str | None = None,
        created_at: float | None = None,
        thinking: str = "",
        sources: str = "[]",
        thinking_seconds: float | None = None,
    ) -> Message:
        """Add a message under ``parent_id``; it becomes the conversation's current leaf.

        ``thinking`` is a reasoning model's thinking (``thinking_seconds`` how long it took), ``sources``
        the cited passages as a JSON list.
        """
        if role not in ROLES or status not in STATUSES:
            raise ValueError(f"invalid role or status: {role!r}, {status!r}")
        message = Message(
            id=message_id or new_id(), conversation_id=conversation_id, parent_id=parent_id, role=role,
            content=content, created_at=created_at or time.time(), status=status, model=model,
            thinking=thinking, sources=sources, thinking_seconds=thinking_seconds,
        )
        self._write_many([
            ("INSERT INTO messages (id, conversation_id, parent_id, role, content, status, created_at, model, "
             "thinking, sources, thinking_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
             (message.id, conversation_id, parent_id, role, content, status, message.created_at, model,
              thinking, sources, thinking_seconds)),
            ("UPDATE conversations SET current_leaf_id = ?, updated_at = ? WHERE id = ?",
             (message.id, message.created_at, conversation_id)),
        ])
        return message

    def update_message(
        self, message_id: str, content: str, status: str, *, thinking: str | None = None, sources: str | None = None,
        thinking_seconds: float | None = None,
    ) -> None:
        """Replace a message's text and status (a streaming reply is saved this way as it grows).

        ``thinking``, ``sources`` and ``thinking_seconds`` are replaced too when given; None keeps what is stored.
        """
        if status not in STATUSES:
            raise ValueError(f"invalid status {status!r}")
        columns, values = ["content = ?", "status = ?"], [content, status]
        if thinking is not None:
            columns.append("thinking = ?")
            values.append(thinking)
        if sources is not None:
            columns.append("sources = ?")
            values.append(sources)
        if thinking_seconds is not None:
            columns.append("thinking_seconds = ?")
            values.append(float(thinking_seconds))
        self._write(f"UPDATE messages SET {', '.join(columns)} WHERE id = ?", (*values, message_id))

    def set_current_leaf(self, conversation_id: str, leaf_id: str) -> None:
        """Remember which branch of the conversation is on screen."""
        self._write("UPDATE conversations SET current_leaf_id = ? WHERE id = ?", (leaf_id, conversation_id))

    def messages(self, conversation_id: str) -> list[Message]:
        """Every message of a conversation, all branches, oldest first.

        A conversation whose rows are inconsistent (an unknown role, a parent
        in another conversation…) is quarantined and an empty list returned.
        """
        rows = self._db.execute(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY created_at, rowid", (conversation_id,)
        ).fetchall()
        messages = [self._message(row) for row in rows]
        problem = _tree_problem(messages)
        if problem:
            self._quarantine(conversation_id, problem)
            return []
        return messages

    def message_count(self) -> int:
        """Messages in all conversations."""
        return self._db.execute("SELECT count(*) FROM messages").fetchone()[0]

    def mark_unfinished_as_interrupted(self) -> int:
        """After a crash: replies that were still streaming become 'interrupted'. Returns how many."""
        return self._write("UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'", ()).rowcount

    # ------------------------------------------------------------------- search

    def search(self, query: str, *, limit: int = 50) -> list[SearchHit]:
        """Messages of every conversation containing all the words of ``query`` (the last one as a prefix)."""
        words = [word for word in query.split() if word]
        if not words:
            return []
        match = " ".join('"' + word.replace('"', '""') + '"' for word in words) + "*"
        rows = self._db.execute(
            "SELECT m.conversation_id, m.id, c.title, m.role, "
            "snippet(message_fts, 0, '[', ']', '…', 12) "
            "FROM message_fts JOIN messages m ON m.rowid = message_fts.rowid "
            "JOIN conversations c ON c.id = m.conversation_id "
            "WHERE message_fts MATCH ? AND c.deleted_at IS NULL AND c.quarantined IS NULL "
            "ORDER BY rank LIMIT ?",
            (match, limit),
        ).fetchall()
        return [SearchHit(*row) for row in rows]

    # ------------------------------------------------------------------ presets

    def save_preset(self, name: str, settings: dict[str, Any]) -> None:
        """Store named settings (system prompt, sampling) to reuse in other conversations."""
        self._write("INSERT OR REPLACE INTO presets (name, settings_json) VALUES (?, ?)", (name, json.dumps(settings)))

    def presets(self) -> dict[str, dict[str, Any]]:
        """All presets by name."""
        rows = self._db.execute("SELECT name, settings_json FROM presets ORDER BY name").fetchall()
        return {name: json.loads(text) for name, text in rows}

    # --------------------------------------------------------------- lifecycle

    def integrity_ok(self) -> bool:
        """``PRAGMA integrity_check`` passes."""
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        """Close the connection (WAL contents are checkpointed by SQLite)."""
        self._db.close()

    # ---------------------------------------------------------------- internals

    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=True)
        db.row_factory = sqlite3.Row
        self._configure(db)
        return db

    @staticmethod
    def _configure(db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")

    def _open_checked(self) -> sqlite3.Connection:
        existed = self.path.exists() and self.path.stat().st_size > 0
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        db.row_factory = sqlite3.Row
        version = db.execute("PRAGMA user_version").fetchone()[0]  # read before anything writes
        if version > SCHEMA_VERSION:
            db.close()
            raise NewerDatabaseError(
                f"Your conversations ({self.path}) were saved by a newer version of Hearth. "
                "Update Hearth to open them; they have not been changed."
            )
        if existed and db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            db.close()
            raise sqlite3.DatabaseError("quick_check failed")
        self._configure(db)
        if version < SCHEMA_VERSION:
            self._migrate(db, version, backup=existed)
        return db

    def _migrate(self, db: sqlite3.Connection, version: int, *, backup: bool) -> None:
        if backup:
            copy = self.path.with_name(f"{self.path.stem}.v{version}-backup{self.path.suffix}")
            with sqlite3.connect(copy) as target:
                db.backup(target)
            target.close()
            log.info("Backed up %s to %s before migrating", self.path, copy)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            try:
                # One script, one transaction: the step and the new version land together or not at all.
                db.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[step]};\nPRAGMA user_version = {step};\nCOMMIT;")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            log.info("Conversation database migrated to version %d", step)

    def _salvage(self, error: Exception) -> sqlite3.Connection:
        """Set the damaged file aside, start a fresh one and copy into it whatever can still be read."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.stem}.damaged-{stamp}{self.path.suffix}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(str(self.path) + suffix)
            if source.exists():
                shutil.move(source, Path(str(aside) + suffix))
        log.error("Conversation database %s is damaged (%s); moved to %s", self.path, error, aside)
        db = self._connect(self.path)
        self._migrate(db, 0, backup=False)
        saved, lost = _copy_readable(aside, db)
        self.notices.append(
            f"Hearth's conversation file was damaged. {saved} conversation(s) were recovered"
            + (f"; {lost} could not be read" if lost else "")
            + f". The damaged file is kept at {aside}."
        )
        return db

    def _quarantine(self, conversation_id: str, problem: str) -> None:
        log.error("Quarantining conversation %s: %s", conversation_id, problem)
        self._write("UPDATE conversations SET quarantined = ? WHERE id = ?", (problem, conversation_id))
        self.notices.append(
            f"A conversation could not be opened ({problem}). It has been set aside, not deleted; "
            "your other conversations are fine."
        )

    def _write(self, sql: str, parameters: Iterable[Any]) -> sqlite3.Cursor:
        return self._write_many([(sql, parameters)])

    def _write_many(self, statements: list[tuple[str, Iterable[Any]]]) -> sqlite3.Cursor:
        """Run statements in one transaction, committed before returning."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, parameters in statements:
                    cursor = self._db.execute(sql, tuple(parameters))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise DiskFullError("The disk is full: the last change to your conversations was not saved.") from exc
            raise
        return cursor

    @staticmethod
    def _conversation(row: sqlite3.Row) -> Conversation:
        try:
            settings = json.loads(row["settings_json"])
        except ValueError:
            settings = {}
        return Conversation(
            id=row["id"], title=row["title"], created_at=row["created_at"], updated_at=row["updated_at"],
            pinned=bool(row["pinned"]), system_prompt=row["system_prompt"], model=row["model"],
            settings=settings if isinstance(settings, dict) else {}, current_leaf_id=row["current_leaf_id"],
        )

    @staticmethod
    def _message(row: sqlite3.Row) -> Message:
        return Message(
            id=row["id"], conversation_id=row["conversation_id"], parent_id=row["parent_id"], role=row["role"],
            content=row["content"], created_at=row["created_at"], status=row["status"], model=row["model"],
            thinking=row["thinking"], sources=row["sources"], thinking_seconds=row["thinking_seconds"],
        )


def _tree_problem(messages: list[Message]) -> str:
    """Why these rows cannot form a conversation tree, or '' when they can."""
    ids = {message.id for message in messages}
    for message in messages:
        if message.role not in ROLES:
            return f"a message has an unknown role {message.role!r}"
        if not isinstance(message.content, str):
            return "a message's text is not text"
        if message.parent_id is not None and message.parent_id not in ids:
            return "a message's parent is missing"
    return ""


def _copy_readable(source: Path, target: sqlite3.Connection) -> tuple[int, int]:
    """Copy each conversation that can be read from a damaged file; return (copied, lost)."""
    saved = lost = 0
    try:
        damaged = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        ids = [row[0] for row in damaged.execute("SELECT id FROM conversations")]
    except sqlite3.DatabaseError as exc:
        log.error("Nothing could be read from %s: %s", source, exc)
        return 0, 0
    columns = "id, title, created_at, updated_at, pinned, system_prompt, model, settings_json, current_leaf_id, " \
              "deleted_at, quarantined"
    message_columns = "id, conversation_id, parent_id, role, content, status, created_at, model"
    try:  # a damaged file from before version 2 has no thinking or sources, before 3 no thinking time
        present = {row[1] for row in damaged.execute("PRAGMA table_info(messages)")}
    except sqlite3.DatabaseError:
        present = set()
    message_columns += "".join(f", {name}" for name in ("thinking", "sources", "thinking_seconds")
                               if name in present)
    for conversation_id in ids:
        try:
            conversation = damaged.execute(f"SELECT {columns} FROM conversations WHERE id = ?",
                                           (conversation_id,)).fetchone()
            rows = damaged.execute(f"SELECT {message_columns} FROM messages WHERE conversation_id = ? "
                                   "ORDER BY created_at, rowid", (conversation_id,)).fetchall()
            target.execute("BEGIN IMMEDIATE")
            target.execute(f"INSERT INTO conversations ({columns}) VALUES ({', '.join('?' * 11)})", conversation)
            target.executemany(f"INSERT INTO messages ({message_columns}) "
                               f"VALUES ({', '.join('?' * len(message_columns.split(',')))})", rows)
            target.execute("COMMIT")
            saved += 1
        except sqlite3.DatabaseError as exc:
            if target.in_transaction:
                target.execute("ROLLBACK")
            log.error("Conversation %s could not be recovered: %s", conversation_id, exc)
            lost += 1
    damaged.close()
    return saved, lost
