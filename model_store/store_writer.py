"""Write conversations on a thread of their own, in order, so the window never waits for the disk.

Every write is committed with ``synchronous=FULL`` (an fsync): cheap on an
SSD, tens of milliseconds on a slow disk, which is why it is not done on the
GUI thread. The window keeps what it shows in memory; to read its own
writes it asks :meth:`StoreWriter.when_done` to tell it once they are
committed (or reads at once when :attr:`StoreWriter.pending` is 0), never
waiting. :meth:`StoreWriter.flush` waits, for tests and tools.

Errors are reported through ``on_error``; a report that itself fails is
logged and the writer goes on, so saving never ends because of its own
error reporting.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from model_store.conversations import ConversationStore
from model_store.errors import DiskFullError

log = logging.getLogger(__name__)

DISK_FULL_RETRY_S = 2.0
_STOP = object()


class StoreWriter:
    """Runs :class:`ConversationStore` write methods on a background thread, one after another.

    A write that fails because the disk is full is retried every two seconds
    (later writes wait behind it, so the order is kept) until it succeeds or
    the writer is closed; ``on_error`` hears about every failure.

    Args:
        path: the conversation database (already created and migrated by the caller's own store).
        on_error: called, on the writer's thread, with each exception a write raised (an exception
            it raises itself is logged and ignored).
    """

    def __init__(self, path: Path, on_error: Callable[[Exception], None]) -> None:
        self._path = path
        self._on_error = on_error
        self._queue: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        self._pending_lock = threading.Lock()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name="conversation-writer", daemon=True)
        self._thread.start()

    def submit(self, method: str, *args, **kwargs) -> None:
        """Queue ``ConversationStore.<method>(*args, **kwargs)``."""
        with self._pending_lock:
            self._pending += 1
        self._queue.put((method, args, kwargs))

    @property
    def pending(self) -> int:
        """Writes queued or running; 0 means the database holds every write submitted so far."""
        with self._pending_lock:
            return self._pending

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the writer's thread once every write queued so far is done (it must not block)."""
        self._queue.put(_Marker(callback))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every write queued so far is done; False if that took longer than ``timeout``.

        It blocks: never call it on the GUI thread (use :meth:`when_done`).
        """
        done = threading.Event()
        self.when_done(done.set)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued writes (giving up on a full disk) and stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._closing.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        store = ConversationStore(self._path)
        try:
            while (item := self._queue.get()) is not _STOP:
                if isinstance(item, _Marker):
                    self._call(item.callback)
                    continue
                try:
                    self._apply(store, *item)
                finally:
                    with self._pending_lock:
                        self._pending -= 1
        finally:
            store.close()

    def _apply(self, store: ConversationStore, method: str, args: tuple, kwargs: dict) -> None:
        while True:
            try:
                getattr(store, method)(*args, **kwargs)
                return
            except DiskFullError as exc:
                self._call(self._on_error, exc)
                if self._closing.wait(DISK_FULL_RETRY_S):
                    return
            except Exception as exc:  # noqa: BLE001 - reported; the writer keeps serving later writes
                log.exception("Saving %s failed", method)
                self._call(self._on_error, exc)
                return

    @staticmethod
    def _call(function: Callable, *args) -> None:
        """Run a caller's callback; what it raises is logged, never allowed to end the writer."""
        try:
            function(*args)
        except Exception:  # noqa: BLE001 - the writer must outlive a broken callback
            log.exception("A storage callback failed; saving goes on")


class _Marker:
    """A queue entry that runs ``callback`` once the writes queued before it are done."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
