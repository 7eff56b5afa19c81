"""Hostile-input figures: model files from strangers. The last line printed is one JSON object.

    python tests/benchmarks/hostile.py --quick             # the whole corpus, one minute of fuzzing
    python tests/benchmarks/hostile.py --fuzz-minutes 10   # the long fuzzing run (with --only gguf_fuzz: alone)
    python tests/benchmarks/hostile.py --fuzz-minutes 0    # the corpus only

Each section is a function that takes the arguments and returns a dict of
figures; the dicts are merged into the JSON line. Add a section by writing
such a function and listing it in SECTIONS.

GGUF corpus (tests/bad_inputs, malformed files made from small valid ones):
- gguf_corpus_files: files in the corpus; gguf_expected_valid: those whose
  structure and numbers are sound but whose tensors do not match their
  architecture (llama.cpp refuses them).
- rejected_cleanly: files the validator (``read_gguf_info`` and
  ``check_architecture_known``, in-process) refused with a ModelFileError and
  a sentence naming the file; should be gguf_corpus_files - gguf_expected_valid.
- app_survived: files for which the real ``main.py --self-test --model FILE
  --home <tmp>`` printed exactly one JSON line with ok false and an error
  sentence, exited with code 1 (not a signal) and printed no 'Traceback' on
  stdout or stderr; should be gguf_corpus_files.
- engine_crashes_after_validation: files the validator accepted that then
  ended the engine process (an abort in llama.cpp's loader); should be 0.
- p95_ms_to_error: 95th percentile of those self-test runs, process start to
  exit; validator_p95_ms: the validator alone, in-process.
- builtin_validate_ms: the built-in model (~250 MB, 262,144 tokens) validated.
Fuzzing (tests/bad_inputs/fuzzing.py, coverage-guided, hypothesis strategies):
- fuzz_execs, fuzz_crashes (inputs on which the validator raised anything but
  a ModelFileError with a sentence, or ran out of time or memory; should be 0),
  fuzz_arcs (line pairs of inference/gguf_info.py reached), fuzz_seconds.
Chat templates (tests/bad_inputs/templates.py): ssti_canaries_created (0),
template_limit_ms (the slowest runaway template's time to be stopped).
Secrets (tests/bad_inputs/secrets_audit.py): secret_hits_on_disk (0) after
the app was killed mid-reply with a token in use.
GUI stalls (tests/benchmarks/stalls.py): gui_stall_max_ms (<= 50).
Details of every failure go to stderr; failing fuzz inputs are saved to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from inference.errors import ModelFileError  # noqa: E402
from inference.gguf_info import check_architecture_known, read_gguf_info  # noqa: E402
from tests.bad_inputs import CorpusFile, write_corpus  # noqa: E402

SELF_TEST_TIMEOUT_S = 120
ENGINE_CRASH_PREFIX = "The engine stopped"  # EngineCrashedError's sentence (inference/process_engine.py)
# An error sentence that names one of these leaked an exception the validator should have turned into words.
RAW_EXCEPTION = re.compile(r"\b(IndexError|KeyError|struct\.error|MemoryError|OverflowError|RecursionError|"
                           r"TypeError|AttributeError|UnicodeDecodeError|ZeroDivisionError)\b")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)] if ordered else 0.0


# ------------------------------------------------------------------ GGUF corpus


def validate(file: CorpusFile) -> tuple[str, float]:
    """The validator on one file, in-process: ("valid" | "refused" | what went wrong, milliseconds)."""
    started = time.perf_counter()
    try:
        check_architecture_known(read_gguf_info(file.path))
        outcome = "valid"
    except ModelFileError as exc:
        sentence = str(exc).strip()
        outcome = "refused" if file.name in sentence and sentence.endswith(".") else f"no sentence: {sentence!r}"
    except Exception as exc:  # noqa: BLE001 - exactly what the figure counts
        outcome = f"{type(exc).__name__}: {exc}"
    return outcome, (time.perf_counter() - started) * 1000


def self_test(file: CorpusFile, home: Path) -> dict:
    """The real app's self-test on one corpus file: what it printed, how it ended, how long it took."""
    started = time.perf_counter()
    # Its own process group: on a timeout the engine process goes too (it would outlive a killed parent).
    child = subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), "--self-test", "--model", str(file.path), "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True,
    )
    try:
        stdout, stderr = child.communicate(timeout=SELF_TEST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        if hasattr(os, "killpg"):
            os.killpg(child.pid, signal.SIGKILL)
        else:
            child.kill()
        child.communicate()
        return {"survived": False, "why": f"no answer in {SELF_TEST_TIMEOUT_S} s", "ms": SELF_TEST_TIMEOUT_S * 1000,
                "error": ""}
    ms = (time.perf_counter() - started) * 1000
    result = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    lines = result.stdout.strip().splitlines()
    try:
        report = json.loads(lines[0]) if len(lines) == 1 else None
    except json.JSONDecodeError:
        report = None
    error = report.get("error", "") if isinstance(report, dict) else ""
    problems = []
    if result.returncode != 1:
        problems.append(f"exit code {result.returncode}")
    if report is None:
        problems.append(f"stdout is not one JSON line: {result.stdout[-300:]!r}")
    elif report.get("ok") is not False or not error.strip().endswith("."):
        problems.append(f"not ok false with a sentence: {report}")
    elif RAW_EXCEPTION.search(error):
        problems.append(f"a raw exception instead of a sentence: {error}")
    if "Traceback" in result.stdout + result.stderr:
        problems.append(f"a traceback: {result.stderr[-500:]!r}")
    return {"survived": not problems, "why": "; ".join(problems), "ms": ms, "error": error}


def gguf_corpus(args: argparse.Namespace) -> dict:
    """The corpus through the validator in-process, then every file through the real app's self-test."""
    with tempfile.TemporaryDirectory(prefix="hearth-hostile-") as scratch:
        files = write_corpus(Path(scratch) / "corpus")
        say(f"{len(files)} corpus files; validating in-process")
        validated = {file.name: validate(file) for file in files}
        rejected = 0
        for file in files:
            outcome, _ = validated[file.name]
            expected = "valid" if file.expected_valid else "refused"
            rejected += outcome == "refused" and not file.expected_valid
            if outcome != expected:
                say(f"VALIDATOR {file.name} ({file.problem}): {outcome}")
        say(f"running {len(files)} self-tests ({args.jobs} at a time)")
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs = list(pool.map(lambda item: self_test(item[1], Path(scratch) / f"home-{item[0]}"),
                                 enumerate(files)))
        crashes = 0
        for file, run in zip(files, runs):
            if not run["survived"]:
                say(f"APP {file.name} ({file.problem}): {run['why']}")
            if validated[file.name][0] == "valid" and run["error"].startswith(ENGINE_CRASH_PREFIX):
                crashes += 1
                say(f"ENGINE {file.name} ({file.problem}) passed the validator, then: {run['error']}")
    return {
        "gguf_corpus_files": len(files),
        "gguf_expected_valid": sum(f.expected_valid for f in files),
        "rejected_cleanly": rejected,
        "app_survived": sum(run["survived"] for run in runs),
        "engine_crashes_after_validation": crashes,
        "p95_ms_to_error": round(p95([run["ms"] for run in runs]), 1),
        "validator_p95_ms": round(p95([ms for _, ms in validated.values()]), 3),
        "builtin_validate_ms": builtin_validate_ms(),
    }


def builtin_validate_ms() -> float | None:
    """The built-in model validated (best of 5, after a first read), in milliseconds."""
    from model_store.builtin_model import ensure_builtin_model, packaged_gemma_chunks
    from model_store.paths import AppPaths
    from model_store.registry import ModelRegistry

    with tempfile.TemporaryDirectory(prefix="hearth-builtin-") as scratch:
        paths = AppPaths.under(Path(scratch))
        paths.create()
        try:
            model = ensure_builtin_model(ModelRegistry(paths.registry_file), paths.models_dir,
                                         packaged_gemma_chunks())
        except Exception as exc:  # noqa: BLE001 - the package may be missing on a bare machine
            say(f"no built-in model: {exc}")
            return None
        check_architecture_known(read_gguf_info(model.path))
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            check_architecture_known(read_gguf_info(model.path))
            timings.append(time.perf_counter() - started)
    return round(min(timings) * 1000, 1)


# ------------------------------------------------------------------ fuzzing


def gguf_fuzz(args: argparse.Namespace) -> dict:
    """The coverage-guided fuzzer on the validator for --fuzz-minutes, seeded with the corpus."""
    from tests.bad_inputs.fuzzing import CoverageFuzzer

    minutes = args.fuzz_minutes if args.fuzz_minutes is not None else (1 if args.quick else 10)
    if minutes <= 0:
        return {"fuzz_execs": 0, "fuzz_crashes": 0}
    with tempfile.TemporaryDirectory(prefix="hearth-fuzz-") as scratch:
        corpus = write_corpus(Path(scratch) / "corpus")
        seeds = [file.path.read_bytes() for file in corpus if file.path.stat().st_size <= 256 << 10]
        say(f"fuzzing the validator for {minutes:g} min (seed {args.seed})")
        report = CoverageFuzzer(Path(scratch), seed=args.seed, extra_files=seeds).run(seconds=minutes * 60)
    args.out.mkdir(parents=True, exist_ok=True)
    for index, failure in enumerate(report.failures):
        saved = args.out / f"fuzz-failure-{index:03d}.bin"
        saved.write_bytes(failure.data)
        say(f"FUZZ {saved}: {failure.problem}")
    return {"fuzz_execs": report.execs, "fuzz_crashes": len(report.failures), "fuzz_arcs": report.arcs,
            "fuzz_seconds": round(report.seconds, 1)}


def chat_templates(_args: argparse.Namespace) -> dict:
    """Hostile chat templates (tests/bad_inputs/templates.py): ssti_canaries_created, template_limit_ms, …"""
    from tests.bad_inputs.templates import template_figures

    return template_figures()


def secrets(_args: argparse.Namespace) -> dict:
    """The secrets audit (tests/bad_inputs/secrets_audit.py): secret_hits_on_disk after unclean ends."""
    from tests.bad_inputs.secrets_audit import secret_figures

    return secret_figures()


def gui_stalls(_args: argparse.Namespace) -> dict:
    """The window's worst stall during a locked keyring, a slow flush and a settings save (tests/benchmarks/stalls.py)."""
    from tests.benchmarks.stalls import stall_figures

    return stall_figures()


SECTIONS: list[Callable[[argparse.Namespace], dict]] = [gguf_corpus, gguf_fuzz, chat_templates, secrets, gui_stalls]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="the whole corpus and one minute of fuzzing")
    parser.add_argument("--fuzz-minutes", type=float, default=None,
                        help="how long to fuzz the validator (default 10, or 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="the fuzzer's random seed")
    parser.add_argument("--jobs", type=int, default=1, help="self-tests to run at once (default 1: honest timings)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "hearth-hostile",
                        help="where failing fuzz inputs are saved")
    parser.add_argument("--only", nargs="+", choices=[section.__name__ for section in SECTIONS],
                        help="run only these sections (e.g. --only gguf_fuzz for the long fuzzing run)")
    args = parser.parse_args(argv)
    figures: dict = {}
    for section in SECTIONS:
        if args.only and section.__name__ not in args.only:
            continue
        try:
            figures.update(section(args))
        except Exception as exc:  # noqa: BLE001 - one failing section must not lose the others' figures
            figures[f"{section.__name__}_error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
