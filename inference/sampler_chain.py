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

Greedy decoding skips the chain altogether (:class:`GreedyPick`): an argmax
over the logits in place, with the penalties applied only to the few tokens
they concern, picks the same token without building a 262,144-entry
candidate array on every step.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals


Pick = Callable[[], int]  # chooses the next token from the logits of the last decode


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


def make_pick(settings: SamplerSettings, ctx: llama_cpp.llama_context_p, n_vocab: int) -> Pick:
    """How one reply chooses its tokens: :class:`GreedyPick` at temperature 0, the sampler chain otherwise."""
    if settings.temperature == 0:
        return GreedyPick(ctx, n_vocab, settings)
    sampler = build_sampler(settings, n_vocab=n_vocab)
    # llama_sampler_sample also accepts the token (the penalties remember it); the closure keeps the chain alive.
    return lambda: llama_cpp.llama_sampler_sample(sampler.sampler, ctx, -1)


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


class GreedyPick:
    """The highest logit after llama.cpp's penalties, read straight from the context's logits.

    Call it after each decode; it returns the token and remembers it for the
    penalties, as llama.cpp's penalties sampler does with accepted tokens.
    """

    def __init__(self, ctx: llama_cpp.llama_context_p, n_vocab: int, settings: SamplerSettings) -> None:
        self._ctx = ctx
        self._n_vocab = n_vocab
        self._settings = settings
        window = settings.penalty_last_n if settings.penalised and settings.penalty_last_n > 0 else 0
        self._recent: deque[int] = deque(maxlen=window or None)
        self._counts: Counter[int] = Counter()
        self._window = window

    def __call__(self) -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx, -1), shape=(self._n_vocab,))
        best = int(logits.argmax())
        if best in self._counts:
            best = self._best_with_penalties(logits)
        if self._window:
            self._remember(best)
        return best

    def _best_with_penalties(self, logits: np.ndarray) -> int:
        """The winner once penalties lower the logits of recent tokens (float32, as llama.cpp computes)."""
        settings = self._settings
        ids = np.fromiter(self._counts.keys(), dtype=np.int64, count=len(self._counts))
        counts = np.fromiter(self._counts.values(), dtype=np.float32, count=len(self._counts))
        original = logits[ids].copy()
        repeat = np.float32(settings.repeat_penalty)
        penalised = np.where(original <= 0, original * repeat, original / repeat)
        penalised -= counts * np.float32(settings.frequency_penalty) + np.float32(settings.presence_penalty)
        logits[ids] = -np.inf  # for a moment: the best token no penalty touches
        try:
            unpenalised = int(logits.argmax())
            unpenalised_logit = logits[unpenalised]  # -inf if every token of the vocabulary is penalised
        finally:
            logits[ids] = original
        strongest = int(penalised.argmax())
        if penalised[strongest] > unpenalised_logit:
            return int(ids[strongest])
        return unpenalised

    def _remember(self, token: int) -> None:
        if len(self._recent) == self._window:
            dropped = self._recent[0]
            self._counts[dropped] -= 1
            if not self._counts[dropped]:
                del self._counts[dropped]
        self._recent.append(token)
        self._counts[token] += 1
