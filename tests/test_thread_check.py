"""The safety net itself: conftest's thread check fails a test that leaves a thread running, daemon or not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LEAKY_TESTS = '''
import threading
import time


def test_a_daemon_thread_left_running():
    threading.Thread(target=time.sleep, args=(30,), name="left-daemon", daemon=True).start()


def test_a_plain_thread_left_running():
    stop = threading.Event()
    threading.Thread(target=stop.wait, args=(4,), name="left-plain").start()  # ends after the check
    LEFT.append(stop)


def test_a_qthread_left_running(qapp):
    from PySide6.QtCore import QThread

    thread = QThread()
    thread.setObjectName("left-qthread")
    thread.start()
    LEFT.append(thread)


def test_a_thread_that_ends_within_the_grace_passes():
    threading.Thread(target=time.sleep, args=(0.3,), daemon=True).start()


def test_a_stopped_qthread_passes(qapp):
    from PySide6.QtCore import QThread

    thread = QThread()
    thread.start()
    thread.quit()
    thread.wait()


def test_an_allowed_long_lived_thread_passes():
    threading.Thread(target=time.sleep, args=(30,), name="tqdm_monitor", daemon=True).start()


LEFT = []
'''


def test_threads_left_running_fail_the_test_that_left_them(tmp_path: Path) -> None:
    test_file = tmp_path / "test_leaky.py"
    test_file.write_text(LEAKY_TESTS, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", "-rE",
         "--rootdir", str(tmp_path), str(test_file)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    summary = result.stdout.strip().splitlines()[-1]
    assert "6 passed, 3 errors" in summary, result.stdout + result.stderr
    # "ERROR path::name" or, where the terminal is wide enough, "ERROR path::name - message".
    errors = [line.split("::", 1)[-1].split(" - ", 1)[0] for line in result.stdout.splitlines()
              if line.startswith("ERROR")]
    assert errors == ["test_a_daemon_thread_left_running", "test_a_plain_thread_left_running",
                      "test_a_qthread_left_running"]
    for leftover in ("left-daemon (daemon)", "left-plain (non-daemon)", "QThread left-qthread"):
        assert f"threads left running after the test: {leftover}" in result.stdout
