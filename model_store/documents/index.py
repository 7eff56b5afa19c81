"""The document index: a conversation's attached files and named folders (collections), searchable offline.

Qt-free. One SQLite file in the data folder (WAL, so a kill loses at most the
file being indexed, and searches read while indexing writes):

- ``collections``: a name and a folder, indexed incrementally: a file whose
  size and modification time are unchanged is skipped, a changed one is hashed
  (sha256) and read again only if its content changed, a deleted one leaves;
- ``files``: every indexed file with its owner (a collection or a conversation);
- ``chunks`` and ``chunk_text`` (FTS5): the passages, with page and offsets,
  ranked by bm25 (porter stemming) — works with no model at all;
- ``vectors``: when an embedder is given, one unit vector per passage; search
  is then hybrid, bm25 and cosine similarity fused by reciprocal rank.

Slow calls (indexing, attaching, searching) belong off the GUI thread; the
index may be searched from several threads while one indexes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from model_store.documents.chunking import chunk_spans
from model_store.documents.extract import ExtractedText, extract_text, looks_like_document
from model_store.documents.vectors import VectorSearch, fuse_rankings
from model_store.errors import DocumentError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CHARS_PER_TOKEN = 4
PROGRESS_EVERY_S = 0.1
COMMIT_EVERY_S = 0.5
EMBED_BATCH = 16
CANDIDATES = 50  # how many each ranking contributes before fusion
MAX_QUERY_TERMS = 32
# bm25 scores every passage that holds any word of the question, so a word found in most passages ("the", "if")
# makes a search over a big collection slow. The rarest words choose the passages, until this many would be
# scored; the other words still score them (see _rank_among_chosen). A passage holding only common words is left out.
POSTINGS_BUDGET = 8_000
# A word held by more than this share of all passages is left out of the score. FTS5 gives it an idf of at most
# log(0.65 / 0.35) = 0.62 (none above half), so it adds at most 1.4 to a passage, where a word in a tenth of them
# can add 4.8; yet scoring it costs the most ("the", "is", "to": in most questions and in most passages).
COMMON_SHARE = 0.35
MAX_REMEMBERED_WORDS = 50_000  # how many words' passage counts a search keeps between writes
TOKENIZER = "porter unicode61 remove_diacritics 2"

COLLECTION = "collection"
CONVERSATION = "conversation"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, folder TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, owner_kind TEXT NOT NULL, owner_id TEXT NOT NULL, path TEXT NOT NULL,
    title TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,
    chars INTEGER NOT NULL, indexed_at REAL NOT NULL, UNIQUE (owner_kind, owner_id, path)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, page INTEGER, start INTEGER NOT NULL, "end" INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_file ON chunks (file_id, seq);
CREATE VIRTUAL TABLE IF NOT EXISTS chunk_text USING fts5 (title, text, tokenize = '{TOKENIZER}');
CREATE TABLE IF NOT EXISTS vectors (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE, vector BLOB NOT NULL
);
"""
_BM25_SQL = ("SELECT t.rowid, bm25(chunk_text, 2.0, 1.0) AS rank FROM chunk_text t"
             " JOIN chunks k ON k.id = t.rowid JOIN files f ON f.id = k.file_id"
             " WHERE chunk_text MATCH ? AND {owners} ORDER BY rank LIMIT ?")
# When the search covers every file, nothing is left to join (a sixth of the time over 100,000 passages).
_BM25_ALL_SQL = ("SELECT rowid, bm25(chunk_text, 2.0, 1.0) AS rank FROM chunk_text"
                 " WHERE chunk_text MATCH ? ORDER BY rank LIMIT ?")
# Per reading connection: the question's words run through the index's own tokenizer (porter stems them), and how
# many passages hold each stem.
_QUERY_SCHEMA = f"""
CREATE VIRTUAL TABLE temp.query_words USING fts5 (word, tokenize = '{TOKENIZER}');
CREATE VIRTUAL TABLE temp.query_stems USING fts5vocab (temp, query_words, instance);
CREATE VIRTUAL TABLE temp.chunk_vocab USING fts5vocab (main, chunk_text, row);
"""


@dataclass(frozen=True)
class Collection:
    """A folder kept as a named collection, with what the index holds of it."""

    id: str
    name: str
    folder: Path
    files: int = 0
    chunks: int = 0
    updated_at: float = 0.0


@dataclass(frozen=True)
class Attachment:
    """A file attached to one conversation."""

    path: Path
    title: str
    chars: int
    tokens_estimate: int


@dataclass(frozen=True)
class Passage:
    """One passage of a document: where it is (file, page, offsets in that page's text) and its text."""

    chunk_id: int
    path: Path
    title: str
    page: int | None
    start: int
    end: int
    text: str
    score: float = 0.0


@dataclass(frozen=True)
class IndexProgress:
    """How far indexing has come (reported a few times a second at most)."""

    done_files: int
    total_files: int
    current: Path | None = None
    bytes_done: int = 0


@dataclass
class IndexReport:
    """What one indexing run did.

    ``problems``: (path, reason) for files left out ("<name> was not added: <reason>.").
    ``notes``: (path, note) for files indexed with a caveat ("<name>: <note>.").
    """

    indexed: int = 0
    skipped_unchanged: int = 0
    removed: int = 0
    chars: int = 0
    problems: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[tuple[Path, str]] = field(default_factory=list)
    cancelled: bool = False


class _PassageCounts:
    """How many passages hold each word, and how many there are: remembered until the index is written to again.

    Common words come back in almost every question, and counting the passages of one ("the") reads its whole list.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = -1
        self._held: dict[str, int] = {}
        self._passages = 0

    def get(self, db: sqlite3.Connection, words: Sequence[str], generation: int) -> tuple[dict[str, int], int]:
        """({word: passages holding it} for ``words``, all passages), read through ``db`` where not remembered.

        ``generation`` counts the index's writes: when it has moved on, nothing remembered is used.
        """
        with self._lock:
            if generation != self._generation or len(self._held) > MAX_REMEMBERED_WORDS:
                self._generation, self._held = generation, {}
                self._passages = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
            missing = [w for w in words if w not in self._held]
            if missing:
                self._held.update(zip(missing, _passages_per_word(db, missing)))
            return {w: self._held[w] for w in words}, self._passages


class DocumentIndex:
    """Attachments and collections of documents in one SQLite file, searched by bm25 (and vectors).

    Args:
        path: the index file (created with its folder when missing).
        embedder: optional; ``name``, ``embed(texts) -> float32 array of unit rows``. With one,
            new passages get vectors and search is hybrid.
    """

    def __init__(self, path: Path, *, embedder=None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._embedder = embedder
        self._write_lock = threading.RLock()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._generation = 0  # one more after each write transaction: what readers remember is then stale
        self._passage_counts = _PassageCounts()
        self._writer = self._connect()
        self._create_schema()
        self._vectors = VectorSearch(self._load_vectors)

    # ----------------------------------------------------------- collections

    def add_collection(self, name: str, folder: Path) -> Collection:
        """Keep ``folder`` as a collection called ``name`` (index it with :meth:`index_collection`)."""
        collection = Collection(id=uuid.uuid4().hex[:12], name=name.strip() or Path(folder).name,
                                folder=Path(folder).expanduser().resolve())
        with self._writing() as db:
            db.execute("INSERT INTO collections (id, name, folder, created_at) VALUES (?, ?, ?, ?)",
                       (collection.id, collection.name, str(collection.folder), time.time()))
        return collection

    def collections(self) -> list[Collection]:
        """Every collection, by name, with its file and passage counts."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT c.id, c.name, c.folder, c.updated_at,"
                " (SELECT COUNT(*) FROM files f WHERE f.owner_kind = ? AND f.owner_id = c.id),"
                " (SELECT COUNT(*) FROM chunks k JOIN files f ON f.id = k.file_id"
                "   WHERE f.owner_kind = ? AND f.owner_id = c.id)"
                " FROM collections c ORDER BY c.name COLLATE NOCASE", (COLLECTION, COLLECTION)).fetchall()
        return [Collection(id=r[0], name=r[1], folder=Path(r[2]), updated_at=r[3], files=r[4], chunks=r[5])
                for r in rows]

    def remove_collection(self, collection_id: str) -> None:
        """Forget a collection and its passages (the folder is left alone)."""
        with self._writing() as db:
            self._delete_files(db, "owner_kind = ? AND owner_id = ?", (COLLECTION, collection_id))
            db.execute("DELETE FROM collections WHERE id = ?", (collection_id,))

    def index_collection(self, collection_id: str, *, progress: Callable[[IndexProgress], None] = lambda p: None,
                         cancel: threading.Event | None = None,
                         embed_progress: Callable[[int, int], None] = lambda done, total: None) -> IndexReport:
        """Bring a collection up to date with its folder: new and changed files in, deleted files out.

        With an embedder, the new passages are then embedded (``embed_progress(done, total)``).
        """
        with self._reading() as db:
            row = db.execute("SELECT folder FROM collections WHERE id = ?", (collection_id,)).fetchone()
        if row is None:
            raise DocumentError(collection_id, "that collection was removed")
        folder = Path(row[0])
        report = IndexReport()
        if not folder.is_dir():
            report.problems.append((folder, "the folder is gone or cannot be opened"))
            return report  # its passages stay: the folder may be on a drive that is not plugged in
        files = list(_document_files(folder))
        self._index_files(COLLECTION, collection_id, files, report, progress, cancel, remove_missing=True)
        self._embed_after(report, cancel, embed_progress)
        if not report.cancelled:
            with self._writing() as db:
                db.execute("UPDATE collections SET updated_at = ? WHERE id = ?", (time.time(), collection_id))
        return report

    # ----------------------------------------------------------- attachments

    def attach(self, conversation_id: str, paths: Sequence[Path], *,
               progress: Callable[[IndexProgress], None] = lambda p: None,
               cancel: threading.Event | None = None,
               embed_progress: Callable[[int, int], None] = lambda done, total: None) -> IndexReport:
        """Index ``paths`` as attachments of one conversation (a file attached again is read again if it changed)."""
        report = IndexReport()
        files = [Path(p).expanduser().resolve() for p in paths]
        self._index_files(CONVERSATION, conversation_id, files, report, progress, cancel, remove_missing=False)
        self._embed_after(report, cancel, embed_progress)
        return report

    def attachments(self, conversation_id: str) -> list[Attachment]:
        """The files attached to a conversation, in the order they were attached."""
        with self._reading() as db:
            rows = db.execute("SELECT path, title, chars FROM files WHERE owner_kind = ? AND owner_id = ? ORDER BY id",
                              (CONVERSATION, conversation_id)).fetchall()
        return [Attachment(Path(p), t, c, -(-c // CHARS_PER_TOKEN)) for p, t, c in rows]

    def attachment_texts(self, conversation_id: str) -> list[tuple[Path, str]]:
        """(path, whole text) of each attachment; pages are separated by a blank line."""
        with self._reading() as db:
            files = db.execute("SELECT id, path FROM files WHERE owner_kind = ? AND owner_id = ? ORDER BY id",
                               (CONVERSATION, conversation_id)).fetchall()
            texts = []
            for file_id, path in files:
                rows = db.execute("SELECT k.page, t.text FROM chunks k JOIN chunk_text t ON t.rowid = k.id"
                                  " WHERE k.file_id = ? ORDER BY k.seq", (file_id,)).fetchall()
                texts.append((Path(path), _join_pages(rows)))
        return texts

    def detach(self, conversation_id: str, path: Path) -> None:
        """Take one file off a conversation."""
        with self._writing() as db:
            self._delete_files(db, "owner_kind = ? AND owner_id = ? AND path = ?",
                               (CONVERSATION, conversation_id, str(path)))

    def forget_conversation(self, conversation_id: str) -> None:
        """Remove every attachment of a conversation (it was deleted)."""
        with self._writing() as db:
            self._delete_files(db, "owner_kind = ? AND owner_id = ?", (CONVERSATION, conversation_id))

    def forget_other_conversations(self, kept: Collection[str]) -> int:
        """Remove the attachments of every conversation not in ``kept`` (deleted for good); returns how many."""
        with self._reading() as db:
            owners = {r[0] for r in db.execute("SELECT DISTINCT owner_id FROM files WHERE owner_kind = ?",
                                               (CONVERSATION,))}
        gone = owners - set(kept)
        for conversation_id in gone:
            self.forget_conversation(conversation_id)
        return len(gone)

    # ---------------------------------------------------------------- search

    def search(self, query: str, *, collection_ids: Sequence[str] = (), conversation_id: str | None = None,
               k: int = 5) -> list[Passage]:
        """The ``k`` passages that best match ``query`` among the collections and the conversation's attachments.

        bm25 alone, or fused with vector similarity when the index has an embedder and vectors.
        ``score`` is bm25's (higher is better) or the fused score.
        """
        owners = [(COLLECTION, c) for c in collection_ids]
        if conversation_id:
            owners.append((CONVERSATION, conversation_id))
        if not owners or k <= 0:
            return []
        keyword = self._keyword_ranking(query, owners, CANDIDATES if self._embedder else k)
        ranked = keyword
        if self._embedder is not None and self._vectors.count():
            try:
                embed_query = getattr(self._embedder, "embed_query", None)
                query_vector = embed_query(query) if embed_query else self._embedder.embed([query])[0]
            except Exception as exc:  # noqa: BLE001 - the embedding model failed: keywords still answer
                log.warning("Searching by keywords only: the embedding model failed: %s", exc)
            else:
                similar = self._vectors.nearest(query_vector, self._owner_file_ids(owners), CANDIDATES)
                ranked = fuse_rankings([keyword, similar])
        return self._passages(ranked[:k])

    def passage(self, chunk_id: int) -> Passage:
        """One passage by id (``KeyError`` when it has left the index)."""
        found = self._passages([(chunk_id, 0.0)])
        if not found:
            raise KeyError(chunk_id)
        return found[0]

    # --------------------------------------------------------------- upkeep

    def embed_pending(self, *, progress: Callable[[int, int], None] = lambda done, total: None,
                      cancel: threading.Event | None = None) -> int:
        """Give a vector to every passage that has none (needs an embedder); returns how many were embedded."""
        if self._embedder is None:
            return 0
        with self._reading() as db:
            pending = [r[0] for r in db.execute(
                "SELECT k.id FROM chunks k LEFT JOIN vectors v ON v.chunk_id = k.id WHERE v.chunk_id IS NULL")]
        done = 0
        for start in range(0, len(pending), EMBED_BATCH):
            if cancel is not None and cancel.is_set():
                break
            ids = pending[start:start + EMBED_BATCH]
            with self._reading() as db:
                marks = ",".join("?" * len(ids))
                rows = db.execute(f"SELECT rowid, title, text FROM chunk_text WHERE rowid IN ({marks})", ids).fetchall()
            vectors = self._embedder.embed([f"{title}\n{text}" for _, title, text in rows])
            with self._writing() as db:
                db.executemany("INSERT OR REPLACE INTO vectors (chunk_id, vector) SELECT ?, ? WHERE EXISTS"
                               " (SELECT 1 FROM chunks WHERE id = ?)",
                               [(r[0], v.astype("<f4").tobytes(), r[0]) for r, v in zip(rows, vectors)])
            done += len(rows)
            progress(done, len(pending))
        self._vectors.invalidate()
        return done

    def use_embedder(self, embedder) -> None:
        """Search with ``embedder`` from now on (None: bm25 alone); vectors of another model are dropped.

        Follow with :meth:`embed_pending` to give the passages vectors.
        """
        self._embedder = embedder
        self._forget_other_vectors()
        self._vectors.invalidate()

    @property
    def embedder_name(self) -> str | None:
        """The embedding model's name, or None when search is bm25 alone."""
        return getattr(self._embedder, "name", None)

    def rebuild(self, *, progress: Callable[[IndexProgress], None] = lambda p: None,
                cancel: threading.Event | None = None,
                embed_progress: Callable[[int, int], None] = lambda done, total: None) -> IndexReport:
        """Throw away every passage and read every collection and attachment again from its file."""
        with self._writing() as db:
            owners = db.execute("SELECT DISTINCT owner_kind, owner_id FROM files").fetchall()
            attached = db.execute("SELECT owner_id, path FROM files WHERE owner_kind = ?", (CONVERSATION,)).fetchall()
            db.execute("UPDATE files SET size = -1, sha256 = ''")  # nothing counts as unchanged
        report = IndexReport()
        for (collection_id,) in self._collection_ids():
            _merge(report, self.index_collection(collection_id, progress=progress, cancel=cancel,
                                                 embed_progress=embed_progress))
        by_conversation: dict[str, list[Path]] = {}
        for conversation_id, path in attached:
            by_conversation.setdefault(conversation_id, []).append(Path(path))
        for conversation_id, paths in by_conversation.items():
            _merge(report, self.attach(conversation_id, paths, progress=progress, cancel=cancel,
                                       embed_progress=embed_progress))
        log.info("Rebuilt the document index for %d owners", len(owners))
        return report

    def close(self) -> None:
        """Close every connection (after the threads using the index have stopped)."""
        self._closed = True
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()

    # ------------------------------------------------------------ internals

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def _create_schema(self) -> None:
        with self._write_lock:
            self._writer.executescript(_SCHEMA)
        with self._writing() as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            version = int(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise DocumentError(self.path, f"it was made by a newer Hearth (index version {version})")
        self._forget_other_vectors()

    def _forget_other_vectors(self) -> None:
        name = getattr(self._embedder, "name", None)
        if name is None:
            return
        with self._writing() as db:
            old = db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
            if old is None or old[0] != name:  # vectors of another model do not compare with this one's
                db.execute("DELETE FROM vectors")
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('embedder', ?)", (name,))

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """The one writing connection, in a transaction (committed on success, rolled back on error)."""
        with self._write_lock:
            db = self._writer
            nested = db.in_transaction
            if not nested:
                db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if not nested:
                    db.execute("ROLLBACK")
                raise
            if not nested:
                self._commit(db)

    def _commit(self, db: sqlite3.Connection) -> None:
        db.execute("COMMIT")
        self._generation += 1

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A reading connection from a small pool (each thread its own while it reads)."""
        if self._closed:
            raise DocumentError(self.path, "the document index is closed")
        with self._readers_lock:
            db = self._readers.pop() if self._readers else None
        if db is None:
            db = self._connect()
            db.executescript(_QUERY_SCHEMA)
        try:
            yield db
        finally:
            with self._readers_lock:
                if self._closed:
                    db.close()
                else:
                    self._readers.append(db)

    def _collection_ids(self) -> list[tuple[str]]:
        with self._reading() as db:
            return db.execute("SELECT id FROM collections ORDER BY created_at").fetchall()

    def _index_files(self, owner_kind: str, owner_id: str, files: list[Path], report: IndexReport,
                     progress: Callable[[IndexProgress], None], cancel: threading.Event | None,
                     *, remove_missing: bool) -> None:
        with self._reading() as db:
            known = {row[0]: row[1:] for row in db.execute(
                "SELECT path, id, size, mtime_ns, sha256 FROM files WHERE owner_kind = ? AND owner_id = ?",
                (owner_kind, owner_id))}
        last_report = last_commit = time.monotonic()
        bytes_done = 0
        db = None
        try:
            for number, path in enumerate(files, 1):
                if cancel is not None and cancel.is_set():
                    report.cancelled = True
                    break
                if db is None:
                    self._write_lock.acquire()
                    db = self._writer
                    db.execute("BEGIN IMMEDIATE")
                bytes_done += self._index_one(db, owner_kind, owner_id, path, known.get(str(path)), report)
                now = time.monotonic()
                if now - last_commit >= COMMIT_EVERY_S:  # let searches see progress, and keep a kill's loss small
                    self._commit(db)
                    self._write_lock.release()
                    db, last_commit = None, now
                if now - last_report >= PROGRESS_EVERY_S or number == len(files):
                    progress(IndexProgress(number, len(files), path, bytes_done))
                    last_report = now
            if remove_missing and not report.cancelled:
                if db is None:
                    self._write_lock.acquire()
                    db = self._writer
                    db.execute("BEGIN IMMEDIATE")
                present = {str(p) for p in files}
                gone = [(file_id,) for path, (file_id, *_rest) in known.items() if path not in present]
                for (file_id,) in gone:
                    self._delete_files(db, "id = ?", (file_id,))
                report.removed += len(gone)
        except BaseException:
            if db is not None:
                db.execute("ROLLBACK")
                self._write_lock.release()
            raise
        if db is not None:
            self._commit(db)
            self._write_lock.release()
        self._vectors.invalidate()

    def _embed_after(self, report: IndexReport, cancel: threading.Event | None,
                     progress: Callable[[int, int], None]) -> None:
        if self._embedder is None or report.cancelled:
            return
        try:
            self.embed_pending(cancel=cancel, progress=progress)
        except Exception as exc:  # noqa: BLE001 - the passages are indexed; vectors follow on the next run
            log.warning("Passages were indexed but not embedded: %s", exc)

    def _index_one(self, db: sqlite3.Connection, owner_kind: str, owner_id: str, path: Path,
                   known: tuple | None, report: IndexReport) -> int:
        """Index one file in the open transaction unless it is unchanged; returns the bytes read."""
        try:
            stat = path.stat()
        except OSError:
            report.problems.append((path, "it was moved or deleted before Hearth could read it"))
            return 0
        if known is not None and known[1] == stat.st_size and known[2] == stat.st_mtime_ns:
            report.skipped_unchanged += 1
            return 0
        try:
            digest = _sha256(path)
            if known is not None and known[3] == digest:
                db.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (stat.st_size, stat.st_mtime_ns,
                                                                                   known[0]))
                report.skipped_unchanged += 1
                return 0
            extracted = extract_text(path)
        except DocumentError as exc:
            report.problems.append((path, exc.reason))
            return 0
        except OSError:
            report.problems.append((path, "it was moved or deleted while Hearth read it"))
            return 0
        if known is not None:
            self._delete_files(db, "id = ?", (known[0],))
        self._store(db, owner_kind, owner_id, path, stat, digest, extracted)
        report.indexed += 1
        report.chars += extracted.chars
        report.notes.extend((path, note) for note in extracted.notes)
        return stat.st_size

    @staticmethod
    def _store(db: sqlite3.Connection, owner_kind: str, owner_id: str, path: Path, stat: os.stat_result,
               digest: str, extracted: ExtractedText) -> None:
        file_id = db.execute(
            "INSERT INTO files (owner_kind, owner_id, path, title, size, mtime_ns, sha256, chars, indexed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (owner_kind, owner_id, str(path), extracted.title, stat.st_size, stat.st_mtime_ns, digest,
             extracted.chars, time.time())).lastrowid
        seq = 0
        for page, text in extracted.pages:
            for start, end in chunk_spans(text):
                chunk_id = db.execute('INSERT INTO chunks (file_id, seq, page, start, "end") VALUES (?, ?, ?, ?, ?)',
                                      (file_id, seq, page, start, end)).lastrowid
                db.execute("INSERT INTO chunk_text (rowid, title, text) VALUES (?, ?, ?)",
                           (chunk_id, extracted.title, text[start:end]))
                seq += 1

    @staticmethod
    def _delete_files(db: sqlite3.Connection, where: str, args: tuple) -> None:
        ids = [r[0] for r in db.execute(f"SELECT id FROM files WHERE {where}", args)]
        for file_id in ids:
            db.execute("DELETE FROM chunk_text WHERE rowid IN (SELECT id FROM chunks WHERE file_id = ?)", (file_id,))
            db.execute("DELETE FROM files WHERE id = ?", (file_id,))  # chunks and vectors cascade

    def _owner_clause(self, owners: Sequence[tuple[str, str]]) -> tuple[str, list[str]]:
        clause = " OR ".join("(f.owner_kind = ? AND f.owner_id = ?)" for _ in owners)
        return f"({clause})", [value for owner in owners for value in owner]

    def _keyword_ranking(self, query: str, owners: Sequence[tuple[str, str]], limit: int) -> list[tuple[int, float]]:
        words = query_words(query)
        if not words:
            return []
        with self._reading() as db:
            sql, args = self._bm25_query(db, owners)
            held, passages = self._passage_counts.get(db, words, self._generation)
            scoring = _informative(words, held, passages)
            if not scoring:
                return []  # no passage holds any of the words
            choosing = _within_budget(scoring, [held[w] for w in scoring])
            others = [w for w in scoring if w not in choosing]
            if not others:
                ranked = db.execute(sql, [match_expression(scoring), *args, limit]).fetchall()
            else:
                ranked = _rank_among_chosen(db, sql, args, choosing, others, held, limit)
        return [(chunk_id, -rank) for chunk_id, rank in ranked[:limit]]  # bm25() is lower-is-better

    def _bm25_query(self, db: sqlite3.Connection, owners: Sequence[tuple[str, str]]) -> tuple[str, list[str]]:
        """The bm25 query over the passages of ``owners`` and its arguments (the MATCH and LIMIT ones follow)."""
        clause, args = self._owner_clause(owners)
        if db.execute(f"SELECT 1 FROM files f WHERE NOT {clause} LIMIT 1", args).fetchone() is None:
            return _BM25_ALL_SQL, []
        return _BM25_SQL.format(owners=clause), args

    def _owner_file_ids(self, owners: Sequence[tuple[str, str]]) -> set[int]:
        clause, args = self._owner_clause(owners)
        with self._reading() as db:
            return {r[0] for r in db.execute(f"SELECT f.id FROM files f WHERE {clause}", args)}

    def _load_vectors(self) -> Iterable[tuple[int, int, bytes]]:
        with self._reading() as db:
            return db.execute("SELECT v.chunk_id, k.file_id, v.vector FROM vectors v"
                              " JOIN chunks k ON k.id = v.chunk_id").fetchall()

    def _passages(self, ranked: Sequence[tuple[int, float]]) -> list[Passage]:
        if not ranked:
            return []
        ids = [chunk_id for chunk_id, _ in ranked]
        marks = ",".join("?" * len(ids))
        with self._reading() as db:
            rows = db.execute(
                'SELECT k.id, f.path, f.title, k.page, k.start, k."end", t.text FROM chunks k'
                " JOIN files f ON f.id = k.file_id JOIN chunk_text t ON t.rowid = k.id"
                f" WHERE k.id IN ({marks})", ids).fetchall()
        by_id = {r[0]: r for r in rows}
        return [Passage(chunk_id=i, path=Path(by_id[i][1]), title=by_id[i][2], page=by_id[i][3], start=by_id[i][4],
                        end=by_id[i][5], text=by_id[i][6], score=score)
                for i, score in ranked if i in by_id]


def open_index(path: Path, *, embedder=None) -> tuple[DocumentIndex, str | None]:
    """The index at ``path``, and a sentence when its file was damaged and a new one had to be started.

    A damaged file (not a database, or failing SQLite's quick check) is moved aside with
    its journal, never deleted: the documents themselves are untouched and can be added again.
    """
    path = Path(path)
    try:
        index = DocumentIndex(path, embedder=embedder)
        with index._reading() as db:
            verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if verdict == "ok":
            return index, None
        index.close()
        problem = verdict
    except sqlite3.DatabaseError as exc:
        problem = str(exc)
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            part.replace(aside.with_name(aside.name + suffix))
    log.error("The document index %s was damaged (%s); moved to %s", path, problem, aside)
    sentence = (f"The document index was damaged ({problem}), so Hearth started a new one and kept the old file as "
                f"{aside.name}. Your files are untouched: attach them or add their folders again.")
    return DocumentIndex(path, embedder=embedder), sentence


_WORD = re.compile(r"\w+", re.UNICODE)


def query_words(text: str) -> list[str]:
    """The distinct words of ``text`` (lower case, longer than one letter, at most MAX_QUERY_TERMS), in order."""
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        if len(word) > 1 and word not in words:
            words.append(word)
    return words[:MAX_QUERY_TERMS]


def match_expression(words: Sequence[str]) -> str:
    """An FTS5 MATCH expression for ``words`` (from query_words): each quoted, any of them (bm25 ranks by how many).

    Quoting makes every word a plain term, so "AND", "NEAR", "*", quotes or
    parentheses in the question are searched for, never parsed.
    """
    return " OR ".join(f'"{w}"' for w in words)


def _passages_per_word(db: sqlite3.Connection, words: Sequence[str]) -> list[int]:
    """For each word, how many passages hold it as the index tokenizes it, at most.

    A word the tokenizer cuts in several ("is_dir": "is", "dir") is searched as a phrase, which only a passage
    holding each of its tokens can hold: it counts as its rarest token.
    """
    db.execute("DELETE FROM temp.query_words")
    db.executemany("INSERT INTO temp.query_words (rowid, word) VALUES (?, ?)", enumerate(words))
    stems = db.execute("SELECT doc, term FROM temp.query_stems").fetchall()
    marks = ",".join("?" * len(stems))
    held = dict(db.execute(f"SELECT term, doc FROM temp.chunk_vocab WHERE term IN ({marks})",
                           [term for _, term in stems]).fetchall()) if stems else {}
    counts: dict[int, int] = {}
    for word_index, term in stems:
        passages = held.get(term, 0)
        counts[word_index] = min(passages, counts.get(word_index, passages))
    return [counts.get(i, 0) for i in range(len(words))]


def _informative(words: Sequence[str], held: dict[str, int], passages: int) -> list[str]:
    """``words`` that some passage holds, less those held by more than COMMON_SHARE of all ``passages``.

    When every word held is that common, the rarest of them is kept.
    """
    present = [w for w in words if held[w]]
    kept = [w for w in present if held[w] <= COMMON_SHARE * passages]
    if present and not kept:
        kept = [min(present, key=held.__getitem__)]
    return kept


def _rank_among_chosen(db: sqlite3.Connection, sql: str, args: list, choosing: Sequence[str],
                       others: Sequence[str], held: dict[str, int], limit: int) -> list[tuple[int, float]]:
    """The best ``limit`` passages among those that hold a choosing word, by bm25 over every word; (id, rank).

    bm25 is a sum over the expression's phrases, and a phrase a passage lacks adds nothing to it.
    "chosen AND (others)" gives the exact score of each passage that also holds another word. Those that
    hold none are found by "chosen NOT <the commonest other>": one phrase leaves out most passages there, and
    each passage it finds scores exactly, or (holding some other word) no better than in the first. So the
    better of its two ranks is exact, and no passage is missed: one that was would have ``limit`` better.
    """
    chosen = match_expression(choosing)
    commonest = max(others, key=held.__getitem__)
    best: dict[int, float] = {}
    for expression in (f"({chosen}) AND ({match_expression(others)})", f'({chosen}) NOT "{commonest}"'):
        for chunk_id, rank in db.execute(sql, [expression, *args, limit]):
            best[chunk_id] = min(rank, best.get(chunk_id, rank))  # bm25() is lower-is-better
    return sorted(best.items(), key=lambda item: item[1])


def _within_budget(words: Sequence[str], passages: Sequence[int]) -> list[str]:
    """The rarest of ``words`` whose passages add up to POSTINGS_BUDGET (at least one word), in their order."""
    kept: set[int] = set()
    total = 0
    for i in sorted(range(len(words)), key=lambda i: passages[i]):
        if kept and total + passages[i] > POSTINGS_BUDGET:
            break
        kept.add(i)
        total += passages[i]
    return [w for i, w in enumerate(words) if i in kept]


def _document_files(folder: Path) -> Iterator[Path]:
    """Files under ``folder`` worth opening, in a stable order: hidden files and folders, and links, are skipped."""
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        for name in sorted(names):
            path = Path(root) / name
            if not name.startswith(".") and looks_like_document(path) and not path.is_symlink():
                yield path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _join_pages(rows: Sequence[tuple[int | None, str]]) -> str:
    parts: list[str] = []
    page = object()
    for row_page, text in rows:
        if parts and row_page != page:
            parts.append("\n\n")
        parts.append(text)
        page = row_page
    return "".join(parts)


def _merge(total: IndexReport, part: IndexReport) -> None:
    total.indexed += part.indexed
    total.skipped_unchanged += part.skipped_unchanged
    total.removed += part.removed
    total.chars += part.chars
    total.problems.extend(part.problems)
    total.notes.extend(part.notes)
    total.cancelled = total.cancelled or part.cancelled
