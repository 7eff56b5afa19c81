"""The llama.cpp engine (llama-cpp-python): quantized GGUF models on the CPU or a GPU.

It drives ``Llama.generate`` directly rather than the high-level completion
API: that API re-decodes the whole reply on every token, while here each
token's bytes are decoded once and stop strings are matched on a bounded tail.
``generate`` also reuses the KV cache for the prompt prefix shared with the
previous call, so a conversation's next turn only evaluates its new tokens.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Iterator, Sequence

import llama_cpp

from inference.chat_format import ChatFormat, Message, SpecialTokens, chat_format_for
from inference.engine import ExecutionPlan, ReplyStats, SamplingParams
from inference.errors import ContextOverflowError, GenerationError, ModelLoadError
from inference.gguf_info import GgufInfo, looks_instruction_tuned
from inference.text_stream import ReplyTextAssembler

log = logging.getLogger(__name__)

ENGINE_NAME = "llama.cpp"


class LlamaCppEngine:
    """Runs one GGUF model with llama-cpp-python. Use from a single thread.

    Args:
        plan: threads, context length and GPU layers to load with.
    """

    def __init__(self, plan: ExecutionPlan) -> None:
        self.plan = plan
        self._llama: llama_cpp.Llama | None = None
        self.chat_format: ChatFormat | None = None

    def load(self, info: GgufInfo) -> None:
        """Load the model described by ``info`` (already validated by ``read_gguf_info``).

        Raises:
            ModelLoadError: llama.cpp refused the file.
        """
        started = time.perf_counter()
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(info.path),
                n_ctx=self.plan.n_ctx,
                n_threads=self.plan.n_threads,
                n_threads_batch=self.plan.n_threads,
                n_gpu_layers=self.plan.n_gpu_layers,
                n_batch=512,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {info.path.name}: {exc}. The file may be damaged "
                "or made for a newer version of llama.cpp."
            ) from exc
        vocab = self._llama._model.vocab
        tokens = SpecialTokens(
            bos=_token_text(vocab, self._llama.token_bos()),
            eos=_token_text(vocab, self._llama.token_eos()),
        )
        self.chat_format = chat_format_for(
            architecture=info.architecture,
            chat_template=info.chat_template,
            tokens=tokens,
            is_base_model=not looks_instruction_tuned(info),
        )
        log.info(
            "Loaded %s in %.2f s (%s, chat format: %s)",
            info.path.name, time.perf_counter() - started, self.plan.summary(), self.chat_format.name,
        )

    def stream_chat(
        self, messages: Sequence[Message], *, params: SamplingParams, cancel: threading.Event
    ) -> LlamaReplyStream:
        """Stream the reply to ``messages``. Iterate the result for text chunks.

        Raises:
            ContextOverflowError: the conversation does not fit in the context window.
        """
        if self._llama is None or self.chat_format is None:
            raise GenerationError("No model is loaded.")
        prompt = self.chat_format.render(messages)
        prompt_tokens = self._llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        room = self.plan.n_ctx - len(prompt_tokens)
        if room < 1:
            raise ContextOverflowError(
                f"This conversation ({len(prompt_tokens)} tokens) no longer fits in the model's "
                f"context window of {self.plan.n_ctx} tokens. Start a new chat."
            )
        return LlamaReplyStream(
            llama=self._llama,
            prompt_tokens=prompt_tokens,
            stop_strings=self.chat_format.stop_strings,
            params=params,
            max_tokens=min(params.max_tokens, room),
            cancel=cancel,
        )

    def close(self) -> None:
        """Free the model and its context."""
        if self._llama is not None:
            self._llama.close()
            self._llama = None


class LlamaReplyStream:
    """One reply being generated. Iterate once for text chunks; ``stats`` is set at the end."""

    def __init__(
        self,
        *,
        llama: llama_cpp.Llama,
        prompt_tokens: list[int],
        stop_strings: tuple[str, ...],
        params: SamplingParams,
        max_tokens: int,
        cancel: threading.Event,
    ) -> None:
        self._llama = llama
        self._prompt_tokens = prompt_tokens
        self._stop_strings = stop_strings
        self._params = params
        self._max_tokens = max_tokens
        self._cancel = cancel
        self.stats: ReplyStats | None = None

    def __iter__(self) -> Iterator[str]:
        llama = self._llama
        vocab = llama._model.vocab
        params = self._params
        if params.seed is not None:
            llama.set_seed(params.seed)
        assembler = ReplyTextAssembler(self._stop_strings)
        buffer = ctypes.create_string_buffer(64)
        started = time.perf_counter()
        first_token_at = None
        count = 0
        finish = "length"
        at_start = True
        tokens = llama.generate(
            self._prompt_tokens,
            temp=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            repeat_penalty=params.repeat_penalty,
        )
        try:
            for token in tokens:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                if self._cancel.is_set():
                    finish = "cancelled"
                    break
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                count += 1
                text = assembler.feed(_token_bytes(vocab, token, buffer))
                if at_start and text:
                    text = text.lstrip()
                    at_start = not text
                if text:
                    yield text
                if assembler.stopped:
                    finish = "stop"
                    break
                if count >= self._max_tokens:
                    break
        except RuntimeError as exc:
            raise GenerationError(f"llama.cpp failed while generating: {exc}") from exc
        finally:
            tokens.close()
        tail = assembler.finish()
        if at_start:
            tail = tail.lstrip()
        if tail:
            yield tail
        ended = time.perf_counter()
        self.stats = ReplyStats(
            finish_reason=finish,
            prompt_tokens=len(self._prompt_tokens),
            completion_tokens=count,
            ttft_s=(first_token_at or ended) - started,
            total_s=ended - started,
        )


def _token_text(vocab: llama_cpp.llama_vocab_p, token: int) -> str:
    """The text of a (special) token, e.g. ``<bos>``; empty for 'no such token' (-1)."""
    if token < 0:
        return ""
    return llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", errors="replace")


def _token_bytes(vocab: llama_cpp.llama_vocab_p, token: int, buffer: ctypes.Array) -> bytes:
    """The raw bytes of one token's piece (may be part of a UTF-8 character)."""
    length = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, False)
    if length < 0:  # the piece is longer than the buffer
        bigger = ctypes.create_string_buffer(-length)
        length = llama_cpp.llama_token_to_piece(vocab, token, bigger, len(bigger), 0, False)
        return bigger.raw[:length]
    return buffer.raw[:length]
