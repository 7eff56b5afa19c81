"""A 5 ms timer on the GUI thread that records how late each tick runs: event-loop stalls, measured."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer, Slot

HEARTBEAT_MS = 5


class Heartbeat(QObject):
    """Starts ticking when created; ``lateness_ms`` holds each tick's delay beyond 5 ms."""

    def __init__(self) -> None:
        super().__init__()
        self.lateness_ms: list[float] = []
        self._last = time.perf_counter()
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(HEARTBEAT_MS)
        self._timer.timeout.connect(self._beat)
        self._timer.start()

    def stop(self) -> None:
        """Stop ticking."""
        self._timer.stop()

    @Slot()
    def _beat(self) -> None:
        now = time.perf_counter()
        self.lateness_ms.append(max(0.0, (now - self._last) * 1000 - HEARTBEAT_MS))
        self._last = now
