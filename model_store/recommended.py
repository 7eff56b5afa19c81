"""A short list of small GGUF models for people who don't know where to start: chat models, and one embedding model."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recommendation:
    """A model worth trying, with the quantization to pick and its approximate size."""

    repo_id: str
    label: str
    approx_gb: float
    why: str
    kind: str = "chat"  # or "embedding": searches documents by meaning, does not chat


RECOMMENDED = (
    Recommendation("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "Q4_K_M", 0.4, "Tiny and quick; fine for short questions."),
    Recommendation("ggml-org/gemma-3-1b-it-GGUF", "Q4_K_M", 0.8, "Google's small chat model; good on any laptop."),
    Recommendation("bartowski/Llama-3.2-1B-Instruct-GGUF", "Q4_K_M", 0.8, "Meta's small model; fast on a CPU."),
    Recommendation("Qwen/Qwen2.5-1.5B-Instruct-GGUF", "Q4_K_M", 1.1, "A good balance of speed and answers."),
    Recommendation("unsloth/Qwen3-1.7B-GGUF", "Q4_K_M", 1.1,
                   "Thinks before it answers (shown apart, can be switched off per conversation)."),
    Recommendation("bartowski/Llama-3.2-3B-Instruct-GGUF", "Q4_K_M", 2.0, "Noticeably smarter; needs 4 GB of RAM."),
    Recommendation("bartowski/Phi-3.5-mini-instruct-GGUF", "Q4_K_M", 2.4, "Strong at reasoning for its size."),
    Recommendation("Qwen/Qwen2.5-7B-Instruct-GGUF", "Q4_K_M", 4.7, "A capable all-rounder; 8 GB of RAM or a GPU."),
    # nomic-embed-text-v1.5.Q4_K_M.gguf is 84.1 MB (the repository's file page, 2024-02 llama.cpp-compatible upload).
    Recommendation("nomic-ai/nomic-embed-text-v1.5-GGUF", "Q4_K_M", 0.08,
                   "Not a chat model: lets Hearth search your documents by meaning as well as by words.",
                   kind="embedding"),
)
