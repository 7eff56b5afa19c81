"""Figures of the Linux installer, measured on this machine.

    python3 tests/benchmarks/installer_figures.py [--deb dist/hearth_<version>_amd64.deb] [--runs 3]

Needs a build (``python3 packaging/build.py``) and, for the installed app, root
(the package is installed with ``dpkg -i`` and purged at the end). Measures:

- ``bundle_mb``, ``tar_mb``, ``deb_mb``: sizes (MB = 10^6 bytes; the bundle counts its files once);
- ``install_s``: ``dpkg -i`` of the package (its dependencies already present);
- ``cold_start_window_s``: the installed app's first start after installing, with a
  fresh profile: process start to the window shown (offscreen), timed from outside
  up to the moment its start-up report (``HEARTH_STARTUP_REPORT``) appears; the page
  cache still holds the files the install just wrote;
- ``selfstart_vs_source``: the installed app's start-to-window divided by the source
  install's (``.venv/bin/python main.py``), fresh profiles, interleaved, median of N;
- ``decode_vs_source``: ``--self-test --tokens 64`` tokens/s of the installed app divided
  by the source install's, interleaved, median of N;
- ``decode_vs_best_native``: the installed app's ``--self-test --tokens N`` tokens/s divided by
  llama.cpp's own ``llama-bench`` (tg N, flash attention as its default "auto" sets it) built
  natively minus AMX from the same vendored source (``tests/benchmarks/native_llama.py``),
  same model and thread count, interleaved, median of N; with the CPU variant each used.

Without root the bundle in ``dist/hearth`` stands in for the installed app
(``"app": "bundle"``). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
SOURCE_PYTHON = REPO / ".venv" / "bin" / "python"
INSTALLED = Path("/usr/bin/hearth")


def _load_smoke_test():
    spec = importlib.util.spec_from_file_location("hearth_smoke_test", REPO / "packaging" / "smoke_test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


smoke = _load_smoke_test()
sys.path.insert(0, str(REPO))
from tests.benchmarks.native_llama import build_llama_bench, llama_bench_decode  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description="Measure Hearth's Linux installer.")
    parser.add_argument("--deb", type=Path, default=smoke.newest(DIST.glob("hearth_*_amd64.deb")))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128, help="tokens each --self-test generates (its --tokens)")
    args = parser.parse_args()

    bundle = DIST / "hearth"
    if not (bundle / "hearth").is_file():
        raise SystemExit("No bundle in dist/hearth: run python3 packaging/build.py first.")
    figures: dict = {"bundle_mb": round(folder_bytes(bundle) / 1e6, 1)}
    tarball = smoke.newest(DIST.glob("hearth-*-linux-x86_64.tar.gz"))
    figures["tar_mb"] = round(tarball.stat().st_size / 1e6, 1) if tarball else None
    figures["deb_mb"] = round(args.deb.stat().st_size / 1e6, 1) if args.deb else None

    installed = args.deb is not None and os.geteuid() == 0
    try:
        if installed:
            figures["install_s"] = install(args.deb)
            app = [str(INSTALLED)]
        else:
            figures["install_s"] = None
            app = [str(bundle / "hearth")]
        figures["app"] = "installed" if installed else "bundle"
        figures["cold_start_window_s"] = round(start_to_window(app), 2)
        source = [str(SOURCE_PYTHON), str(REPO / "main.py")]
        bench, model = build_llama_bench(SOURCE_PYTHON), builtin_model_file(source)
        app_starts, source_starts, app_speeds, source_speeds, native_speeds = [], [], [], [], []
        for _ in range(args.runs):  # interleaved, so that a busy moment of the machine hits both sides
            app_starts.append(start_to_window(app))
            source_starts.append(start_to_window(source))
            app_report = self_test(app, args.tokens)
            app_speeds.append(float(app_report["tokens_per_s"]))
            source_speeds.append(float(self_test(source, args.tokens)["tokens_per_s"]))
            native = llama_bench_decode(bench, model, threads=app_threads(app_report), tokens=args.tokens)
            native_speeds.append(native["tokens_per_s"])
        figures.update({
            "start_window_s": round(statistics.median(app_starts), 2),
            "source_start_window_s": round(statistics.median(source_starts), 2),
            "selfstart_vs_source": round(statistics.median(app_starts) / statistics.median(source_starts), 2),
            "tokens_per_s": round(statistics.median(app_speeds), 2),
            "source_tokens_per_s": round(statistics.median(source_speeds), 2),
            "decode_vs_source": round(statistics.median(app_speeds) / statistics.median(source_speeds), 2),
            "native_tokens_per_s": round(statistics.median(native_speeds), 2),
            "decode_vs_best_native": round(statistics.median(app_speeds) / statistics.median(native_speeds), 2),
            "app_cpu_variant": app_report["cpu_variant"],
            "native_build": "llama-bench, GGML_NATIVE minus AMX, same vendored llama.cpp",
            "runs": args.runs,
            "tokens": args.tokens,
            "load_average": round(os.getloadavg()[0], 1),
        })
    finally:
        if installed:
            subprocess.run(["dpkg", "--purge", "hearth"], capture_output=True)
    print(json.dumps(figures))
    return 0


def builtin_model_file(source: list[str]) -> Path:
    """The built-in model as a GGUF file for llama-bench: installed by the source app's self-test in a scratch home."""
    home = Path(tempfile.mkdtemp(prefix="hearth-figures-model-"))
    subprocess.run([*source, "--self-test", "--home", str(home)], capture_output=True, check=True, cwd=REPO)
    return next((home / "data" / "models" / "builtin").glob("*.gguf"))


def app_threads(report: dict) -> int:
    """The thread count the app's self-test ran with (its plan's reason says it)."""
    match = re.search(r"(\d+) threads?", report.get("reason", ""))
    return int(match.group(1)) if match else os.cpu_count() or 1


def install(deb: Path) -> float:
    """Seconds ``dpkg -i`` takes for the package."""
    subprocess.run(["dpkg", "--purge", "hearth"], capture_output=True)
    started = time.monotonic()
    subprocess.run(["dpkg", "-i", str(deb)], check=True, capture_output=True)
    return round(time.monotonic() - started, 1)


def start_to_window(command: list[str]) -> float:
    """Seconds from starting ``command`` with a fresh profile to its window shown (offscreen)."""
    with tempfile.TemporaryDirectory(prefix="hearth-figures-") as home:
        report_file = Path(home) / "startup.json"
        env = smoke.clean_env(HOME=home, QT_QPA_PLATFORM="offscreen", HEARTH_STARTUP_REPORT=str(report_file))
        started = time.monotonic()
        process = smoke.start(command, env=env, log=Path(home) / "stderr.txt")
        try:
            smoke.wait_for_json(report_file, process, timeout_s=120)
            return time.monotonic() - started
        finally:
            smoke.stop(process)


def self_test(command: list[str], tokens: int) -> dict:
    """The JSON report of ``--self-test --tokens N`` with a fresh profile."""
    with tempfile.TemporaryDirectory(prefix="hearth-figures-") as home:
        result = subprocess.run([*command, "--self-test", "--tokens", str(tokens)], capture_output=True, text=True, timeout=600,
                                env=smoke.clean_env(HOME=home), cwd=REPO)
        report = smoke.last_json_line(result.stdout)
        if result.returncode != 0 or not report.get("ok"):
            raise SystemExit(f"{command[0]} --self-test failed: {result.stdout[-500:]}{result.stderr[-500:]}")
        return report


def folder_bytes(folder: Path) -> int:
    """Bytes in the regular files below ``folder``, links not counted."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


if __name__ == "__main__":
    sys.exit(main())
