"""Write conversations on a thread of their own, in order, so the window never waits for the disk.

Every write is committed with ``synchronous=FULL`` (an fsync): cheap on an
SSD, tens of milliseconds on a slow disk, which is why it is not done on the
GUI thread. The window keeps what it shows in memory; before reading the
database it calls :meth:`StoreWriter.flush` so it reads its own writes.
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
        on_error: called, on the writer's thread, with each exception a write raised.
    """

    def __init__(self, path: Path, on_error: Callable[[Exception], None]) -> None:
        self._path = path
        self._on_error = on_error
        self._queue: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conversation-writer", daemon=True)
        self._thread.start()

    def submit(self, method: str, *args, **kwargs) -> None:
        """Queue ``ConversationStore.<method>(*args, **kwargs)``."""
        self._queue.put((method, args, kwargs))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every write queued so far is done; False if that took longer than ``timeout``."""
        done = threading.Event()
        self._queue.put(done)
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
                if isinstance(item, threading.Event):
                    item.set()
                    continue
                self._apply(store, *item)
        finally:
            store.close()

    def _apply(self, store: ConversationStore, method: str, args: tuple, kwargs: dict) -> None:
        while True:
            try:
                getattr(store, method)(*args, **kwargs)
                return
            except DiskFullError as exc:
                self._on_error(exc)
                if self._closing.wait(DISK_FULL_RETRY_S):
                    return
            except Exception as exc:  # noqa: BLE001 - reported; the writer keeps serving later writes
                log.exception("Saving %s failed", method)
                self._on_error(exc)
                return
