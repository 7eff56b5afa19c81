"""The worker that drives the engine process, on its own thread, talking to the window by signals.

It also chooses the CPU thread count: a model starts with one thread per
physical core, and while no reply is being written the worker measures other
counts in short steps (one count per step, on a timer), so a reply asked for
meanwhile runs between steps, and one asked for during a step stops it
within a token. The decision itself is :mod:`inference.thread_tuning`'s.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from gui.messages import describe_error
from inference.engine import EngineOptions, ExecutionPlan, ReplyStats, SamplingParams
from inference.errors import EngineCrashedError, GenerationError
from inference.hardware import CpuFacts, GpuDevice, Hardware
from inference.selector import Preferences, fewer_gpu_layers
from inference.session import LoadedModel, ModelChoice, open_model
from inference.thread_tuning import (
    SlowReplyWatch,
    ThreadDecision,
    ThreadTuner,
    measurement_key,
    other_programs_load,
    take_cpu_sample,
)
from model_store.settings import MeasuredThreads

log = logging.getLogger(__name__)

CHUNK_INTERVAL_S = 0.016  # at most ~60 text signals a second, whatever the decode speed
IDLE_BEFORE_TUNING_MS = 3000  # measure only after this long without a reply (the user may send another)
TUNING_STEP_GAP_MS = 100  # between measurement steps
BUSY_RETRY_MS = 30_000  # after a round spoiled by other programs using the CPU


@dataclass(frozen=True)
class LoadRequest:
    """Which model to load and how. ``choice=None`` means the default model.

    ``measured`` holds the thread counts chosen earlier on this CPU, by
    :func:`~inference.thread_tuning.measurement_key`; a model without one is
    measured in the background (unless ``prefs`` sets the threads). The
    window sets ``reply_waiting`` when it asks for a reply, so a measurement
    in progress gives way at once.
    """

    choice: ModelChoice | None
    prefs: Preferences
    measured: Mapping[str, MeasuredThreads] = field(default_factory=dict)
    state_cache_bytes: int = 1 << 30
    reply_waiting: threading.Event | None = None


@dataclass(frozen=True)
class ModelReady:
    """What the window shows about a loaded model."""

    display_name: str
    is_demo: bool
    plan: ExecutionPlan
    chat_format: str
    load_s: float
    gpus: tuple[GpuDevice, ...] = ()  # the GPUs the engines here can use (Settings lists them)


@dataclass(frozen=True)
class ThreadsChosen:
    """A thread count chosen from measurements: what to store under ``model_key``, the plan now, and why."""

    model_key: str
    measured: MeasuredThreads
    plan: ExecutionPlan
    reason: str


@dataclass(frozen=True)
class ReplyRequest:
    """One reply to generate. The window keeps ``cancel`` and sets it to stop."""

    request_id: int
    messages: Sequence[dict[str, str]]
    params: SamplingParams
    cancel: threading.Event


class InferenceWorker(QObject):
    """Drives the engine. Lives on its own QThread; every slot runs there.

    The engine itself runs in a child process: if it dies, the reply in
    progress fails with a sentence saying why and the model is reloaded.
    ``make_tuner`` plans the thread measurements for a CPU (tests make one
    that ignores other programs' load).

    Signals:
        model_loading(str): a model is being prepared; the argument says which.
        model_ready(ModelReady): the model is loaded and can chat.
        model_failed(str): loading failed; the argument is a sentence for the user.
        threads_measured(ThreadsChosen): measurements chose the thread count for the loaded model.
        engine_stopped(str): the engine process died; the argument says why. A reload follows.
        reply_chunk(int, str): more text of reply ``request_id``.
        reply_finished(int, ReplyStats): the model ended its reply (or hit max tokens).
        reply_cancelled(int, ReplyStats): the reply was stopped by the user.
        reply_failed(int, str): generation failed; the argument is a sentence.
    """

    model_loading = Signal(str)
    model_ready = Signal(object)
    model_failed = Signal(str)
    threads_measured = Signal(object)
    engine_stopped = Signal(str)
    reply_chunk = Signal(int, str)
    reply_finished = Signal(int, object)
    reply_cancelled = Signal(int, object)
    reply_failed = Signal(int, str)

    def __init__(
        self,
        choose_model: Callable[[], ModelChoice],
        probe_hardware: Callable[[], Hardware],
        cache_dir: Path | None = None,
        *,
        make_tuner: Callable[[CpuFacts], ThreadTuner] | None = None,
    ) -> None:
        super().__init__()
        self._make_tuner = make_tuner or _default_tuner
        self._choose_model = choose_model
        self._probe_hardware = probe_hardware
        self._cache_dir = cache_dir
        self._loaded: LoadedModel | None = None
        self._last_load: LoadRequest | None = None
        self._reply_waiting: threading.Event | None = None
        # Thread tuning of the loaded model (all None when the user set the threads or it runs on a GPU).
        self._cpu: CpuFacts | None = None
        self._model_key = ""
        self._tuner: ThreadTuner | None = None
        self._watch: SlowReplyWatch | None = None
        self._rechecked = False
        self._tune_timer = QTimer(self)  # a child: it moves to the worker's thread with it
        self._tune_timer.setSingleShot(True)
        self._tune_timer.timeout.connect(self._tune_step)

    @Slot(object)
    def load_model(self, request: LoadRequest) -> None:
        """Load the requested model, replacing any loaded one; its thread count is then tuned in the background."""
        self.stop_background()
        self.close_model()
        self._last_load = request
        self._reply_waiting = request.reply_waiting
        try:
            self.model_loading.emit("Preparing the model…")
            choice = request.choice or self._choose_model()
            self._last_load = replace(request, choice=choice)
            name = choice.display_name or choice.path.name
            self.model_loading.emit(f"Loading {name}…")
            hardware = self._probe_hardware()
            key = measurement_key(choice.path.name, _file_size(choice.path))
            stored = request.measured.get(key)
            self._loaded = open_model(
                choice,
                hardware,
                request.prefs,
                measured_threads=stored.threads if stored else None,
                options=EngineOptions(state_cache_bytes=request.state_cache_bytes, cache_dir=self._cache_dir),
                on_plan=lambda plan: self.model_loading.emit(loading_message(name, plan)),
            )
        except Exception as exc:  # noqa: BLE001 - every failure is reported; the app stays up
            log.exception("Loading the model failed")
            self.close_model()
            self.model_failed.emit(describe_error(exc))
            return
        loaded = self._loaded
        log.info("Model ready: %s, %s, %.2f s", loaded.display_name, loaded.plan.summary(), loaded.load_s)
        self.model_ready.emit(
            ModelReady(
                display_name=loaded.display_name,
                is_demo=loaded.is_demo,
                plan=loaded.engine.plan,
                chat_format=loaded.engine.chat_format_name,
                load_s=loaded.load_s,
                gpus=hardware.llama_gpus or hardware.gpus,
            )
        )
        if loaded.plan.device == "CPU" and not request.prefs.n_threads:
            self._cpu, self._model_key = hardware.cpu, key
            if stored is None:
                self._start_tuning()
            else:
                self._watch = SlowReplyWatch(stored.tokens_per_s)

    @Slot(object)
    def generate(self, request: ReplyRequest) -> None:
        """Stream the reply to ``request``, coalescing text into ~60 signals a second at most."""
        if self._reply_waiting is not None:
            self._reply_waiting.clear()
        if self._loaded is None:
            self.reply_failed.emit(request.request_id, "No model is loaded yet.")
            return
        pending: list[str] = []
        last_emit = 0.0
        try:
            stream = self._loaded.engine.stream_chat(request.messages, params=request.params, cancel=request.cancel)
            for text in stream:
                pending.append(text)
                now = time.monotonic()
                if now - last_emit >= CHUNK_INTERVAL_S:
                    self.reply_chunk.emit(request.request_id, "".join(pending))
                    pending.clear()
                    last_emit = now
        except Exception as exc:  # noqa: BLE001
            if pending:
                self.reply_chunk.emit(request.request_id, "".join(pending))
            self.reply_failed.emit(request.request_id, describe_error(exc))
            on_gpu = self._loaded is not None and self._loaded.plan.device != "CPU"
            if isinstance(exc, EngineCrashedError) or (on_gpu and isinstance(exc, GenerationError)):
                self._recover(str(exc), gpu_failed=on_gpu)
            else:
                log.exception("Generation failed")
                self._after_reply(None)
            return
        if pending:
            self.reply_chunk.emit(request.request_id, "".join(pending))
        stats = stream.stats
        log.info(
            "Reply %s: %s, %d prompt tokens (%d evaluated) + %d tokens, %.2f tok/s",
            request.request_id, stats.finish_reason, stats.prompt_tokens, stats.prompt_tokens_evaluated,
            stats.completion_tokens, stats.tokens_per_s,
        )
        if stats.finish_reason == "cancelled":
            self.reply_cancelled.emit(request.request_id, stats)
        else:
            self.reply_finished.emit(request.request_id, stats)
        self._after_reply(stats)

    @Slot()
    def stop_background(self) -> None:
        """Stop measuring thread counts (runs on the worker's thread: at a load, and as the thread finishes)."""
        self._tune_timer.stop()
        self._tuner = None
        self._watch = None
        self._rechecked = False

    def close_model(self) -> None:
        """Stop the engine process and free the model."""
        if self._loaded is not None:
            self._loaded.engine.close()
            self._loaded = None

    # ------------------------------------------------------------ thread tuning

    def _start_tuning(self) -> None:
        tuner = self._make_tuner(self._cpu)
        if len(tuner.candidates) < 2:
            return  # one core: nothing to choose
        self._tuner = tuner
        self._tune_timer.start(IDLE_BEFORE_TUNING_MS)

    def _after_reply(self, stats: ReplyStats | None) -> None:
        """Count the reply against the stored speed; measuring, if under way, waits until the user is idle again."""
        if stats is not None and self._watch is not None and self._watch.observe(
            tokens_per_s=stats.tokens_per_s, completion_tokens=stats.completion_tokens,
            context_used=stats.context_used,
        ):
            log.info("Replies decode clearly slower than the %.1f tokens/s measured; measuring threads again",
                     self._watch.expected_tokens_per_s)
            self._watch, self._rechecked = None, True
            self._start_tuning()
        elif self._tuner is not None:
            self._tune_timer.start(IDLE_BEFORE_TUNING_MS)

    @Slot()
    def _tune_step(self) -> None:
        """Measure one thread count; schedule the next step, or apply the decision once it is made."""
        tuner, loaded = self._tuner, self._loaded
        if tuner is None or loaded is None:
            return
        if self._reply_waiting is not None and self._reply_waiting.is_set():
            return  # the reply is next in the queue; it restarts measuring when it ends
        threads = tuner.next_threads()
        if threads is None:
            self._tuner = None
            return
        pids = [os.getpid(), *([loaded.engine.pid] if getattr(loaded.engine, "pid", None) else [])]
        before = take_cpu_sample(pids)
        try:
            speeds = loaded.engine.tune_threads([threads], cancel=self._reply_waiting)
        except EngineCrashedError as exc:
            self._tuner = None
            self._recover(str(exc))
            return
        except Exception:  # noqa: BLE001 - the model still works with the count it has
            log.exception("Measuring thread counts failed; keeping %d threads", loaded.plan.n_threads)
            self._tuner = None
            return
        if threads not in speeds:
            return  # cut short by a reply, which restarts measuring when it ends
        load = other_programs_load(before, take_cpu_sample(pids), self._cpu.logical_cores)
        if tuner.record(threads, speeds[threads], other_load=load):
            decision = tuner.decision()
            if decision is None:
                self._tune_timer.start(TUNING_STEP_GAP_MS)
            else:
                self._tuner = None
                self._apply_threads(decision)
            return
        if tuner.gave_up:
            log.info("Other programs kept the CPU busy; keeping %d threads and measuring at the next start",
                     loaded.plan.n_threads)
            self._tuner = None
        else:
            log.info("Thread measurement discarded: other programs used %.0f%% of the CPU; trying again later",
                     load * 100)
            self._tune_timer.start(BUSY_RETRY_MS)

    def _apply_threads(self, decision: ThreadDecision) -> None:
        loaded = self._loaded
        log.info("Thread count chosen: %s", decision.reason)
        try:
            if decision.threads != loaded.engine.plan.n_threads:
                loaded.engine.tune_threads([], then_use=decision.threads)
        except EngineCrashedError as exc:
            self._recover(str(exc))
            return
        except Exception:  # noqa: BLE001
            log.exception("Switching to %d threads failed", decision.threads)
            return
        loaded.plan = loaded.engine.plan
        measured = MeasuredThreads(threads=decision.threads, tokens_per_s=round(decision.tokens_per_s, 2),
                                   model=loaded.info.path.name, model_size=loaded.info.file_size)
        if self._last_load is not None:
            self._last_load = replace(self._last_load, measured={**self._last_load.measured,
                                                                 self._model_key: measured})
        if not self._rechecked:
            self._watch = SlowReplyWatch(decision.tokens_per_s)
        self.threads_measured.emit(ThreadsChosen(self._model_key, measured, loaded.engine.plan, decision.reason))

    def _recover(self, reason: str, *, gpu_failed: bool = False) -> None:
        """The engine died (or the GPU failed): say so, then load the model again in a fresh process.

        After a GPU failure (out of memory, say) the reload puts half the layers
        on the GPU, or none once there is nothing left to halve.
        """
        log.error("%s Reloading the model.", reason)
        request = self._last_load
        if gpu_failed and self._loaded is not None and request is not None:
            fewer = fewer_gpu_layers(self._loaded.plan, reason)
            request = replace(request, prefs=replace(request.prefs, gpu_layer_cap=fewer.n_gpu_layers if fewer else 0))
            reason += " Hearth reloads the model with less of it on the GPU."
            self.close_model()
        self.engine_stopped.emit(reason)
        self._loaded = None
        if request is not None:
            self.load_model(request)


def loading_message(name: str, plan: ExecutionPlan) -> str:
    """What the window says while ``name`` loads as ``plan`` says."""
    if plan.engine == "torch" and plan.device != "CPU":
        return f"Preparing the GPU for {name}… (the first time takes longest)"
    if plan.partly_on_gpu:
        return f"Loading {name}: {plan.n_gpu_layers} of {plan.n_layers} layers on the {plan.gpu_name or plan.device}…"
    if plan.device != "CPU":
        return f"Loading {name} on the {plan.gpu_name or plan.device}…"
    return f"Loading {name}…"


def _default_tuner(cpu: CpuFacts) -> ThreadTuner:
    return ThreadTuner(physical_cores=cpu.physical_cores, logical_cores=cpu.logical_cores)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # opening it fails next, with a sentence


class WorkerThread:
    """Runs an :class:`InferenceWorker` on its own QThread and shuts it down in order."""

    def __init__(self, worker: InferenceWorker) -> None:
        self.worker = worker
        self._thread = QThread()
        self._thread.setObjectName("inference")
        worker.moveToThread(self._thread)
        # Emitted on the worker's thread as it ends: its timer is stopped there, where it lives.
        self._thread.finished.connect(worker.stop_background, Qt.ConnectionType.DirectConnection)

    def start(self) -> None:
        """Start the thread's event loop; the worker's slots then run there."""
        self._thread.start()

    def stop(self, timeout_ms: int = 15000) -> bool:
        """Quit the thread once its current job ends, then stop the engine process.

        The caller must first cancel any reply in progress so the job ends
        within a token. Returns False if the thread did not stop in time.
        """
        self._thread.quit()
        stopped = self._thread.wait(timeout_ms)
        if stopped:
            self.worker.close_model()
        else:
            log.error("The inference thread did not stop within %d ms", timeout_ms)
        return stopped
