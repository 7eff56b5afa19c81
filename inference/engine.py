"""What every inference engine offers, and the values that pass through it."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from inference.chat_format import Message
from inference.gguf_info import GgufInfo


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen. ``temperature=0`` is greedy.

    These defaults are Hearth's: the user's settings start from them
    (``model_store.settings.Settings``), so they are declared here only.
    """

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    max_tokens: int = 1024
    ignore_eos: bool = False  # go on to max_tokens past the model's end (speed measurements, like llama-bench)
    stop: tuple[str, ...] = ()  # the caller's own stop strings, on top of the chat format's
    # Leave out the oldest turns when a conversation outgrows the context window (the window's way);
    # False: such a prompt raises ContextOverflowError instead (the API's way: the client decides).
    drop_oldest: bool = True
    # A reasoning model's thinking: None (the model's default), "off", "on", or gpt-oss's effort
    # "low" / "medium" / "high"; rendered into its chat template (chat_format.thinking_context).
    thinking: str | None = None


@dataclass(frozen=True)
class EngineOptions:
    """Resources an engine may use besides its plan.

    ``state_cache_bytes``: RAM for saved states of other conversations (0: none).
    ``cache_dir``: where converted weights are kept between runs (None: not kept).
    ``cpu_variant``: llama.cpp CPU kernels to use instead of the best for this CPU (None: the best).
    """

    state_cache_bytes: int = 1 << 30
    cache_dir: Path | None = None
    cpu_variant: str | None = None


@dataclass(frozen=True)
class ExecutionPlan:
    """Where and how a model runs, and the sentence that says why."""

    engine: str
    device: str
    n_threads: int
    n_ctx: int
    n_gpu_layers: int
    reason: str
    dtype: str = "quantized"
    gpu_name: str = ""
    torch_device: str = ""
    memory_bytes: int = 0
    cpu_variant: str = ""  # llama.cpp's CPU kernels, known once the engine has loaded (e.g. "zen4")
    n_layers: int = 0  # the model's repeating layers (what n_gpu_layers counts), when known
    main_gpu: int = 0  # llama.cpp's number of the GPU to use (gpu_backends.offload_targets)

    @property
    def partly_on_gpu(self) -> bool:
        """Some of the model's layers run on the GPU and the rest on the CPU."""
        return self.device != "CPU" and 0 < self.n_gpu_layers < self.n_layers

    def summary(self) -> str:
        """Short form for the status bar, e.g. ``llama.cpp · CPU · 2 threads``."""
        if self.partly_on_gpu:
            return f"{self.engine} · {self.gpu_name or self.device} · {self.n_gpu_layers}/{self.n_layers} layers"
        if self.device != "CPU":
            return f"{self.engine} · {self.gpu_name or self.device}"
        threads = f"{self.n_threads} thread{'s' if self.n_threads != 1 else ''}"
        return f"{self.engine} · {self.device} · {threads}"


@dataclass(frozen=True)
class ReplyStats:
    """How a reply went: why it ended and how fast it was."""

    finish_reason: str  # "stop" (the model ended), "length" (max tokens or context), "cancelled"
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    total_s: float
    prompt_tokens_evaluated: int = 0  # prompt tokens actually computed (the rest came from the cache)
    dropped_messages: int = 0  # oldest messages left out to fit the context window
    context_window: int = 0

    @property
    def context_used(self) -> int:
        """Tokens of the window this turn used: prompt plus reply."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def tokens_per_s(self) -> float:
        """Decode speed: tokens after the first, over the time after the first."""
        decode_s = self.total_s - self.ttft_s
        if self.completion_tokens < 2 or decode_s <= 0:
            return 0.0
        return (self.completion_tokens - 1) / decode_s


class ReplyStream(Protocol):
    """Text chunks of one reply; ``stats`` is set once iteration ends."""

    stats: ReplyStats | None

    def __iter__(self) -> Iterator[str]: ...


class ReplySink(Protocol):
    """Where a reply's text and end go; called on the thread that writes the reply."""

    def chunk(self, text: str) -> None:
        """More text of the reply."""

    def finished(self, stats: ReplyStats) -> None:
        """The reply ended: ``stats.finish_reason`` is "stop", "length" or "cancelled"."""

    def failed(self, error: Exception) -> None:
        """Generation failed; text already delivered stays. ``str(error)`` of an InferenceError is a sentence."""


class Engine(Protocol):
    """A loaded model that streams chat replies. Not thread-safe: one owner thread."""

    plan: ExecutionPlan
    chat_format_name: str

    def load(self, info: GgufInfo) -> None:
        """Load the validated model file ``info`` describes. Raises ModelLoadError on failure."""
        ...

    def stream_chat(
        self, messages: Sequence[Message], *, params: SamplingParams, cancel: threading.Event
    ) -> ReplyStream:
        """Stream the assistant's reply to ``messages``; stops between tokens once ``cancel`` is set."""
        ...

    def close(self) -> None:
        """Free the model. Safe to call twice."""
        ...
