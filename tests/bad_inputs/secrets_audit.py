"""Do Hearth's secrets reach the disk? Use each for real, kill the app mid-reply, search everything it touched.

    python tests/bad_inputs/secrets_audit.py

Hearth keeps three kinds of secret, all in the system keyring under the
``Hearth`` service and nowhere else: the Hugging Face access token
(model_store/credentials.py, ``huggingface-token``), the local API server's
bearer token (model_store/api_token.py, ``api-token``, which Hearth makes
itself) and each provider's API key (model_store/providers.py,
``provider-key:<id>``). The audit:

1. starts a real Secret Service (gnome-keyring on a private D-Bus,
   tests/keyring_daemon.py), a local Hub (tests/hub_server.py) whose gated
   repository answers 401 unless ``Authorization: Bearer <token>``, and a
   provider: a real OpenAI-compatible server (Hearth's own ``ApiServer`` on
   the test model, in this process) that answers 401 without its key;
2. starts the real app (``main.main``, tests/bad_inputs/secrets_driver.py)
   on a fresh profile with HOME, TMPDIR, HF_HOME, the XDG folders and its
   working directory (where a core file would go) all below one folder; the
   Hugging Face token and the provider's key arrive on stdin, as if typed;
3. the app saves the token (keyring), opens the gated repository and
   downloads its file (both need the token); switches the local API server
   on, reads its token from the keyring and answers a real
   ``/v1/chat/completions`` request made with it; adds the provider in
   File › Providers… (the key is typed there, lists the server's models and
   is saved in the background) and answers a conversation through it; then
   streams a long reply from the local model;
4. the app's whole process group (window and engine) is SIGKILLed mid-reply
   (and, in a second run, its window SIGABRTed first, core dumps allowed);
5. the API token is read back from the private keyring, and every regular
   file below that folder is searched (settings, the provider list, the
   conversation database with its WAL and shared memory, logs, caches, the
   temp dir, the Hugging Face home, the app's stdout and stderr, any core
   file, $XDG_RUNTIME_DIR, and the keyring daemon's own, encrypted, store)
   for each secret's bytes: raw, UTF-16, hex, base64 and URL-safe base64 at
   every alignment (so inside ``Basic`` credentials too), and percent-encoded.

The figure is ``secret_hits_on_disk`` (0: all three secrets, both runs);
each run also says, per secret, its hits and whether it is in the keyring.
The last line printed is one JSON object.
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
PROVIDER_NAME = "Audit provider"  # the name the driver gives it (secrets_driver.py)
REPLY_CHARS_BEFORE_KILL = 200
RUN_TIMEOUT_S = 240
PROVIDER_MAX_TOKENS = 24  # the provider's reply only has to arrive; the long reply is the local model's
SECRETS_SEARCHED = ("hf_token", "api_token", "provider_key")


def new_token() -> str:
    """A token shaped like Hugging Face's (``hf_`` and 34 letters), fresh for each run."""
    return "hf_" + "".join(secrets.choice(string.ascii_letters) for _ in range(34))


def new_provider_key() -> str:
    """An API key shaped like OpenAI's (``sk-`` and 40 letters and digits), fresh for each run."""
    return "sk-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


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


def search_for_secrets(root: Path, named: dict[str, str]) -> dict:
    """:func:`search_tree` for several secrets at once (one read of each file); each hit names its secret."""
    forms = {f"{name}/{form}": data for name, secret in named.items() for form, data in encoded_forms(secret).items()}
    found = search_tree(root, forms)
    found["hits"] = [dict(zip(("secret", "form"), hit["form"].split("/", 1)), file=hit["file"])
                     for hit in found["hits"]]
    return found


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
        if line.startswith("step failed"):
            raise RuntimeError(f"the app could not do a step: {line}")
        if wanted(line):
            return line


def secret_figures() -> dict:
    """Run the audit (under a minute) and return its figures; ``secret_hits_on_disk`` must be 0.

    Two unclean ends, each on a fresh profile with fresh secrets: ``killed``
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
    from inference.hardware import probe_hardware
    from inference.model_owner import LoadRequest, ModelOwner
    from inference.selector import Preferences
    from inference.session import ModelChoice
    from tests.gguf_factory import write_random_gemma3, write_tiny_gguf

    with tempfile.TemporaryDirectory(prefix="hearth-secrets-src-") as inputs:
        sources = Path(inputs)  # our inputs, outside the searched folders
        # A big vocabulary makes the end-of-turn token rare: the reply is long enough to be cut.
        model = write_random_gemma3(sources / "long-gemma3-it.gguf", vocab_size=32_000)
        served = write_tiny_gguf(sources / "gated.gguf")
        # The provider's model, loaded once here; each run serves it behind its own fresh key.
        provider_owner = ModelOwner(lambda: ModelChoice(path=model), probe_hardware)
        provider_owner.start()
        try:
            provider_owner.load(LoadRequest(None, Preferences(n_threads=1)))
            provider_model = provider_owner.wait_for_model(60).model_id
            killed = one_run(model, served, provider_owner, provider_model, crash=False)
            crashed = one_run(model, served, provider_owner, provider_model, crash=True)
        finally:
            provider_owner.stop()
    control = core_control()
    return {
        "secret_hits_on_disk": killed["hits_on_disk"] + crashed["hits_on_disk"],
        "secrets_searched": list(SECRETS_SEARCHED),
        "hits_by_secret": {name: killed["secrets"][name]["hits_on_disk"] + crashed["secrets"][name]["hits_on_disk"]
                           for name in SECRETS_SEARCHED},
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


def one_run(model: Path, served: Path, provider_owner, provider_model: str, *, crash: bool) -> dict:
    """Start the app on a fresh profile, let it save and use three secrets, end it uncleanly mid-reply, search."""
    import httpx
    from keyring.backends import SecretService

    from inference.api.config import ServerConfig
    from inference.api.server import ApiServer
    from model_store.api_token import ACCOUNT as API_ACCOUNT
    from model_store.credentials import ACCOUNT, SERVICE
    from model_store.paths import AppPaths
    from model_store.providers import key_account
    from model_store.settings import Settings, SettingsStore
    from tests.hub_server import HubBehaviour, HubFile, HubRepo, HubServer

    token, provider_key = new_token(), new_provider_key()
    provider = ApiServer(provider_owner, ServerConfig(token=provider_key, port=0, max_tokens_cap=PROVIDER_MAX_TOKENS))
    provider.start()
    with tempfile.TemporaryDirectory(prefix="hearth-secrets-") as tmp, contextlib.ExitStack() as stops:
        stops.callback(provider.stop)
        provider_refuses = httpx.get(f"{provider.url}/models", timeout=10).status_code  # without the key
        root = Path(tmp)
        home, profile, temp, hf_home, cwd = (root / name for name in ("home", "profile", "tmp", "hf-home", "cwd"))
        for folder in (home, profile, temp, hf_home, cwd):
            folder.mkdir()
        paths = AppPaths.under(profile)
        SettingsStore(paths.settings_file).save(Settings(n_threads=2, max_tokens=4000, temperature=0.9, seed=3))
        repos = [HubRepo(GATED_REPO, [HubFile(GATED_FILE, served)], downloads=10, likes=1)]
        with private_secret_service(root / "keyring") as keyring_session, \
                HubServer(repos, HubBehaviour(gated={GATED_REPO: token})) as hub:
            env = dict(keyring_session.env, HOME=str(home), TMPDIR=str(temp), HF_HOME=str(hf_home),
                       XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"),
                       HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_XET="1", QT_QPA_PLATFORM="offscreen",
                       PYTHONDONTWRITEBYTECODE="1")
            env.pop("HEARTH_HOME", None)
            env.pop("HEARTH_API_TOKEN", None)  # the app must make its own, in the keyring
            seen: list[str] = []
            with (root / "app-stderr.txt").open("wb") as stderr:
                child = subprocess.Popen(
                    [sys.executable, str(DRIVER), "--home", str(profile), "--model", str(model),
                     "--provider-url", provider.url, "--provider-model", provider_model],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=cwd,
                    start_new_session=True,  # its own process group: the window and its engine end together
                    preexec_fn=_allow_cores if crash else None,
                )
                try:
                    child.stdin.write(token + "\n" + provider_key + "\n")
                    child.stdin.close()
                    lines = _lines(child.stdout)
                    deadline = time.monotonic() + RUN_TIMEOUT_S
                    downloaded = _read_until(lines, lambda line: line.startswith("step downloaded"), deadline, seen)
                    api_refused = _read_until(lines, lambda line: line.startswith("step api-refused"), deadline, seen)
                    api_used = _read_until(lines, lambda line: line.startswith("step api-used"), deadline, seen)
                    provider_saved = _read_until(lines, lambda line: line.startswith("step provider-saved"),
                                                 deadline, seen)
                    provider_used = _read_until(lines, lambda line: line.startswith("step provider-used"),
                                                deadline, seen)
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
            provider_id = provider_saved.split()[2]
            keyring = SecretService.Keyring()
            api_token = keyring.get_password(SERVICE, API_ACCOUNT)  # made by the app: only the keyring knows it
            in_keyring = {"hf_token": keyring.get_password(SERVICE, ACCOUNT) == token,
                          "api_token": bool(api_token),
                          "provider_key": keyring.get_password(SERVICE, key_account(provider_id)) == provider_key}
            named = {"hf_token": token, "api_token": api_token or "", "provider_key": provider_key}
            if not api_token:
                del named["api_token"]  # nothing to search for: in_keyring says why the run fails
            found = search_for_secrets(root, named)  # before anything opens the database (a checkpoint would change it)
            runtime = search_for_secrets(Path(keyring_session.env["XDG_RUNTIME_DIR"]), named)  # removed with the bus
        hits = found["hits"] + [dict(hit, file="$XDG_RUNTIME_DIR/" + hit["file"]) for hit in runtime["hits"]]
        data_dir = paths.data_dir
        gated_requests = [path for method, path, _ in hub.log if GATED_REPO in path and method == "GET"]
        wal = data_dir / "conversations.db-wal"
        wal_bytes = wal.stat().st_size if wal.exists() else 0
        database = sqlite3.connect(data_dir / "conversations.db")
        unfinished = database.execute("SELECT count(*) FROM messages WHERE status = 'streaming'").fetchone()[0]
        provider_replies = database.execute(
            "SELECT count(*) FROM messages WHERE role = 'assistant' AND content != '' AND model = ?",
            (f"{provider_model} · {PROVIDER_NAME}",)).fetchone()[0]
        database.close()
        installed = data_dir / "models" / "hub" / GATED_REPO / GATED_FILE
        _, _, provider_chars, provider_status = provider_used.split()
        return {
            "hits_on_disk": len(hits),
            "hits": hits,
            "secrets": {name: {"hits_on_disk": sum(hit["secret"] == name for hit in hits),
                               "in_keyring": in_keyring[name]} for name in SECRETS_SEARCHED},
            "files_searched": len(found["files"]) + len(runtime["files"]),
            "searched": found["files"] + ["$XDG_RUNTIME_DIR/" + name for name in runtime["files"]],
            "bytes_searched": found["bytes"] + runtime["bytes"],
            "forms_searched": sorted(encoded_forms(token)),
            "gated_requests_served": len(gated_requests),
            "gated_download_verified": installed.exists() and installed.read_bytes() == served.read_bytes(),
            "app_said": downloaded,
            "api_used": _status(api_used.split()[2]),
            "api_without_token": _status(api_refused.split()[2]),
            "provider_without_key": provider_refuses,
            "provider_models_listed": next((int(seen_line.split()[2]) for seen_line in seen
                                            if seen_line.startswith("step provider-models")), 0),
            "provider_reply_chars": int(provider_chars),
            "provider_reply_status": provider_status,
            "provider_reply_in_database": provider_replies,
            "providers_file": _providers_file(paths.providers_file, hits, profile),
            "settings_file": _settings_file(paths.settings_file, hits, profile),
            "ended_with": "SIGABRT to the window's process (core dumps allowed), then SIGKILL to the group" if crash
            else "SIGKILL to the process group (window and engine)",
            "exit_status": child.returncode,
            "reply_chars_before_end": reply_chars,
            "unfinished_reply_in_database": unfinished >= 1,
            "wal_bytes_at_end": wal_bytes,
            "core_files": [str(p.relative_to(root)) for p in root.rglob("core*") if p.is_file()],
        }


def _status(word: str) -> int | str:
    """An HTTP status the driver printed, as a number (or what it printed instead: a failure's name)."""
    return int(word) if word.isdigit() else word


def _secrets_in(path: Path, hits: list[dict], profile: Path) -> list[str]:
    name = str(Path(profile.name) / path.relative_to(profile))
    return sorted({hit["secret"] for hit in hits if hit["file"] == name})


def _providers_file(path: Path, hits: list[dict], profile: Path) -> dict:
    """What the provider list holds: the providers' fields (never a key) and any secret found in it."""
    if not path.exists():
        return {"exists": False}
    providers = json.loads(path.read_text(encoding="utf-8"))["providers"]
    return {"exists": True, "providers": [{name: entry[name] for name in ("name", "model")} for entry in providers],
            "fields": sorted({field for entry in providers for field in entry}),
            "secrets_in_it": _secrets_in(path, hits, profile)}


def _settings_file(path: Path, hits: list[dict], profile: Path) -> dict:
    """Whether the settings say the API server is on, and any secret found in them."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {"api_server_enabled": data.get("api_server_enabled"), "secrets_in_it": _secrets_in(path, hits, profile)}


if __name__ == "__main__":
    print(json.dumps(secret_figures()), flush=True)
