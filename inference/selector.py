"""Choose where and how a model runs: a pure function of hardware, model and preferences.

Rules:
- A GPU only when the whole model plus its KV cache at the chosen context
  fits in the GPU's free memory with a margin. Partial offload of a model
  that does not fit is often slower than the CPU, so it is never chosen
  automatically.
- Otherwise llama.cpp runs the quantized model on the CPU with the thread
  count measured fastest on this machine (one per physical core until measured).
- A model that cannot fit in RAM at all is refused before loading, with a
  sentence saying how much memory it needs.
The same estimate (:func:`estimate_memory`) serves the model manager's
"fits / too big" verdicts, so what it promises and what happens agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from inference.engine import ExecutionPlan
from inference.errors import ModelTooLargeError
from inference.gguf_info import GgufInfo
from inference.hardware import Hardware

DEFAULT_CONTEXT = 4096
MIN_CONTEXT = 512
GIB = 1 << 30
# Compute buffers, the engine's own code and headroom for the rest of the system.
CPU_OVERHEAD_BYTES = 512 << 20
GPU_OVERHEAD_BYTES = 768 << 20
GPU_MARGIN_FRACTION = 0.10
# The torch engine decodes eagerly: a fixed cost per layer and token. Measured on an
# H200 with a 270M Gemma 3: 13-29 tokens/s, while llama.cpp on 16 CPU cores did
# 95-124. Below this size llama.cpp on the CPU is the faster choice.
MIN_TORCH_GPU_PARAMETERS = 1_000_000_000
# Architectures transformers can load from GGUF (the torch engine's loader).
TORCH_GGUF_ARCHITECTURES = frozenset(
    {"llama", "mistral", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "phi3", "gemma2", "gemma3",
     "falcon", "stablelm", "gpt2", "starcoder2", "nemotron", "bloom"}
)


@dataclass(frozen=True)
class Preferences:
    """What the user asked for in Settings. None means 'choose for me'."""

    device: str = "auto"  # "auto", "cpu" or "gpu"
    n_threads: int | None = None
    context_length: int | None = None


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a model needs to run: weights, KV cache and overhead."""

    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int

    @property
    def total_bytes(self) -> int:
        """Everything together."""
        return self.weights_bytes + self.kv_cache_bytes + self.overhead_bytes


def kv_cache_bytes(info: GgufInfo, n_ctx: int, *, bytes_per_value: int = 2) -> int:
    """Size of the K and V caches for ``n_ctx`` tokens (f16 by default)."""
    layers = _int(info.arch_value("block_count"), 32)
    heads = _int(info.arch_value("attention.head_count"), 32)
    kv_heads = _int(info.arch_value("attention.head_count_kv"), heads)
    head_dim = _int(info.arch_value("embedding_length"), 4096) // max(heads, 1)
    key_dim = _int(info.arch_value("attention.key_length"), head_dim)
    value_dim = _int(info.arch_value("attention.value_length"), head_dim)
    return layers * n_ctx * kv_heads * (key_dim + value_dim) * bytes_per_value


def estimate_memory(info: GgufInfo, n_ctx: int, *, engine: str) -> MemoryEstimate:
    """Memory to run ``info`` at ``n_ctx`` on ``engine``.

    llama.cpp keeps the quantized weights (the file's size); torch dequantizes
    them to 16-bit floats (two bytes per parameter).
    """
    if engine == "torch":
        weights = max(info.parameter_count * 2, info.file_size)
        return MemoryEstimate(weights, kv_cache_bytes(info, n_ctx), GPU_OVERHEAD_BYTES)
    return MemoryEstimate(info.file_size, kv_cache_bytes(info, n_ctx), CPU_OVERHEAD_BYTES)


def choose_context(info: GgufInfo, prefs: Preferences) -> tuple[int, str]:
    """The context length to use and, when the request had to change, a sentence saying why."""
    trained = info.context_length or DEFAULT_CONTEXT
    wanted = prefs.context_length or DEFAULT_CONTEXT
    if prefs.context_length and prefs.context_length > trained:
        return trained, f"The model supports at most {trained:,} tokens of context, so Hearth uses {trained:,}."
    return max(MIN_CONTEXT, min(wanted, trained)), ""


def select_plan(
    hardware: Hardware, info: GgufInfo, prefs: Preferences, *, measured_threads: int | None = None
) -> ExecutionPlan:
    """The execution plan for ``info`` on ``hardware`` given ``prefs``, with the reason in a sentence.

    Raises:
        ModelTooLargeError: the model cannot fit in this computer's memory at all.
    """
    n_ctx, context_note = choose_context(info, prefs)
    gpu_plan, why_not_gpu = _gpu_plan(hardware, info, prefs, n_ctx)
    if gpu_plan is not None:
        return _with_note(gpu_plan, context_note)
    return _with_note(_cpu_plan(hardware, info, prefs, n_ctx, why_not_gpu, measured_threads), context_note)


def cpu_fallback(plan: ExecutionPlan, hardware: Hardware, info: GgufInfo, failure: str) -> ExecutionPlan:
    """The CPU plan to use after loading on the GPU failed; its reason says what failed."""
    prefs = Preferences(device="cpu", context_length=plan.n_ctx)
    return _cpu_plan(hardware, info, prefs, plan.n_ctx, f"loading on the {plan.device} failed ({failure})", None)


def _gpu_plan(
    hardware: Hardware, info: GgufInfo, prefs: Preferences, n_ctx: int
) -> tuple[ExecutionPlan | None, str]:
    """A GPU plan when one applies; otherwise None and why not (a clause)."""
    if prefs.device == "cpu":
        return None, "you chose the CPU in Settings"
    if not hardware.gpus and hardware.unusable_gpus:
        return None, (
            f"this copy of Hearth has no GPU engine for the {' and the '.join(hardware.unusable_gpus)} it found "
            "(that needs llama.cpp built with CUDA or ROCm, or PyTorch with GPU support; the installer ships "
            "the CPU engine only)"
        )
    if not hardware.gpus:
        return None, "no GPU was found" + (f" ({hardware.notes[0]})" if hardware.notes else "")
    engine = _gpu_engine(hardware, info)
    if engine is None:
        return None, (
            f"neither llama.cpp (built without GPU support) nor torch can run {info.architecture} "
            "models on the GPU here"
        )
    if engine == "torch" and info.parameter_count < MIN_TORCH_GPU_PARAMETERS and prefs.device != "gpu":
        return None, (
            f"a model this small ({info.parameter_count / 1e9:.2f}B parameters) runs faster quantized on the "
            "CPU than on the GPU through torch"
        )
    need = estimate_memory(info, n_ctx, engine=engine)
    gpu = max(hardware.gpus, key=lambda device: device.free_bytes)
    room = gpu.free_bytes - int(gpu.total_bytes * GPU_MARGIN_FRACTION)
    fits = need.total_bytes <= room
    if not fits and prefs.device != "gpu":
        return None, (
            f"the model with its {n_ctx:,}-token KV cache needs {_gb(need.total_bytes)} and the "
            f"{gpu.name} has {_gb(gpu.free_bytes)} free (partial offload is usually slower than the CPU)"
        )
    if fits:
        reason = (
            f"Running on the {gpu.name} ({gpu.backend.upper()}) with {engine}: the whole model and its "
            f"{n_ctx:,}-token KV cache ({_gb(need.total_bytes)}) fit in its {_gb(gpu.free_bytes)} of free memory."
        )
    else:
        reason = (
            f"Running on the {gpu.name} because you chose the GPU in Settings, although the model needs "
            f"about {_gb(need.total_bytes)} and only {_gb(gpu.free_bytes)} is free; if loading fails, "
            "Hearth falls back to the CPU."
        )
    plan = ExecutionPlan(
        engine=engine,
        device=gpu.backend.upper() if gpu.backend != "mps" else "Apple GPU",
        n_threads=prefs.n_threads or hardware.cpu.physical_cores,
        n_ctx=n_ctx,
        n_gpu_layers=-1 if engine == "llama.cpp" else 0,
        reason=reason,
        dtype="quantized" if engine == "llama.cpp" else "bfloat16",
        gpu_name=gpu.name,
        torch_device=gpu.torch_device if engine == "torch" else "",
        memory_bytes=need.total_bytes,
    )
    return plan, ""


def _gpu_engine(hardware: Hardware, info: GgufInfo) -> str | None:
    if hardware.llama_gpu_offload:
        return "llama.cpp"
    if hardware.torch_gpu_backends and info.architecture in TORCH_GGUF_ARCHITECTURES:
        return "torch"
    return None


def _cpu_plan(
    hardware: Hardware,
    info: GgufInfo,
    prefs: Preferences,
    n_ctx: int,
    why_not_gpu: str,
    measured_threads: int | None,
) -> ExecutionPlan:
    need = estimate_memory(info, n_ctx, engine="llama.cpp")
    if need.total_bytes > hardware.ram_total_bytes:
        raise ModelTooLargeError(
            f"{info.name} needs about {_gb(need.total_bytes)} of memory at a {n_ctx:,}-token context "
            f"(model {_gb(need.weights_bytes)}, KV cache {_gb(need.kv_cache_bytes)}), but this computer has "
            f"{_gb(hardware.ram_total_bytes)}. Choose a smaller or more strongly quantized model"
            + (", or a shorter context." if need.kv_cache_bytes > GIB else ".")
        )
    if prefs.n_threads:
        threads, how = prefs.n_threads, "as set in Settings"
    elif measured_threads:
        threads, how = measured_threads, "measured fastest here"
    else:
        threads, how = hardware.cpu.physical_cores, "one per physical core"
    plural = "s" if threads != 1 else ""
    reason = (
        f"Running on the CPU with llama.cpp because {why_not_gpu}; {threads} thread{plural} ({how}), "
        f"a {n_ctx:,}-token context, about {_gb(need.total_bytes)} of memory."
    )
    if need.total_bytes > hardware.ram_available_bytes:
        reason += f" Only {_gb(hardware.ram_available_bytes)} is free now: close other programs if it is slow."
    return ExecutionPlan(
        engine="llama.cpp",
        device="CPU",
        n_threads=threads,
        n_ctx=n_ctx,
        n_gpu_layers=0,
        reason=reason,
        dtype="quantized",
        memory_bytes=need.total_bytes,
    )


def _with_note(plan: ExecutionPlan, note: str) -> ExecutionPlan:
    if not note:
        return plan
    return replace(plan, reason=f"{plan.reason} {note}")


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and value > 0 else default


def _gb(size: int) -> str:
    return f"{size / GIB:.1f} GB" if size >= GIB / 10 else f"{size / (1 << 20):.0f} MB"


@dataclass(frozen=True)
class Verdict:
    """Whether a model file will run here, before it is downloaded: "gpu", "cpu", "too_big" or "no_disk"."""

    kind: str
    sentence: str


def estimated_info(*, file_size: int, parameters: int, architecture: str, context_length: int | None) -> GgufInfo:
    """Header facts for a file not downloaded yet, from what the Hub says (size, parameters, architecture).

    Layer and head counts are unknown before download, so the KV cache is
    estimated from the parameter count (about 20 KB per token at 270 M
    parameters, growing with its square root: ~100 KB at 7 B, ~330 KB at
    70 B, close to real GQA models). The result goes through
    :func:`select_plan` like a real header, so the verdict and the load agree.
    """
    per_token = int(20_000 * max(parameters / 0.27e9, 0.1) ** 0.5)
    metadata = {
        "general.architecture": architecture,
        f"{architecture}.block_count": 1,
        f"{architecture}.attention.head_count": 1,
        f"{architecture}.attention.head_count_kv": 1,
        f"{architecture}.attention.key_length": per_token // 4,
        f"{architecture}.attention.value_length": per_token // 4,
    }
    if context_length:
        metadata[f"{architecture}.context_length"] = context_length
    return GgufInfo(path=Path("remote.gguf"), file_size=file_size, version=3, tensor_count=0, data_end=file_size,
                    metadata=metadata, parameter_count=parameters)


def download_verdict(hardware: Hardware, info: GgufInfo, prefs: Preferences, *, free_disk: int) -> Verdict:
    """Fits on the GPU / runs on the CPU / too big / no room on disk, with why."""
    if info.file_size > free_disk:
        return Verdict("no_disk", f"Needs {_gb(info.file_size)} of disk space; {_gb(free_disk)} is free.")
    try:
        plan = select_plan(hardware, info, prefs)
    except ModelTooLargeError as exc:
        return Verdict("too_big", str(exc))
    if plan.device != "CPU":
        return Verdict("gpu", f"Fits on the {plan.gpu_name or plan.device} ({_gb(plan.memory_bytes)} with its "
                              f"{plan.n_ctx:,}-token context).")
    return Verdict("cpu", f"Runs on the CPU (about {_gb(plan.memory_bytes)} of memory at a {plan.n_ctx:,}-token "
                          f"context).")
