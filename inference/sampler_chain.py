"""The sampler chain: the same choices as llama-cpp-python's, with the repeat penalty made cheap.

llama-cpp-python puts llama.cpp's penalties sampler first, where it looks up
every token of the vocabulary in a hash map on every step: with Gemma 3's
262,144 tokens that is several milliseconds per token, a sixth of the decode
time of a small model. Here a top-k pre-filter runs first, wide enough that
the result is the same:

At most ``penalty_last_n`` distinct tokens are penalised, and a penalty only
ever lowers a logit. A token outside the ``k + penalty_last_n`` highest
logits has at least ``k`` unpenalised tokens above it before and after the
penalty, so it could never be among the top ``k`` that the chain keeps (or,
for greedy decoding with ``k = 1``, be the winner). The chain after the
penalty is llama-cpp-python's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_cpp import _internals as internals


@dataclass(frozen=True)
class SamplerSettings:
    """The knobs of one reply's sampler chain (llama-cpp-python's ``_init_sampler`` arguments)."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    typical_p: float
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    penalty_last_n: int
    seed: int

    @property
    def penalised(self) -> bool:
        """Whether the penalties sampler changes anything."""
        return self.penalty_last_n != 0 and (
            self.repeat_penalty != 1.0 or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0
        )


def prefilter_size(settings: SamplerSettings, n_vocab: int) -> int:
    """How many of the highest logits the penalty has to look at (``n_vocab``: all of them)."""
    if not settings.penalised or settings.penalty_last_n < 0:
        return n_vocab
    kept = 1 if settings.temperature <= 0 else settings.top_k
    if kept <= 0 or kept >= n_vocab:
        return n_vocab
    return min(n_vocab, kept + settings.penalty_last_n)


def build_sampler(settings: SamplerSettings, *, n_vocab: int) -> internals.LlamaSampler:
    """A llama.cpp sampler chain for ``settings``: pre-filter, penalties, then the usual order."""
    sampler = internals.LlamaSampler()
    wide = prefilter_size(settings, n_vocab)
    if wide < n_vocab:
        sampler.add_top_k(wide)
    sampler.add_penalties(
        n_vocab=n_vocab,
        penalty_last_n=settings.penalty_last_n,
        penalty_repeat=settings.repeat_penalty,
        penalty_freq=settings.frequency_penalty,
        penalty_present=settings.presence_penalty,
    )
    if settings.temperature < 0:
        sampler.add_dist(settings.seed)
    elif settings.temperature == 0:
        sampler.add_greedy()
    else:
        sampler.add_top_k(settings.top_k)
        sampler.add_typical(settings.typical_p, 1)
        sampler.add_top_p(settings.top_p, 1)
        sampler.add_min_p(settings.min_p, 1)
        sampler.add_temp(settings.temperature)
        sampler.add_dist(settings.seed)
    return sampler
