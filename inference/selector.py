"""Choose where and how a model runs: a pure function of hardware, model and preferences.

Rules:
- llama.cpp with a GPU backend: all layers on the GPU when the whole model
  plus its KV cache at the chosen context fits in the GPU's free memory with
  a margin; otherwise as many layers as fit (partial offload), the rest on
  the CPU. Settings can set the number of layers and the GPU.
- torch (no GPU-capable llama.cpp here): only a whole model of at least
  1 B parameters that fits, since torch cannot split a model.
- Several GPUs: a discrete one before an integrated one, then the one with
  the most free memory.
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
from inference.hardware import GpuDevice, Hardware

DEFAULT_CONTEXT = 4096
MIN_CONTEXT = 512
GIB = 1 << 30
# Compute buffers, the engine's own code and headroom for the rest of the system.
CPU_OVERHEAD_BYTES = 512 << 20
GPU_OVERHEAD_BYTES = 768 << 20
GPU_MARGIN_FRACTION = 0.10
# Measured on an H200 with a 270M Gemma 3 when the torch engine still decoded eagerly: 13-29
# tokens/s, while llama.cpp on 16 CPU cores did 95-124. It now replays CUDA graphs over a static
# cache, but that has not been measured on a GPU yet: until it is, small models stay on the CPU.
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
    n_gpu_layers: int | None = None  # layers on the GPU (llama.cpp); None: as many as fit
    gpu: str | None = None  # the GPU to use (GpuDevice.key); None: the one with the most free memory
    gpu_layer_cap: int | None = None  # at most this many GPU layers: more failed a moment ago (not a setting)


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
    if prefs.n_gpu_layers == 0:
        return None, "you set 0 GPU layers in Settings"
    if not _gpus_for("llama.cpp", hardware) and not hardware.gpus and hardware.unusable_gpus:
        if hardware.engine_build_note:
            return None, (f"this copy of Hearth has no GPU engine for the {' and the '.join(hardware.unusable_gpus)} "
                          f"it found (its install said: “{hardware.engine_build_note.rstrip('.')}”)")
        return None, (
            f"this copy of Hearth has no GPU engine for the {' and the '.join(hardware.unusable_gpus)} it found "
            "(that needs llama.cpp built with CUDA or ROCm, or PyTorch with GPU support; the installer ships "
            "the CPU engine only)"
        )
    if not _gpus_for("llama.cpp", hardware) and not hardware.gpus:
        return None, "no GPU was found" + (f" ({hardware.notes[0]})" if hardware.notes else "")
    engine = _gpu_engine(hardware, info)
    if engine is None:
        return None, (
            f"neither llama.cpp (built without GPU support) nor torch can run {info.architecture} "
            "models on the GPU here"
        )
    gpu, gpu_note = choose_gpu(_gpus_for(engine, hardware), prefs.gpu)
    if engine == "llama.cpp":
        return _llama_gpu_plan(hardware, info, prefs, n_ctx, gpu, gpu_note)
    return _torch_gpu_plan(hardware, info, prefs, n_ctx, gpu, gpu_note)


def choose_gpu(gpus: tuple[GpuDevice, ...], wanted: str | None) -> tuple[GpuDevice, str]:
    """The GPU to use and, when there was a choice, a sentence saying why this one.

    The one named in Settings (by :attr:`GpuDevice.key`) when it is there; else
    a discrete GPU before an integrated one, then the most free memory.
    """
    for gpu in gpus:
        if wanted and gpu.key == wanted:
            return gpu, "You chose this GPU in Settings."
    best = max(gpus, key=lambda device: (not device.integrated, device.free_bytes))
    if wanted:
        return best, f"The GPU chosen in Settings is not there now, so Hearth uses the {best.name}."
    if len(gpus) == 1:
        return best, ""
    why = "the discrete one" if any(gpu.integrated for gpu in gpus) else "the one with the most free memory"
    return best, f"Of the {len(gpus)} GPUs found it is {why}; Settings can choose another."


def gpu_layers_that_fit(info: GgufInfo, n_ctx: int, room_bytes: int) -> int:
    """How many of the model's repeating layers fit in ``room_bytes`` of GPU memory, with their KV cache.

    Each layer brings its share of the weights (the ``blk.N`` tensors; the
    embeddings stay in system memory) and of the KV cache; the GPU also needs
    its compute buffers (:data:`GPU_OVERHEAD_BYTES`).
    """
    layers = _layer_count(info)
    per_layer = _layer_weight_bytes(info) + kv_cache_bytes(info, n_ctx) // layers
    return max(0, min(layers, (room_bytes - GPU_OVERHEAD_BYTES) // max(per_layer, 1)))


def _llama_gpu_plan(
    hardware: Hardware, info: GgufInfo, prefs: Preferences, n_ctx: int, gpu: GpuDevice, gpu_note: str
) -> tuple[ExecutionPlan | None, str]:
    layers = _layer_count(info)
    need = estimate_memory(info, n_ctx, engine="llama.cpp")
    room = gpu.free_bytes - int(gpu.total_bytes * GPU_MARGIN_FRACTION)
    name = f"the {gpu.name} ({gpu.backend})"
    if prefs.n_gpu_layers is not None:
        n_gpu_layers = -1 if prefs.n_gpu_layers >= layers else prefs.n_gpu_layers
        reason = f"{min(prefs.n_gpu_layers, layers)} of {layers} layers on {name}, as set in Settings"
        reason += "." if n_gpu_layers == -1 else ""
    elif need.total_bytes <= room:
        n_gpu_layers = -1
        reason = (f"Running on {name} with llama.cpp: the whole model and its {n_ctx:,}-token KV cache "
                  f"({_gb(need.total_bytes)}) fit in its {_gb(gpu.free_bytes)} of free memory.")
    else:
        n_gpu_layers = gpu_layers_that_fit(info, n_ctx, room)
        reason = (f"{n_gpu_layers} of {layers} layers on {name}: the whole model with its {n_ctx:,}-token KV "
                  f"cache needs {_gb(need.total_bytes)} and {_gb(gpu.free_bytes)} is free")
        if n_gpu_layers == 0 and prefs.device != "gpu":
            return None, (f"not even one of the model's {layers} layers fits in the {_gb(gpu.free_bytes)} free on "
                          f"the {gpu.name}")
        n_gpu_layers = max(n_gpu_layers, 1)
    cap = prefs.gpu_layer_cap
    if cap is not None and (n_gpu_layers < 0 or n_gpu_layers > cap):
        if cap < 1:
            return None, f"the {gpu.name} failed a moment ago, with even a few layers on it"
        n_gpu_layers = cap
        reason = f"{cap} of {layers} layers on {name}: with more, the GPU failed a moment ago"
    if n_gpu_layers != -1:
        threads = prefs.n_threads or hardware.cpu.physical_cores
        reason += f"; the rest on the CPU with {threads} thread{'s' if threads != 1 else ''}."
    plan = ExecutionPlan(
        engine="llama.cpp",
        device=gpu.backend.upper(),
        n_threads=prefs.n_threads or hardware.cpu.physical_cores,
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        reason=" ".join(filter(None, [reason, gpu_note])),
        dtype="quantized",
        gpu_name=gpu.name,
        memory_bytes=need.total_bytes,
        n_layers=layers,
        main_gpu=gpu.index,
    )
    return plan, ""


def _torch_gpu_plan(
    hardware: Hardware, info: GgufInfo, prefs: Preferences, n_ctx: int, gpu: GpuDevice, gpu_note: str
) -> tuple[ExecutionPlan | None, str]:
    if prefs.gpu_layer_cap is not None:
        return None, f"torch on the {gpu.name} failed a moment ago"
    if info.parameter_count < MIN_TORCH_GPU_PARAMETERS and prefs.device != "gpu":
        return None, (
            f"a model this small ({info.parameter_count / 1e9:.2f}B parameters) runs faster quantized on the "
            "CPU than on the GPU through torch"
        )
    need = estimate_memory(info, n_ctx, engine="torch")
    room = gpu.free_bytes - int(gpu.total_bytes * GPU_MARGIN_FRACTION)
    fits = need.total_bytes <= room
    if not fits and prefs.device != "gpu":
        return None, (
            f"the model with its {n_ctx:,}-token KV cache needs {_gb(need.total_bytes)} dequantized for torch "
            f"and the {gpu.name} has {_gb(gpu.free_bytes)} free (torch cannot run part of a model on the GPU)"
        )
    if fits:
        reason = (
            f"Running on the {gpu.name} ({gpu.backend.upper()}) with torch: the whole model and its "
            f"{n_ctx:,}-token KV cache ({_gb(need.total_bytes)}) fit in its {_gb(gpu.free_bytes)} of free memory."
        )
    else:
        reason = (
            f"Running on the {gpu.name} because you chose the GPU in Settings, although the model needs "
            f"about {_gb(need.total_bytes)} and only {_gb(gpu.free_bytes)} is free; if loading fails, "
            "Hearth falls back to the CPU."
        )
    plan = ExecutionPlan(
        engine="torch",
        device=gpu.backend.upper() if gpu.backend != "mps" else "Apple GPU",
        n_threads=prefs.n_threads or hardware.cpu.physical_cores,
        n_ctx=n_ctx,
        n_gpu_layers=0,
        reason=" ".join(filter(None, [reason, gpu_note])),
        dtype="bfloat16",
        gpu_name=gpu.name,
        torch_device=gpu.torch_device,
        memory_bytes=need.total_bytes,
        n_layers=_layer_count(info),
    )
    return plan, ""


def fewer_gpu_layers(plan: ExecutionPlan, failure: str) -> ExecutionPlan | None:
    """After a GPU load or reply failed (out of memory, say): the same plan with half the layers, or None.

    None means nothing is left to take off the GPU but the model itself: run it on the CPU.
    """
    if plan.engine != "llama.cpp" or plan.device == "CPU" or plan.n_layers < 2:
        return None
    current = plan.n_layers if plan.n_gpu_layers < 0 else min(plan.n_gpu_layers, plan.n_layers)
    fewer = current // 2
    if fewer < 1:
        return None
    reason = (f"{fewer} of {plan.n_layers} layers on the {plan.gpu_name or plan.device}, the rest on the CPU: "
              f"with {current} the GPU failed ({failure}).")
    return replace(plan, n_gpu_layers=fewer, reason=reason)


def _gpus_for(engine: str, hardware: Hardware) -> tuple[GpuDevice, ...]:
    """The GPUs ``engine`` can use here (a llama.cpp GPU build whose devices were not listed: torch's list)."""
    if engine == "llama.cpp":
        return hardware.llama_gpus or (hardware.gpus if hardware.llama_gpu_offload else ())
    return hardware.gpus


def _layer_count(info: GgufInfo) -> int:
    return _int(info.arch_value("block_count"), 32)


def _layer_weight_bytes(info: GgufInfo) -> int:
    """One repeating layer's weights: from the tensor sizes when read, else the file split evenly (plus output)."""
    layers = _layer_count(info)
    if info.block_bytes:
        return info.block_bytes // layers
    return info.file_size // (layers + 1)


def _gpu_engine(hardware: Hardware, info: GgufInfo) -> str | None:
    if _gpus_for("llama.cpp", hardware):
        return "llama.cpp"
    if hardware.torch_gpu_backends and hardware.gpus and info.architecture in TORCH_GGUF_ARCHITECTURES:
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
    """Whether a model file will run here, before it is downloaded: "gpu", "gpu_partial", "cpu", "too_big" or "no_disk"."""

    kind: str
    sentence: str


def estimated_info(*, file_size: int, parameters: int, architecture: str, context_length: int | None) -> GgufInfo:
    """Header facts for a file not downloaded yet, from what the Hub says (size, parameters, architecture).

    Layer and head counts are unknown before download, so they are estimated
    from the parameter count: the KV cache at about 20 KB per token at 270 M
    parameters, growing with its square root (~100 KB at 7 B, ~330 KB at
    70 B, close to real GQA models), and the layers as ~16 x (billions of
    parameters)^0.35 (16 at 1 B, 33 at 8 B, 71 at 70 B). The result goes
    through :func:`select_plan` like a real header, so the verdict and the load agree.
    """
    per_token = int(20_000 * max(parameters / 0.27e9, 0.1) ** 0.5)
    layers = max(8, round(16 * max(parameters / 1e9, 0.01) ** 0.35))
    metadata = {
        "general.architecture": architecture,
        f"{architecture}.block_count": layers,
        f"{architecture}.attention.head_count": 1,
        f"{architecture}.attention.head_count_kv": 1,
        f"{architecture}.attention.key_length": max(1, per_token // (4 * layers)),
        f"{architecture}.attention.value_length": max(1, per_token // (4 * layers)),
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
    if plan.partly_on_gpu:
        return Verdict("gpu_partial", f"Partly on the {plan.gpu_name or plan.device}: {plan.n_gpu_layers} of "
                                      f"{plan.n_layers} layers fit in its free memory, the rest runs on the CPU "
                                      f"({_gb(plan.memory_bytes)} in all with its {plan.n_ctx:,}-token context).")
    if plan.device != "CPU":
        return Verdict("gpu", f"Fits on the {plan.gpu_name or plan.device} ({_gb(plan.memory_bytes)} with its "
                              f"{plan.n_ctx:,}-token context).")
    return Verdict("cpu", f"Runs on the CPU (about {_gb(plan.memory_bytes)} of memory at a {plan.n_ctx:,}-token "
                          f"context).")
