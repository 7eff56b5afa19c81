"""The window's side of the model owner: requests in by slots, the owner's events out as Qt signals.

The model's owner is :class:`inference.model_owner.ModelOwner` (Qt-free, its
own thread); the local API server is another of its clients. Replies for a
provider's model (``ReplyRequest.remote``) do not queue there: each runs on
a thread of its own (:class:`inference.remote_replies.RemoteReplies`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from gui.messages import describe_error
from inference.engine import ReplyStats
from inference.hardware import CpuFacts, Hardware
from inference.model_owner import LoadRequest, ModelOwner, ModelReady, OwnerEvents, ReplyRequest, ThreadsChosen
from inference.remote_replies import RemoteReplies
from inference.session import ModelChoice
from inference.thread_tuning import ThreadTuner

log = logging.getLogger(__name__)

CHUNK_INTERVAL_S = 0.016  # at most ~60 text signals a second, whatever the decode speed


class InferenceWorker(QObject):
    """The window's handle on the model owner. Lives on the GUI thread; its signals arrive queued from the owner's.

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
        owner: ModelOwner | None = None,
    ) -> None:
        super().__init__()
        self.owner = owner or ModelOwner(choose_model, probe_hardware, cache_dir, events=_SignalEvents(self),
                                         make_tuner=make_tuner)
        self.remote = RemoteReplies()

    @Slot(object)
    def load_model(self, request: LoadRequest) -> None:
        """Queue a load of ``request``'s model, replacing the loaded one."""
        self.owner.load(request)

    @Slot(object)
    def generate(self, request: ReplyRequest) -> None:
        """Queue the reply to ``request``: the local model's, or the provider's that ``request.remote`` names."""
        sink = _SignalSink(self, request.request_id)
        if request.remote is not None:
            self.remote.start(request, sink, chunk_interval_s=CHUNK_INTERVAL_S)
        else:
            self.owner.submit(request, sink, source="window", chunk_interval_s=CHUNK_INTERVAL_S)

    def close_model(self) -> None:
        """Free the model (after the owner has stopped)."""
        self.owner.close_model()


class _SignalEvents(OwnerEvents):
    """The owner's events as the worker's signals (emitted on the owner's thread, delivered queued)."""

    def __init__(self, worker: InferenceWorker) -> None:
        self._worker = worker

    def model_loading(self, message: str) -> None:
        self._worker.model_loading.emit(message)

    def model_ready(self, ready: ModelReady) -> None:
        self._worker.model_ready.emit(ready)

    def model_failed(self, error: Exception) -> None:
        self._worker.model_failed.emit(describe_error(error))

    def threads_measured(self, chosen: ThreadsChosen) -> None:
        self._worker.threads_measured.emit(chosen)

    def engine_stopped(self, reason: str) -> None:
        self._worker.engine_stopped.emit(reason)


class _SignalSink:
    """One reply's text and end as the worker's signals."""

    def __init__(self, worker: InferenceWorker, request_id: int) -> None:
        self._worker = worker
        self._id = request_id

    def chunk(self, text: str) -> None:
        self._worker.reply_chunk.emit(self._id, text)

    def finished(self, stats: ReplyStats) -> None:
        signal = self._worker.reply_cancelled if stats.finish_reason == "cancelled" else self._worker.reply_finished
        signal.emit(self._id, stats)

    def failed(self, error: Exception) -> None:
        self._worker.reply_failed.emit(self._id, describe_error(error))


class WorkerThread:
    """Starts the worker's model owner and shuts it down in order."""

    def __init__(self, worker: InferenceWorker) -> None:
        self.worker = worker

    def start(self) -> None:
        """Start the owner's thread; queued requests then run there."""
        self.worker.owner.start()

    def stop(self, timeout_ms: int = 15000) -> bool:
        """Stop the owner once its current job ends, and the provider replies; the engine process stops too.

        The caller must first cancel any reply in progress so the job ends
        within a token. Returns False if the owner did not stop in time.
        """
        self.worker.remote.stop(timeout_ms / 1000)
        return self.worker.owner.stop(timeout_ms / 1000)
