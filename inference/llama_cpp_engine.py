"""The llama.cpp engine (llama-cpp-python): quantized GGUF models on the CPU or a GPU.

It runs its own decode loop (token_loop) rather than the high-level completion
API: that API re-decodes the whole reply on every token, while here each
token's bytes are decoded once and stop strings are matched on a bounded tail.
The loop reuses the KV cache for the prompt prefix shared with the
previous call, so a conversation's next turn only evaluates its new tokens;
when the prompt belongs to another conversation, the current KV state is
saved to a RAM-capped LRU cache first, and restored when its conversation
comes back. Every evaluated token is counted, so reuse is measured, not assumed.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import islice

import llama_cpp

from inference.chat_format import ChatFormat, Message, SpecialTokens, chat_format_for, continues_reply
from inference.context_window import fit_messages
from inference.cpu_backends import load_cpu_backend
from inference.engine import ExecutionPlan, ReplyStats, SamplingParams
from inference.gpu_backends import load_gpu_backends
from inference.errors import ContextOverflowError, GenerationError, ModelLoadError
from inference.gguf_info import GgufInfo, looks_instruction_tuned
from inference.llama_vocab import token_text
from inference.reply_loop import ReplyLimits, stream_reply
from inference.sampler_chain import Pick, SamplerSettings, make_pick
from inference.sliding_window import WindowCheckpoints, attention_options, window_reaches
from inference.state_cache import PrefixStateCache, common_prefix_length
from inference.token_loop import generate_tokens, tokens_to_keep

log = logging.getLogger(__name__)

ENGINE_NAME = "llama.cpp"
# Save the KV state before a prompt discards more than this many cached tokens.
SAVE_STATE_MIN_DISCARD = 64
# Leave at least this much of the window for the reply when fitting a long conversation.
MIN_REPLY_ROOM = 256
# Tokens decoded once after loading, so the first reply runs at full speed.
WARM_UP_TOKENS = 2
# Plain greedy decoding, for measurements and the warm-up.
GREEDY = SamplingParams(temperature=0.0, repeat_penalty=1.0)
# Sliding-window checkpoints kept (the ends of the last prompts), and the share of the state cache's RAM they may use.
WINDOW_CHECKPOINTS = 4
WINDOW_CHECKPOINT_SHARE = 4  # at most a quarter


class LlamaCppEngine:
    """Runs one GGUF model with llama-cpp-python. Use from a single thread.

    Args:
        plan: threads, context length and GPU layers to load with.
        state_cache_bytes: RAM for the states of other conversations (0 turns it off).
        cpu_variant: the CPU kernels to use instead of the best for this processor (see cpu_backends).
    """

    def __init__(self, plan: ExecutionPlan, *, state_cache_bytes: int = 0, cpu_variant: str | None = None) -> None:
        self.plan = plan
        self.cpu_variant = ""  # the CPU kernels llama.cpp runs with, known once loaded (e.g. "zen4")
        self._cpu_variant_wanted = cpu_variant
        self._llama: llama_cpp.Llama | None = None
        self._format: ChatFormat | None = None
        self._thinking: str | None = None  # SamplingParams.thinking of the prompt being rendered
        self._states = PrefixStateCache(state_cache_bytes)
        self._checkpoints = WindowCheckpoints(limit=WINDOW_CHECKPOINTS,
                                              capacity_bytes=state_cache_bytes // WINDOW_CHECKPOINT_SHARE)
        self._window = 0  # the sliding window, when the window's layers keep only that much (0: they keep all)
        self.evaluated_tokens = 0  # every token llama.cpp has decoded since load

    @property
    def chat_format_name(self) -> str:
        """How prompts are formatted for this model."""
        return self._format.name if self._format is not None else ""

    def load(self, info: GgufInfo) -> None:
        """Load the model described by ``info`` (already validated by ``read_gguf_info``).

        Raises:
            ModelLoadError: llama.cpp refused the file.
        """
        started = time.perf_counter()
        self.cpu_variant = load_cpu_backend(wanted=self._cpu_variant_wanted).variant
        on_gpu = self.plan.n_gpu_layers != 0
        if on_gpu:
            load_gpu_backends()  # only then: a CPU plan must not hold GPU memory or send prompts there
        attention = attention_options(on_gpu=on_gpu)
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(info.path),
                n_ctx=self.plan.n_ctx,
                n_threads=self.plan.n_threads,
                n_threads_batch=self.plan.n_threads,
                n_gpu_layers=self.plan.n_gpu_layers,
                # One GPU, the one the plan chose (several would split the model by their free memory).
                split_mode=llama_cpp.LLAMA_SPLIT_MODE_NONE if on_gpu else llama_cpp.LLAMA_SPLIT_MODE_LAYER,
                main_gpu=self.plan.main_gpu,
                n_batch=512,
                flash_attn=attention.flash_attn,
                swa_full=attention.swa_full,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            if on_gpu:
                raise ModelLoadError(f"llama.cpp could not load {info.path.name} on the "
                                     f"{self.plan.gpu_name or self.plan.device}: {exc}") from exc
            raise ModelLoadError(
                f"llama.cpp could not load {info.path.name}: {exc}. The file may be damaged "
                "or made for a newer version of llama.cpp."
            ) from exc
        try:
            self._warm_up()
        except RuntimeError as exc:  # e.g. no GPU memory left for the compute buffers
            self.close()
            raise ModelLoadError(f"{info.path.name} loaded but could not run on the "
                                 f"{self.plan.gpu_name or self.plan.device}: {exc}") from exc
        self._window = 0 if attention.swa_full else max(llama_cpp.llama_model_n_swa(self._llama._model.model), 0)
        vocab = self._llama._model.vocab
        tokens = SpecialTokens(
            bos=token_text(vocab, self._llama.token_bos()),
            eos=token_text(vocab, self._llama.token_eos()),
        )
        self._format = chat_format_for(
            architecture=info.architecture,
            chat_template=info.chat_template,
            tokens=tokens,
            is_base_model=not looks_instruction_tuned(info),
        )
        self._bos_text = tokens.bos
        log.info(
            "Loaded %s in %.2f s (%s, chat format: %s)",
            info.path.name, time.perf_counter() - started, self.plan.summary(), self.chat_format_name,
        )

    def stream_chat(
        self, messages: Sequence[Message], *, params: SamplingParams, cancel: threading.Event
    ) -> LlamaReplyStream:
        """Stream the reply to ``messages``. Iterate the result for text chunks.

        A conversation longer than the context window loses its oldest turns
        (never the system prompt); ``stats.dropped_messages`` says how many.

        Raises:
            ContextOverflowError: even the last message alone does not fit.
        """
        if self._llama is None or self._format is None:
            raise GenerationError("No model is loaded.")
        self._thinking = params.thinking
        prompt_tokens, dropped = self._fit_prompt(messages, params.max_tokens)
        if dropped and not params.drop_oldest:
            raise ContextOverflowError(
                f"The conversation is too long for the model's context window of {self.plan.n_ctx:,} tokens "
                f"(with room for a reply of {min(params.max_tokens, MIN_REPLY_ROOM, self.plan.n_ctx // 4):,})."
            )
        self._switch_state_for(prompt_tokens)
        self._make_cut_possible(prompt_tokens)
        limits = ReplyLimits(
            stop_strings=self._format.stop_strings + tuple(text for text in params.stop if text),
            max_tokens=min(params.max_tokens, self.plan.n_ctx - len(prompt_tokens)),
            cancel=cancel,
            continuing=continues_reply(messages),
            ignore_eos=params.ignore_eos,
        )
        return LlamaReplyStream(
            engine=self, prompt_tokens=prompt_tokens, params=params, limits=limits, dropped_messages=dropped
        )

    def tune_threads(
        self,
        candidates: Sequence[int],
        *,
        tokens: int = 16,
        then_use: int | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[int, float]:
        """Measure greedy decode tokens/s at each thread count in turn, then run with ``then_use``.

        ``then_use`` defaults to the plan's count: measuring changes nothing
        by itself (the caller decides from several rounds); with no
        candidates the call only switches to ``then_use``. Once ``cancel`` is
        set (a reply is waiting) it stops within a token and leaves the count
        it was measuring out of the result. The open conversation's KV state
        is kept in the state cache, so its next reply does not start over.

        Returns tokens/s for each count measured to the end.
        """
        llama = self._llama
        if llama is None:
            raise GenerationError("No model is loaded.")
        speeds: dict[int, float] = {}
        if candidates:
            current = llama.input_ids[: llama.n_tokens].tolist()
            if self._states.capacity_bytes and len(current) > SAVE_STATE_MIN_DISCARD:
                self._save_state(current)
            prompt = llama.tokenize(b"Once upon a time, in a small village by the sea,", add_bos=True, special=False)
        for threads in candidates:
            if cancel is not None and cancel.is_set():
                break
            llama_cpp.llama_set_n_threads(llama._ctx.ctx, threads, threads)
            llama.reset()
            generated = generate_tokens(llama, prompt, self._pick_for(GREEDY), on_evaluated=self._count_evaluated)
            try:
                next(generated)  # the first token includes the prompt: not decode speed
                started = time.perf_counter()
                decoded = 0
                for _token in generated:
                    decoded += 1
                    if decoded == tokens or (cancel is not None and cancel.is_set()):
                        break
                elapsed = time.perf_counter() - started
            finally:
                generated.close()
            if decoded == tokens:
                speeds[threads] = tokens / elapsed
        use = then_use or self.plan.n_threads
        llama_cpp.llama_set_n_threads(llama._ctx.ctx, use, use)
        if candidates:
            llama.reset()
        self.plan = replace(self.plan, n_threads=use)
        log.info("Thread tuning: %s tokens/s; running with %d threads",
                 {k: round(v, 1) for k, v in speeds.items()}, use)
        return speeds

    def close(self) -> None:
        """Free the model, its context and the cached states."""
        if self._llama is not None:
            self._llama.close()
            self._llama = None
        self._states = PrefixStateCache(self._states.capacity_bytes)
        self._checkpoints.clear()

    # --------------------------------------------------------------- internals

    def _warm_up(self) -> None:
        """Decode a few tokens once and forget them, as llama.cpp's own tools do after loading.

        The first reply then runs at full speed: the weights are paged in and
        the compute threads and their buffers exist.
        """
        llama = self._llama
        bos = llama.token_bos()
        tokens = generate_tokens(llama, [max(bos, 0)], self._pick_for(GREEDY), on_evaluated=lambda _count: None)
        for _token in islice(tokens, WARM_UP_TOKENS):
            pass
        tokens.close()
        llama._ctx.kv_cache_clear()
        llama.reset()

    def _count_evaluated(self, tokens: int) -> None:
        self.evaluated_tokens += tokens

    def _pick_for(self, params: SamplingParams) -> Pick:
        """How the reply for ``params`` chooses its tokens."""
        llama = self._llama
        settings = SamplerSettings(
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            typical_p=1.0,
            repeat_penalty=params.repeat_penalty,
            frequency_penalty=0.0,
            presence_penalty=0.0,
            penalty_last_n=llama.last_n_tokens_size,
            seed=llama._seed if params.seed is None else params.seed,
        )
        return make_pick(settings, llama._ctx.ctx, llama.n_vocab())

    def _tokenize(self, messages: Sequence[Message]) -> list[int]:
        prompt = self._format.render(messages, thinking=self._thinking)
        add_bos = not (self._bos_text and prompt.startswith(self._bos_text))
        return self._llama.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def _fit_prompt(self, messages: Sequence[Message], max_tokens: int) -> tuple[list[int], int]:
        """Prompt tokens for ``messages``, leaving out the oldest turns until the reply has room."""
        n_ctx = self.plan.n_ctx
        reserve = min(max_tokens, MIN_REPLY_ROOM, n_ctx // 4)
        tokens, dropped = fit_messages(messages, self._tokenize, n_ctx - reserve)
        if len(tokens) >= n_ctx:
            raise ContextOverflowError(
                f"This message is too long for the model's context window: it needs {len(tokens):,} tokens "
                f"and the window holds {n_ctx:,}. Shorten it, or raise the context length in Settings."
            )
        if dropped:
            log.info("Context full: left out the oldest %d messages", dropped)
        return tokens, dropped

    def _switch_state_for(self, prompt_tokens: list[int]) -> None:
        """Keep the current conversation's state if this prompt discards it; restore a better one."""
        llama = self._llama
        current = llama.input_ids[: llama.n_tokens].tolist()
        reusable = common_prefix_length(current, prompt_tokens)
        best = self._states.best_match(prompt_tokens)
        if self._states.capacity_bytes and len(current) - reusable > SAVE_STATE_MIN_DISCARD:
            self._save_state(current)
        if best is not None and best[0] > reusable:
            self._restore_state(best[1].tokens, best[1].state)

    def _save_state(self, tokens: list[int]) -> None:
        state = self._copy_state(flags=0, limit=self._states.capacity_bytes)
        if state is not None:
            self._states.put(tokens, state, state[1])

    def _copy_state(self, *, flags: int, limit: int) -> tuple[ctypes.Array, int] | None:
        """The sequence's state (``flags``: all of it, or only the window's layers), or None past ``limit`` bytes."""
        ctx = self._llama._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size_ext(ctx, 0, flags)
        if size > limit:
            return None
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data_ext(ctx, buffer, size, 0, flags)
        return (buffer, written) if written else None

    def _restore_state(self, tokens: tuple[int, ...], state: tuple[ctypes.Array, int]) -> None:
        llama = self._llama
        buffer, size = state
        llama._ctx.kv_cache_clear()
        if llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, buffer, size, 0) != size:
            llama._ctx.kv_cache_clear()
            llama.n_tokens = 0
            log.warning("Restoring a cached conversation state failed; re-evaluating instead")
            return
        llama.input_ids[: len(tokens)] = tokens
        llama.n_tokens = len(tokens)
        llama._requires_eval = True

    # The sliding window's checkpoints (see inference/sliding_window.py).

    def _make_cut_possible(self, prompt_tokens: list[int]) -> None:
        """Before the cache is cut back for ``prompt_tokens``: restore a window checkpoint where the cut
        goes back further than the window's cache reaches, or else start over."""
        llama = self._llama
        if not self._window or llama.n_tokens == 0:
            return
        cached = llama.input_ids[: llama.n_tokens].tolist()
        keep = tokens_to_keep(cached, prompt_tokens)
        if keep >= len(cached) or self._window_reaches(keep):
            return
        checkpoint = self._checkpoints.best_for(prompt_tokens, common_prefix_length(cached, prompt_tokens))
        if checkpoint is not None:
            buffer, size = checkpoint.state
            restored = llama_cpp.llama_state_seq_set_data_ext(
                llama._ctx.ctx, buffer, size, 0, llama_cpp.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY) == size
            length = len(checkpoint.tokens)
            if restored and self._window_reaches(tokens_to_keep(checkpoint.tokens, prompt_tokens)):
                llama.n_tokens = length  # the full layers still hold more; the cut brings them back to here
                llama._requires_eval = True  # the context's logits are not those of the checkpoint's last token
                log.info("Restored the sliding window's checkpoint at %d tokens (the cut went back to %d)",
                         length, keep)
                return
        log.info("The sliding window's cache does not reach back to token %d: evaluating the prompt again", keep)
        llama._ctx.kv_cache_clear()
        llama.reset()

    def _window_reaches(self, keep: int) -> bool:
        oldest = llama_cpp.llama_memory_seq_pos_min(llama_cpp.llama_get_memory(self._llama._ctx.ctx), 0)
        return window_reaches(oldest, keep, self._window)

    def _checkpoint_window(self, prompt_tokens: list[int]) -> None:
        """Keep the window's cache as it is after ``prompt_tokens``, for a later cut back to here."""
        if not self._window or self._checkpoints.capacity_bytes == 0:
            return
        state = self._copy_state(flags=llama_cpp.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY,
                                 limit=self._checkpoints.capacity_bytes)
        if state is not None:
            self._checkpoints.add(prompt_tokens, state, state[1])


class LlamaReplyStream:
    """One reply being generated. Iterate once for text chunks; ``stats`` is set at the end."""

    def __init__(
        self,
        *,
        engine: LlamaCppEngine,
        prompt_tokens: list[int],
        params: SamplingParams,
        limits: ReplyLimits,
        dropped_messages: int,
    ) -> None:
        self._engine = engine
        self._prompt_tokens = prompt_tokens
        self._params = params
        self._limits = limits
        self._dropped = dropped_messages
        self.stats: ReplyStats | None = None

    def __iter__(self) -> Iterator[str]:
        engine = self._engine
        llama = engine._llama
        prompt = self._prompt_tokens
        tokens = generate_tokens(llama, prompt, engine._pick_for(self._params), on_evaluated=engine._count_evaluated,
                                 after_first_token=lambda: engine._checkpoint_window(prompt))
        try:
            yield from stream_reply(
                tokens,
                vocab=llama._model.vocab,
                limits=self._limits,
                prompt_tokens=len(self._prompt_tokens),
                evaluated_tokens=lambda: engine.evaluated_tokens,
                context_window=engine.plan.n_ctx,
                dropped_messages=self._dropped,
                on_stats=self._set_stats,
            )
        except RuntimeError as exc:
            raise GenerationError(f"llama.cpp failed while generating: {exc}") from exc
        finally:
            tokens.close()

    def _set_stats(self, stats: ReplyStats) -> None:
        self.stats = stats
