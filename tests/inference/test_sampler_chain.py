"""Hearth's sampler chain picks the same tokens as llama-cpp-python's own, on the real built-in model."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import pytest

from inference.cpu_backends import load_cpu_backend
from inference.llama_cpp_engine import HearthLlama
from inference.sampler_chain import SamplerSettings, prefilter_size

VOCAB = 262_144


def settings(**changes) -> SamplerSettings:
    values = dict(temperature=0.7, top_k=40, top_p=0.95, min_p=0.05, typical_p=1.0, repeat_penalty=1.1,
                  frequency_penalty=0.0, presence_penalty=0.0, penalty_last_n=64, seed=1)
    values.update(changes)
    return SamplerSettings(**values)


def test_the_prefilter_is_top_k_plus_the_penalty_window() -> None:
    assert prefilter_size(settings(), VOCAB) == 40 + 64
    assert prefilter_size(settings(temperature=0.0), VOCAB) == 1 + 64  # greedy keeps one token


def test_no_prefilter_where_it_would_change_the_result() -> None:
    assert prefilter_size(settings(repeat_penalty=1.0), VOCAB) == VOCAB  # no penalty: nothing to save
    assert prefilter_size(settings(top_k=0), VOCAB) == VOCAB  # top-k off: every token stays a candidate
    assert prefilter_size(settings(penalty_last_n=-1), VOCAB) == VOCAB  # the whole context is penalised
    assert prefilter_size(settings(top_k=VOCAB), VOCAB) == VOCAB
    assert prefilter_size(settings(frequency_penalty=0.5, repeat_penalty=1.0), VOCAB) == 40 + 64


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        dict(temp=0.0, repeat_penalty=1.3),
        dict(temp=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.3),
        dict(temp=1.2, top_k=10, top_p=1.0, min_p=0.0, repeat_penalty=1.5, frequency_penalty=0.2),
    ],
    ids=["greedy", "defaults", "hot"],
)
def test_same_tokens_as_llama_cpp_python(builtin_model_path: Path, options: dict) -> None:
    """Every token of a 64-token reply, penalised and sampled with a fixed seed, is the one the stock chain picks."""
    load_cpu_backend()  # this test process loads models itself, as the engine process does

    def reply(model_class) -> list[int]:
        llama = model_class(model_path=str(builtin_model_path), n_ctx=512, n_threads=2, seed=7, verbose=False)
        try:
            prompt = llama.tokenize(b"The three best things about the sea are", add_bos=True)
            tokens = []
            for token in llama.generate(prompt, **options):
                tokens.append(token)
                if len(tokens) == 64:
                    break
            return tokens
        finally:
            llama.close()

    assert reply(HearthLlama) == reply(llama_cpp.Llama)
