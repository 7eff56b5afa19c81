"""Embedding models: text to unit vectors, for searching documents by meaning.

A GGUF embedding model (nomic-embed, bge, EmbeddingGemma…) runs through
llama.cpp in a child process of its own, like the chat engine
(:mod:`inference.process_engine`): a hostile file or a llama.cpp abort ends
that process, never Hearth. The child starts on the first :meth:`embed`, and
again after it died. Messages: parent to child ``("embed", texts)`` and
``("exit",)``; child to parent ``("ready", dimensions)``, ``("vectors", bytes,
rows)`` and ``("error", type, message)``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Protocol

import numpy as np

from inference.errors import EngineCrashedError, GenerationError, InferenceError, ModelLoadError, from_wire, to_wire
from inference.gguf_info import GgufInfo
from inference.process_engine import _log_file, exit_reason

log = logging.getLogger(__name__)

# Architectures that only embed (they have no next-token head worth chatting with).
EMBEDDING_ARCHITECTURES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "eurobert",
                                     "modern-bert", "t5encoder", "gemma-embedding", "neo-bert", "llama-embed"})
READY_TIMEOUT_S = 120.0

# What some models were trained to see before a question and before a passage, by a part of the file name.
TASK_PREFIXES = (
    ("nomic-embed", "search_query: ", "search_document: "),
    ("embeddinggemma", "task: search result | query: ", "title: none | text: "),
    ("bge-small-en", "Represent this sentence for searching relevant passages: ", ""),
    ("bge-base-en", "Represent this sentence for searching relevant passages: ", ""),
    ("bge-large-en", "Represent this sentence for searching relevant passages: ", ""),
    ("e5-", "query: ", "passage: "),
)


class Embedder(Protocol):
    """What the document index needs of an embedding model."""

    name: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...  # passages
    def embed_query(self, text: str) -> np.ndarray: ...  # one question, as the model expects questions
    def close(self) -> None: ...


def task_prefixes(path: Path) -> tuple[str, str]:
    """(before a question, before a passage) for models trained with such prefixes, else empty strings."""
    name = Path(path).name.lower()
    for part, query, document in TASK_PREFIXES:
        if part in name:
            return query, document
    return "", ""


def is_embedding_model(info: GgufInfo) -> bool:
    """True for a GGUF made to embed text: an embedding architecture, or a header that declares its pooling."""
    return info.architecture in EMBEDDING_ARCHITECTURES or f"{info.architecture}.pooling_type" in info.metadata


def first_embedding_model(paths: Iterable[Path]) -> Path | None:
    """The first of ``paths`` that is a readable GGUF embedding model (headers only: off the GUI thread)."""
    from inference.gguf_info import read_gguf_info

    for path in paths:
        try:
            if is_embedding_model(read_gguf_info(Path(path))):
                return Path(path)
        except (InferenceError, OSError) as exc:
            log.info("%s is not an embedding model Hearth can use: %s", path, exc)
    return None


class LlamaEmbedder:
    """A GGUF embedding model through llama.cpp, in a child process of its own. Thread-safe (calls take turns).

    Args:
        path: the GGUF file.
        threads: CPU threads for the model (default: the physical cores).
        context: tokens per batch, at most the model's trained length; a longer text is cut to it
            (a passage is ~250 tokens).

    A model that declares its pooling uses it; one that does not (a chat model used
    as a stand-in) is pooled by mean.
    """

    def __init__(self, path: Path, *, threads: int | None = None, context: int = 2048) -> None:
        self.path = Path(path)
        self.name = f"{self.path.name}:{self.path.stat().st_size}"
        self.dimensions = 0
        self._query_prefix, self._document_prefix = task_prefixes(self.path)
        self._threads = threads
        self._context = context
        self._spawn = multiprocessing.get_context("spawn")
        self._process = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The embedding process's id while it runs."""
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    def embed_query(self, text: str) -> np.ndarray:
        """The unit vector of one question (with the model's question prefix, if it has one)."""
        return self._embed([self._query_prefix + text])[0]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per passage (texts longer than ``context`` tokens are cut).

        Raises:
            ModelLoadError: llama.cpp refused the file.
            EngineCrashedError: the embedding process died (the next call starts a new one).
            GenerationError: after :meth:`close`, or llama.cpp failed on the texts.
        """
        return self._embed([self._document_prefix + str(t) for t in texts])

    def _embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            if self._closed:
                raise GenerationError("The embedding model was closed.")
            self._ensure_process()
            if not texts:
                return np.zeros((0, self.dimensions), dtype=np.float32)
            self._conn.send(("embed", texts))
            reply = self._receive()
            if reply[0] != "vectors":
                raise from_wire(reply[1], reply[2], default=GenerationError)
            return np.frombuffer(reply[1], dtype=np.float32).reshape(reply[2], self.dimensions).copy()

    def close(self) -> None:
        """End the embedding process."""
        with self._lock:
            self._closed = True
            self._stop_process()

    # ------------------------------------------------------------ internals

    def _ensure_process(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        self._stop_process()
        parent, child = self._spawn.Pipe()
        self._process = self._spawn.Process(
            target=serve, args=(child, str(self.path), self._threads or _physical_cores(), self._context,
                                _log_file()),
            name="hearth-embedder", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        reply = self._receive(timeout=READY_TIMEOUT_S)
        if reply[0] != "ready":
            self._stop_process()
            raise from_wire(reply[1], reply[2], default=ModelLoadError)
        self.dimensions = reply[1]
        log.info("Embedding process %d started for %s (%d dimensions)", self._process.pid, self.path.name,
                 self.dimensions)

    def _receive(self, timeout: float | None = None):
        ready = wait([self._conn, self._process.sentinel], timeout=timeout)
        if self._conn in ready:
            try:
                return self._conn.recv()
            except (EOFError, OSError):
                pass
        self._process.join(1)
        reason = exit_reason(self._process.exitcode) if ready else "it did not start in time"
        log.error("Embedding process stopped: %s", reason)
        self._stop_process()
        raise EngineCrashedError(f"The embedding model stopped: {reason}.")

    def _stop_process(self) -> None:
        if self._process is None:
            return
        try:
            self._conn.send(("exit",))
        except (OSError, EOFError, ValueError):
            pass
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()
        self._process, self._conn = None, None


def _physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


# ------------------------------------------------------------ the child


def serve(conn: Connection, path: str, threads: int, context: int, log_file: str | None = None) -> None:
    """The embedding process: load the model, then answer ``embed`` messages until ``exit``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_file:
        logging.basicConfig(filename=log_file, level=logging.INFO)
    try:
        model = _load(Path(path), threads, context)
        dimensions = model.n_embd()
        conn.send(("ready", dimensions))
    except Exception as exc:  # noqa: BLE001 - goes back to the parent by class name
        conn.send(("error", *to_wire(exc)))
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "exit":
            return
        try:
            vectors = _embed(model, message[1])
            conn.send(("vectors", vectors.tobytes(), len(vectors)))
        except Exception as exc:  # noqa: BLE001
            conn.send(("error", *to_wire(exc)))


def _load(path: Path, threads: int, context: int):
    from inference.cpu_backends import load_cpu_backend
    from inference.gguf_info import read_gguf_info

    load_cpu_backend()  # a CPU variant this machine runs safely (never the AMX kernels), before llama.cpp loads
    import llama_cpp

    info = read_gguf_info(path)
    declares = f"{info.architecture}.pooling_type" in info.metadata
    context = batch_context(info, context)
    try:
        return llama_cpp.Llama(
            model_path=str(path), embedding=True, n_ctx=context, n_batch=context, n_ubatch=context,
            n_threads=threads, n_threads_batch=threads, verbose=False,
            # Unlike a chat turn's few new tokens, passages go in batches of hundreds, where llama.cpp's CPU
            # flash attention takes its tiled path: twice the passages per second, as llama-embedding runs
            # (tests/benchmarks/embedding_speed.py); one short question is as fast either way.
            flash_attn=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if declares else llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"llama.cpp could not load {path.name} as an embedding model: {exc}") from exc


def batch_context(info: GgufInfo, wanted: int) -> int:
    """Tokens per text: ``wanted``, but never more than the model was trained on.

    A BERT-style model (all-MiniLM, bge-small, e5) has a table of 512 positions:
    llama.cpp aborts on a longer text, so texts are cut to the model's own length.
    """
    trained = info.metadata.get(f"{info.architecture}.context_length")
    return min(wanted, int(trained)) if isinstance(trained, int) and trained > 0 else wanted


def _embed(model, texts: list[str]) -> np.ndarray:
    rows = model.embed([text if text.strip() else " " for text in texts], normalize=False, truncate=True)
    vectors = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
