"""The worker that drives the engine process, on its own thread, talking to the window by signals."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from inference.engine import EngineOptions, ExecutionPlan, SamplingParams
from inference.errors import EngineCrashedError, describe_error
from inference.hardware import Hardware
from inference.selector import Preferences
from inference.session import LoadedModel, ModelChoice, open_model

log = logging.getLogger(__name__)

CHUNK_INTERVAL_S = 0.016  # at most ~60 text signals a second, whatever the decode speed


@dataclass(frozen=True)
class LoadRequest:
    """Which model to load and how. ``choice=None`` means the default model.

    ``tune_threads`` asks the engine to measure the fastest thread count
    after loading on the CPU (done once per machine; the result comes back
    through ``threads_measured``).
    """

    choice: ModelChoice | None
    prefs: Preferences
    measured_threads: int | None = None
    state_cache_bytes: int = 1 << 30
    tune_threads: bool = False


@dataclass(frozen=True)
class ModelReady:
    """What the window shows about a loaded model."""

    display_name: str
    is_demo: bool
    plan: ExecutionPlan
    chat_format: str
    load_s: float


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

    Signals:
        model_loading(str): a model is being prepared; the argument says which.
        model_ready(ModelReady): the model is loaded and can chat.
        model_failed(str): loading failed; the argument is a sentence for the user.
        threads_measured(int): the thread count measured fastest on this machine.
        engine_stopped(str): the engine process died; the argument says why. A reload follows.
        reply_chunk(int, str): more text of reply ``request_id``.
        reply_finished(int, ReplyStats): the model ended its reply (or hit max tokens).
        reply_cancelled(int, ReplyStats): the reply was stopped by the user.
        reply_failed(int, str): generation failed; the argument is a sentence.
    """

    model_loading = Signal(str)
    model_ready = Signal(object)
    model_failed = Signal(str)
    threads_measured = Signal(int)
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
    ) -> None:
        super().__init__()
        self._choose_model = choose_model
        self._probe_hardware = probe_hardware
        self._cache_dir = cache_dir
        self._loaded: LoadedModel | None = None
        self._last_load: LoadRequest | None = None

    @Slot(object)
    def load_model(self, request: LoadRequest) -> None:
        """Load the requested model, replacing any loaded one."""
        self.close_model()
        self._last_load = request
        try:
            self.model_loading.emit("Preparing the model…")
            choice = request.choice or self._choose_model()
            self._last_load = replace(request, choice=choice, tune_threads=False)
            self.model_loading.emit(f"Loading {choice.display_name or choice.path.name}…")
            self._loaded = open_model(
                choice,
                self._probe_hardware(),
                request.prefs,
                measured_threads=request.measured_threads,
                options=EngineOptions(state_cache_bytes=request.state_cache_bytes, cache_dir=self._cache_dir),
            )
            if request.tune_threads and self._loaded.plan.device == "CPU" and not request.prefs.n_threads:
                self._tune_threads()
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
            )
        )

    @Slot(object)
    def generate(self, request: ReplyRequest) -> None:
        """Stream the reply to ``request``, coalescing text into ~60 signals a second at most."""
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
            if isinstance(exc, EngineCrashedError):
                self._recover(str(exc))
            else:
                log.exception("Generation failed")
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

    def close_model(self) -> None:
        """Stop the engine process and free the model."""
        if self._loaded is not None:
            self._loaded.engine.close()
            self._loaded = None

    def _tune_threads(self) -> None:
        cores = self._loaded.plan.n_threads
        candidates = sorted({max(1, cores // 2), max(1, cores - 1), cores})
        if len(candidates) < 2:
            return
        self.model_loading.emit("Measuring the fastest thread count for this computer…")
        speeds = self._loaded.engine.tune_threads(candidates)
        best = max(speeds, key=speeds.__getitem__)
        if self._last_load is not None:
            self._last_load = replace(self._last_load, measured_threads=best)
        self.threads_measured.emit(best)

    def _recover(self, reason: str) -> None:
        """The engine died: say so, then load the same model again in a fresh process."""
        log.error("%s Reloading the model.", reason)
        self.engine_stopped.emit(reason)
        self._loaded = None
        if self._last_load is not None:
            self.load_model(self._last_load)


class WorkerThread:
    """Runs an :class:`InferenceWorker` on its own QThread and shuts it down in order."""

    def __init__(self, worker: InferenceWorker) -> None:
        self.worker = worker
        self._thread = QThread()
        self._thread.setObjectName("inference")
        worker.moveToThread(self._thread)

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
