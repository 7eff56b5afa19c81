"""Prompt tokens in, sampled token ids out: the decode loop, with no more work per token than llama.cpp's tools.

``Llama.generate`` refills its batch in a Python loop, trims the KV cache
and copies ids through NumPy on every token. Here the prompt's new part is
evaluated with ``Llama.eval`` (batched), and each generated token is decoded
through one preallocated one-token batch: two ctypes calls and a pick.
llama-cpp-python's bookkeeping (``input_ids``, ``n_tokens``) is kept up to
date, so its state saving and the next call's prefix reuse work as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import llama_cpp
from llama_cpp import _internals as internals

from inference.sampler_chain import Pick
from inference.state_cache import common_prefix_length


def generate_tokens(
    llama: llama_cpp.Llama,
    prompt: Sequence[int],
    pick: Pick,
    *,
    on_evaluated: Callable[[int], None],
    after_first_token: Callable[[], None] | None = None,
) -> Iterator[int]:
    """Yield the tokens that follow ``prompt``, for as long as the caller keeps iterating.

    The KV cache is reused for the prefix ``prompt`` shares with what
    ``llama`` last evaluated; ``on_evaluated(n)`` is told of every token
    actually decoded (prompt and reply). A yielded token is decoded only
    when the next one is asked for, so closing the iterator leaves the
    cache holding exactly the prompt and the tokens before the last.
    ``after_first_token()`` runs once the first token has been taken, while
    the cache still holds exactly the prompt (a checkpoint costs no waiting).

    Raises:
        RuntimeError: llama.cpp failed to decode.
    """
    _evaluate_prompt(llama, list(prompt), on_evaluated)
    ctx = llama._ctx.ctx
    batch = internals.LlamaBatch(n_tokens=1, embd=0, n_seq_max=1, verbose=False)
    try:
        raw = batch.batch
        raw.n_tokens = 1
        raw.n_seq_id[0] = 1
        raw.seq_id[0][0] = 0
        raw.logits[0] = True
        while True:
            token = pick()
            yield token
            if after_first_token is not None:
                after_first_token()
                after_first_token = None
            position = llama.n_tokens
            if position >= llama._n_ctx:
                raise RuntimeError("the context window is full")
            raw.token[0] = token
            raw.pos[0] = position
            code = llama_cpp.llama_decode(ctx, raw)
            if code != 0:
                raise RuntimeError(f"llama_decode returned {code}")
            llama.input_ids[position] = token
            llama.n_tokens = position + 1
            on_evaluated(1)
    finally:
        batch.close()


def _evaluate_prompt(llama: llama_cpp.Llama, prompt: list[int], on_evaluated: Callable[[int], None]) -> None:
    """Bring the KV cache to ``prompt`` evaluating only what is not cached, as ``Llama.generate`` does."""
    cached = llama.input_ids[: llama.n_tokens].tolist()
    if cached == prompt and not llama._requires_eval:
        return  # the logits of the prompt's last token are still the context's
    keep = tokens_to_keep(cached, prompt)
    if keep > 0 and llama._ctx.kv_cache_seq_rm(-1, keep, -1):
        llama.n_tokens = keep
    else:
        llama.reset()  # this model's cache cannot be cut back (sliding window, recurrent): start over
        keep = 0
    llama.eval(prompt[keep:])
    on_evaluated(len(prompt) - keep)


def tokens_to_keep(cached: Sequence[int], prompt: Sequence[int]) -> int:
    """How many of the cached tokens evaluating ``prompt`` keeps: the shared prefix, less one if that is all of it.

    With nothing new to evaluate, the prompt's last token is evaluated again to get its logits.
    """
    shared = common_prefix_length(cached, prompt)
    return shared - 1 if shared == len(prompt) else shared
