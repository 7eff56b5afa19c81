"""Run a slow call (network, disk, hashing) on a Python thread and get its result back on the GUI thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from inference.errors import describe_error

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
                    self.failed.emit(describe_error(exc))
                return
            if self._current is token:
                self.done.emit(result)

        self._thread = threading.Thread(target=work, name="background-call", daemon=True)
        self._thread.start()

    def wait(self, timeout: float = 5.0) -> None:
        """Wait for the running call to end (tests and shutdown)."""
        if self._thread is not None:
            self._thread.join(timeout)
