"""A small stand-in for model_store.documents.DocumentIndex, used only while the real one is not in the tree.

Same methods and result shapes; reads UTF-8 text files, scores passages by shared words.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 800


@dataclass
class Collection:
    id: str
    name: str
    folder: Path
    files: int = 0
    chunks: int = 0
    updated_at: float = 0.0


@dataclass
class Attachment:
    path: Path
    title: str
    chars: int
    tokens_estimate: int


@dataclass
class Passage:
    chunk_id: int
    path: Path
    title: str
    page: int | None
    start: int
    end: int
    text: str
    score: float = 0.0


@dataclass
class IndexProgress:
    done_files: int
    total_files: int
    current: Path | None = None
    bytes_done: int = 0


@dataclass
class IndexReport:
    indexed: int = 0
    skipped_unchanged: int = 0
    removed: int = 0
    problems: list = field(default_factory=list)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]{3,}", text.lower()))


class StandInIndex:
    def __init__(self, path: Path, *, embedder=None) -> None:
        self._lock = threading.Lock()
        self._collections: dict[str, Collection] = {}
        self._chunks: list[Passage] = []
        self._owner: list[tuple[str, str]] = []  # ("c", conversation) or ("k", collection) per chunk
        self._attached: dict[str, list[tuple[Path, str]]] = {}

    def _read(self, path: Path) -> str:
        return path.read_bytes().decode("utf-8")

    def _add_chunks(self, owner, path: Path, text: str) -> int:
        n = 0
        for start in range(0, max(len(text), 1), CHUNK):
            self._chunks.append(Passage(len(self._chunks), path, path.name, None, start, start + CHUNK,
                                        text[start:start + CHUNK]))
            self._owner.append(owner)
            n += 1
        return n

    def add_collection(self, name, folder):
        c = Collection(id=f"k{len(self._collections) + 1}", name=name, folder=Path(folder))
        self._collections[c.id] = c
        return c

    def collections(self):
        return list(self._collections.values())

    def remove_collection(self, collection_id):
        self._collections.pop(collection_id, None)

    def index_collection(self, collection_id, *, progress=lambda p: None, cancel=None):
        c = self._collections[collection_id]
        files = sorted(p for p in c.folder.rglob("*") if p.is_file())
        report = IndexReport()
        for i, path in enumerate(files):
            try:
                text = self._read(path)
            except (OSError, UnicodeDecodeError) as exc:
                report.problems.append((path, f"it is not a text file Hearth can read ({exc.__class__.__name__})"))
                continue
            with self._lock:
                c.chunks += self._add_chunks(("k", collection_id), path, text)
            report.indexed += 1
            progress(IndexProgress(i + 1, len(files), path))
        c.files, c.updated_at = report.indexed, time.time()
        return report

    def attach(self, conversation_id, paths, *, progress=lambda p: None, cancel=None):
        report = IndexReport()
        for i, path in enumerate(paths):
            try:
                text = self._read(Path(path))
            except (OSError, UnicodeDecodeError):
                report.problems.append((Path(path), "its text could not be read"))
                continue
            with self._lock:
                self._attached.setdefault(conversation_id, []).append((Path(path), text))
                self._add_chunks(("c", conversation_id), Path(path), text)
            report.indexed += 1
            progress(IndexProgress(i + 1, len(paths), Path(path)))
        return report

    def attachments(self, conversation_id):
        return [Attachment(p, p.name, len(t), len(t) // 4 + 1) for p, t in self._attached.get(conversation_id, [])]

    def attachment_texts(self, conversation_id):
        return [(p, t) for p, t in self._attached.get(conversation_id, [])]

    def search(self, query, *, collection_ids=(), conversation_id=None, k=5):
        wanted = _words(query)
        with self._lock:
            hits = [
                Passage(**{**c.__dict__, "score": len(wanted & _words(c.text))})
                for c, (kind, owner) in zip(self._chunks, self._owner)
                if (kind == "c" and owner == conversation_id) or (kind == "k" and owner in collection_ids)
            ]
        return sorted(hits, key=lambda p: -p.score)[:k]

    def passage(self, chunk_id):
        return self._chunks[chunk_id]

    def close(self):
        pass
