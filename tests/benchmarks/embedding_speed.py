"""Embedding speed against llama.cpp's own ``llama-embedding``, on the same passages, model and threads.

    .venv/bin/python tests/benchmarks/embedding_speed.py [--passages N] [--runs R] [--model FILE.gguf]

The passages are the ones Hearth's document index makes of Python's own
documentation (tests/retrieval/corpus.py), as ``embed_pending`` sends them
(``title\\ntext``, in batches of ``EMBED_BATCH``). The model is all-MiniLM-L6-v2
(tests/benchmarks/real_embedder.py) unless ``--model`` names another GGUF
embedding model. The reference is ``llama-embedding`` built natively from the
same llama.cpp source (tests/benchmarks/native_llama.py), given the same
passages in one file (those that fit in one batch: it refuses a longer one);
its time is the whole run minus a run of one passage (loading the model), so
both sides count embedding alone. The two alternate,
``--runs`` times each; medians are reported.

Figures (JSON, last line):
- ``embed_chunks_s``: passages per second, Hearth (``LlamaEmbedder``, its child process and pipe included).
- ``llama_embedding_chunks_s``: the same for ``llama-embedding`` at the batch Hearth uses, and at
  ``llama_embedding_batches`` (tokens per batch: does a bigger batch pay?).
- ``embed_vs_llama_embedding``: Hearth ÷ the reference at the same batch (1.0: as fast).
- ``vectors_agree_min_cosine``: the lowest cosine between Hearth's vector of a passage and the
  reference's (1.0: the same embedding).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "benchmarks"))

from inference.embeddings import LlamaEmbedder, batch_context, task_prefixes  # noqa: E402
from inference.gguf_info import read_gguf_info  # noqa: E402
from model_store.documents.index import EMBED_BATCH, DocumentIndex  # noqa: E402
from native_llama import build_native_tool  # noqa: E402
from tests.retrieval.corpus import write_corpus  # noqa: E402

SEPARATOR = "<#hearth-passage#>"
THREADS = psutil.cpu_count(logical=False) or 1  # the embedder's own default; the same for both sides


def log(message: str) -> None:
    print(f"[embedding_speed] {message}", file=sys.stderr, flush=True)


def corpus_passages(folder: Path, count: int, model: Path | None = None, max_tokens: int = 0) -> list[str]:
    """The first ``count`` passages of the documentation, as the index hands them to its embedder.

    With ``model``: only passages of at most ``max_tokens`` tokens (llama-embedding refuses a longer one,
    where Hearth cuts it), so that both sides embed the same text.
    """
    write_corpus(folder / "docs")
    index = DocumentIndex(folder / "docs.sqlite3")
    collection = index.add_collection("Python docs", folder / "docs")
    index.index_collection(collection.id)
    index.close()
    db = sqlite3.connect(folder / "docs.sqlite3")
    rows = db.execute("SELECT title, text FROM chunk_text ORDER BY rowid").fetchall()
    db.close()
    passages = [f"{title}\n{text}" for title, text in rows]
    if model is not None:
        from inference.cpu_backends import load_cpu_backend

        load_cpu_backend()
        import llama_cpp

        vocab = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
        passages = [p for p in passages if len(vocab.tokenize(p.encode(), add_bos=True, special=True)) <= max_tokens]
    return passages[:count]


def hearth_run(model: Path, passages: list[str]) -> tuple[float, np.ndarray]:
    """Seconds to embed ``passages`` as ``embed_pending`` does (the process already started), and the vectors."""
    embedder = LlamaEmbedder(model, threads=THREADS)
    try:
        embedder.embed(["warm-up"])  # starts the process and loads the model: not part of the figure
        start = time.perf_counter()
        vectors = [embedder.embed(passages[i:i + EMBED_BATCH]) for i in range(0, len(passages), EMBED_BATCH)]
        return time.perf_counter() - start, np.concatenate(vectors)
    finally:
        embedder.close()


def native_run(binary: Path, model: Path, passages: list[str], batch: int, folder: Path) -> tuple[float, np.ndarray]:
    """Seconds ``llama-embedding`` takes for ``passages`` beyond loading the model, and its vectors."""
    def run(texts: list[str]) -> tuple[float, list]:
        prompt = folder / "passages.txt"
        prompt.write_text(SEPARATOR.join(texts), encoding="utf-8")
        command = [str(binary), "-m", str(model), "-f", str(prompt), "--embd-separator", SEPARATOR,
                   "-c", str(batch), "-b", str(batch), "-ub", str(batch), "-t", str(THREADS),
                   "--embd-output-format", "array", "--embd-normalize", "2", "--no-warmup"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"llama-embedding failed: {done.stderr[-2000:]}")
        return elapsed, json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("["):])[0]  # then its timings

    loading, _ = run(passages[:1])
    whole, rows = run(passages)
    return max(whole - loading, 1e-9), np.asarray(rows, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    if args.model is None:
        from real_embedder import minilm_gguf

        args.model = minilm_gguf()
    binary = build_native_tool("llama-embedding")
    hearth_batch = batch_context(read_gguf_info(args.model), 2048)  # what LlamaEmbedder's default context gives
    batches = sorted({hearth_batch, 2048 if hearth_batch != 2048 else 512})
    document_prefix = task_prefixes(args.model)[1]

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        passages = corpus_passages(folder, args.passages, args.model, hearth_batch)
        log(f"{len(passages)} passages, {sum(map(len, passages)) / len(passages):.0f} characters each on average")
        hearth_s: list[float] = []
        native_s: dict[int, list[float]] = {b: [] for b in batches}
        for run in range(args.runs):
            seconds, hearth_vectors = hearth_run(args.model, passages)
            hearth_s.append(seconds)
            for batch in batches:
                seconds, native_vectors = native_run(binary, args.model, [document_prefix + p for p in passages],
                                                     batch, folder)
                native_s[batch].append(seconds)
                if batch == hearth_batch:
                    agree = float(np.min(np.sum(hearth_vectors * native_vectors, axis=1)))
            log(f"run {run + 1}: Hearth {hearth_s[-1]:.2f} s; llama-embedding "
                + ", ".join(f"{native_s[b][-1]:.2f} s at {b}" for b in batches))

    rate = lambda seconds: round(len(passages) / statistics.median(seconds), 2)  # noqa: E731
    figures = {
        "model": args.model.name, "threads": THREADS, "passages": len(passages), "runs": args.runs,
        "hearth_batch_tokens": hearth_batch,
        "embed_chunks_s": rate(hearth_s),
        "llama_embedding_chunks_s": rate(native_s[hearth_batch]),
        "llama_embedding_batches": {str(b): rate(native_s[b]) for b in batches},
        "embed_vs_llama_embedding": round(rate(hearth_s) / rate(native_s[hearth_batch]), 3),
        "vectors_agree_min_cosine": round(agree, 5),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
