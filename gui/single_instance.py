"""One Hearth per profile: a second start hands over to the running one instead of writing beside it."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)


class SingleInstance(QObject):
    """A lock file in the profile folder plus a local socket to wake the running instance.

    Signals:
        activated(): another start asked this instance to show its window.
    """

    activated = Signal()

    def __init__(self, profile_dir: Path) -> None:
        super().__init__()
        profile_dir.mkdir(parents=True, exist_ok=True)
        self._lock = QLockFile(str(profile_dir / "hearth.lock"))
        self._lock.setStaleLockTime(0)  # a lock left by a crashed Hearth is detected by its dead pid
        self._name = "hearth-" + hashlib.sha256(str(profile_dir.resolve()).encode()).hexdigest()[:16]
        self._server: QLocalServer | None = None

    def acquire(self) -> bool:
        """True if this is the only Hearth on the profile; otherwise wake the other one and return False."""
        if self._lock.tryLock(100):
            self._server = QLocalServer(self)
            QLocalServer.removeServer(self._name)
            self._server.newConnection.connect(self._on_connection)
            if not self._server.listen(self._name):
                log.warning("Could not listen for other Hearth starts: %s", self._server.errorString())
            return True
        socket = QLocalSocket()
        socket.connectToServer(self._name)
        if socket.waitForConnected(1000):
            socket.write(b"activate")
            socket.waitForBytesWritten(1000)
            socket.disconnectFromServer()
        print("Hearth is already running with this profile; its window was brought to the front.")
        return False

    def release(self) -> None:
        """Stop listening and remove the lock."""
        if self._server is not None:
            self._server.close()
        self._lock.unlock()

    @Slot()
    def _on_connection(self) -> None:
        connection = self._server.nextPendingConnection()
        if connection is not None:
            connection.disconnected.connect(connection.deleteLater)
        self.activated.emit()
