"""The torch engine: a GGUF model dequantized to 16-bit floats on a GPU (CUDA, ROCm, MPS, XPU).

- Weights: transformers reads the GGUF and dequantizes it. That is slow (its
  GGUF reader walks the whole vocabulary twice), so the result is saved once
  as safetensors in Hearth's cache and later loads read that.
- Tokens: the GGUF's own vocabulary through llama.cpp (``vocab_only``), so the
  prompt is exactly the tokens the CPU engine would use, and the shared
  reply loop turns token bytes into text.
- Decoding (inference/torch_decoder.py): a static KV cache for the whole
  context, the prompt computed in chunks, each token chosen on the device.
  On CUDA and ROCm the decode step is recorded once after loading as a CUDA
  graph (``torch.cuda.CUDAGraph`` directly: ``torch.compile``'s cudagraph
  trees crashed with SIGSEGV under torch 2.11) and replayed per token, so a
  token costs one launch instead of hundreds; elsewhere, or if recording
  fails, the same step runs eagerly (``decode_mode`` says which).
- Multi-turn: the KV cache is kept between turns and cut back to the prefix
  the new prompt shares with it, so a turn only computes its new tokens. All
  layers keep full KV (like llama.cpp's ``swa_full``): sliding-window layers
  are masked by position, and a full cache can be cut back anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import llama_cpp
import torch

from inference.chat_format import ChatFormat, Message, SpecialTokens, chat_format_for, continues_reply
from inference.context_window import fit_messages
from inference.engine import ExecutionPlan, ReplyStats, SamplingParams
from inference.errors import ContextOverflowError, GenerationError, ModelLoadError
from inference.gguf_info import GgufInfo, looks_instruction_tuned
from inference.llama_cpp_engine import MIN_REPLY_ROOM
from inference.llama_vocab import token_text
from inference.reply_loop import ReplyLimits, stream_reply
from inference.torch_decoder import StaticDecoder, sample_token

__all__ = ["TorchEngine", "TorchReplyStream", "converted_weights_dir", "sample_token"]

log = logging.getLogger(__name__)


class TorchEngine:
    """Runs one GGUF model with torch on ``plan.torch_device``. Use from a single thread.

    Args:
        plan: the device, dtype and context length to use.
        cache_dir: where converted weights are kept between runs (None: convert every time).
        use_graphs: record the decode step as a CUDA graph (default: on CUDA and ROCm devices).
    """

    def __init__(self, plan: ExecutionPlan, *, cache_dir: Path | None = None, use_graphs: bool | None = None) -> None:
        self.plan = plan
        self.use_graphs = plan.torch_device.startswith("cuda") if use_graphs is None else use_graphs
        self.decode_mode = "eager"  # "cuda-graph" once the decode step is recorded
        self.capture_s = 0.0  # seconds the recording took at load
        self._cache_dir = cache_dir
        self._model = None
        self._decoder: StaticDecoder | None = None
        self._vocab_model: llama_cpp.Llama | None = None
        self._format: ChatFormat | None = None
        self._thinking: str | None = None  # SamplingParams.thinking of the prompt being rendered

    @property
    def evaluated_tokens(self) -> int:
        """Every token the model has computed since load (prompt and reply)."""
        return self._decoder.evaluated if self._decoder is not None else 0

    @property
    def chat_format_name(self) -> str:
        """How prompts are formatted for this model."""
        return self._format.name if self._format is not None else ""

    def load(self, info: GgufInfo) -> None:
        """Load the model's weights onto the device and its vocabulary, then record the decode step.

        Raises:
            ModelLoadError: transformers cannot read this model, or the device refused it (out of memory).
        """
        started = time.perf_counter()
        self._vocab_model = llama_cpp.Llama(model_path=str(info.path), vocab_only=True, verbose=False)
        vocab = self._vocab_model._model.vocab
        tokens = SpecialTokens(
            bos=token_text(vocab, self._vocab_model.token_bos()),
            eos=token_text(vocab, self._vocab_model.token_eos()),
        )
        self._bos_text = tokens.bos
        self._format = chat_format_for(
            architecture=info.architecture,
            chat_template=info.chat_template,
            tokens=tokens,
            is_base_model=not looks_instruction_tuned(info),
        )
        dtype = getattr(torch, self.plan.dtype, torch.bfloat16)
        device = self.plan.torch_device
        try:
            model = self._load_weights(info, dtype)
            self._model = model.to(device).eval()
            self._decoder = StaticDecoder(self._model, n_ctx=self.plan.n_ctx, device=device)
            self._decoder.allocate()
        except torch.OutOfMemoryError as exc:
            self.close()
            raise ModelLoadError(
                f"{info.path.name} with its {self.plan.n_ctx:,}-token KV cache does not fit in the free memory of "
                f"the {self.plan.gpu_name or device} ({_first_line(exc)})."
            ) from exc
        except (OSError, ValueError, RuntimeError, KeyError, NotImplementedError) as exc:
            self.close()
            raise ModelLoadError(f"torch could not load {info.path.name} on {device}: {exc}") from exc
        if self.use_graphs:
            self._decoder.capture()
            self.capture_s = self._decoder.capture_s
        self.decode_mode = self._decoder.mode
        log.info("Loaded %s on %s in %.2f s (%s decoding, recorded in %.2f s)", info.path.name, device,
                 time.perf_counter() - started, self.decode_mode, self.capture_s)

    def stream_chat(
        self, messages: Sequence[Message], *, params: SamplingParams, cancel: threading.Event
    ) -> TorchReplyStream:
        """Stream the reply to ``messages``; iterate the result for text chunks.

        Raises:
            ContextOverflowError: even the last message alone does not fit.
        """
        if self._model is None:
            raise GenerationError("No model is loaded.")
        self._thinking = params.thinking
        n_ctx = self.plan.n_ctx
        reserve = min(params.max_tokens, MIN_REPLY_ROOM, n_ctx // 4)
        prompt, dropped = fit_messages(messages, self._tokenize, n_ctx - reserve)
        if len(prompt) >= n_ctx:
            raise ContextOverflowError(
                f"This message is too long for the model's context window: it needs {len(prompt):,} tokens "
                f"and the window holds {n_ctx:,}. Shorten it, or raise the context length in Settings."
            )
        if dropped and not params.drop_oldest:
            raise ContextOverflowError(
                f"The conversation is too long for the model's context window of {n_ctx:,} tokens."
            )
        stops = self._format.stop_strings + tuple(text for text in params.stop if text)
        limits = ReplyLimits(stops, min(params.max_tokens, n_ctx - len(prompt)), cancel,
                             continuing=continues_reply(messages), ignore_eos=params.ignore_eos)
        return TorchReplyStream(self, prompt, params, limits, dropped)

    def close(self) -> None:
        """Free the model and the GPU memory it held."""
        self._model = None
        self._decoder = None
        if self._vocab_model is not None:
            self._vocab_model.close()
            self._vocab_model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --------------------------------------------------------------- internals

    def _tokenize(self, messages: Sequence[Message]) -> list[int]:
        prompt = self._format.render(messages, thinking=self._thinking)
        add_bos = not (self._bos_text and prompt.startswith(self._bos_text))
        return self._vocab_model.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def _load_weights(self, info: GgufInfo, dtype):
        from transformers import AutoModelForCausalLM

        if self._cache_dir is None:
            return AutoModelForCausalLM.from_pretrained(str(info.path.parent), gguf_file=info.path.name, dtype=dtype)
        converted = converted_weights_dir(self._cache_dir, info.path, dtype)
        if (converted / "config.json").exists():
            # Straight onto the device: no random initialisation on the CPU first.
            return AutoModelForCausalLM.from_pretrained(str(converted), dtype=dtype, device_map=self.plan.torch_device)
        log.info("Converting %s for torch (first load only)", info.path.name)
        model = AutoModelForCausalLM.from_pretrained(str(info.path.parent), gguf_file=info.path.name, dtype=dtype)
        partial = converted.with_name(converted.name + f".partial-{os.getpid()}")
        try:
            _save_dequantized(model, partial)
            os.replace(partial, converted)
        except OSError as exc:  # a full disk only costs the next load its speed
            log.warning("Could not cache the converted model: %s", exc)
            shutil.rmtree(partial, ignore_errors=True)
        return model

    def _generate(self, prompt: list[int], params: SamplingParams) -> Iterator[int]:
        """Sample tokens one by one; the KV cache holds every token fed so far."""
        return self._decoder.generate(prompt, params)


def converted_weights_dir(cache_dir: Path, gguf_path: Path, dtype) -> Path:
    """Where the weights of ``gguf_path`` converted to ``dtype`` are cached (a folder with config.json)."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{dtype}".encode()).hexdigest()
    return cache_dir / "torch" / key[:24]


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _save_dequantized(model, folder: Path) -> None:
    """Save a model loaded from GGUF as plain safetensors (``save_pretrained`` refuses GGUF-loaded models)."""
    import copy

    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(str(folder))
    save_model(model, str(folder / "model.safetensors"))


class TorchReplyStream:
    """One reply being generated on the GPU. Iterate once; ``stats`` is set at the end."""

    def __init__(
        self, engine: TorchEngine, prompt: list[int], params: SamplingParams, limits: ReplyLimits, dropped: int
    ) -> None:
        self._engine = engine
        self._prompt = prompt
        self._params = params
        self._limits = limits
        self._dropped = dropped
        self.stats: ReplyStats | None = None

    def __iter__(self) -> Iterator[str]:
        engine = self._engine
        tokens = engine._generate(self._prompt, self._params)
        try:
            yield from stream_reply(
                tokens,
                vocab=engine._vocab_model._model.vocab,
                limits=self._limits,
                prompt_tokens=len(self._prompt),
                evaluated_tokens=lambda: engine.evaluated_tokens,
                context_window=engine.plan.n_ctx,
                dropped_messages=self._dropped,
                on_stats=self._set_stats,
            )
        except RuntimeError as exc:  # CUDA out of memory, a device error, a full context…
            _forget_cache(engine)
            raise GenerationError(f"The GPU failed while generating: {_first_line(exc)}") from exc
        finally:
            tokens.close()

    def _set_stats(self, stats: ReplyStats) -> None:
        self.stats = stats


def _forget_cache(engine: TorchEngine) -> None:
    """After a failed reply: the next one starts from an empty cache (if the device still answers)."""
    if engine._decoder is None:
        return
    try:
        engine._decoder.reset()
    except RuntimeError as exc:
        log.warning("Could not reset the KV cache after a failure: %s", exc)
