"""Choose where and how a model runs, with the reason in a sentence."""

from __future__ import annotations

import os
from dataclasses import dataclass

from inference.engine import ExecutionPlan
from inference.gguf_info import GgufInfo

DEFAULT_CONTEXT = 8192


@dataclass(frozen=True)
class CpuFacts:
    """The processor as the engine sees it."""

    physical_cores: int
    logical_cores: int

    @classmethod
    def probe(cls) -> CpuFacts:
        """Count this machine's cores (psutil; falls back to os.cpu_count)."""
        import psutil

        logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
        physical = psutil.cpu_count(logical=False) or logical
        return cls(physical_cores=physical, logical_cores=logical)


def plan_execution(
    info: GgufInfo, cpu: CpuFacts, *, gpu_offload_available: bool, context_length: int | None = None
) -> ExecutionPlan:
    """The execution plan for ``info`` on this machine.

    llama.cpp decodes fastest with one thread per physical core: extra
    hyper-threads compete for the same vector units.
    """
    trained = info.context_length or DEFAULT_CONTEXT
    n_ctx = min(context_length or DEFAULT_CONTEXT, trained)
    threads = max(1, cpu.physical_cores)
    plural = "s" if threads != 1 else ""
    if gpu_offload_available:
        why = "this model runs quantized on the CPU"
    else:
        why = "this llama.cpp build has no GPU support"
    reason = (
        f"Running on the CPU because {why}; {threads} thread{plural}, one per physical core, "
        f"and a {n_ctx:,}-token context."
    )
    return ExecutionPlan(engine="llama.cpp", device="CPU", n_threads=threads, n_ctx=n_ctx, n_gpu_layers=0, reason=reason)
