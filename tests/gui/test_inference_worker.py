"""The worker's background thread tuning with the real built-in model: it never holds up a reply,
it ends in a stored figure, and replies clearly slower than the stored figure ask for a new one."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Signal, Slot

from gui.inference_worker import InferenceWorker, WorkerThread
from inference.model_owner import LoadRequest, ReplyRequest, ThreadsChosen
from inference.engine import SamplingParams
from inference.hardware import CpuFacts, probe_hardware
from inference.selector import Preferences
from inference.session import ModelChoice
from inference.thread_tuning import MIN_COMPARABLE_TOKENS, ThreadTuner, candidate_threads, measurement_key
from model_store.settings import MeasuredThreads

pytestmark = [pytest.mark.gui, pytest.mark.slow]

CPU = CpuFacts.probe()
needs_two_counts = pytest.mark.skipif(len(candidate_threads(CPU.physical_cores, CPU.logical_cores)) < 2,
                                      reason="a one-core machine has no thread count to choose")
STORY = [{"role": "user", "content": "Tell me a long story about a fox who finds a lantern in the woods."}]


class Events(QObject):
    """Talks to the worker as the window does: requests by queued signals, its signals re-emitted on the GUI
    thread for qtbot."""

    load = Signal(object)
    generate = Signal(object)
    ready = Signal(object)
    measured = Signal(object)
    finished = Signal(int, object)

    def __init__(self, worker: InferenceWorker) -> None:
        super().__init__()
        self.chosen: list[ThreadsChosen] = []
        self.load.connect(worker.load_model)
        self.generate.connect(worker.generate)
        worker.model_ready.connect(self._on_ready)
        worker.threads_measured.connect(self._on_measured)
        worker.reply_finished.connect(self._on_finished)

    @Slot(object)
    def _on_ready(self, ready: object) -> None:
        self.ready.emit(ready)

    @Slot(object)
    def _on_measured(self, chosen: ThreadsChosen) -> None:
        self.chosen.append(chosen)
        self.measured.emit(chosen)

    @Slot(int, object)
    def _on_finished(self, request_id: int, stats: object) -> None:
        self.finished.emit(request_id, stats)


def quiet_machine_tuner(cpu: CpuFacts) -> ThreadTuner:
    """Counts every round as clean: this test machine is shared and often busy, which is not what is tested."""
    return ThreadTuner(physical_cores=cpu.physical_cores, logical_cores=cpu.logical_cores, busy_fraction=1.0)


@pytest.fixture
def events():
    """A running worker (on its thread) and the window's side of its signals."""
    thread = WorkerThread(InferenceWorker(lambda: None, probe_hardware, make_tuner=quiet_machine_tuner))
    events = Events(thread.worker)
    thread.start()
    yield events
    thread.stop()


def load(path: Path, measured=None) -> LoadRequest:
    return LoadRequest(ModelChoice(path=path), Preferences(), measured=measured or {})


def reply(number: int, max_tokens: int = 40) -> ReplyRequest:
    return ReplyRequest(request_id=number, messages=STORY, cancel=threading.Event(),
                        params=SamplingParams(temperature=0.8, seed=number, max_tokens=max_tokens))


@needs_two_counts
def test_a_first_load_measures_in_the_background_and_a_reply_goes_first(qtbot, events, builtin_model_path: Path
                                                                        ) -> None:
    with qtbot.waitSignal(events.ready, timeout=60_000) as ready:
        events.load.emit(load(builtin_model_path))
    assert ready.args[0].plan.n_threads == CPU.physical_cores  # ready at once, with one thread per physical core

    # A reply asked for right away runs before any measurement.
    with qtbot.waitSignal(events.finished, timeout=60_000):
        events.generate.emit(reply(1, max_tokens=8))
    assert events.chosen == []

    with qtbot.waitSignal(events.measured, timeout=120_000) as measured:
        pass
    chosen = measured.args[0]
    assert chosen.model_key == measurement_key(builtin_model_path.name, builtin_model_path.stat().st_size)
    assert chosen.measured.threads in candidate_threads(CPU.physical_cores, CPU.logical_cores)
    assert chosen.measured.tokens_per_s > 0 and chosen.measured.model == builtin_model_path.name
    assert chosen.plan.n_threads == chosen.measured.threads
    assert "3 rounds" in chosen.reason
    # The model still answers with the chosen count.
    with qtbot.waitSignal(events.finished, timeout=60_000):
        events.generate.emit(reply(2, max_tokens=8))


@needs_two_counts
def test_replies_clearly_slower_than_the_stored_figure_start_a_new_measurement(qtbot, events,
                                                                               builtin_model_path: Path) -> None:
    size = builtin_model_path.stat().st_size
    # A figure no reply on this machine reaches: every comparable reply is "slow".
    stored = MeasuredThreads(threads=CPU.physical_cores, tokens_per_s=100_000.0, model=builtin_model_path.name,
                             model_size=size)
    with qtbot.waitSignal(events.ready, timeout=60_000):
        events.load.emit(load(builtin_model_path,
                              measured={measurement_key(builtin_model_path.name, size): stored}))
    comparable = 0
    for number in range(1, 10):
        with qtbot.waitSignal(events.finished, timeout=60_000) as finished:
            events.generate.emit(reply(number))
        comparable += finished.args[1].completion_tokens >= MIN_COMPARABLE_TOKENS
        if comparable == 3:
            break
    assert comparable == 3, "the model kept ending its replies early"
    assert events.chosen == []
    with qtbot.waitSignal(events.measured, timeout=120_000) as measured:
        pass
    assert measured.args[0].measured.tokens_per_s < stored.tokens_per_s
