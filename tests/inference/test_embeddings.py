"""Embedding models through llama.cpp in a process of their own.

No GGUF embedding model can be downloaded here, so the real built-in chat model
stands in (pooled by mean): real vectors from the real engine.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from inference.embeddings import LlamaEmbedder, is_embedding_model
from inference.errors import EngineCrashedError, GenerationError, InferenceError
from inference.gguf_info import read_gguf_info
from tests.gguf_factory import write_random_bert, write_tiny_gguf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder(builtin_model_path: Path):
    embedder = LlamaEmbedder(builtin_model_path, threads=2)
    yield embedder
    embedder.close()


def test_vectors_are_unit_rows_that_tell_texts_apart(embedder: LlamaEmbedder) -> None:
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Quarterly revenue grew by four percent."]
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, embedder.dimensions) and vectors.dtype == np.float32 and embedder.dimensions > 0
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] and similarity[1, 0] > similarity[1, 2]
    assert np.allclose(embedder.embed(texts[:1]), vectors[:1], atol=1e-2)  # the same text, the same vector
    assert embedder.embed([]).shape == (0, embedder.dimensions)


def test_a_batch_equals_one_by_one(embedder: LlamaEmbedder) -> None:
    """Texts embedded together get the vectors they get alone, up to rounding.

    Flash attention rounds a batch of many tokens differently from one of a few: on this chat model
    the cosine between the two is about 0.9994 (a component moves by up to 0.012), on all-MiniLM
    0.9999998; without flash attention 0.99998 here.
    """
    texts = [f"Note {i}: the harbour ledger lists cargo and tides." for i in range(12)]
    together = embedder.embed(texts)
    apart = np.vstack([embedder.embed([text]) for text in texts])
    assert float(np.sum(together * apart, axis=1).min()) > 0.999


def test_a_killed_embedding_process_is_an_error_and_the_next_call_works(embedder: LlamaEmbedder) -> None:
    embedder.embed(["warm"])
    os.kill(embedder.pid, signal.SIGKILL)
    with pytest.raises(EngineCrashedError, match="killed"):
        embedder.embed(["after the kill"])
    assert embedder.embed(["and again"]).shape == (1, embedder.dimensions)


def test_a_broken_file_is_an_error_in_the_parent(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    embedder = LlamaEmbedder(broken)
    with pytest.raises(InferenceError):
        embedder.embed(["text"])
    embedder.close()
    with pytest.raises(GenerationError, match="closed"):
        embedder.embed(["text"])


def test_embedding_models_are_recognised_by_their_header(builtin_model_path: Path, tmp_path: Path) -> None:
    assert not is_embedding_model(read_gguf_info(builtin_model_path))
    assert not is_embedding_model(read_gguf_info(write_tiny_gguf(tmp_path / "chat.gguf", architecture="qwen3")))
    bert = write_tiny_gguf(tmp_path / "bert.gguf", architecture="bert")
    pooled = write_tiny_gguf(tmp_path / "qwen3-embedding.gguf", architecture="qwen3",
                             uint32_keys={"qwen3.pooling_type": 3})  # Qwen3-Embedding: a decoder that pools
    assert is_embedding_model(read_gguf_info(bert)) and is_embedding_model(read_gguf_info(pooled))


def test_questions_and_passages_get_the_prefixes_their_model_was_trained_with() -> None:
    from inference.embeddings import task_prefixes

    assert task_prefixes(Path("nomic-embed-text-v1.5.Q4_K_M.gguf")) == ("search_query: ", "search_document: ")
    assert task_prefixes(Path("embeddinggemma-300M-Q8_0.gguf"))[0].startswith("task: search result")
    assert task_prefixes(Path("gemma-3-270m.gguf")) == ("", "")


def test_a_question_embeds_like_a_passage_without_prefixes(embedder: LlamaEmbedder) -> None:
    assert np.allclose(embedder.embed_query("Who kept the light?"), embedder.embed(["Who kept the light?"])[0],
                       atol=1e-2)


def test_a_passage_longer_than_the_model_was_trained_for_is_cut_to_its_context(tmp_path: Path) -> None:
    """BERT-style models (all-MiniLM, bge-small, e5) have a position table of 512 rows: a longer text
    must be cut to it, or llama.cpp aborts the embedding process."""
    model = write_random_bert(tmp_path / "bert.gguf", context_length=32)
    embedder = LlamaEmbedder(model, threads=1)
    try:
        long_passage = " ".join(["the harbour ledger lists cargo tides and weather ."] * 20)  # ~180 tokens
        vectors = embedder.embed([long_passage, "what colour was the lighthouse painted ?"])
        assert vectors.shape == (2, 32)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert embedder.pid is not None  # the same process is still running
    finally:
        embedder.close()
