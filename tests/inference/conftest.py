"""Fixtures for engine tests: the real built-in model in a real engine process."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.engine import EngineOptions, ExecutionPlan
from inference.gguf_info import read_gguf_info
from inference.hardware import CpuFacts
from inference.process_engine import ProcessEngine


def cpu_plan(n_ctx: int = 4096) -> ExecutionPlan:
    return ExecutionPlan(engine="llama.cpp", device="CPU", n_threads=CpuFacts.probe().physical_cores,
                         n_ctx=n_ctx, n_gpu_layers=0, reason="test")


@pytest.fixture
def engine_process(builtin_model_path: Path):
    """A ProcessEngine with the built-in model loaded; closed after the test."""
    engine = ProcessEngine(cpu_plan(), options=EngineOptions(state_cache_bytes=256 << 20))
    engine.load(read_gguf_info(builtin_model_path))
    yield engine
    engine.close()
