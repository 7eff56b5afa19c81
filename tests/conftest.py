"""Shared fixtures. Every test gets its own Hearth folders; no test may leave a thread running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from model_store.builtin_model import ensure_builtin_model, packaged_gemma_chunks  # noqa: E402
from model_store.paths import AppPaths  # noqa: E402
from model_store.registry import ModelRegistry  # noqa: E402
from tests.gguf_factory import write_tiny_gguf  # noqa: E402
from tests.hub_server import HubBehaviour, HubFile, HubRepo, HubServer  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send Hearth's folders and the Hugging Face cache to this test's tmp_path."""
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path / "hearth-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")  # the test Hub speaks plain HTTP


# How long a thread the test started may take to end after the test (a worker finishing its last step).
THREAD_GRACE_S = 2.0
# Threads that may outlive the test that started them, by name, with the reason. Keep it short: each entry
# is a thread that lives as long as the process by design. Hearth's own threads are never here.
LONG_LIVED_THREADS = {
    # tqdm starts one monitor thread per process with its first progress bar (transformers and
    # huggingface_hub make them while loading or converting) and keeps it for every later bar.
    "tqdm_monitor": "tqdm's process-wide progress-bar monitor",
}
# QThreads a test left running that would not stop when asked: kept referenced, as deleting one aborts the process.
_UNSTOPPABLE_QTHREADS: list = []


@pytest.fixture(autouse=True)
def _no_dangling_threads(monkeypatch: pytest.MonkeyPatch):
    """Fail a test that leaves a Python thread or a QThread running.

    Every thread Hearth starts is a daemon (so that it never holds the process
    open), so daemon threads count too. A Python thread started during the test
    gets a short grace to end; a QThread is tracked from its ``start()``.
    Threads Qt or C code starts and that merely call into Python show up as
    ``threading._DummyThread`` (alive for ever, never joinable): the QThread
    check covers those.
    """
    from PySide6.QtCore import QThread

    started_qthreads: list[tuple[QThread, str]] = []
    qthread_start = QThread.start

    def tracked_start(thread: QThread, *args) -> None:
        started_qthreads.append((thread, thread.objectName() or type(thread).__name__))
        qthread_start(thread, *args)

    monkeypatch.setattr(QThread, "start", tracked_start)
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_GRACE_S
    leftover = []
    for thread in threading.enumerate():
        if thread in before or isinstance(thread, threading._DummyThread) or thread.name in LONG_LIVED_THREADS:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leftover.append(f"{thread.name} ({'daemon' if thread.daemon else 'non-daemon'})")
    for thread, name in started_qthreads:
        try:
            running = thread.isRunning() and not thread.wait(max(0, int((deadline - time.monotonic()) * 1000)))
        except RuntimeError:  # its C++ object is already deleted: it is not running
            continue
        if running:
            leftover.append(f"QThread {name}")
            thread.quit()
            if not thread.wait(2000):
                _UNSTOPPABLE_QTHREADS.append(thread)
    assert not leftover, f"threads left running after the test: {', '.join(leftover)}"


@pytest.fixture
def app_paths(tmp_path: Path) -> AppPaths:
    """Hearth's folders under tmp_path, created."""
    paths = AppPaths.under(tmp_path / "hearth")
    paths.create()
    return paths


@pytest.fixture(scope="session")
def builtin_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real built-in model, installed once per test session."""
    paths = AppPaths.under(tmp_path_factory.mktemp("builtin"))
    paths.create()
    model = ensure_builtin_model(ModelRegistry(paths.registry_file), paths.models_dir, packaged_gemma_chunks())
    return model.path


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A small valid GGUF file (no real weights) written with the gguf package."""
    return write_tiny_gguf(tmp_path / "tiny.gguf")

@pytest.fixture
def gguf_files(tmp_path: Path) -> dict[str, Path]:
    """Small real GGUF files, plus a ~3 MB one for progress and resume tests."""
    folder = tmp_path / "served"
    folder.mkdir()
    small = write_tiny_gguf(folder / "small.gguf")
    big = folder / "big.gguf"
    with big.open("wb") as out:
        out.write(small.read_bytes())
        out.write(os.urandom(3 << 20))
    return {"small": small, "big": big}


def hub_repos(files: dict[str, Path]) -> list[HubRepo]:
    return [
        HubRepo("acme/Tiny-Chat-GGUF", [
            HubFile("tiny-chat.Q4_K_M.gguf", files["small"]),
            HubFile("tiny-chat.Q8_0.gguf", files["big"]),
            HubFile("README.md", files["small"]),
        ], downloads=900, likes=5, gguf={"total": 1_000_000, "architecture": "llama", "context_length": 4096}),
        HubRepo("acme/Split-GGUF", [
            HubFile("split-Q4_K_M-00001-of-00002.gguf", files["small"]),
            HubFile("split-Q4_K_M-00002-of-00002.gguf", files["big"]),
        ], downloads=10, likes=50),
        HubRepo("acme/Gated-GGUF", [HubFile("gated.Q4_0.gguf", files["small"])], downloads=100, likes=1),
        HubRepo("evil/Traversal-GGUF", [HubFile("../../escape.gguf", files["small"])], downloads=1),
    ]


@pytest.fixture
def hub(gguf_files: dict[str, Path]):
    """A running fake Hub; change ``hub.behaviour`` to make it misbehave."""
    with HubServer(hub_repos(gguf_files), HubBehaviour(gated={"acme/Gated-GGUF": "hf_good_token"})) as server:
        yield server


@pytest.fixture
def secret_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real Secret Service: a private D-Bus session with gnome-keyring, unlocked. Yields the keyring backend."""
    if not shutil.which("gnome-keyring-daemon") or not shutil.which("dbus-daemon"):
        pytest.skip("needs Debian's gnome-keyring and dbus (the test command installs them when it can)")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / ".local" / "share"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    (tmp_path / "runtime").mkdir(mode=0o700)
    bus = subprocess.run(["dbus-daemon", "--session", "--fork", "--print-address=1", "--print-pid=1"],
                         capture_output=True, text=True, check=True).stdout.split()
    address, pid = bus[0], int(bus[1])
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    subprocess.run(["gnome-keyring-daemon", "--unlock", "--components=secrets"], input="test-password\n",
                   capture_output=True, text=True, check=True)
    keyring_pid = subprocess.run(["pgrep", "-n", "gnome-keyring-d"], capture_output=True, text=True).stdout.strip()
    from keyring.backends import SecretService

    yield SecretService.Keyring()
    if keyring_pid:
        os.kill(int(keyring_pid), signal.SIGTERM)
    os.kill(pid, signal.SIGTERM)
