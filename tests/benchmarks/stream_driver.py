"""The real Hearth window, streaming replies forever: the process storage_figures.py kills.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/stream_driver.py --home DIR --model PATH

Starts a new chat, sends a message, waits for the reply, sends the next, forever. For every chunk
of reply text it prints ``chunk <unix time> <message id> <characters so far>``
(flushed at once), so the killer knows how much text existed when it struck.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from PySide6.QtCore import QObject, QTimer, Slot  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gui.app import build_ui  # noqa: E402
from inference.hardware import CpuFacts, probe_hardware  # noqa: E402
from inference.session import ModelChoice  # noqa: E402
from model_store.settings import Settings, SettingsStore  # noqa: E402


class Reporter(QObject):
    """Prints the length of the reply text each time a chunk reaches the window."""

    def __init__(self, window) -> None:
        super().__init__()
        self._window = window

    @Slot(int, str)
    def on_chunk(self, _request_id: int, _text: str) -> None:
        panel = self._window.panel
        if panel.active is not None:
            reply = panel.session.branch()[-1]
            print(f"chunk {time.time():.4f} {reply.id} {len(reply.content)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    args = parser.parse_args()
    app = QApplication(sys.argv)
    cpu = CpuFacts.probe()
    settings = SettingsStore(args.home / "settings.json")
    settings.save(Settings(max_tokens=400, temperature=0.9, n_threads=cpu.physical_cores))
    choice = ModelChoice(path=args.model, display_name="long")
    ui = build_ui(choose_model=lambda: choice, probe_hardware=probe_hardware, settings=settings,
                  conversations_file=args.home / "conversations.db")
    window = ui.window
    reporter = Reporter(window)
    ui.worker_thread.worker.reply_chunk.connect(reporter.on_chunk)  # after the window's own slot
    counter = iter(range(10**9))
    window.new_conversation()  # a fresh chat per run: prompts stay short, the database keeps growing

    def send_next() -> None:
        panel = window.panel
        if panel.active is None and panel.model_name is not None:
            panel.composer.setPlainText(f"Tell me story number {next(counter)}.")
            panel.send_message()

    timer = QTimer()
    timer.timeout.connect(send_next)
    timer.start(50)
    window.show()
    app.exec()


if __name__ == "__main__":
    main()
