"""Token-by-token decoding for the torch engine: a static KV cache, sampling on the device, CUDA graphs.

- The KV cache is preallocated for the whole context (transformers'
  ``StaticLayer`` for every layer, sliding-window ones included: those are
  masked by position, like llama.cpp's ``swa_full``). Cutting it back to a
  shared prefix only moves the next write position; entries past it are
  masked out and later overwritten.
- A decode step is one forward of the token in a fixed ``[1, 1]`` tensor at
  a fixed position tensor, then the choice of the next token on the device
  (repeat penalty over a ring of the last tokens, top-k, temperature, top-p,
  min-p, a draw), written back into the input tensor. Sampling settings
  live in a device tensor, so nothing the host does changes the step's shapes.
- On CUDA (and ROCm) the step is recorded once as a CUDA graph (one for
  greedy picks, one for draws) and replayed per token: a token then costs
  one graph launch and one device-to-host copy of its id, instead of a few
  hundred kernel launches from Python. Elsewhere the same step runs eagerly.
- The prompt is computed eagerly in chunks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

import torch

from inference.engine import SamplingParams
from inference.state_cache import common_prefix_length

log = logging.getLogger(__name__)

REPEAT_PENALTY_WINDOW = 64  # the last tokens the repeat penalty looks at (llama.cpp's default)
PREFILL_CHUNK = 512  # prompt tokens per forward: bounds the attention mask and activations
WARM_UP_STEPS = 2  # eager steps before a capture, so lazy initialisations happen outside the graph
# Positions in the sampling-settings tensor.
TEMPERATURE, TOP_P, MIN_P, TOP_K, PENALTY = range(5)


class StaticDecoder:
    """Decodes with ``model`` on ``device`` over a static KV cache of ``n_ctx`` tokens. One thread only.

    ``tokens`` are the tokens the cache holds; ``evaluated`` counts every
    token computed; ``mode`` is ``"cuda-graph"`` once :meth:`capture`
    succeeded, else ``"eager"``.
    """

    def __init__(self, model, *, n_ctx: int, device: str) -> None:
        from transformers.cache_utils import Cache, StaticLayer

        self.model = model
        self.n_ctx = n_ctx
        self.device = torch.device(device)
        self.tokens: list[int] = []
        self.evaluated = 0
        self.mode = "eager"
        self.capture_s = 0.0
        layers = model.config.get_text_config(decoder=True).num_hidden_layers
        self.cache = Cache(layers=[StaticLayer(max_cache_len=n_ctx) for _ in range(layers)])
        self._ids = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self._position = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self._out = torch.zeros(1, dtype=torch.long, device=self.device)
        self._recent = torch.full((REPEAT_PENALTY_WINDOW,), -1, dtype=torch.long, device=self.device)
        self._recent_count = torch.zeros(1, dtype=torch.long, device=self.device)
        self._knobs = torch.ones(5, dtype=torch.float32, device=self.device)
        self._generator = _generator_for(self.device)
        self._graphs: dict[bool, object] = {}

    def allocate(self) -> None:
        """Allocate the KV cache on the device now (one token computed and forgotten).

        Raises:
            torch.OutOfMemoryError: the cache does not fit.
        """
        self.prefill([0])
        self.reset()
        self.evaluated = 0

    def capture(self) -> bool:
        """Record the decode step as CUDA graphs; on any failure keep eager decoding. Returns whether it worked."""
        started, evaluated = time.perf_counter(), self.evaluated
        graphs: dict[bool, object] = {}
        try:
            graphs = self._capture_graphs()
        except Exception as exc:  # noqa: BLE001 - a failed capture must only cost speed
            log.warning("Recording the decode step as a CUDA graph failed; decoding eagerly: %s", exc)
            log.debug("The capture failed here", exc_info=True)
            graphs = {}
        finally:
            self.capture_s = time.perf_counter() - started
            self.evaluated = evaluated
            try:
                self.reset()
            except RuntimeError as exc:
                log.warning("Resetting the KV cache after the capture failed: %s", exc)
        self._graphs = graphs
        self.mode = "cuda-graph" if graphs else "eager"
        return bool(graphs)

    def reset(self) -> None:
        """Forget every cached token (after an error, or to start over)."""
        self._cut_back(0)

    def reuse(self, prompt: Sequence[int]) -> list[int]:
        """Cut the cache back to the prefix it shares with ``prompt``; return the tokens still to compute."""
        shared = min(common_prefix_length(self.tokens, prompt), len(prompt) - 1)  # the last one gives the logits
        self._cut_back(max(shared, 0))
        return list(prompt[len(self.tokens):])

    def prefill(self, tokens: Sequence[int]):
        """Compute ``tokens`` after the cached ones, in chunks; return the logits after the last one.

        Raises:
            RuntimeError: they do not fit in the context window, or the device failed.
        """
        start = len(self.tokens)
        if start + len(tokens) > self.n_ctx:
            raise RuntimeError("the context window is full")
        logits = None
        with torch.no_grad():
            for offset in range(0, len(tokens), PREFILL_CHUNK):
                chunk = list(tokens[offset:offset + PREFILL_CHUNK])
                first = start + offset
                ids = torch.tensor([chunk], dtype=torch.long, device=self.device)
                positions = torch.arange(first, first + len(chunk), device=self.device).unsqueeze(0)
                output = self.model(input_ids=ids, position_ids=positions, past_key_values=self.cache,
                                    use_cache=True, logits_to_keep=1)
                logits = output.logits[0, -1]
                self.tokens.extend(chunk)
                self.evaluated += len(chunk)
            self._position.fill_(len(self.tokens))
        return logits

    def generate(self, prompt: Sequence[int], params: SamplingParams) -> Iterator[int]:
        """Yield the tokens that follow ``prompt`` for as long as the caller iterates.

        A token is fed to the model only when the next one is asked for, so
        after the caller stops the cache holds the prompt and every token
        before the last one yielded.

        Raises:
            RuntimeError: the context window is full, or the device failed.
        """
        greedy = params.temperature <= 0
        logits = self.prefill(self.reuse(prompt))
        self._prepare(params)
        with torch.no_grad():
            self._choose(logits, greedy)
        graph = self._graphs.get(greedy)
        while True:
            token = int(self._out.item())  # the one device-to-host transfer per token
            yield token
            if len(self.tokens) >= self.n_ctx:
                raise RuntimeError("the context window is full")
            if graph is not None:
                graph.replay()
            else:
                with torch.no_grad():
                    self._step(greedy)
            self.tokens.append(token)
            self.evaluated += 1

    # --------------------------------------------------------------- internals

    def _cut_back(self, length: int) -> None:
        for layer in self.cache.layers:
            if layer.is_initialized:
                layer.cumulative_length.fill_(length)
        self._position.fill_(length)
        del self.tokens[length:]

    def _prepare(self, params: SamplingParams) -> None:
        """Load one reply's sampling settings, seed and recent tokens onto the device."""
        self._knobs.copy_(_knobs_for(params, torch.device("cpu")))
        recent = self.tokens[-REPEAT_PENALTY_WINDOW:]
        self._recent.fill_(-1)
        if recent:
            self._recent[: len(recent)].copy_(torch.tensor(recent, dtype=torch.long))
        self._recent_count.fill_(len(recent))
        if params.seed is not None:
            self._generator.manual_seed(params.seed)
        else:
            self._generator.seed()

    def _step(self, greedy: bool) -> None:
        """Feed the token in ``_ids`` at ``_position``; put the next one in ``_out`` and ``_ids``."""
        slot = torch.remainder(self._recent_count, REPEAT_PENALTY_WINDOW)
        self._recent.index_copy_(0, slot, self._ids.view(1))
        self._recent_count.add_(1)
        output = self.model(input_ids=self._ids, position_ids=self._position, past_key_values=self.cache,
                            use_cache=True)
        self._position.add_(1)
        self._choose(output.logits[0, -1], greedy)

    def _choose(self, logits, greedy: bool) -> None:
        token = choose_token(logits, self._recent, self._knobs, None if greedy else self._generator)
        self._out.copy_(token)
        self._ids.copy_(token.view(1, 1))

    def _capture_graphs(self) -> dict[bool, object]:
        """The standard recipe: warm up on a side stream, then capture each step once; graphs share one pool.

        The decoder's GPU becomes the process's current device: graphs replay on the current device's stream.
        """
        if self.device.type != "cuda":
            raise RuntimeError(f"CUDA graphs need a CUDA or ROCm device, not {self.device}")
        torch.cuda.set_device(self.device)
        with torch.no_grad():
            if not self.tokens:
                self.prefill([0])
            self._prepare(SamplingParams(temperature=1.0, seed=0))
            torch.cuda.synchronize(self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for greedy in (True, False):
                    for _ in range(WARM_UP_STEPS):
                        self._step(greedy)
            torch.cuda.current_stream(self.device).wait_stream(side)
            torch.cuda.synchronize(self.device)
            graphs: dict[bool, object] = {}
            pool = None
            for greedy in (True, False):
                graph = torch.cuda.CUDAGraph()
                try:
                    with torch.cuda.graph(graph, pool=pool):
                        self._step(greedy)
                except Exception as exc:  # noqa: BLE001 - greedy replies can still use their graph
                    if not graphs:
                        raise
                    log.warning("Recording the sampling step failed; sampled replies decode eagerly: %s", exc)
                    break
                pool = graph.pool()
                graphs[greedy] = graph
            torch.cuda.synchronize(self.device)
        return graphs


def choose_token(logits, recent, knobs, generator):
    """The next token, as a one-element device tensor: llama.cpp's chain, all on the device.

    Repeat penalty over the ``recent`` token ids (-1: empty slot); then,
    with no ``generator``, the highest logit; otherwise top-k, temperature,
    top-p and min-p, then a draw. ``knobs`` holds the settings at
    ``TEMPERATURE``, ``TOP_P``, ``MIN_P``, ``TOP_K`` (0: off) and ``PENALTY``.
    """
    logits = _penalise(logits.float(), recent, knobs[PENALTY])
    if generator is None:
        return torch.argmax(logits, dim=-1, keepdim=True)
    values, indices = torch.sort(logits, descending=True)
    rank = torch.arange(values.shape[-1], device=values.device)
    top_k = knobs[TOP_K]
    values = torch.where((top_k <= 0) | (rank < top_k), values, float("-inf"))
    probs = torch.softmax(values / knobs[TEMPERATURE], dim=-1)
    probs = torch.where(torch.cumsum(probs, dim=-1) - probs > knobs[TOP_P], 0.0, probs)
    probs = torch.where(probs < knobs[MIN_P] * probs[0], 0.0, probs)
    # Exponential race: argmax(p / E) with E ~ Exp(1) picks index i with probability p_i / sum(p).
    noise = torch.empty_like(probs).exponential_(generator=generator).clamp_(min=torch.finfo(probs.dtype).tiny)
    return indices[torch.argmax(probs / noise, dim=-1, keepdim=True)]


def _penalise(logits, recent, penalty):
    """Divide positive logits of recent tokens by ``penalty``, multiply negative ones; each token once."""
    vocab = logits.shape[-1]
    padded = torch.cat([logits, logits.new_zeros(1)])  # empty slots point at this spare entry
    index = torch.where(recent >= 0, recent, vocab)
    chosen = padded.gather(0, index)
    padded = padded.scatter(0, index, torch.where(chosen > 0, chosen / penalty, chosen * penalty))
    return padded[:vocab]


def sample_token(logits, params: SamplingParams, generator, recent: Sequence[int]) -> int:
    """Pick the next token from ``logits`` as llama.cpp's sampler chain would (for tests and one-off use)."""
    ids = torch.tensor(list(recent) or [-1], dtype=torch.long, device=logits.device)
    return int(choose_token(logits, ids, _knobs_for(params, logits.device),
                            None if params.temperature <= 0 else generator))


def _knobs_for(params: SamplingParams, device: torch.device):
    """``params`` as the settings tensor :func:`choose_token` reads (top-p 1 never cuts, even by rounding)."""
    values = [max(params.temperature, 1e-6), params.top_p if params.top_p < 1.0 else float("inf"), params.min_p,
              float(max(params.top_k, 0)), params.repeat_penalty]
    return torch.tensor(values, dtype=torch.float32, device=device)


def _generator_for(device: torch.device):
    """The random generator for draws: on CUDA the device's default one, which CUDA graphs know how to replay."""
    if device.type == "cuda":
        torch.cuda.init()  # fills torch.cuda.default_generators
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[index]
    return torch.Generator(device=device)
