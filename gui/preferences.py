"""Turn the user's saved settings into what the engine takes. Qt-free: main.py's self-test uses it too."""

from __future__ import annotations

from inference.engine import SamplingParams
from inference.hardware import CpuFacts
from inference.selector import Preferences
from model_store.settings import Settings


def engine_preferences(settings: Settings) -> Preferences:
    """Device, GPU, layers, threads and context length as the execution selector takes them."""
    return Preferences(device=settings.device, n_threads=settings.n_threads, context_length=settings.context_length,
                       n_gpu_layers=settings.n_gpu_layers, gpu=settings.gpu)


def sampling_params(settings: Settings) -> SamplingParams:
    """How replies are sampled."""
    return SamplingParams(
        temperature=settings.temperature,
        top_p=settings.top_p,
        top_k=settings.top_k,
        min_p=settings.min_p,
        repeat_penalty=settings.repeat_penalty,
        seed=settings.seed,
        max_tokens=settings.max_tokens,
    )


def cpu_signature(cpu: CpuFacts) -> str:
    """A key for measurements that hold for this CPU (its cores and instruction sets)."""
    return f"{cpu.physical_cores}c{cpu.logical_cores}t-" + ",".join(sorted(cpu.features & {"avx2", "avx512f", "neon"}))
