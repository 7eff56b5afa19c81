"""The one owner of the local model, without Qt: loads, a queue of reply requests, cancel, engine restarts.

Every front end talks to the model through a :class:`ModelOwner`: the
window (through ``gui/inference_worker.py``, a thin Qt adapter) and the
local API server (``inference/api``). The owner runs one thread; the engine
itself runs in a child process (:class:`~inference.process_engine.ProcessEngine`).

How requests are ordered: a queue ordered first by source, then by arrival.
The window's requests (loads and replies) come before the API's, so a chat
in the window waits at most for the one API reply already being written
(which the server caps at its ``max_tokens``), never for the API's queue.
Within a source it is first come, first served. A request cancelled while it
waits ends at once, without running.

The owner also chooses the CPU thread count: a model starts with one thread
per physical core, and while nothing is queued it measures other counts in
short steps (one count per step). A request that arrives during a step stops
it within a token. The decision itself is :mod:`inference.thread_tuning`'s.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from inference.engine import EngineOptions, ExecutionPlan, ReplySink, ReplyStats, SamplingParams
from inference.errors import EngineCrashedError, GenerationError
from inference.hardware import CpuFacts, GpuDevice, Hardware
from inference.selector import Preferences, fewer_gpu_layers
from inference.session import LoadedModel, ModelChoice, open_model
from inference.thinking import template_opens_thinking, template_reads_reasoning, thinking_format_for
from inference.thread_tuning import (
    MeasuredThreads,
    SlowReplyWatch,
    ThreadDecision,
    ThreadTuner,
    measurement_key,
    other_programs_load,
    take_cpu_sample,
)

log = logging.getLogger(__name__)

IDLE_BEFORE_TUNING_S = 3.0  # measure only after this long without a request (the user may send another)
TUNING_STEP_GAP_S = 0.1  # between measurement steps
BUSY_RETRY_S = 30.0  # after a round spoiled by other programs using the CPU

WINDOW = "window"
API = "api"
_PRIORITY = {WINDOW: 0, API: 1}


@dataclass(frozen=True)
class LoadRequest:
    """Which model to load and how. ``choice=None`` means the default model.

    ``measured`` holds the thread counts chosen earlier on this CPU, by
    :func:`~inference.thread_tuning.measurement_key`; a model without one is
    measured in the background (unless ``prefs`` sets the threads).
    """

    choice: ModelChoice | None
    prefs: Preferences
    measured: Mapping[str, MeasuredThreads] = field(default_factory=dict)
    state_cache_bytes: int = 1 << 30


@dataclass(frozen=True)
class ModelReady:
    """What front ends show about a loaded model. ``model_id`` names it to API clients."""

    display_name: str
    is_demo: bool
    plan: ExecutionPlan
    chat_format: str
    load_s: float
    gpus: tuple[GpuDevice, ...] = ()  # the GPUs the engines here can use (Settings lists them)
    model_id: str = ""
    # How the model thinks before answering, from its chat template: "" (it does not), "think-tags", "harmony".
    thinking: str = ""
    thinking_replay: bool = False  # its template reads earlier thinking back (``reasoning_content``)
    thinking_opens: bool = False  # its template opens <think> in the prompt: replies start inside the thinking


@dataclass(frozen=True)
class ThreadsChosen:
    """A thread count chosen from measurements: what to store under ``model_key``, the plan now, and why."""

    model_key: str
    measured: MeasuredThreads
    plan: ExecutionPlan
    reason: str


@dataclass(frozen=True)
class ReplyRequest:
    """One reply to generate. The asker keeps ``cancel`` and sets it to stop (queued or running).

    ``remote`` names a provider's model to answer instead of the local one: an
    ``inference.remote_engine.RemoteTarget``, or a function that returns one (called on the
    reply's own thread). The owner itself only runs local replies (see ``inference.remote_replies``).
    """

    request_id: int
    messages: Sequence[dict[str, str]]
    params: SamplingParams
    cancel: threading.Event
    remote: object | None = None


class OwnerEvents:
    """What the owner tells its front end about the model; called on the owner's thread. Each does nothing here."""

    def model_loading(self, message: str) -> None:
        """A model is being prepared; ``message`` says which."""

    def model_ready(self, ready: ModelReady) -> None:
        """The model is loaded and can chat."""

    def model_failed(self, error: Exception) -> None:
        """Loading failed."""

    def threads_measured(self, chosen: ThreadsChosen) -> None:
        """Measurements chose the thread count for the loaded model."""

    def engine_stopped(self, reason: str) -> None:
        """The engine process died (or the GPU failed); a reload follows."""


CANCELLED_WHILE_QUEUED = ReplyStats(finish_reason="cancelled", prompt_tokens=0, completion_tokens=0,
                                    ttft_s=0.0, total_s=0.0)


@dataclass(order=True)
class _Job:
    priority: int
    number: int
    run: Callable[[], None] = field(compare=False)
    abandon: Callable[[], None] = field(compare=False, default=lambda: None)


class ModelOwner:
    """Owns the loaded model on its own thread; every method here is safe to call from any thread.

    Args:
        choose_model: the default model, for a load request without a choice.
        probe_hardware: what this computer has (called at each load).
        cache_dir: where converted weights are kept between runs.
        events: the front end's listener (default: nobody listens).
        make_tuner: plans the thread measurements for a CPU (tests make one that ignores other programs' load).
    """

    def __init__(
        self,
        choose_model: Callable[[], ModelChoice],
        probe_hardware: Callable[[], Hardware],
        cache_dir: Path | None = None,
        *,
        events: OwnerEvents | None = None,
        make_tuner: Callable[[CpuFacts], ThreadTuner] | None = None,
    ) -> None:
        self._choose_model = choose_model
        self._probe_hardware = probe_hardware
        self._cache_dir = cache_dir
        self._events = events or OwnerEvents()
        self._make_tuner = make_tuner or _default_tuner
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs: list[_Job] = []
        self._numbers = itertools.count()
        self._work_waiting = threading.Event()  # a request is queued: a thread measurement gives way
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._loads_pending = 0
        self._ready: ModelReady | None = None
        self._load_error: Exception | None = None
        # Owned by the owner's thread:
        self._loaded: LoadedModel | None = None
        self._last_load: LoadRequest | None = None
        self._cpu: CpuFacts | None = None
        self._model_key = ""
        self._tuner: ThreadTuner | None = None
        self._watch: SlowReplyWatch | None = None
        self._rechecked = False
        self._tune_at: float | None = None

    # ------------------------------------------------------------- front ends

    def start(self) -> None:
        """Start the owner's thread."""
        self._thread = threading.Thread(target=self._run, name="model-owner", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Finish the job in progress, end the queued requests unanswered, stop the thread, free the model.

        Cancel the reply in progress first so it ends within a token.
        Returns False if the thread did not stop in time (the model is then left to the process's exit).
        """
        with self._lock:
            self._stopping = True
            self._work_waiting.set()
            self._changed.notify_all()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("The model owner did not stop within %.0f s", timeout_s)
            return False
        self._close_model()
        return True

    def load(self, request: LoadRequest) -> None:
        """Queue a load of ``request``'s model, replacing the loaded one; its threads are then tuned in the background."""
        with self._lock:
            self._loads_pending += 1
        self._queue(WINDOW, lambda: self._load(request), self._load_abandoned)

    def submit(self, request: ReplyRequest, sink: ReplySink, *, source: str = WINDOW,
               chunk_interval_s: float = 0.0) -> None:
        """Queue a reply. Its text goes to ``sink``, in chunks at most every ``chunk_interval_s`` seconds.

        ``source`` is ``"window"`` or ``"api"``: the window's requests go first.
        """
        def abandon() -> None:
            sink.failed(GenerationError("Hearth is shutting down; the reply was not written."))

        self._queue(source, lambda: self._reply(request, sink, chunk_interval_s), abandon)

    @property
    def ready(self) -> ModelReady | None:
        """The loaded model, or None while none is (loading, failed, or not asked for yet)."""
        with self._lock:
            return self._ready

    @property
    def engine_pid(self) -> int | None:
        """The engine process's id while a model is loaded in one (for measurements and crash tests)."""
        loaded = self._loaded
        return getattr(loaded.engine, "pid", None) if loaded is not None else None

    def wait_for_model(self, timeout_s: float) -> ModelReady:
        """Wait until the queued loads are done; the model, or the last load's error raised.

        Raises:
            TimeoutError: still loading after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._loads_pending or (self._ready is None and self._load_error is None):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"The model was not ready after {timeout_s:.0f} s.")
                self._changed.wait(remaining)
            if self._ready is not None:
                return self._ready
            raise self._load_error

    def close_model(self) -> None:
        """Free the model now (only when the owner's thread is not running, e.g. after :meth:`stop`)."""
        self._close_model()

    # ------------------------------------------------------------ the thread

    def _queue(self, source: str, run: Callable[[], None], abandon: Callable[[], None]) -> None:
        with self._lock:
            if self._stopping:
                abandoned = True
            else:
                abandoned = False
                heapq.heappush(self._jobs, _Job(_PRIORITY[source], next(self._numbers), run, abandon))
                self._work_waiting.set()
                self._changed.notify_all()
        if abandoned:
            abandon()

    def _next_job(self) -> _Job | None:
        """The next job; None when it is time for a thread measurement step instead."""
        with self._changed:
            while not self._jobs and not self._stopping:
                if self._tune_at is None:
                    self._changed.wait()
                    continue
                remaining = self._tune_at - time.monotonic()
                if remaining <= 0:
                    self._tune_at = None
                    return None
                self._changed.wait(remaining)
            if self._stopping:
                waiting, self._jobs = self._jobs, []
                stop = _Job(-1, -1, lambda: None)
                stop.abandon = lambda: [job.abandon() for job in waiting]
                return stop
            job = heapq.heappop(self._jobs)
            if not self._jobs:
                self._work_waiting.clear()
            return job

    def _run(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                self._tune_step()
            elif job.priority < 0:
                job.abandon()
                return
            else:
                job.run()

    def _set_state(self, ready: ModelReady | None, error: Exception | None, *, load_done: bool = False) -> None:
        with self._changed:
            self._ready, self._load_error = ready, error
            if load_done:
                self._loads_pending -= 1
            self._changed.notify_all()

    def _load_abandoned(self) -> None:
        self._set_state(None, GenerationError("Hearth is shutting down."), load_done=True)

    # ------------------------------------------------------------- loading

    def _load(self, request: LoadRequest, *, counted: bool = True) -> None:
        self._stop_tuning()
        self._close_model()
        self._set_state(None, None)
        self._last_load = request
        try:
            self._events.model_loading("Preparing the model…")
            choice = request.choice or self._choose_model()
            self._last_load = replace(request, choice=choice)
            name = choice.display_name or choice.path.name
            self._events.model_loading(f"Loading {name}…")
            hardware = self._probe_hardware()
            key = measurement_key(choice.path.name, _file_size(choice.path))
            stored = request.measured.get(key)
            self._loaded = open_model(
                choice,
                hardware,
                request.prefs,
                measured_threads=stored.threads if stored else None,
                options=EngineOptions(state_cache_bytes=request.state_cache_bytes, cache_dir=self._cache_dir),
                on_plan=lambda plan: self._events.model_loading(loading_message(name, plan)),
            )
        except Exception as exc:  # noqa: BLE001 - every failure is reported; the front ends stay up
            log.exception("Loading the model failed")
            self._close_model()
            self._set_state(None, exc, load_done=counted)
            self._events.model_failed(exc)
            return
        loaded = self._loaded
        log.info("Model ready: %s, %s, %.2f s", loaded.display_name, loaded.plan.summary(), loaded.load_s)
        ready = ModelReady(
            display_name=loaded.display_name,
            is_demo=loaded.is_demo,
            plan=loaded.engine.plan,
            chat_format=loaded.engine.chat_format_name,
            load_s=loaded.load_s,
            gpus=hardware.llama_gpus or hardware.gpus,
            model_id=choice.path.stem,
            thinking=thinking_format_for(loaded.info.chat_template),
            thinking_replay=template_reads_reasoning(loaded.info.chat_template),
            thinking_opens=template_opens_thinking(loaded.info.chat_template),
        )
        self._set_state(ready, None, load_done=counted)
        self._events.model_ready(ready)
        if loaded.plan.device == "CPU" and not request.prefs.n_threads:
            self._cpu, self._model_key = hardware.cpu, key
            if stored is None:
                self._start_tuning()
            else:
                self._watch = SlowReplyWatch(stored.tokens_per_s)

    def _close_model(self) -> None:
        if self._loaded is not None:
            self._loaded.engine.close()
            self._loaded = None

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
            self._close_model()
        self._events.engine_stopped(reason)
        self._loaded = None
        self._set_state(None, None)
        if request is not None:
            self._load(request, counted=False)

    # ------------------------------------------------------------- replies

    def _reply(self, request: ReplyRequest, sink: ReplySink, chunk_interval_s: float) -> None:
        """Stream the reply to ``request`` into ``sink``, text coalesced to one chunk per ``chunk_interval_s``."""
        if request.cancel.is_set():
            sink.finished(CANCELLED_WHILE_QUEUED)
            return
        if self._loaded is None:
            sink.failed(GenerationError("No model is loaded yet."))
            return
        pending: list[str] = []
        last_emit = 0.0
        try:
            stream = self._loaded.engine.stream_chat(request.messages, params=request.params, cancel=request.cancel)
            for text in stream:
                pending.append(text)
                now = time.monotonic()
                if now - last_emit >= chunk_interval_s:
                    sink.chunk("".join(pending))
                    pending.clear()
                    last_emit = now
        except Exception as exc:  # noqa: BLE001
            if pending:
                sink.chunk("".join(pending))
            sink.failed(exc)
            on_gpu = self._loaded is not None and self._loaded.plan.device != "CPU"
            if isinstance(exc, EngineCrashedError) or (on_gpu and isinstance(exc, GenerationError)):
                self._recover(str(exc), gpu_failed=on_gpu)
            else:
                log.warning("Generation failed: %s", exc)
                self._after_reply(None)
            return
        if pending:
            sink.chunk("".join(pending))
        stats = stream.stats
        log.info(
            "Reply %s: %s, %d prompt tokens (%d evaluated) + %d tokens, %.2f tok/s",
            request.request_id, stats.finish_reason, stats.prompt_tokens, stats.prompt_tokens_evaluated,
            stats.completion_tokens, stats.tokens_per_s,
        )
        sink.finished(stats)
        self._after_reply(stats)

    # ------------------------------------------------------------ thread tuning

    def _stop_tuning(self) -> None:
        self._tune_at = None
        self._tuner = None
        self._watch = None
        self._rechecked = False

    def _start_tuning(self) -> None:
        tuner = self._make_tuner(self._cpu)
        if len(tuner.candidates) < 2:
            return  # one core: nothing to choose
        self._tuner = tuner
        self._tune_at = time.monotonic() + IDLE_BEFORE_TUNING_S

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
            self._tune_at = time.monotonic() + IDLE_BEFORE_TUNING_S

    def _tune_step(self) -> None:
        """Measure one thread count; schedule the next step, or apply the decision once it is made."""
        tuner, loaded = self._tuner, self._loaded
        if tuner is None or loaded is None or self._work_waiting.is_set():
            return  # a request is next; it restarts measuring when it ends
        threads = tuner.next_threads()
        if threads is None:
            self._tuner = None
            return
        pids = [os.getpid(), *([loaded.engine.pid] if getattr(loaded.engine, "pid", None) else [])]
        before = take_cpu_sample(pids)
        try:
            speeds = loaded.engine.tune_threads([threads], cancel=self._work_waiting)
        except EngineCrashedError as exc:
            self._tuner = None
            self._recover(str(exc))
            return
        except Exception:  # noqa: BLE001 - the model still works with the count it has
            log.exception("Measuring thread counts failed; keeping %d threads", loaded.plan.n_threads)
            self._tuner = None
            return
        if threads not in speeds:
            return  # cut short by a request, which restarts measuring when it ends
        load = other_programs_load(before, take_cpu_sample(pids), self._cpu.logical_cores)
        if tuner.record(threads, speeds[threads], other_load=load):
            decision = tuner.decision()
            if decision is None:
                self._tune_at = time.monotonic() + TUNING_STEP_GAP_S
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
            self._tune_at = time.monotonic() + BUSY_RETRY_S

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
        with self._lock:
            if self._ready is not None:
                self._ready = replace(self._ready, plan=loaded.plan)
        measured = MeasuredThreads(threads=decision.threads, tokens_per_s=round(decision.tokens_per_s, 2),
                                   model=loaded.info.path.name, model_size=loaded.info.file_size)
        if self._last_load is not None:
            self._last_load = replace(self._last_load, measured={**self._last_load.measured,
                                                                 self._model_key: measured})
        if not self._rechecked:
            self._watch = SlowReplyWatch(decision.tokens_per_s)
        self._events.threads_measured(ThreadsChosen(self._model_key, measured, loaded.engine.plan, decision.reason))


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
