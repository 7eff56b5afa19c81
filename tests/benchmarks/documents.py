"""Figures for the document index (model_store/documents): retrieval quality on real questions, indexing
throughput, and search latency at 100,000 passages, bm25 and vectors (numpy against sqlite-vec).

    .venv/bin/python tests/benchmarks/documents.py [--quick] [--no-embedder] [--hybrid-everything]
                                                   [--embedder minilm|builtin|FILE.gguf]
                                                   [--chunks 100000] [--queries 200]

``--quick``: 5,000 passages, 40 searches, six small topics embedded (a smoke run, about a minute).
``--no-embedder``: bm25 only. ``--hybrid-everything``: embed every topic, not a sample.
``--embedder``: ``minilm`` (the default) is a real embedding model, sentence-transformers' all-MiniLM-L6-v2
from its PyPI package, converted to GGUF by llama.cpp's own converter (tests/benchmarks/real_embedder.py);
``builtin`` is the built-in chat model standing in for one (pooled by mean: it ranks poorly, and embeds
about one passage a second here); or any GGUF embedding model's path.
Progress goes to stderr; the figures are one JSON object on the last line of stdout:

- ``retrieval_recall_at_5``: ``{"bm25": x, "hybrid": y}``, the fraction of the questions in
  tests/retrieval/questions.json whose five best passages include one that holds the answer, over Python's
  documentation (tests/retrieval/corpus.py). ``hybrid`` is bm25 fused with vectors from ``embedder``
  (DocumentIndex.search, as the app searches). When only part of the corpus is embedded (``hybrid_corpus``
  says which), ``bm25_same_corpus`` is bm25 on that same part, the figure to compare hybrid with.
  ``vectors_alone``: recall@5 of the embedder's ranking by itself (cosine, no bm25), for what it adds.
- ``index_mb_s``: millions of characters of extracted text (IndexReport.chars / 1e6; characters, not bytes)
  indexed per second, bm25 only, over ``index_copies`` copies of the documentation (a folder of ~4.6 M
  characters: one copy takes a few milliseconds, too short to time).
- ``embed_chunks_s``: passages embedded per second by the embedder (DocumentIndex.embed_pending).
- ``query_embed_ms_p50``: embedding one question, the part of a hybrid search that bm25 does not have.
- ``retrieval_ms_p50`` / ``retrieval_ms_p95``: DocumentIndex.search (bm25, k=5) over ``retrieval_chunks``
  passages of real text: the standard library's and this environment's site-packages' files, indexed as one
  collection and cached under ~/.cache/hearth/bench/ by a hash of the file list (the first run builds it,
  ``big_index_build_s``), with the documentation beside them; ``--queries`` searches, half the question set
  (repeated), half words drawn from random passages of the index. Target: p95 <= 50 ms.
  ``recall_at_5_among_all``: recall@5 of the questions over that whole index (the documentation among
  100,000 passages of other text). The ``_every_word`` figures are the same searches with every word of the
  question choosing and scoring passages (POSTINGS_BUDGET and COMMON_SHARE off): the baseline, plain FTS5 bm25
  over every word, for what leaving out the passages that hold only common words, and the commonest words from
  the score, costs in time and in recall.
- ``vector_ms_p50`` / ``vector_ms_p95``: the ``CANDIDATES`` nearest of ``vector_count`` random unit vectors of
  768 dimensions (random is fine for timing; nothing is ranked by meaning here): ``numpy`` is
  model_store/documents/vectors.VectorSearch over every file, ``numpy_half_the_files`` the same limited to
  half the files (one collection of two: the matrix rows are gathered first), ``sqlite_vec`` a ``vec0``
  table's KNN query, ``sqlite_vec_half_the_files`` the same on a partition key, ``sqlite_vec_scan``
  ``vec_distance_cosine`` over a plain table of blobs (the index's own ``vectors`` table, fewer queries).
  ``vector_top10_agreement``: how much of numpy's top ten sqlite-vec's KNN also returns (1.0: the same).
- ``vector_choice``: "numpy" or "sqlite-vec", the faster at p95 over every file, with
  ``vector_choice_reason``.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from model_store.documents import chunking  # noqa: E402
from model_store.documents import index as index_module  # noqa: E402
from model_store.documents.extract import looks_like_document  # noqa: E402
from inference.gguf_info import read_gguf_info  # noqa: E402
from model_store.documents.index import CANDIDATES, COLLECTION, DocumentIndex  # noqa: E402
from model_store.documents.vectors import VectorSearch  # noqa: E402
from tests.retrieval.corpus import (  # noqa: E402
    Question, answer_rank, load_questions, recall_at, topic_texts, write_corpus)

CACHE = Path.home() / ".cache" / "hearth" / "bench"
DIMENSIONS = 768
FILES_PER_VECTOR_FILE = 10  # vectors of the timing set are spread over files as passages are
SCAN_QUERIES = 20
TEXT_SUFFIXES = frozenset({".py", ".pyi", ".txt", ".md", ".rst"})
HYBRID_OTHER_TOPICS = 8  # topics no question is about, embedded with the questions' topics
QUICK_TOPICS = 6  # --quick embeds the smallest few topics questions are about
_WORD = re.compile(r"[A-Za-z]{4,}")


def log(message: str) -> None:
    """Progress, to stderr."""
    print(message, file=sys.stderr, flush=True)


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p95) of ``seconds``, in milliseconds."""
    p50, p95 = np.percentile(np.asarray(seconds) * 1000, [50, 95])
    return round(float(p50), 2), round(float(p95), 2)


# ------------------------------------------------------------------ the documentation and its questions

def index_throughput(tmp: Path, copies: int) -> dict:
    """Index ``copies`` copies of the documentation as one collection, bm25 only; characters per second."""
    folder = tmp / "throughput"
    for copy in range(copies):
        write_corpus(folder / f"copy-{copy:02}")
    index = DocumentIndex(tmp / "throughput.sqlite3")
    collection = index.add_collection("Python docs", folder)
    start = time.perf_counter()
    report = index.index_collection(collection.id)
    elapsed = time.perf_counter() - start
    index.close()
    log(f"indexed {report.indexed} files, {report.chars / 1e6:.1f} M characters in {elapsed:.2f} s")
    return {"index_mb_s": round(report.chars / 1e6 / elapsed, 2), "index_copies": copies,
            "index_chars": report.chars}


def bm25_recall(tmp: Path, questions: list[Question]) -> float:
    """recall@5 of bm25 over the whole documentation."""
    write_corpus(tmp / "docs")
    index = DocumentIndex(tmp / "docs.sqlite3")
    collection = index.add_collection("Python docs", tmp / "docs")
    index.index_collection(collection.id)
    recall, missed = recall_at(index, [collection.id], questions)
    index.close()
    log(f"bm25 recall@5 {recall:.3f}; missed: {[q.question for q in missed]}")
    return recall


def hybrid_topics(questions: list[Question], scope: str) -> tuple[list[str], str]:
    """The topics to embed for ``scope`` ("all", "sample" or "quick"), and a sentence saying which they are."""
    topics = sorted(topic_texts())
    if scope == "all":
        return topics, f"all {len(topics)} topics"
    asked = sorted({q.topic for q in questions})
    if scope == "quick":
        asked = sorted(asked, key=lambda t: len(topic_texts()[t]))[:QUICK_TOPICS]
    others = random.Random(0).sample([t for t in topics if t not in asked], HYBRID_OTHER_TOPICS)
    return sorted(asked + others), (f"{len(asked)} topics the questions are about and {len(others)} others "
                                    f"(random.Random(0)), of {len(topics)}")


def hybrid_figures(tmp: Path, questions: list[Question], model_path: Path, scope: str) -> dict:
    """Embed (part of) the documentation with the embedder in ``model_path``: recall of both rankings, speeds."""
    from inference.embeddings import LlamaEmbedder, is_embedding_model

    is_embedding = is_embedding_model(read_gguf_info(model_path))
    topics, described = hybrid_topics(questions, scope)
    folder, db = tmp / "hybrid", tmp / "hybrid.sqlite3"
    write_corpus(folder, topics)
    index = DocumentIndex(db)
    collection = index.add_collection("Python docs", folder)
    index.index_collection(collection.id)
    asked = [q for q in questions if q.topic in topics]
    bm25, _ = recall_at(index, [collection.id], asked)
    passages = index.collections()[0].chunks
    index.close()

    embedder = LlamaEmbedder(model_path)
    try:
        index = DocumentIndex(db, embedder=embedder)
        log(f"embedding {passages} passages with {embedder.name}")
        start = time.perf_counter()
        embedded = index.embed_pending(
            progress=lambda done, total: log(f"  embedded {done}/{total}") if done % 64 == 0 else None)
        embed_s = time.perf_counter() - start
        log(f"embedded {embedded} passages in {embed_s:.1f} s ({embedder.dimensions} dimensions)")
        hybrid, missed = recall_at(index, [collection.id], asked)
        vectors_alone = vector_recall(index, collection.id, embedder, asked)
        log(f"hybrid recall@5 {hybrid:.3f} (bm25 on the same corpus {bm25:.3f}, vectors alone "
            f"{vectors_alone:.3f}); missed: {[q.question for q in missed]}")
        query_s = []
        for q in questions:
            start = time.perf_counter()
            embedder.embed([q.question])
            query_s.append(time.perf_counter() - start)
        index.close()
    finally:
        embedder.close()
    figures = {"hybrid": round(hybrid, 3), "vectors_alone": round(vectors_alone, 3),
               "embedder": embedder.name if is_embedding else f"{embedder.name} (stand-in: a chat model)",
               "embed_dimensions": embedder.dimensions, "hybrid_corpus": described, "hybrid_passages": passages,
               "hybrid_questions": len(asked), "embed_chunks_s": round(embedded / embed_s, 2),
               "query_embed_ms_p50": percentiles(query_s)[0]}
    if scope != "all":
        figures["bm25_same_corpus"] = round(bm25, 3)
    return figures


def vector_recall(index: DocumentIndex, collection_id: str, embedder, questions: list[Question]) -> float:
    """Recall@5 of the embedder's own ranking (cosine over the index's vectors, no bm25) for ``questions``."""
    files = index._owner_file_ids([(COLLECTION, collection_id)])  # the index's own helpers: the same
    found = 0                                                        # vectors and passages search uses
    for q in questions:
        nearest = index._vectors.nearest(embedder.embed_query(q.question), files, 5)
        found += answer_rank(index._passages(nearest), q.answer) is not None
    return found / len(questions)


def embedding_model(choice: str) -> Path:
    """The GGUF for ``--embedder``: "minilm" (a real embedding model), "builtin" (the chat model), or a path."""
    if choice == "minilm":
        from tests.benchmarks.real_embedder import minilm_gguf

        return minilm_gguf()
    return builtin_model() if choice == "builtin" else Path(choice)


def builtin_model() -> Path:
    """The built-in model, installed once under the benchmark cache."""
    from model_store.builtin_model import ensure_builtin_model, packaged_gemma_chunks
    from model_store.paths import AppPaths
    from model_store.registry import ModelRegistry

    paths = AppPaths.under(CACHE / "builtin")
    paths.create()
    return ensure_builtin_model(ModelRegistry(paths.registry_file), paths.models_dir, packaged_gemma_chunks()).path


# ------------------------------------------------------------------------ 100,000 passages of real text

def text_files(min_chars: int) -> list[tuple[Path, Path]]:
    """(root, file) for the standard library's then site-packages' source and text files, in order, until
    ``min_chars``.

    Only TEXT_SUFFIXES (site-packages also holds data files and libraries without a binary suffix, which
    count bytes but give no text), and none the index skips (hidden files and folders, __pycache__, links);
    not the standard library's own site-packages. Sizes are bytes, so the characters are a little fewer
    where text is not ASCII.
    """
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    chosen: list[tuple[Path, Path]] = []
    total = 0
    for root in roots:
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("__pycache__", "site-packages")
                             and not (Path(folder) / d).is_symlink())
            for name in sorted(names):
                path = Path(folder) / name
                if (name.startswith(".") or path.suffix not in TEXT_SUFFIXES or path.is_symlink()
                        or not looks_like_document(path)):
                    continue
                size = path.stat().st_size
                if size == 0:
                    continue
                chosen.append((root, path))
                total += size
                if total >= min_chars:
                    return chosen
    return chosen


def big_index(target_chunks: int) -> tuple[DocumentIndex, list[str], dict]:
    """An index of at least ``target_chunks`` passages of real text, built once and kept under CACHE.

    The files are hard-linked (copied where that fails) into one folder, with the documentation the questions
    are about beside them, indexed as one collection. Passages are at most TARGET_CHARS long, so
    ``target_chunks`` x that many characters (plus 10 %) makes at least that many.
    """
    files = text_files(int(target_chunks * chunking.TARGET_CHARS * 1.1))
    key = hashlib.sha256(b"with the documentation\n")
    for module in ("chunking.py", "extract.py", "index.py"):  # a change in how text is read or cut rebuilds
        key.update((REPO / "model_store" / "documents" / module).read_bytes())
    for root, path in files:
        key.update(f"{path} {path.stat().st_size}\n".encode())
    home = CACHE / f"documents-{key.hexdigest()[:16]}"
    done = home / "built.json"
    if done.exists():
        built = json.loads(done.read_text(encoding="utf-8"))
        log(f"using the cached index {home} ({built['chunks']} passages)")
        index = DocumentIndex(home / "index.sqlite3")
        return index, [c.id for c in index.collections()], built
    shutil.rmtree(home, ignore_errors=True)
    folder = home / "files"
    log(f"linking {len(files)} files into {folder}")
    roots = list(dict.fromkeys(root for root, _ in files))
    for root, path in files:
        target = folder / f"{roots.index(root)}-{root.name}" / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    write_corpus(folder / "python-docs")
    index = DocumentIndex(home / "index.sqlite3")
    collection = index.add_collection("Python sources", folder)
    start = time.perf_counter()
    report = index.index_collection(collection.id, progress=lambda p: log(
        f"  {p.done_files}/{p.total_files} files") if p.done_files % 2000 == 0 else None)
    elapsed = time.perf_counter() - start
    chunks = index.collections()[0].chunks
    built = {"chunks": chunks, "files": report.indexed, "chars": report.chars, "build_s": round(elapsed, 1),
             "build_mb_s": round(report.chars / 1e6 / elapsed, 2), "problems": len(report.problems)}
    log(f"built {home}: {built}")
    if chunks < target_chunks:
        log(f"only {chunks} passages, fewer than the {target_chunks} asked for: not enough text here")
    done.write_text(json.dumps(built), encoding="utf-8")
    return index, [collection.id], built


def generated_queries(index: DocumentIndex, chunks: int, count: int, seed: int = 0) -> list[str]:
    """``count`` queries of 2 to 5 words drawn from random passages of ``index``."""
    rng = random.Random(seed)
    queries: list[str] = []
    while len(queries) < count:
        try:
            text = index.passage(rng.randint(1, chunks)).text
        except KeyError:
            continue
        words = _WORD.findall(text)
        if len(words) >= 5:
            queries.append(" ".join(rng.sample(words, rng.randint(2, 5))))
    return queries


def timed_searches(index: DocumentIndex, collection_ids: list[str], queries: list[str]) -> list[float]:
    """Seconds each search (bm25, k=5) took, after five untimed ones."""
    for query in queries[:5]:
        index.search(query, collection_ids=collection_ids, k=5)
    seconds = []
    for query in queries:
        start = time.perf_counter()
        index.search(query, collection_ids=collection_ids, k=5)
        seconds.append(time.perf_counter() - start)
    return seconds


def bm25_latency(target_chunks: int, questions: list[Question], count: int) -> dict:
    """p50 and p95 of DocumentIndex.search over the big index, and recall@5 there; the same with every word of
    the question searched for (no POSTINGS_BUDGET), the baseline, in the same run."""
    index, collection_ids, built = big_index(target_chunks)
    chunks = built["chunks"]
    asked = [questions[i % len(questions)].question for i in range(count // 2)]
    queries = asked + generated_queries(index, chunks, count - len(asked))
    figures: dict = {}
    budget, share = index_module.POSTINGS_BUDGET, index_module.COMMON_SHARE
    for name, limit, common in (("", budget, share), ("_every_word", 10 ** 15, 1.0)):
        index_module.POSTINGS_BUDGET, index_module.COMMON_SHARE = limit, common
        try:
            seconds = timed_searches(index, collection_ids, queries)
            recall, _ = recall_at(index, collection_ids, questions)
        finally:
            index_module.POSTINGS_BUDGET, index_module.COMMON_SHARE = budget, share
        p50, p95 = percentiles(seconds)
        figures.update({f"retrieval_ms_p50{name}": p50, f"retrieval_ms_p95{name}": p95,
                        f"retrieval_ms_p95_questions{name}": percentiles(seconds[:len(asked)])[1],
                        f"retrieval_ms_max{name}": round(max(seconds) * 1000, 2),
                        f"recall_at_5_among_all{name}": round(recall, 3)})
        log(f"bm25{name} over {chunks} passages: p50 {p50} ms, p95 {p95} ms, recall@5 {recall:.3f}")
    index.close()
    return {**figures, "retrieval_chunks": chunks, "retrieval_queries": len(queries),
            "postings_budget": budget, "common_share": share, "big_index_build_s": built["build_s"],
            "big_index_build_mb_s": built["build_mb_s"], "big_index_files": built["files"]}


# ------------------------------------------------------------------------------------------- vectors

def load_sqlite_vec() -> None:
    """Make sqlite-vec part of every SQLite connection opened from now on.

    This Python's sqlite3 module is built without ``enable_load_extension`` (pyenv's default), so
    ``sqlite_vec.load(connection)`` cannot be used; SQLite's own ``sqlite3_auto_extension`` registers the
    extension's entry point with the library the module links to.
    """
    import sqlite_vec

    library = ctypes.CDLL("libsqlite3.so.0")
    extension = ctypes.CDLL(sqlite_vec.loadable_path() + ".so")
    if library.sqlite3_auto_extension(ctypes.cast(extension.sqlite3_vec_init, ctypes.c_void_p)) != 0:
        raise RuntimeError("sqlite3_auto_extension refused sqlite-vec")


def time_queries(search, queries: np.ndarray) -> tuple[list[float], list[list[int]]]:
    """Seconds each ``search(query) -> ids`` took, and the ids."""
    seconds, found = [], []
    for query in queries:
        start = time.perf_counter()
        ids = search(query)
        seconds.append(time.perf_counter() - start)
        found.append(ids)
    return seconds, found


def numpy_timings(vectors: np.ndarray, file_ids: np.ndarray, queries: np.ndarray, note) -> list[list[int]]:
    """Time VectorSearch over every file and over half of them; returns the ids found over every file."""
    search = VectorSearch(lambda: [(i + 1, int(file_ids[i]), vectors[i].tobytes()) for i in range(len(vectors))])
    search.count()  # reads the matrix, as the first search after a change does
    files = int(file_ids[-1]) + 1
    every_file, half = set(range(files)), set(range(files // 2))
    seconds, found = time_queries(lambda q: [i for i, _ in search.nearest(q, every_file, CANDIDATES)], queries)
    note("numpy", seconds)
    note("numpy_half_the_files", time_queries(lambda q: search.nearest(q, half, CANDIDATES), queries)[0])
    return found


def sqlite_vec_timings(db_path: Path, vectors: np.ndarray, file_ids: np.ndarray, queries: np.ndarray,
                       note) -> list[list[int]]:
    """Time sqlite-vec's KNN (every file, half the files) and a scan; returns the ids found over every file."""
    load_sqlite_vec()
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"CREATE VIRTUAL TABLE knn USING vec0 (part INTEGER PARTITION KEY,"
               f" embedding float[{DIMENSIONS}] distance_metric=cosine)")
    db.execute("CREATE TABLE plain (id INTEGER PRIMARY KEY, vector BLOB NOT NULL)")
    log(f"writing {len(vectors)} vectors into sqlite-vec")
    half = (int(file_ids[-1]) + 1) // 2
    db.execute("BEGIN")
    db.executemany("INSERT INTO knn (rowid, part, embedding) VALUES (?, ?, ?)",
                   ((i + 1, int(file_ids[i] >= half), vectors[i].tobytes()) for i in range(len(vectors))))
    db.executemany("INSERT INTO plain (id, vector) VALUES (?, ?)",
                   ((i + 1, vectors[i].tobytes()) for i in range(len(vectors))))
    db.execute("COMMIT")

    def knn(query: np.ndarray, part: int | None = None) -> list[int]:
        where, extra = ("", []) if part is None else (" AND part = ?", [part])
        return [r[0] for r in db.execute(
            f"SELECT rowid, distance FROM knn WHERE embedding MATCH ? AND k = ?{where} ORDER BY distance",
            [query.tobytes(), CANDIDATES, *extra])]

    def scan(query: np.ndarray) -> list[int]:
        return [r[0] for r in db.execute("SELECT id FROM plain ORDER BY vec_distance_cosine(vector, ?) LIMIT ?",
                                         (query.tobytes(), CANDIDATES))]

    knn(queries[0])
    seconds, found = time_queries(knn, queries)
    note("sqlite_vec", seconds)
    note("sqlite_vec_half_the_files", time_queries(lambda q: knn(q, 0), queries)[0])
    note("sqlite_vec_scan", time_queries(scan, queries[:SCAN_QUERIES])[0])
    db.close()
    return found


def vector_latency(tmp: Path, count: int, queries_count: int) -> dict:
    """numpy's VectorSearch against sqlite-vec on the same random unit vectors, and which to use."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, DIMENSIONS), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((queries_count, DIMENSIONS), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    file_ids = np.arange(count) // FILES_PER_VECTOR_FILE
    figures: dict[str, dict] = {"vector_ms_p50": {}, "vector_ms_p95": {}}

    def note(name: str, seconds: list[float]) -> None:
        figures["vector_ms_p50"][name], figures["vector_ms_p95"][name] = percentiles(seconds)
        log(f"{name}: p50 {figures['vector_ms_p50'][name]} ms, p95 {figures['vector_ms_p95'][name]} ms")

    numpy_found = numpy_timings(vectors, file_ids, queries, note)
    common = {"vector_count": count, "vector_dimensions": DIMENSIONS, "vector_k": CANDIDATES,
              "vectors": "random unit vectors (timing only)"}
    try:
        vec_found = sqlite_vec_timings(tmp / "vectors.sqlite3", vectors, file_ids, queries, note)
    except (ImportError, OSError, AttributeError, RuntimeError, sqlite3.OperationalError) as exc:  # none installed
        log(f"sqlite-vec could not be loaded: {exc}")
        return {**figures, **common, "vector_choice": "numpy",
                "vector_choice_reason": f"sqlite-vec could not be loaded here ({exc})"}
    agreement = statistics.mean(len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(numpy_found, vec_found))

    numpy_p95, vec_p95 = figures["vector_ms_p95"]["numpy"], figures["vector_ms_p95"]["sqlite_vec"]
    choice = "numpy" if numpy_p95 <= vec_p95 else "sqlite-vec"
    reason = (f"{choice} is faster at p95 over {count} vectors ({numpy_p95} ms for numpy, {vec_p95} ms for "
              "sqlite-vec)")
    reason += ("; numpy also needs no SQLite extension, which this Python's sqlite3 module cannot load"
               if choice == "numpy" else
               "; but this Python's sqlite3 module cannot load extensions (no enable_load_extension), so using "
               "it needs sqlite3_auto_extension through ctypes, apsw or a Python built with loadable extensions")
    return {**figures, **common, "vector_top10_agreement": round(agreement, 3), "vector_choice": choice,
            "vector_choice_reason": reason}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--no-embedder", action="store_true", help="bm25 only: no hybrid figures")
    parser.add_argument("--chunks", type=int, default=None, help="passages in the big index (100000)")
    parser.add_argument("--queries", type=int, default=None, help="searches timed (200)")
    parser.add_argument("--embedder", default="minilm",
                        help="minilm (a real embedding model, the default), builtin (the chat model), or a GGUF")
    parser.add_argument("--hybrid-everything", action="store_true",
                        help="embed every topic, not only the questions' topics and a sample")
    args = parser.parse_args()
    chunks = args.chunks or (5_000 if args.quick else 100_000)
    queries = args.queries or (40 if args.quick else 200)
    questions = load_questions()
    figures: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        figures["retrieval_recall_at_5"] = {"bm25": round(bm25_recall(tmp, questions), 3)}
        figures["questions"] = len(questions)
        if not args.no_embedder:
            scope = "all" if args.hybrid_everything else "quick" if args.quick else "sample"
            hybrid = hybrid_figures(tmp, questions, embedding_model(args.embedder), scope)
            figures["retrieval_recall_at_5"]["hybrid"] = hybrid.pop("hybrid")
            if "bm25_same_corpus" in hybrid:
                figures["retrieval_recall_at_5"]["bm25_same_corpus"] = hybrid.pop("bm25_same_corpus")
            figures.update(hybrid)
        figures.update(index_throughput(tmp, 2 if args.quick else 10))
        figures.update(bm25_latency(chunks, questions, queries))
        figures.update(vector_latency(tmp, chunks, queries))
    figures["python"] = sys.version.split()[0]
    figures["sqlite"] = sqlite3.sqlite_version
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
