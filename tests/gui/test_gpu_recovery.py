"""The engine dies mid-reply while the model is on a GPU: the worker reloads it with half the layers there.

No GPU is here: the hardware says there is one, so the plan puts the model's
layers "on" it, and the CPU-only llama.cpp runs them on the CPU. The engine
process is really killed, as a GPU out of memory or a driver fault kills it.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Signal, Slot

from gui.inference_worker import InferenceWorker, WorkerThread
from inference.model_owner import LoadRequest, ReplyRequest, loading_message
from inference.engine import SamplingParams
from inference.hardware import GpuDevice, probe_hardware
from inference.selector import Preferences
from inference.session import ModelChoice

pytestmark = [pytest.mark.gui, pytest.mark.slow]
GIB = 1 << 30
TEST_GPU = GpuDevice(backend="CUDA", index=0, name="Test GPU", total_bytes=24 * GIB, free_bytes=22 * GIB)


class Events(QObject):
    """Talks to the worker as the window does; records what it says."""

    load = Signal(object)
    generate = Signal(object)
    ready = Signal(object)
    chunk = Signal(int, str)

    def __init__(self, worker: InferenceWorker) -> None:
        super().__init__()
        self.loading: list[str] = []
        self.stop_reasons: list[str] = []
        self.loaded: list[object] = []
        self.load.connect(worker.load_model)
        self.generate.connect(worker.generate)
        worker.model_ready.connect(self._on_ready)
        worker.engine_stopped.connect(self._on_stopped)
        worker.reply_chunk.connect(self._on_chunk)
        worker.model_loading.connect(self._on_loading)

    @Slot(object)
    def _on_ready(self, ready: object) -> None:
        self.loaded.append(ready)
        self.ready.emit(ready)

    @Slot(str)
    def _on_stopped(self, reason: str) -> None:
        self.stop_reasons.append(reason)

    @Slot(int, str)
    def _on_chunk(self, request_id: int, text: str) -> None:
        self.chunk.emit(request_id, text)

    @Slot(str)
    def _on_loading(self, message: str) -> None:
        self.loading.append(message)


def test_a_crash_on_the_gpu_reloads_with_half_the_layers_there(qtbot, builtin_model_path: Path) -> None:
    hardware = replace(probe_hardware(), llama_gpus=(TEST_GPU,), llama_gpu_offload=True)
    worker = InferenceWorker(lambda: None, lambda: hardware)
    thread = WorkerThread(worker)
    events = Events(worker)
    thread.start()
    try:
        request = LoadRequest(ModelChoice(path=builtin_model_path, display_name="Demo"), Preferences(), measured={})
        with qtbot.waitSignal(events.ready, timeout=60_000) as ready:
            events.load.emit(request)
        first = ready.args[0]
        assert (first.plan.device, first.plan.n_gpu_layers, first.gpus) == ("CUDA", -1, (TEST_GPU,))
        assert "Loading Demo on the Test GPU…" in events.loading

        story = [{"role": "user", "content": "Tell me a long story about a fox who finds a lantern."}]
        params = SamplingParams(temperature=0.8, seed=1, max_tokens=400, ignore_eos=True)
        with qtbot.waitSignal(events.chunk, timeout=60_000):
            events.generate.emit(ReplyRequest(1, story, params, threading.Event()))
        os.kill(worker.owner.engine_pid, signal.SIGKILL)
        qtbot.waitUntil(lambda: len(events.loaded) == 2, timeout=60_000)
        assert len(events.stop_reasons) == 1 and "less of it on the GPU" in events.stop_reasons[0]
        again = events.loaded[1].plan
        assert (again.device, again.n_gpu_layers, again.n_layers) == ("CUDA", 9, 18)
        assert again.reason.startswith("9 of 18 layers on the Test GPU (CUDA): with more, the GPU failed a moment ago")
        assert "Loading Demo: 9 of 18 layers on the Test GPU…" in events.loading
    finally:
        thread.stop()


def test_loading_messages_say_where_the_model_goes() -> None:
    from inference.engine import ExecutionPlan

    cpu = ExecutionPlan(engine="llama.cpp", device="CPU", n_threads=2, n_ctx=4096, n_gpu_layers=0, reason="")
    torch_gpu = replace(cpu, engine="torch", device="CUDA", gpu_name="NVIDIA H200")
    assert loading_message("Llama", cpu) == "Loading Llama…"
    assert loading_message("Llama", torch_gpu).startswith("Preparing the GPU for Llama…")
