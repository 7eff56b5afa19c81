"""Start-up and speed figures of the walking skeleton, measured on this machine.

    python tests/benchmarks/startup.py [--runs N]

Measures, in fresh processes each time:
- ``window_shown_s``: process start to the window shown (the real app, offscreen);
- ``model_ready_s``: process start to the built-in model loaded and ready in the app;
- ``load_s``, ``tokens_per_s``, ``ttft_s``: from ``main.py --self-test`` (median of N);
- ``raw_tokens_per_s`` and ``decode_ratio``: a bare llama-cpp-python ``generate`` loop
  on the same model, threads and context, and Hearth's speed divided by it.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
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


def app_start_times(home: Path) -> dict[str, float]:
    """Run the real app offscreen until its model is ready; read the times it logged."""
    log_file = home / "logs" / "hearth.log"
    log_file.unlink(missing_ok=True)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    process = subprocess.Popen([sys.executable, str(REPO / "main.py"), "--home", str(home)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.time()
    try:
        while time.time() - started < 120:
            text = log_file.read_text(encoding="utf-8") if log_file.exists() else ""
            shown = re.search(r"Window shown ([\d.]+) s", text)
            if shown and "Model ready" in text:
                ready_line = next(line for line in text.splitlines() if "Model ready" in line)
                ready_at = time.mktime(time.strptime(ready_line[:19], "%Y-%m-%d %H:%M:%S")) + int(ready_line[20:23]) / 1000
                return {"window_shown_s": float(shown.group(1)), "model_ready_s": ready_at - process_start(process.pid)}
            time.sleep(0.05)
        raise RuntimeError("the app did not become ready within 120 s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def process_start(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()


def self_test(home: Path) -> dict:
    result = subprocess.run([sys.executable, str(REPO / "main.py"), "--self-test", "--home", str(home)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def raw_decode_speed(model: Path, threads: int, n_ctx: int, tokens: int = 64) -> float:
    """Tokens/s of a bare llama-cpp-python generate loop (the baseline Hearth is compared with)."""
    code = f"""
import time, llama_cpp
llm = llama_cpp.Llama({str(model)!r}, n_ctx={n_ctx}, n_threads={threads}, n_threads_batch={threads}, verbose=False)
prompt = llm.tokenize(b"User: Name three colours of the rainbow.\\nAssistant:", add_bos=True, special=True)
n = 0
for token in llm.generate(prompt, temp=0.0):
    if n == 0:
        first = time.perf_counter()
    n += 1
    if n >= {tokens}:
        break
print((n - 1) / (time.perf_counter() - first))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from inference.hardware import CpuFacts
    from inference.gguf_info import read_gguf_info

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        self_test(home)  # installs the built-in model; not timed
        starts = [app_start_times(home) for _ in range(args.runs)]
        tests = [self_test(home) for _ in range(args.runs)]
        model = home / "data" / "models" / "builtin" / "gemma-3-270m-q4_k_m.gguf"
        threads = CpuFacts.probe().physical_cores
        n_ctx = min(8192, read_gguf_info(model).context_length)
        raw = statistics.median(raw_decode_speed(model, threads, n_ctx) for _ in range(args.runs))

    def median(rows: list[dict], key: str) -> float:
        return round(statistics.median(row[key] for row in rows), 3)

    figures = {
        "runs": args.runs,
        "threads": threads,
        "window_shown_s": median(starts, "window_shown_s"),
        "model_ready_s": median(starts, "model_ready_s"),
        "load_s": median(tests, "load_s"),
        "ttft_s": median(tests, "ttft_s"),
        "tokens_per_s": median(tests, "tokens_per_s"),
        "raw_tokens_per_s": round(raw, 2),
    }
    figures["decode_ratio"] = round(figures["tokens_per_s"] / raw, 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
