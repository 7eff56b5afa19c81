"""The worker that owns the model, on its own thread, talking to the window by signals."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QObject, QThread, Signal, Slot

from inference.engine import ExecutionPlan, SamplingParams
from inference.errors import describe_error
from inference.execution import CpuFacts
from inference.session import LoadedModel, ModelChoice, open_model

log = logging.getLogger(__name__)

CHUNK_INTERVAL_S = 0.016  # at most ~60 text signals a second, whatever the decode speed


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
    """Owns the engine. Lives on its own QThread; every slot runs there.

    Signals:
        model_loading(str): a model is being prepared; the argument says which.
        model_ready(ModelReady): the model is loaded and can chat.
        model_failed(str): loading failed; the argument is a sentence for the user.
        reply_chunk(int, str): more text of reply ``request_id``.
        reply_finished(int, ReplyStats): the model ended its reply (or hit max tokens).
        reply_cancelled(int, ReplyStats): the reply was stopped by the user.
        reply_failed(int, str): generation failed; the argument is a sentence.
    """

    model_loading = Signal(str)
    model_ready = Signal(object)
    model_failed = Signal(str)
    reply_chunk = Signal(int, str)
    reply_finished = Signal(int, object)
    reply_cancelled = Signal(int, object)
    reply_failed = Signal(int, str)

    def __init__(self, choose_model: Callable[[], ModelChoice], cpu: CpuFacts) -> None:
        super().__init__()
        self._choose_model = choose_model
        self._cpu = cpu
        self._loaded: LoadedModel | None = None

    @Slot(object)
    def load_model(self, choice: ModelChoice | None) -> None:
        """Load ``choice`` (None: the default model), replacing any loaded one."""
        self.close_model()
        try:
            self.model_loading.emit("Preparing the model…")
            choice = choice or self._choose_model()
            self.model_loading.emit(f"Loading {choice.display_name or choice.path.name}…")
            self._loaded = open_model(choice, self._cpu)
        except Exception as exc:  # noqa: BLE001 - every failure is reported; the app stays up
            log.exception("Loading the model failed")
            self.model_failed.emit(describe_error(exc))
            return
        loaded = self._loaded
        log.info("Model ready: %s, %s, %.2f s", loaded.display_name, loaded.plan.summary(), loaded.load_s)
        self.model_ready.emit(
            ModelReady(
                display_name=loaded.display_name,
                is_demo=loaded.is_demo,
                plan=loaded.plan,
                chat_format=loaded.engine.chat_format.name,
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
            log.exception("Generation failed")
            if pending:
                self.reply_chunk.emit(request.request_id, "".join(pending))
            self.reply_failed.emit(request.request_id, describe_error(exc))
            return
        if pending:
            self.reply_chunk.emit(request.request_id, "".join(pending))
        stats = stream.stats
        log.info(
            "Reply %s: %s, %d prompt + %d tokens, %.2f tok/s",
            request.request_id, stats.finish_reason, stats.prompt_tokens, stats.completion_tokens, stats.tokens_per_s,
        )
        if stats.finish_reason == "cancelled":
            self.reply_cancelled.emit(request.request_id, stats)
        else:
            self.reply_finished.emit(request.request_id, stats)

    def close_model(self) -> None:
        """Free the loaded model. Call from the worker's thread, or after it has stopped."""
        if self._loaded is not None:
            self._loaded.engine.close()
            self._loaded = None


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
        """Quit the thread once its current job ends, then free the model.

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
