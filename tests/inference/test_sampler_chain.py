"""Hearth's token picks (the chain, and greedy straight from the logits) are llama-cpp-python's own, on the real model."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import pytest

from inference.cpu_backends import load_cpu_backend
from inference.sampler_chain import SamplerSettings, make_pick, prefilter_size
from inference.token_loop import generate_tokens

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
        dict(temp=0.0, repeat_penalty=1.0),
        dict(temp=0.0, repeat_penalty=1.5, frequency_penalty=0.3, presence_penalty=0.2),
        dict(temp=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.3),
        dict(temp=1.2, top_k=10, top_p=1.0, min_p=0.0, repeat_penalty=1.5, frequency_penalty=0.2),
    ],
    ids=["greedy", "greedy-no-penalty", "greedy-all-penalties", "defaults", "hot"],
)
def test_same_tokens_as_llama_cpp_python(builtin_model_path: Path, options: dict) -> None:
    """Every token of a 64-token reply, penalised and sampled with a fixed seed, is the one the stock chain picks."""
    load_cpu_backend()  # this test process loads models itself, as the engine process does
    llama = llama_cpp.Llama(model_path=str(builtin_model_path), n_ctx=512, n_threads=2, seed=7, verbose=False)
    try:
        prompt = llama.tokenize(b"The three best things about the sea are", add_bos=True)
        stock = first_tokens(llama.generate(prompt, **options))
        llama.reset()
        hearth_settings = settings(
            temperature=options["temp"], top_k=options.get("top_k", 40), top_p=options.get("top_p", 0.95),
            min_p=options.get("min_p", 0.05), repeat_penalty=options["repeat_penalty"],
            frequency_penalty=options.get("frequency_penalty", 0.0),
            presence_penalty=options.get("presence_penalty", 0.0), seed=7,
        )
        pick = make_pick(hearth_settings, llama._ctx.ctx, llama.n_vocab())
        hearth = first_tokens(generate_tokens(llama, prompt, pick, on_evaluated=lambda n: None))
        unpenalised = first_tokens(llama.generate(prompt, temp=0.0, repeat_penalty=1.0))
    finally:
        llama.close()
    assert hearth == stock
    if options["temp"] == 0 and options["repeat_penalty"] != 1.0:
        assert hearth != unpenalised  # the penalties changed some picks: that path was exercised


def first_tokens(tokens, count: int = 64) -> list[int]:
    picked = []
    for token in tokens:
        picked.append(token)
        if len(picked) == count:
            break
    tokens.close()
    return picked
