"""The torch engine: a GGUF model dequantized to 16-bit floats on a GPU (CUDA, ROCm, MPS, XPU).

- Weights: transformers reads the GGUF and dequantizes it. That is slow (its
  GGUF reader walks the whole vocabulary twice), so the result is saved once
  as safetensors in Hearth's cache and later loads read that.
- Tokens: the GGUF's own vocabulary through llama.cpp (``vocab_only``), so the
  prompt is exactly the tokens the CPU engine would use, and the shared
  reply loop turns token bytes into text.
- Multi-turn: the KV cache is kept between turns and cut back to the prefix
  the new prompt shares with it, so a turn only computes its new tokens. All
  layers keep full KV (like llama.cpp's ``swa_full``): sliding-window layers
  are masked by position, and a full cache can be cut back anywhere.
- Speed: decoding is eager, so one token costs a fixed amount of Python and
  kernel launches per layer. On an H200 a 270M Gemma 3 decoded 13-29
  tokens/s this way (llama.cpp on 16 CPU cores: 95-124); compiling the step
  with CUDA graphs over a static cache crashed the process (SIGSEGV inside
  inductor's cudagraph tree, torch 2.11), so it is not used. The selector
  therefore sends only larger models here.
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

from inference.chat_format import ChatFormat, Message, SpecialTokens, chat_format_for, continues_reply
from inference.context_window import fit_messages
from inference.engine import ExecutionPlan, ReplyStats, SamplingParams
from inference.errors import ContextOverflowError, GenerationError, ModelLoadError
from inference.gguf_info import GgufInfo, looks_instruction_tuned
from inference.llama_cpp_engine import MIN_REPLY_ROOM
from inference.llama_vocab import token_text
from inference.reply_loop import ReplyLimits, stream_reply
from inference.state_cache import common_prefix_length

log = logging.getLogger(__name__)

REPEAT_PENALTY_WINDOW = 64  # the last tokens the repeat penalty looks at (llama.cpp's default)


class TorchEngine:
    """Runs one GGUF model with torch on ``plan.torch_device``. Use from a single thread.

    Args:
        plan: the device, dtype and context length to use.
        cache_dir: where converted weights are kept between runs (None: convert every time).
    """

    def __init__(self, plan: ExecutionPlan, *, cache_dir: Path | None = None) -> None:
        self.plan = plan
        self._cache_dir = cache_dir
        self._model = None
        self._vocab_model: llama_cpp.Llama | None = None
        self._format: ChatFormat | None = None
        self._kv = None
        self._kv_tokens: list[int] = []
        self.decode_mode = "eager"
        self.evaluated_tokens = 0

    @property
    def chat_format_name(self) -> str:
        """How prompts are formatted for this model."""
        return self._format.name if self._format is not None else ""

    def load(self, info: GgufInfo) -> None:
        """Load the model's weights onto the device and its vocabulary.

        Raises:
            ModelLoadError: transformers cannot read this model, or the device refused it.
        """
        import torch

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
        try:
            model = self._load_weights(info, dtype)
            self._model = model.to(self.plan.torch_device).eval()
        except (OSError, ValueError, RuntimeError, KeyError, NotImplementedError) as exc:
            self.close()
            raise ModelLoadError(f"torch could not load {info.path.name} on {self.plan.torch_device}: {exc}") from exc
        log.info("Loaded %s on %s in %.2f s (%s decoding)", info.path.name, self.plan.torch_device,
                 time.perf_counter() - started, self.decode_mode)

    def stream_chat(
        self, messages: Sequence[Message], *, params: SamplingParams, cancel: threading.Event
    ) -> TorchReplyStream:
        """Stream the reply to ``messages``; iterate the result for text chunks.

        Raises:
            ContextOverflowError: even the last message alone does not fit.
        """
        if self._model is None:
            raise GenerationError("No model is loaded.")
        n_ctx = self.plan.n_ctx
        reserve = min(params.max_tokens, MIN_REPLY_ROOM, n_ctx // 4)
        prompt, dropped = fit_messages(messages, self._tokenize, n_ctx - reserve)
        if len(prompt) >= n_ctx:
            raise ContextOverflowError(
                f"This message is too long for the model's context window: it needs {len(prompt):,} tokens "
                f"and the window holds {n_ctx:,}. Shorten it, or raise the context length in Settings."
            )
        limits = ReplyLimits(self._format.stop_strings, min(params.max_tokens, n_ctx - len(prompt)), cancel,
                             continuing=continues_reply(messages), ignore_eos=params.ignore_eos)
        return TorchReplyStream(self, prompt, params, limits, dropped)

    def close(self) -> None:
        """Free the model and the GPU memory it held."""
        self._model = None
        self._kv = None
        self._kv_tokens = []
        if self._vocab_model is not None:
            self._vocab_model.close()
            self._vocab_model = None
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --------------------------------------------------------------- internals

    def _tokenize(self, messages: Sequence[Message]) -> list[int]:
        prompt = self._format.render(messages)
        add_bos = not (self._bos_text and prompt.startswith(self._bos_text))
        return self._vocab_model.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def _load_weights(self, info: GgufInfo, dtype):
        from transformers import AutoModelForCausalLM

        if self._cache_dir is None:
            return AutoModelForCausalLM.from_pretrained(str(info.path.parent), gguf_file=info.path.name, dtype=dtype)
        stat = info.path.stat()
        key = hashlib.sha256(f"{info.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{dtype}".encode()).hexdigest()
        converted = self._cache_dir / "torch" / key[:24]
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

    def _decode(self, new_tokens: list[int]):
        """Run the model on tokens that extend the KV cache; return the last position's logits."""
        import torch

        ids = torch.tensor([new_tokens], device=self.plan.torch_device)
        output = self._model(input_ids=ids, past_key_values=self._kv, use_cache=True)
        self._kv_tokens.extend(new_tokens)
        self.evaluated_tokens += len(new_tokens)
        return output.logits[0, -1].clone()

    def _reuse_cache_for(self, prompt: list[int]) -> list[int]:
        """Cut the KV cache back to the prefix it shares with ``prompt``; return the tokens still to compute."""
        from transformers import DynamicCache

        shared = common_prefix_length(self._kv_tokens, prompt)
        shared = min(shared, len(prompt) - 1)  # the last prompt token must run to give logits
        if self._kv is None or shared == 0:
            self._kv = DynamicCache()
            self._kv_tokens = []
            return list(prompt)
        surplus = len(self._kv_tokens) - shared
        if surplus:
            self._kv.crop(-surplus)  # a negative count removes that many tokens, in every transformers version
        del self._kv_tokens[shared:]
        return list(prompt[shared:])

    def _generate(self, prompt: list[int], params: SamplingParams) -> Iterator[int]:
        """Sample tokens one by one; the KV cache holds every token fed so far."""
        import torch

        generator = torch.Generator(device=self.plan.torch_device)
        if params.seed is not None:
            generator.manual_seed(params.seed)
        else:
            generator.seed()
        with torch.inference_mode():
            logits = self._decode(self._reuse_cache_for(prompt))
            while True:
                recent = self._kv_tokens[-REPEAT_PENALTY_WINDOW:]
                token = sample_token(logits, params, generator, recent)
                yield token
                logits = self._decode([token])


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
        except RuntimeError as exc:  # CUDA out of memory, a device error…
            engine._kv, engine._kv_tokens = None, []
            raise GenerationError(f"The GPU failed while generating: {exc}") from exc
        finally:
            tokens.close()

    def _set_stats(self, stats: ReplyStats) -> None:
        self.stats = stats


def sample_token(logits, params: SamplingParams, generator, recent: Sequence[int]) -> int:
    """Pick the next token from ``logits`` as llama.cpp's sampler chain would.

    Repeat penalty over ``recent`` tokens, then greedy at temperature 0;
    otherwise top-k, temperature, top-p and min-p, then a draw.
    """
    import torch

    logits = logits.float()
    if params.repeat_penalty != 1.0 and recent:
        index = torch.tensor(sorted(set(recent)), device=logits.device)
        chosen = logits[index]
        logits[index] = torch.where(chosen > 0, chosen / params.repeat_penalty, chosen * params.repeat_penalty)
    if params.temperature <= 0:
        return int(torch.argmax(logits))
    if 0 < params.top_k < logits.shape[-1]:
        values, indices = torch.topk(logits, params.top_k)
    else:
        values, indices = torch.sort(logits, descending=True)
    probs = torch.softmax(values / params.temperature, dim=-1)
    if params.top_p < 1.0:
        cumulative = torch.cumsum(probs, dim=-1)
        probs = torch.where(cumulative - probs > params.top_p, torch.zeros_like(probs), probs)
    if params.min_p > 0:
        probs = torch.where(probs < params.min_p * probs[0], torch.zeros_like(probs), probs)
    choice = torch.multinomial(probs / probs.sum(), 1, generator=generator)
    return int(indices[choice])
