"""Does Hearth's access token reach the disk? Use it for real, kill the app mid-reply, search everything it touched.

    python tests/bad_inputs/secrets_audit.py

The only secret Hearth keeps is the Hugging Face access token
(model_store/credentials.py; nothing else goes to the keyring). The audit:

1. starts a real Secret Service (gnome-keyring on a private D-Bus,
   tests/keyring_daemon.py) and a local Hub (tests/hub_server.py) whose
   gated repository answers 401 unless ``Authorization: Bearer <token>``;
2. starts the real app (``main.main``, tests/bad_inputs/secrets_driver.py)
   on a fresh profile with HOME, TMPDIR, HF_HOME, the XDG folders and its
   working directory (where a core file would go) all below one folder; the
   token arrives on stdin, as if typed into Models › Access token;
3. the app saves the token (keyring), opens the gated repository and
   downloads its file (both need the token), then streams a long reply;
4. the app's whole process group (window and engine) is SIGKILLed mid-reply;
5. every regular file below that folder is searched (settings, the
   conversation database with its WAL and shared memory, logs, caches, the
   temp dir, the Hugging Face home, the app's stdout and stderr, any core
   file, $XDG_RUNTIME_DIR, and the keyring daemon's own, encrypted, store) for the token's
   bytes: raw, UTF-16, hex, base64 and URL-safe base64 at every alignment
   (so inside ``Basic`` credentials too), and percent-encoded.

The figure is ``secret_hits_on_disk`` (0). The last line printed is one JSON object.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import random
import secrets
import signal
import sqlite3
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.keyring_daemon import missing_programs, private_secret_service  # noqa: E402

DRIVER = Path(__file__).resolve().parent / "secrets_driver.py"
GATED_REPO = "acme/Gated-GGUF"
GATED_FILE = "gated.Q4_0.gguf"
REPLY_CHARS_BEFORE_KILL = 200
RUN_TIMEOUT_S = 240


def new_token() -> str:
    """A token shaped like Hugging Face's (``hf_`` and 34 letters), fresh for each run."""
    return "hf_" + "".join(secrets.choice(string.ascii_letters) for _ in range(34))


def encoded_forms(token: str) -> dict[str, bytes]:
    """Byte strings any of which, found in a file, means the token is in it.

    Base64 depends on where the token starts inside the encoded data, so each
    of the three alignments contributes the characters that come from the
    token's bits alone (standard and URL-safe alphabets).
    """
    raw = token.encode()
    forms = {
        "raw": raw,
        "utf-16-le": token.encode("utf-16-le"),
        "utf-16-be": token.encode("utf-16-be"),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "percent-encoded": quote(token, safe="").encode(),
        "form-encoded": quote_plus(token).encode(),
    }
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw)
        first = -(-offset * 8 // 6)  # the first character made only of the token's bits
        last = (offset + len(raw)) * 8 // 6  # one past the last such character
        forms[f"base64@{offset}"] = encoded[first:last]
        forms[f"base64url@{offset}"] = base64.urlsafe_b64encode(b"\0" * offset + raw)[first:last]
    return forms


def search_tree(root: Path, forms: dict[str, bytes]) -> dict:
    """Every regular file below ``root`` (no symlinks followed), searched for every form."""
    hits: list[dict[str, str]] = []
    files: list[str] = []
    size = 0
    for folder, _, names in os.walk(root, followlinks=False):
        for name in names:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                continue  # sockets, FIFOs
            try:
                data = path.read_bytes()
            except OSError:
                continue
            files.append(str(path.relative_to(root)))
            size += len(data)
            for form_name, form in forms.items():
                if form in data:
                    hits.append({"file": str(path.relative_to(root)), "form": form_name})
    return {"hits": hits, "files": files, "bytes": size}


def _lines(stream) -> queue.Queue:
    """The stream's lines, read on a thread (None at its end), so waiting for one can time out."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=read, name="app-stdout", daemon=True).start()
    return lines


def _read_until(lines: queue.Queue, wanted, deadline: float, seen: list[str]) -> str:
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"the app did not get there in time; its last lines: {seen[-5:]}") from None
        if line is None:
            raise RuntimeError(f"the app ended early; its last lines: {seen[-5:]}")
        seen.append(line)
        if wanted(line):
            return line


def secret_figures() -> dict:
    """Run the audit (under a minute) and return its figures; ``secret_hits_on_disk`` must be 0.

    Two unclean ends, each on a fresh profile with a fresh token: ``killed``
    (SIGKILL to the process group mid-reply: the figure the issue asks for)
    and ``crashed`` (SIGABRT to the window's process mid-reply with core dumps
    allowed, the way a crash ends it). ``core_control`` shows that the search
    does find a token in a core file here: a plain Python process holding a
    token, aborted the same way (None where the system sends cores elsewhere,
    e.g. to systemd-coredump: then ``crashed`` proves less).
    """
    why_not = missing_programs()
    if why_not:
        return {"secret_hits_on_disk": None, "not_measured": why_not}
    from tests.gguf_factory import write_random_gemma3, write_tiny_gguf

    with tempfile.TemporaryDirectory(prefix="hearth-secrets-src-") as inputs:
        sources = Path(inputs)  # our inputs, outside the searched folders
        # A big vocabulary makes the end-of-turn token rare: the reply is long enough to be cut.
        model = write_random_gemma3(sources / "long-gemma3-it.gguf", vocab_size=32_000)
        served = write_tiny_gguf(sources / "gated.gguf")
        killed = one_run(model, served, crash=False)
        crashed = one_run(model, served, crash=True)
    control = core_control()
    return {
        "secret_hits_on_disk": killed["hits_on_disk"] + crashed["hits_on_disk"],
        "killed": killed,
        "crashed": crashed,
        "core_control": control,
        "core_pattern": _core_pattern(),
    }


def _allow_cores() -> None:
    import resource  # Unix only, like the rest of this audit

    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _core_pattern() -> str:
    try:
        return Path("/proc/sys/kernel/core_pattern").read_text().strip()
    except OSError:
        return ""


def core_control() -> dict | None:
    """A process that holds a token and aborts with core dumps on: is there a core here, with the token in it?"""
    token = new_token()
    with tempfile.TemporaryDirectory(prefix="hearth-core-control-") as tmp:
        root = Path(tmp)
        child = subprocess.run(
            [sys.executable, "-c", "import os, sys; token = sys.stdin.readline().strip(); os.abort()"],
            input=token + "\n", text=True, cwd=root, preexec_fn=_allow_cores, capture_output=True, timeout=60)
        if not any(path.is_file() for path in root.rglob("core*")):
            return None
        found = search_tree(root, encoded_forms(token))
        return {"exit": child.returncode, "hits": len(found["hits"]), "files": found["files"]}


def one_run(model: Path, served: Path, *, crash: bool) -> dict:
    """Start the app on a fresh profile, let it save and use a token, end it uncleanly mid-reply, search."""
    from keyring.backends import SecretService

    from model_store.credentials import ACCOUNT, SERVICE
    from model_store.paths import AppPaths
    from model_store.settings import Settings, SettingsStore
    from tests.hub_server import HubBehaviour, HubFile, HubRepo, HubServer

    token = new_token()
    with tempfile.TemporaryDirectory(prefix="hearth-secrets-") as tmp:
        root = Path(tmp)
        home, profile, temp, hf_home, cwd = (root / name for name in ("home", "profile", "tmp", "hf-home", "cwd"))
        for folder in (home, profile, temp, hf_home, cwd):
            folder.mkdir()
        SettingsStore(AppPaths.under(profile).settings_file).save(
            Settings(n_threads=2, max_tokens=4000, temperature=0.9, seed=3))
        repos = [HubRepo(GATED_REPO, [HubFile(GATED_FILE, served)], downloads=10, likes=1)]
        with private_secret_service(root / "keyring") as keyring_session, \
                HubServer(repos, HubBehaviour(gated={GATED_REPO: token})) as hub:
            env = dict(keyring_session.env, HOME=str(home), TMPDIR=str(temp), HF_HOME=str(hf_home),
                       XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"),
                       HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_XET="1", QT_QPA_PLATFORM="offscreen",
                       PYTHONDONTWRITEBYTECODE="1")
            env.pop("HEARTH_HOME", None)
            seen: list[str] = []
            with (root / "app-stderr.txt").open("wb") as stderr:
                child = subprocess.Popen(
                    [sys.executable, str(DRIVER), "--home", str(profile), "--model", str(model)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=cwd,
                    start_new_session=True,  # its own process group: the window and its engine end together
                    preexec_fn=_allow_cores if crash else None,
                )
                try:
                    child.stdin.write(token + "\n")
                    child.stdin.close()
                    lines = _lines(child.stdout)
                    deadline = time.monotonic() + RUN_TIMEOUT_S
                    downloaded = _read_until(lines, lambda line: line.startswith("step downloaded"), deadline, seen)
                    line = _read_until(lines, lambda line: line.startswith("chunk ")
                                       and int(line.split()[1]) >= REPLY_CHARS_BEFORE_KILL, deadline, seen)
                    time.sleep(random.uniform(0.0, 0.3))
                    if crash:
                        os.kill(child.pid, signal.SIGABRT)
                        child.wait(60)  # a core file, if any, is written before the process is gone
                    os.killpg(child.pid, signal.SIGKILL)
                    reply_chars = int(line.split()[1])
                except (RuntimeError, TimeoutError) as exc:
                    stderr.flush()
                    tail = (root / "app-stderr.txt").read_text(errors="replace")[-2000:]
                    raise type(exc)(f"{exc}\nThe app's stderr ends with:\n{tail}") from exc
                finally:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)
                    child.wait(30)
                    (root / "app-stdout.txt").write_text("\n".join(seen) + "\n")
            time.sleep(0.5)  # let the kernel finish tearing the processes down
            in_keyring = SecretService.Keyring().get_password(SERVICE, ACCOUNT) == token
            forms = encoded_forms(token)
            found = search_tree(root, forms)  # before anything opens the database (a checkpoint would change it)
            runtime = search_tree(Path(keyring_session.env["XDG_RUNTIME_DIR"]), forms)  # removed with the bus
        data_dir = AppPaths.under(profile).data_dir
        gated_requests = [path for method, path, _ in hub.log if GATED_REPO in path and method == "GET"]
        wal = data_dir / "conversations.db-wal"
        wal_bytes = wal.stat().st_size if wal.exists() else 0
        database = sqlite3.connect(data_dir / "conversations.db")
        unfinished = database.execute("SELECT count(*) FROM messages WHERE status = 'streaming'").fetchone()[0]
        database.close()
        installed = data_dir / "models" / "hub" / GATED_REPO / GATED_FILE
        return {
            "hits_on_disk": len(found["hits"]) + len(runtime["hits"]),
            "hits": found["hits"] + [dict(hit, file="$XDG_RUNTIME_DIR/" + hit["file"]) for hit in runtime["hits"]],
            "files_searched": len(found["files"]) + len(runtime["files"]),
            "searched": found["files"] + ["$XDG_RUNTIME_DIR/" + name for name in runtime["files"]],
            "bytes_searched": found["bytes"] + runtime["bytes"],
            "forms_searched": sorted(forms),
            "token_in_keyring": in_keyring,
            "gated_requests_served": len(gated_requests),
            "gated_download_verified": installed.exists() and installed.read_bytes() == served.read_bytes(),
            "app_said": downloaded,
            "ended_with": "SIGABRT to the window's process (core dumps allowed), then SIGKILL to the group" if crash
            else "SIGKILL to the process group (window and engine)",
            "exit_status": child.returncode,
            "reply_chars_before_end": reply_chars,
            "unfinished_reply_in_database": unfinished >= 1,
            "wal_bytes_at_end": wal_bytes,
            "core_files": [str(p.relative_to(root)) for p in root.rglob("core*") if p.is_file()],
        }


if __name__ == "__main__":
    print(json.dumps(secret_figures()), flush=True)
