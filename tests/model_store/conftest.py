"""Fixtures for the model store: a fake Hub serving real GGUF files, and a real Secret Service."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.gguf_factory import write_tiny_gguf
from tests.hub_server import HubBehaviour, HubFile, HubRepo, HubServer


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
