#!/usr/bin/env python3
"""Smoke test of the Linux bundle and installers made by ``packaging/build.py``.

    python3 packaging/smoke_test.py [--deb dist/hearth_<version>_amd64.deb] [--shots DIR]

Checks, each in fresh temporary folders:

a. ``dist/hearth/hearth --self-test``: exit 0, tokens generated (the model
   loads in the engine's spawned child process);
b. the ``.tar.gz`` unpacked into a temporary folder and run from there with an
   empty ``HOME`` and no network (``unshare``; said so when unavailable);
c. ``ldd`` over every ELF program and library in the bundle: nothing "not found";
d. with ``--deb`` (needs root or password-less sudo, Xvfb and xdotool): the
   package installed with apt, ``/usr/bin/hearth --self-test`` (as ``nobody`` when
   run as root), the real window
   started from the launcher under Xvfb, a message typed and answered, a
   screenshot, then ``apt-get remove`` and ``purge``: nothing of Hearth's left
   outside the user's own data;
e. the window's start-up report (``HEARTH_STARTUP_REPORT``): shown within the
   time budget, and no torch, transformers or accelerate imported on the way;
f. with ``--deb``: lintian reports no error and no warning.

Prints one line per check (PASS, FAIL, or SKIP when a tool is missing) and a JSON
summary last; exits 1 when a check fails.
Standard library only, so it runs with the system's Python.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DIST = REPO / "dist"
APP_ID = "io.github.hearth.Hearth"
# Process start to window shown. Measured 0.3-0.6 s on this 2-core VM when quiet, up to 1.5 s while
# two llama.cpp builds ran beside it; the budget leaves room for slower machines and CI runners.
STARTUP_BUDGET_S = 5.0
FORBIDDEN_MODULES = ("torch", "transformers", "accelerate")
SELF_TEST_TIMEOUT_S = 300
REPLY_TIMEOUT_S = 180
# Where the package puts files; after purge none of these may hold anything of Hearth's.
SYSTEM_ROOTS = ("/opt", "/usr", "/etc", "/var/lib/dpkg/info")


class CheckFailed(AssertionError):
    """A smoke-test check found something wrong; the message says what."""


class CheckSkipped(Exception):
    """A check that cannot run here (a tool is missing); the message says what to install."""


def main() -> int:
    parser = argparse.ArgumentParser(description="Smoke-test Hearth's Linux bundle and installers.")
    parser.add_argument("--bundle", type=Path, default=DIST / "hearth")
    parser.add_argument("--tar", type=Path, help="the portable tarball (default: the one in dist/)")
    parser.add_argument("--deb", type=Path, help="also install, run and purge this .deb (root or sudo)")
    parser.add_argument("--shots", type=Path, default=REPO / "build" / "smoke-shots", help="where screenshots go")
    parser.add_argument("--startup-budget", type=float, default=STARTUP_BUDGET_S, help="seconds to the window")
    args = parser.parse_args()

    tarball = args.tar or newest(DIST.glob("hearth-*-linux-x86_64.tar.gz"))
    checks = [
        ("a_bundle_self_test", lambda: check_self_test(args.bundle / "hearth")),
        ("b_tarball_offline", lambda: check_tarball(tarball)),
        ("c_ldd", lambda: check_ldd(args.bundle)),
        ("e_startup_report", lambda: check_startup(args.bundle / "hearth", budget_s=args.startup_budget)),
    ]
    if args.deb:
        checks.append(("d_deb", lambda: check_deb(args.deb, args.shots, budget_s=args.startup_budget)))
        checks.append(("f_lintian", lambda: check_lintian(args.deb)))
    results, failed = {}, []
    for name, check in checks:
        started = time.monotonic()
        verdict = "PASS"
        try:
            results[name] = {"ok": True, **check()}
        except CheckSkipped as exc:
            results[name], verdict = {"ok": None, "skipped": str(exc)}, "SKIP"
        except (CheckFailed, subprocess.SubprocessError, OSError) as exc:
            results[name], verdict = {"ok": False, "error": str(exc)}, "FAIL"
            failed.append(name)
        results[name]["seconds"] = round(time.monotonic() - started, 1)
        print(f"{verdict} {name}: {json.dumps(results[name])}", flush=True)
    print(json.dumps({"ok": not failed, "failed": failed, **results}))
    return 1 if failed else 0


# --- the checks --------------------------------------------------------------------------------


def check_self_test(program: Path, *, env: dict[str, str] | None = None, prefix: list[str] | None = None,
                    home: Path | None = None) -> dict:
    """``program --self-test`` in a fresh profile: one JSON line, exit 0 and at least one token."""
    with tempfile.TemporaryDirectory(prefix="hearth-smoke-") as scratch:
        command = [*(prefix or []), str(program), "--self-test"]
        if home is None and env is None:
            command += ["--home", str(Path(scratch) / "home")]
        result = subprocess.run(command, capture_output=True, text=True, timeout=SELF_TEST_TIMEOUT_S,
                                env=env if env is not None else clean_env())
        report = last_json_line(result.stdout)
        if len(result.stdout.strip().splitlines()) != 1:
            raise CheckFailed(f"{program} --self-test should print one JSON line, not {result.stdout[-500:]!r}")
        if result.returncode != 0 or not report.get("ok") or report.get("tokens", 0) < 1:
            raise CheckFailed(f"{program} --self-test exited {result.returncode}: {result.stdout[-500:]}"
                              f"{result.stderr[-1500:]}")
        return {key: report[key] for key in ("engine", "device", "tokens", "tokens_per_s", "load_s") if key in report}


def check_tarball(tarball: Path | None) -> dict:
    """The tarball unpacked into a temporary folder runs from there, with an empty HOME and no network."""
    if tarball is None or not tarball.is_file():
        raise CheckFailed(f"no tarball {tarball or 'in dist/'}: run python3 packaging/build.py")
    with tempfile.TemporaryDirectory(prefix="hearth-tar-") as scratch:
        folder, home = Path(scratch) / "unpacked", Path(scratch) / "home"
        folder.mkdir()
        home.mkdir()
        subprocess.run(["tar", "-xzf", str(tarball), "-C", str(folder)], check=True)
        tops = sorted(path.name for path in folder.iterdir())
        if len(tops) != 1:
            raise CheckFailed(f"the tarball should hold one folder, not {tops}")
        program = folder / tops[0] / "hearth"
        prefix, network = offline_prefix()
        report = check_self_test(program, env=clean_env(HOME=str(home)), prefix=prefix, home=home)
        model = home / ".local" / "share" / "Hearth" / "models" / "builtin"
        if not any(model.glob("*.gguf")):
            raise CheckFailed(f"the built-in model was not installed into the fresh HOME ({model})")
        return {**report, "network": network}


def check_ldd(bundle: Path) -> dict:
    """Every ELF in the bundle resolves all its libraries (with the bundle's folder on the search path, as at run time)."""
    internal = bundle / "_internal"
    env = clean_env(LD_LIBRARY_PATH=str(internal))
    missing: dict[str, list[str]] = {}
    elves = elf_files(bundle)
    for path in elves:
        result = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env)
        lost = re.findall(r"^\s*(\S+) => not found", result.stdout, re.MULTILINE)
        if lost:
            missing[str(path.relative_to(bundle))] = lost
    if missing:
        raise CheckFailed(f"libraries not found: {json.dumps(missing)[:2000]}")
    return {"elf_files": len(elves)}


def check_startup(program: Path, *, budget_s: float, env: dict[str, str] | None = None,
                  prefix: list[str] | None = None) -> dict:
    """The window shows within ``budget_s`` and nothing on the way imported torch, transformers or accelerate."""
    with tempfile.TemporaryDirectory(prefix="hearth-start-") as scratch:
        report_file = Path(scratch) / "startup.json"
        env = dict(env) if env is not None else clean_env(QT_QPA_PLATFORM="offscreen", HOME=scratch)
        env["HEARTH_STARTUP_REPORT"] = str(report_file)
        started = time.monotonic()
        process = start([*(prefix or []), str(program)], env=env, log=Path(scratch) / "stderr.txt")
        try:
            report = wait_for_json(report_file, process, timeout_s=max(60.0, budget_s * 4))
            observed_s = time.monotonic() - started
        finally:
            stop(process)
    return startup_verdict(report, observed_s, budget_s)


def startup_verdict(report: dict, observed_s: float, budget_s: float) -> dict:
    """Check a start-up report against the budget and the forbidden modules; return its figures.

    ``observed_s`` is measured from outside, from just before the process was
    started to its report appearing (the app's own figure comes from the
    kernel's start time, whose clock is only good to about a second).
    """
    imported = sorted({name.split(".")[0] for name in report["modules"]} & set(FORBIDDEN_MODULES))
    if imported:
        raise CheckFailed(f"on the way to the window the app imported {', '.join(imported)}")
    if observed_s > budget_s:
        raise CheckFailed(f"the window took {observed_s:.2f} s to show; the budget is {budget_s} s")
    return {"window_shown_s": round(observed_s, 2), "app_reported_s": round(report["window_shown_s"], 2),
            "modules": len(report["modules"])}


def check_deb(deb: Path, shots: Path, *, budget_s: float) -> dict:
    """Install the .deb, use the installed app for real, then remove and purge it; nothing may be left."""
    if not deb.is_file():
        raise CheckFailed(f"no {deb}: run python3 packaging/build.py")
    sudo = root_prefix()
    for tool, package in (("Xvfb", "xvfb"), ("xdotool", "xdotool"), ("import", "imagemagick")):
        if shutil.which(tool) is None:
            raise CheckFailed(f"{tool} is needed: apt-get install {package}")
    before = hearth_paths()
    started = time.monotonic()
    apt(sudo, "install", "-y", "-q", str(deb.resolve()))
    install_s = time.monotonic() - started
    try:
        for path in (Path("/usr/bin/hearth"), Path(f"/usr/share/applications/{APP_ID}.desktop"),
                     Path(f"/usr/share/icons/hicolor/48x48/apps/{APP_ID}.png"),
                     Path(f"/usr/share/metainfo/{APP_ID}.metainfo.xml"), Path("/usr/share/doc/hearth/copyright")):
            if not path.exists():
                raise CheckFailed(f"the package did not install {path}")
        with tempfile.TemporaryDirectory(prefix="hearth-user-") as home:
            self_test = check_self_test(Path("/usr/bin/hearth"), env=clean_env(HOME=home), home=Path(home),
                                        prefix=unprivileged_prefix(Path(home)))
        with tempfile.TemporaryDirectory(prefix="hearth-user-") as home:
            window = use_installed_window(Path(home), shots, budget_s=budget_s)
            data = sorted(str(path.relative_to(home)) for path in Path(home).rglob("*") if path.is_file())
            apt(sudo, "remove", "-y", "-q", "hearth")
            # No conffiles, so remove already leaves nothing for purge: dpkg forgets the package.
            if package_state(sudo) == "config-files":
                apt(sudo, "purge", "-y", "-q", "hearth")
            left_after_remove = sorted(hearth_paths() - before)
            # And the other way out: purge an installed package directly.
            apt(sudo, "install", "-y", "-q", str(deb.resolve()))
            apt(sudo, "purge", "-y", "-q", "hearth")
            if not (Path(home) / ".local" / "share" / "Hearth" / "conversations.db").is_file():
                raise CheckFailed("removing the package touched the user's data")
    finally:
        subprocess.run([*sudo, "dpkg", "--purge", "hearth"], capture_output=True)
    if left_after_remove:
        raise CheckFailed(f"after apt-get remove these remain: {left_after_remove[:20]}")
    left = sorted(hearth_paths() - before)
    if left:
        raise CheckFailed(f"after apt-get purge these remain: {left[:20]}")
    return {"install_s": round(install_s, 1), "self_test": self_test, **window, "user_files_kept": len(data)}


def check_lintian(deb: Path) -> dict:
    """lintian reports no error and no warning (overrides: packaging/linux/lintian-overrides)."""
    if shutil.which("lintian") is None:
        raise CheckSkipped("lintian is not installed (apt-get install lintian)")
    result = subprocess.run(["lintian", "--display-info", str(deb)], capture_output=True, text=True, timeout=1200)
    tags = re.findall(r"^([EWI]): \S+: (\S+)", result.stdout, re.MULTILINE)
    bad = sorted({f"{level}: {tag}" for level, tag in tags if level in "EW"})
    if bad or result.returncode != 0:
        raise CheckFailed(f"lintian: {', '.join(bad) or result.stderr[-500:]}")
    return {"infos": len(tags)}


def use_installed_window(home: Path, shots: Path, *, budget_s: float) -> dict:
    """Start ``/usr/bin/hearth`` on a fresh X display, type a message, wait for the answer, screenshot.

    Then search models (File › Models…) on a local server that speaks the
    Hub's API (``tests/hub_server.py``): the frozen app's Hub client, which
    loads most of its modules by name, has to reach it.
    """
    hub = local_hub(home)
    hub.__enter__()
    display = free_display()
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report_file = home / "startup.json"
    env = clean_env(HOME=str(home), DISPLAY=display, HEARTH_STARTUP_REPORT=str(report_file),
                    HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_XET="1")
    env.pop("QT_QPA_PLATFORM", None)
    app = window_manager = None
    try:
        wait_until(lambda: Path(f"/tmp/.X11-unix/X{display[1:]}").exists(), 20, "Xvfb did not start")
        if shutil.which("openbox"):  # a title bar, so the screenshot shows the window's icon and title
            window_manager = start(["openbox"], env=env, log=home / "openbox.txt")
        started = time.monotonic()
        app = start(["/usr/bin/hearth"], env=env, log=home / "stderr.txt")
        report = wait_for_json(report_file, app, timeout_s=max(60.0, budget_s * 4))
        startup = startup_verdict(report, time.monotonic() - started, budget_s)
        xdo = lambda *args: subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=30)  # noqa: E731
        window = xdo("search", "--sync", "--onlyvisible", "--class", "Hearth").stdout.split()
        if not window:
            raise CheckFailed("no visible window of class Hearth (StartupWMClass would not match)")
        log_file = home / ".local" / "state" / "Hearth" / "log" / "hearth.log"
        wait_until(lambda: "Model ready" in read(log_file), 120, "the model did not become ready in the window")
        xdo("windowfocus", "--sync", window[0])
        xdo("type", "--delay", "40", "Name three colours of the rainbow.")
        xdo("key", "Return")
        database = home / ".local" / "share" / "Hearth" / "conversations.db"
        wait_until(lambda: answered(database), REPLY_TIMEOUT_S, "the typed message was not answered")
        time.sleep(1.0)  # let the last chunk paint
        shots.mkdir(parents=True, exist_ok=True)
        shot = shots / "installed-window.png"
        subprocess.run(["import", "-window", "root", str(shot)], env=env, check=True, timeout=60)
        xdo("key", "ctrl+m")  # File › Models…, its search box focused
        time.sleep(2.0)
        xdo("type", "--delay", "40", "gemma")
        xdo("key", "Return")
        searched = lambda: any(path == "/api/models" for _, path, _ in hub.log)  # noqa: E731
        wait_until(searched, 60, "the model manager's search never reached the (local) Hub")
        time.sleep(2.0)
        if app.poll() is not None:
            raise CheckFailed(f"the app exited with {app.returncode} while searching the Hub")
        hub_shot = shots / "installed-models.png"
        subprocess.run(["import", "-window", "root", str(hub_shot)], env=env, check=True, timeout=60)
        return {**startup, "window_class": "Hearth", "answer_chars": answered(database), "screenshot": str(shot),
                "hub_requests": len(hub.log), "hub_screenshot": str(hub_shot)}
    finally:
        for process in (app, window_manager):
            if process is not None:
                stop(process)
        stop(xvfb)
        hub.__exit__(None, None, None)


# --- helpers -------------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Hearth's, Qt's and XDG folder overrides, plus ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HEARTH_", "XDG_", "QT_", "HF_", "LD_LIBRARY_PATH", "PYTHON"))}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env.update(extra)
    return env


def offline_prefix() -> tuple[list[str], str]:
    """A command prefix that cuts the network (a new, empty network namespace), and how it was done."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which("unshare") and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix, " ".join(prefix)
    return [], "not isolated (unshare is not available here)"


def unprivileged_prefix(home: Path) -> list[str]:
    """As root, run as ``nobody`` (who then owns ``home``): users are not root, and /opt/hearth is read-only to them."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return []
    shutil.chown(home, "nobody", "nogroup")
    return ["runuser", "-u", "nobody", "--", "env", f"HOME={home}"]  # runuser would set nobody's own HOME


def root_prefix() -> list[str]:
    """``[]`` as root, ``["sudo", "-n"]`` with password-less sudo; else the check cannot run."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    raise CheckFailed("installing the .deb needs root or password-less sudo")


def apt(sudo: list[str], *args: str) -> None:
    """Run apt-get non-interactively; a failure fails the check with apt's output."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run([*sudo, "apt-get", *args], capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        raise CheckFailed(f"apt-get {args[0]} failed: {result.stdout[-1000:]}{result.stderr[-1000:]}")


def load_module(name: str, path: Path):
    """Import a standard-library-only file of the repository by path (``packaging`` is also a PyPI package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def local_hub(folder: Path):
    """A server speaking the Hub's API (tests/hub_server.py, standard library only) with one small GGUF repo."""
    module = load_module("hearth_hub_server", REPO / "tests" / "hub_server.py")
    model = folder / "served" / "tiny-gemma-Q4_K_M.gguf"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"GGUF" + bytes(4092))
    repo = module.HubRepo(id="smoke-test/tiny-gemma-GGUF", files=[module.HubFile("tiny-gemma-Q4_K_M.gguf", model)],
                          downloads=1234)
    return module.HubServer([repo])


def package_state(sudo: list[str]) -> str:
    """dpkg's state of the hearth package: ``installed``, ``config-files``, or ``not-installed``."""
    result = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "hearth"], capture_output=True, text=True)
    return result.stdout.strip() or "not-installed"


def hearth_paths() -> set[str]:
    """Every path below the system folders whose name mentions Hearth."""
    found = set()
    for root in SYSTEM_ROOTS:
        result = subprocess.run(["find", root, "-xdev", "(", "-iname", "*hearth*", "-o", "-iname", f"{APP_ID}*", ")"],
                                capture_output=True, text=True)
        found.update(line for line in result.stdout.splitlines() if line)
    return found


def elf_files(folder: Path) -> list[Path]:
    """Every ELF file below ``folder`` (symlinks not followed): the Linux recipe's own list."""
    return load_module("hearth_packaging_linux", REPO / "packaging" / "linux" / "package.py").elf_files(folder)


def answered(database: Path) -> int:
    """Characters in the first finished, non-empty assistant reply in the database; 0 when none yet."""
    if not database.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            row = connection.execute("SELECT length(content) FROM messages WHERE role = 'assistant' "
                                     "AND status = 'complete' AND length(trim(content)) > 0 LIMIT 1").fetchone()
    except sqlite3.Error:
        return 0
    return row[0] if row else 0


def wait_for_json(path: Path, process: subprocess.Popen, *, timeout_s: float) -> dict:
    """The JSON the process writes to ``path``; fails when the process exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                pass  # being written
        if process.poll() is not None:
            stderr = read(Path(process.log))[-1500:]
            raise CheckFailed(f"the app exited with {process.returncode} before showing its window: {stderr}")
        time.sleep(0.01)
    raise CheckFailed(f"no start-up report after {timeout_s:.0f} s")


def start(command: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a process whose stderr goes to ``log`` (a pipe nobody reads could fill up and stall it)."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    process.log = log
    return process


def wait_until(condition, timeout_s: float, message: str) -> None:
    """Poll ``condition`` until it is true; fail the check with ``message`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise CheckFailed(message)


def stop(process: subprocess.Popen) -> None:
    """End a process we started: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def free_display() -> str:
    """An X display number (``:99`` or above) that no X server uses."""
    number = 99
    while Path(f"/tmp/.X11-unix/X{number}").exists() or Path(f"/tmp/.X{number}-lock").exists():
        number += 1
    return f":{number}"


def last_json_line(text: str) -> dict:
    """The last line of ``text`` that is a JSON object; empty when there is none."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def read(path: Path) -> str:
    """The file's text; empty when it cannot be read (yet)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def newest(paths) -> Path | None:
    """The most recently modified of ``paths``; None when there is none."""
    paths = sorted(paths, key=lambda path: path.stat().st_mtime)
    return paths[-1] if paths else None


if __name__ == "__main__":
    sys.exit(main())
