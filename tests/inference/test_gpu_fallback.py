"""A GPU that runs out of memory while loading: fewer layers, then the CPU, each step said in the plan.

No GPU is here, so the GPU is a real llama.cpp engine with a stated room:
it refuses plans that put more layers on it than fit, as llama.cpp does
when its buffers cannot be allocated. Everything else is the app's own path.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from inference.engine import EngineOptions, ExecutionPlan
from inference.errors import ModelLoadError
from inference.hardware import GpuDevice, probe_hardware
from inference.selector import Preferences
from inference.session import ModelChoice, create_local_engine, open_model

pytestmark = pytest.mark.slow
GIB = 1 << 30


def gpu_with_room_for(layers: int, tried: list[ExecutionPlan]):
    def make_engine(plan: ExecutionPlan, options: EngineOptions | None):
        tried.append(plan)
        engine = create_local_engine(plan, options or EngineOptions(state_cache_bytes=0))  # runs on the CPU here
        if plan.device != "CPU" and (plan.n_gpu_layers < 0 or plan.n_gpu_layers > layers):
            def out_of_memory(_info):
                raise ModelLoadError("llama.cpp could not load the model on the Test GPU: out of memory")
            engine.load = out_of_memory
        return engine

    return make_engine


@pytest.fixture
def gpu_machine():
    gpu = GpuDevice(backend="CUDA", index=0, name="Test GPU", total_bytes=8 * GIB, free_bytes=7 * GIB)
    return replace(probe_hardware(), llama_gpus=(gpu,), llama_gpu_offload=True)


def test_out_of_memory_on_the_gpu_retries_with_half_the_layers(builtin_model_path: Path, gpu_machine) -> None:
    tried: list[ExecutionPlan] = []
    loaded = open_model(ModelChoice(path=builtin_model_path), gpu_machine, Preferences(),
                        make_engine=gpu_with_room_for(9, tried))
    try:
        assert [plan.n_gpu_layers for plan in tried] == [-1, 9]  # all 18 layers, then half
        assert loaded.plan.n_gpu_layers == 9 and loaded.plan.partly_on_gpu
        assert loaded.plan.reason.startswith("9 of 18 layers on the Test GPU, the rest on the CPU: with 18 the GPU "
                                             "failed (llama.cpp could not load the model on the Test GPU: out of")
    finally:
        loaded.engine.close()


def test_a_gpu_with_no_room_at_all_ends_on_the_cpu_saying_why(builtin_model_path: Path, gpu_machine) -> None:
    tried: list[ExecutionPlan] = []
    loaded = open_model(ModelChoice(path=builtin_model_path), gpu_machine, Preferences(),
                        make_engine=gpu_with_room_for(0, tried))
    try:
        assert [plan.n_gpu_layers for plan in tried] == [-1, 9, 4, 0]  # two retries with fewer layers, then the CPU
        assert loaded.plan.device == "CPU"
        assert "loading on the CUDA failed" in loaded.plan.reason and "out of memory" in loaded.plan.reason
    finally:
        loaded.engine.close()
