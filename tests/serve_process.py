"""``main.py serve`` as a real OpenAI-compatible server for tests: a subprocess on a free port, its URL read from
what it prints."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def hearth_serve(model: Path | None, token: str, home: Path, *, program: Sequence[str] | None = None
                 ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``main.py serve --port 0 --model MODEL`` with ``token``; yields its base URL (…/v1) and the process.

    ``program``: another Hearth to run (the frozen bundle's ``hearth``); ``model=None``: its built-in model.
    """
    env = {key: value for key, value in os.environ.items() if key != "QT_QPA_PLATFORM"}
    env.update(HEARTH_HOME=str(home), HEARTH_API_TOKEN=token, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    command = [*(program or [sys.executable, str(REPO / "main.py")]), "serve", "--port", "0"]
    command += ["--model", str(model)] if model is not None else []
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Serving" in line:
                break
        found = re.search(r"on (http://127\.0\.0\.1:\d+/v1)", "".join(lines))
        if not found:
            raise RuntimeError("main.py serve did not start: " + "".join(lines) +
                               (process.stderr.read() if process.poll() is not None else ""))
        yield found.group(1), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
