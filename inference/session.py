"""Open a model file: validate it, choose where it runs, load it in the engine process.

If loading on the GPU fails, the model is loaded on the CPU instead and the
plan's reason says what failed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from inference.engine import Engine, EngineOptions, ExecutionPlan
from inference.errors import EngineCrashedError, ModelLoadError
from inference.gguf_info import GgufInfo, check_architecture_known, read_gguf_info
from inference.hardware import Hardware
from inference.process_engine import ProcessEngine
from inference.selector import Preferences, cpu_fallback, select_plan

log = logging.getLogger(__name__)


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
) -> LoadedModel:
    """Validate, plan and load the model in ``choice``.

    Raises:
        ModelFileError: the file is missing, not GGUF, truncated, damaged or too big for this computer.
        ModelLoadError: the engine refused the file.
        EngineCrashedError: the engine process died while loading on the CPU.
    """
    started = time.perf_counter()
    info = read_gguf_info(choice.path)
    check_architecture_known(info)
    plan = select_plan(hardware, info, prefs, measured_threads=measured_threads)
    engine = create_engine(plan, options)
    try:
        engine.load(info)
    except (ModelLoadError, EngineCrashedError) as exc:
        engine.close()
        if plan.device == "CPU":
            raise
        log.warning("Loading on %s failed (%s); falling back to the CPU", plan.device, exc)
        plan = cpu_fallback(plan, hardware, info, str(exc).rstrip("."))
        engine = create_engine(plan, options)
        engine.load(info)
    return LoadedModel(
        engine=engine,
        info=info,
        plan=engine.plan,
        display_name=choice.display_name or info.name,
        is_demo=choice.is_demo,
        load_s=time.perf_counter() - started,
    )


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
