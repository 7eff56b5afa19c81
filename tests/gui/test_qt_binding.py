"""The Qt binding Hearth pins must keep Python's reference counts intact under heavy signalling."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class Emitter(QObject):
    number = Signal(int)
    thing = Signal(object)


def test_emitting_does_not_drop_references() -> None:
    """PySide6 6.12.0 lost a reference to emit()'s return value each call; on Python 3.11 that aborts the app."""
    emitter = Emitter()
    received = [0]

    def count(_value: object) -> None:
        received[0] += 1

    emitter.thing.connect(count)
    before = (sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None))
    for index in range(20_000):
        emitter.number.emit(index)
        emitter.thing.emit(None)
    after = (sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None))
    assert received[0] == 20_000
    assert all(abs(a - b) < 100 for a, b in zip(after, before)), (before, after)
