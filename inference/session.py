"""Open a model file: validate it, choose where it runs, load it in the engine process.

If loading on the GPU fails (out of memory, a driver error), it is tried
again with half the layers on the GPU, then on the CPU alone; the plan's
reason says what failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inference.engine import Engine, EngineOptions, ExecutionPlan
from inference.errors import EngineCrashedError, ModelLoadError
from inference.gguf_info import GgufInfo, check_architecture_known, read_gguf_info
from inference.hardware import Hardware
from inference.process_engine import ProcessEngine
from inference.selector import Preferences, cpu_fallback, fewer_gpu_layers, select_plan

log = logging.getLogger(__name__)

# Loads with fewer GPU layers after the first GPU load failed, before the CPU alone.
MAX_GPU_RETRIES = 2


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


def open_model(
    choice: ModelChoice,
    hardware: Hardware,
    prefs: Preferences,
    *,
    measured_threads: int | None = None,
    options: EngineOptions | None = None,
    on_plan: Callable[[ExecutionPlan], None] = lambda _plan: None,
    make_engine: Callable[[ExecutionPlan, EngineOptions | None], Engine] | None = None,
) -> LoadedModel:
    """Validate, plan and load the model in ``choice``; ``on_plan`` hears of each plan before it is loaded.

    ``make_engine`` makes an empty engine for a plan (default: :func:`create_engine`, its own process).

    Raises:
        ModelFileError: the file is missing, not GGUF, truncated, damaged or too big for this computer.
        ModelLoadError: the engine refused the file.
        EngineCrashedError: the engine process died while loading on the CPU.
    """
    started = time.perf_counter()
    info = read_gguf_info(choice.path)
    check_architecture_known(info)
    plan = select_plan(hardware, info, prefs, measured_threads=measured_threads)
    engine = _load_with_fallbacks(plan, hardware, info, options, on_plan, make_engine or create_engine)
    return LoadedModel(
        engine=engine,
        info=info,
        plan=engine.plan,
        display_name=choice.display_name or info.name,
        is_demo=choice.is_demo,
        load_s=time.perf_counter() - started,
    )


def _load_with_fallbacks(
    plan: ExecutionPlan,
    hardware: Hardware,
    info: GgufInfo,
    options: EngineOptions | None,
    on_plan: Callable[[ExecutionPlan], None],
    make_engine: Callable[[ExecutionPlan, EngineOptions | None], Engine],
) -> Engine:
    """Load ``info`` as ``plan`` says; after a GPU failure, with fewer layers on the GPU, at last on the CPU."""
    retries = 0
    while True:
        on_plan(plan)
        engine = make_engine(plan, options)
        try:
            engine.load(info)
            return engine
        except (ModelLoadError, EngineCrashedError) as exc:
            engine.close()
            if plan.device == "CPU":
                raise
            failure = str(exc).rstrip(".")
            fewer = fewer_gpu_layers(plan, failure) if retries < MAX_GPU_RETRIES else None
            log.warning("Loading on %s with %s GPU layers failed (%s); trying %s", plan.device, plan.n_gpu_layers,
                        failure, f"{fewer.n_gpu_layers} layers" if fewer else "the CPU")
            plan = fewer or cpu_fallback(plan, hardware, info, failure)
            retries += 1


def create_engine(plan: ExecutionPlan, options: EngineOptions | None = None) -> Engine:
    """A new, empty engine for ``plan``, running in its own process so its crashes cannot take Hearth down."""
    return ProcessEngine(plan, options=options)


def create_local_engine(plan: ExecutionPlan, options: EngineOptions) -> Engine:
    """A new, empty engine of the kind ``plan`` names, in this process (the engine process uses it)."""
    if plan.engine == "llama.cpp":
        from inference.llama_cpp_engine import LlamaCppEngine

        return LlamaCppEngine(plan, state_cache_bytes=options.state_cache_bytes, cpu_variant=options.cpu_variant)
    if plan.engine == "torch":
        from inference.torch_engine import TorchEngine

        return TorchEngine(plan, cache_dir=options.cache_dir)
    raise ValueError(f"Unknown engine {plan.engine!r}")
