"""A real Secret Service for tests and figures: gnome-keyring on a private D-Bus, unlocked or locked.

Unlike the ``secret_service`` fixture (tests/conftest.py) this is a context
manager that can also be used outside pytest, starts the keyring daemon in
the foreground (so its pid is ours, not found with ``pgrep``), and can open
an X display (Xvfb) for the unlock prompt, so that a locked keyring's prompt
stays open as on a desktop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "test-password"


@dataclass(frozen=True)
class KeyringSession:
    """A running private Secret Service.

    ``env`` is what a child process needs to use it (the bus address, and
    HOME/XDG folders below the given folder); ``prompt_stays_open`` is True
    when an unlock prompt has a display to open on.
    """

    env: dict[str, str]
    data_dir: Path
    prompt_stays_open: bool


def missing_programs() -> str:
    """'' when a real Secret Service can be started here, else what is missing."""
    missing = [name for name in ("gnome-keyring-daemon", "dbus-daemon") if not shutil.which(name)]
    return f"needs {' and '.join(missing)} (Debian gnome-keyring, dbus)" if missing else ""


@contextlib.contextmanager
def private_secret_service(folder: Path, *, prompt_display: bool = False) -> Iterator[KeyringSession]:
    """Start dbus-daemon and gnome-keyring (unlocked) below ``folder``; stop them (and what they started) after.

    Sets ``DBUS_SESSION_BUS_ADDRESS`` in this process while it runs, so the
    ``keyring`` package here talks to it. With ``prompt_display`` and Xvfb
    installed, the bus's activated services (gcr-prompter) get a private X display.
    """
    home = folder / "home"
    (home / ".local" / "share").mkdir(parents=True, exist_ok=True)
    runtime = Path(tempfile.mkdtemp(prefix="hk-"))  # short: it holds Unix sockets
    env = dict(os.environ, HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"),
               XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"),
               XDG_RUNTIME_DIR=str(runtime))
    env.pop("DISPLAY", None)
    xvfb = None
    if prompt_display and shutil.which("Xvfb"):
        read_end, write_end = os.pipe()
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-nolisten", "tcp"], pass_fds=(write_end,),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_end)
        with os.fdopen(read_end) as display:
            env["DISPLAY"] = ":" + display.readline().strip()
    bus = subprocess.run(["dbus-daemon", f"--config-file={_bus_config(runtime)}", "--fork", "--print-address=1",
                          "--print-pid=1"], capture_output=True, text=True, check=True, env=env).stdout.split()
    address, bus_pid = bus[0], int(bus[1])
    env["DBUS_SESSION_BUS_ADDRESS"] = address
    env.pop("DISPLAY", None)  # only the bus's own services (the prompter) get the display
    previous = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
    daemon = None
    try:
        daemon = subprocess.Popen(["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=env, text=True)
        daemon.stdin.write(PASSWORD + "\n")
        daemon.stdin.close()
        _wait_for_service()
        yield KeyringSession(env=env, data_dir=home / ".local" / "share" / "keyrings",
                             prompt_stays_open=xvfb is not None)
    finally:
        if previous is None:
            os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SESSION_BUS_ADDRESS"] = previous
        _stop(bus_pid, daemon)
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)
        shutil.rmtree(runtime, ignore_errors=True)


# The bus may start only the unlock prompter: never a second keyring daemon of its own (without the password,
# its new collection asks for one in a prompt that no one answers).
_PROMPTER_SERVICES = ("org.gnome.keyring.SystemPrompter.service", "org.gnome.keyring.PrivatePrompter.service")


def _bus_config(folder: Path) -> Path:
    """A session bus configuration whose only activatable services are gcr's prompters."""
    services = folder / "services"
    services.mkdir(exist_ok=True)
    for name in _PROMPTER_SERVICES:
        source = Path("/usr/share/dbus-1/services") / name
        if source.exists():
            shutil.copyfile(source, services / name)
    config = folder / "bus.conf"
    config.write_text(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={folder}</listen>
  <servicedir>{services}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
""", encoding="utf-8")
    return config


def lock_default_collection() -> None:
    """Lock the keyring's default collection (reading from it then asks for the password)."""
    import secretstorage

    connection = secretstorage.dbus_init()
    try:
        collection = secretstorage.get_default_collection(connection)
        collection.lock()
        if not collection.is_locked():
            raise RuntimeError("gnome-keyring did not lock its collection")
    finally:
        connection.close()


def _wait_for_service(timeout_s: float = 10.0, collection_timeout_s: float = 10.0) -> None:
    """Wait until the daemon answers, then (for at most ``collection_timeout_s``) for its unlocked login collection.

    The daemon reads the password and creates that collection after it starts
    answering; a secret stored before then makes the Secret Service create a
    collection of its own, whose prompt never closes on a private display.
    """
    import secretstorage
    from secretstorage.collection import Collection

    def ask(question) -> bool:
        try:
            connection = secretstorage.dbus_init()
            try:
                return bool(question(connection))
            finally:
                connection.close()
        except Exception:  # noqa: BLE001 - the bus, the daemon or its collection is not up yet
            return False

    if not _poll(lambda: ask(secretstorage.check_service_availability), timeout_s):
        raise TimeoutError("gnome-keyring did not come up on the private D-Bus")
    _poll(lambda: ask(lambda connection: not Collection(connection).is_locked()), collection_timeout_s)


def _poll(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _stop(bus_pid: int, daemon: subprocess.Popen | None) -> None:
    """Stop what the bus started (the prompter, accessibility services), the keyring daemon, then the bus."""
    import psutil

    try:
        activated = psutil.Process(bus_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        activated = []
    if daemon is not None:
        daemon.terminate()
    for process in activated:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    if daemon is not None:
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)
    psutil.wait_procs(activated, timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.kill(bus_pid, signal.SIGTERM)
