"""Open a model file: validate it, plan its execution, load it into an engine."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from inference.engine import Engine, ExecutionPlan
from inference.execution import CpuFacts, plan_execution
from inference.gguf_info import GgufInfo, read_gguf_info


@dataclass(frozen=True)
class ModelChoice:
    """Which model file to open and how to name it to the user."""

    path: Path
    display_name: str | None = None
    is_demo: bool = False


@dataclass
class LoadedModel:
    """A model ready to chat, with the facts the window shows about it."""

    engine: Engine
    info: GgufInfo
    plan: ExecutionPlan
    display_name: str
    is_demo: bool
    load_s: float


def open_model(choice: ModelChoice, cpu: CpuFacts) -> LoadedModel:
    """Validate, plan and load the model in ``choice``.

    Raises:
        ModelFileError: the file is missing, not GGUF, truncated or damaged.
        ModelLoadError: the engine refused the file.
    """
    started = time.perf_counter()
    info = read_gguf_info(choice.path)
    import llama_cpp  # heavy: imported only once a model is actually opened

    plan = plan_execution(info, cpu, gpu_offload_available=bool(llama_cpp.llama_supports_gpu_offload()))
    engine = create_engine(plan)
    engine.load(info)
    return LoadedModel(
        engine=engine,
        info=info,
        plan=plan,
        display_name=choice.display_name or info.name,
        is_demo=choice.is_demo,
        load_s=time.perf_counter() - started,
    )


def create_engine(plan: ExecutionPlan) -> Engine:
    """A new, empty engine of the kind ``plan`` names."""
    if plan.engine == "llama.cpp":
        from inference.llama_cpp_engine import LlamaCppEngine

        return LlamaCppEngine(plan)
    raise ValueError(f"Unknown engine {plan.engine!r}")
