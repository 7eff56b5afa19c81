"""Slow work (network, disk, keyring, hashing, fsync) on Python threads, with results back on the GUI thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from gui.messages import describe_error

log = logging.getLogger(__name__)


class BackgroundCall(QObject):
    """One call at a time off the GUI thread; results arrive as queued signals.

    Signals:
        done(object): the call's result.
        failed(str): the call raised; a sentence for the user.
    """

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: threading.Thread | None = None
        self._current: object | None = None

    @property
    def busy(self) -> bool:
        """True while a call runs."""
        return self._thread is not None and self._thread.is_alive()

    def run(self, function: Callable[[], object]) -> None:
        """Start ``function`` on a daemon thread (a call still running is left to finish; its result is dropped)."""
        token = object()
        self._current = token

        def work() -> None:
            try:
                result = function()
            except Exception as exc:  # noqa: BLE001 - reported to the window as a sentence
                log.info("Background call failed: %s", exc)
                if self._current is token:
                    _emit(self.failed, describe_error(exc))
                return
            if self._current is token:
                _emit(self.done, result)

        self._thread = threading.Thread(target=work, name="background-call", daemon=True)
        self._thread.start()

    def wait(self, timeout: float = 5.0) -> None:
        """Wait for the running call to end (tests and shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)


class LatestSaver(QObject):
    """Saves values on a thread of its own, newest wins: a save asked for while one runs replaces any still waiting.

    For small files written with fsync (settings): the GUI thread hands over a
    snapshot and goes on; the disk may take as long as it takes. Saves never
    overlap and the last one asked for is the last one written.

    Args:
        save: writes one value (called on the saver's thread).

    Signals:
        failed(str): a save raised; a sentence for the user.
    """

    failed = Signal(str)

    def __init__(self, save: Callable[[object], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._save = save
        self._lock = threading.Lock()
        self._waiting: list[object] = []  # at most one value: the newest not yet written
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def save(self, value: object) -> None:
        """Write ``value`` soon, off this thread (``value`` must not change afterwards: pass a copy)."""
        with self._lock:
            self._waiting[:] = [value]
            self._idle.clear()
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="background-save", daemon=True)
                self._thread.start()

    def wait(self, timeout: float = 5.0) -> bool:
        """Wait until every save asked for is written (shutdown and tests); False on timeout."""
        return self._idle.wait(timeout)

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._thread = None
                    self._idle.set()
                    return
                value = self._waiting.pop()
            try:
                self._save(value)
            except Exception as exc:  # noqa: BLE001 - reported to the window as a sentence
                log.warning("Background save failed: %s", exc)
                _emit(self.failed, describe_error(exc))


def _emit(signal, value: object) -> None:
    """Emit from a Python thread; a call that outlived its window (a keyring prompt left open) just ends."""
    try:
        signal.emit(value)
    except RuntimeError:  # the receiving QObject's C++ side is already deleted
        log.info("A background result arrived after its window was closed; dropped")
