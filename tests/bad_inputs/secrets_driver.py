"""The real Hearth (``main.main``) with a script at the keyboard: save a token, use it on the Hub, chat until killed.

    QT_QPA_PLATFORM=offscreen python tests/bad_inputs/secrets_driver.py --home DIR --model PATH < token

The token arrives on stdin (as if typed), never in argv or the environment.
The script waits for the model, opens Models › Access token, saves the
token (the keyring), searches the Hub, opens the gated repository and
downloads its file (both need the token), then asks for a long reply and
prints ``step <name>`` and ``chunk <characters so far>`` lines (flushed) so
that secrets_audit.py knows when to SIGKILL it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from PySide6.QtCore import QObject, QTimer, Slot  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

GATED_REPO = "acme/Gated-GGUF"


def say(text: str) -> None:
    print(text, flush=True)


def until(condition):
    """Yield (give the event loop a turn) until ``condition()`` is true; return its value."""
    while not (value := condition()):
        yield
    return value


def script(app: QApplication, token: str):
    """The user's actions, one generator step per timer tick."""
    from gui.main_window import MainWindow

    window = yield from until(lambda: next((w for w in app.topLevelWidgets() if isinstance(w, MainWindow)), None))
    yield from until(lambda: window.panel.model_name is not None)
    say("step model-ready")
    window.open_model_manager()
    manager = window._model_manager
    manager.tabs.setCurrentIndex(3)
    manager.token_box.setText(token)
    manager._save_token()
    yield from until(lambda: "saved in your system keyring" in manager.token_status.text())
    say("step token-saved")
    manager.search("Gated")
    yield from until(lambda: manager.results.count() >= 1 and manager.find_status.text() != "Searching…")
    manager.open_repo(GATED_REPO)
    yield from until(lambda: manager.files.count() >= 1 or "gated" in manager.find_status.text())
    say(f"step repo-opened {manager.files.count()}")
    manager.files.setCurrentRow(0)
    manager._download_selected()
    yield from until(lambda: any(row[2].text().startswith(("Installed", "The ")) for row in manager._rows.values()))
    say("step downloaded " + "; ".join(row[2].text() for row in manager._rows.values()))
    manager.close()
    window.new_conversation()
    panel = window.panel
    panel.composer.setPlainText("Tell me a very long story about a lighthouse keeper and her owl.")
    panel.send_message()
    say("step reply-asked")
    while True:
        if panel.active is not None and panel.session.branch():
            say(f"chunk {len(panel.session.branch()[-1].content)}")
        yield


class Driver(QObject):
    """Runs :func:`script` on a 20 ms timer."""

    def __init__(self, app: QApplication, token: str) -> None:
        super().__init__()
        self._steps = script(app, token)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._timer.start(20)

    @Slot()
    def _tick(self) -> None:
        try:
            next(self._steps)
        except StopIteration:
            self._timer.stop()


def main() -> int:
    token = sys.stdin.readline().strip()
    app = QApplication(sys.argv[:1])
    driver = Driver(app, token)
    del token
    import main as hearth

    code = hearth.main(sys.argv[1:])
    driver.deleteLater()
    return code


if __name__ == "__main__":
    sys.exit(main())
