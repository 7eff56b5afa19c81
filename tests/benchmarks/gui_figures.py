"""GUI figures for run.py: event-loop lateness, Stop latency, surviving engine kills.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/gui_figures.py --builtin PATH --long PATH [--quick]

Drives the real window (build_ui: window, worker thread, engine process).
``--builtin`` is the built-in model (used for the lateness figure while it
loads and answers); ``--long`` is a model that writes long replies (a random
Gemma 3 with the built-in's shapes), so Stop and kills land mid-reply.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from PySide6.QtWidgets import QApplication  # noqa: E402

from gui.app import build_ui, shut_down  # noqa: E402
from inference.hardware import CpuFacts, probe_hardware  # noqa: E402
from inference.session import ModelChoice  # noqa: E402
from model_store.settings import Settings, SettingsStore  # noqa: E402
from tests.gui.heartbeat import Heartbeat  # noqa: E402

def wait_until(app: QApplication, condition, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        app.processEvents()
        time.sleep(0.001)


def open_window(model: Path, home: Path, **settings):
    store = SettingsStore(home / "settings.json")
    cpu = CpuFacts.probe()
    store.save(Settings(n_threads=cpu.physical_cores, **settings))  # a fixed count: no measuring in the background
    choice = ModelChoice(path=model, display_name=model.stem)
    ui = build_ui(choose_model=lambda: choice, probe_hardware=probe_hardware, settings=store,
                  conversations_file=home / "conversations.db")
    ui.window.show()
    return ui


def send(app: QApplication, window, text: str) -> None:
    window.panel.composer.setPlainText(text)
    window.panel.send_message()


def reply_has_text(window) -> bool:
    """A reply is streaming and some of its text has arrived."""
    return window.panel.active is not None and bool(window.panel.session.branch()[-1].content)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def lateness_while_loading_and_streaming(app: QApplication, model: Path, home: Path, replies: int) -> dict:
    heartbeat = Heartbeat()
    ui = open_window(model, home, max_tokens=64, seed=1)
    window = ui.window
    try:
        wait_until(app, window.panel.send_button.isEnabled)
        for index in range(replies):
            send(app, window, f"Tell me something about the number {index}.")
            wait_until(app, lambda: window.panel.active is None)
        lateness = heartbeat.lateness_ms
        return {"beats": len(lateness), "p95_ms": round(percentile(lateness, 0.95), 1),
                "max_ms": round(max(lateness), 1)}
    finally:
        shut_down(ui)


def stop_latency(app: QApplication, model: Path, home: Path, trials: int) -> list[float]:
    ui = open_window(model, home, max_tokens=3000, temperature=0.9)
    window = ui.window
    latencies = []
    try:
        wait_until(app, window.panel.send_button.isEnabled)
        for index in range(trials):
            window.apply_settings(replace(window._settings, seed=index))
            send(app, window, f"Story number {index}, please.")
            wait_until(app, lambda: reply_has_text(window))
            time.sleep(0.05)
            app.processEvents()
            pressed = time.perf_counter()
            window.stop_reply()
            wait_until(app, lambda: window.panel.active is None)
            latencies.append((time.perf_counter() - pressed) * 1000)
    finally:
        shut_down(ui)
    return latencies


def survive_engine_kills(app: QApplication, model: Path, home: Path, kills: int) -> dict:
    ui = open_window(model, home, max_tokens=3000, temperature=0.9, seed=2)
    window = ui.window
    survived = 0
    try:
        wait_until(app, window.panel.send_button.isEnabled)
        for index in range(kills):
            send(app, window, f"A long story, part {index}.")
            wait_until(app, lambda: reply_has_text(window))
            os.kill(ui.worker_thread.worker.owner.engine_pid, signal.SIGKILL)
            wait_until(app, lambda: window.panel.active is None)
            interrupted = "[Interrupted]" in window.panel.chat_view.toPlainText()
            explained = "The engine stopped: it was killed" in window.panel.chat_view.toPlainText()
            wait_until(app, window.panel.send_button.isEnabled)  # reloaded in a fresh engine process
            window.apply_settings(replace(window._settings, max_tokens=8))
            send(app, window, "Still there?")
            wait_until(app, lambda: window.panel.active is None)
            answered = window.status_message.text() == "Ready"
            window.apply_settings(replace(window._settings, max_tokens=3000))
            survived += interrupted and explained and answered
    finally:
        shut_down(ui)
    return {"survived": survived, "kills": kills, "messages_kept": len(window.panel.session.branch())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--builtin", type=Path, required=True)
    parser.add_argument("--long", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    app = QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        ui = lateness_while_loading_and_streaming(app, args.builtin, home, replies=3 if args.quick else 8)
        stops = stop_latency(app, args.long, home, trials=5 if args.quick else 20)
        kills = survive_engine_kills(app, args.long, home, kills=5 if args.quick else 20)
    print(json.dumps({
        "ui_gap_p95_ms": ui["p95_ms"], "ui_gap_max_ms": ui["max_ms"], "ui_beats": ui["beats"],
        "cancel_p95_ms": round(percentile(stops, 0.95), 1), "cancel_median_ms": round(statistics.median(stops), 1),
        "cancel_trials": len(stops),
        "engine_crash_survived": f"{kills['survived']}/{kills['kills']}",
    }))


if __name__ == "__main__":
    main()
