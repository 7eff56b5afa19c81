"""Why flash attention is off and the sliding-window cache small on the CPU (inference/sliding_window.py).

    .venv/bin/python tests/benchmarks/attention_grid.py [--model PATH ...] [--rounds 3]

For each model (the built-in one unless ``--model`` is given) and each setting of llama.cpp's
``flash_attn`` and ``swa_full``, in rounds that interleave the settings, one process measures with
Hearth's CPU kernels and thread count:
- ``follow_up_ms@150`` / ``@1750``: 30 new tokens (a follow-up question) after a history of that many;
- ``decode_tok_s@150`` / ``@1750``: one token at a time there;
- ``prefill_ms``: 512 tokens from nothing, and ``prefill_ms@1500`` after 1,500.
``depth_ratio`` is follow_up_ms@1750 ÷ @150: what a long history (retrieved passages) adds to the first
token of a follow-up, the figure tests/benchmarks/rag.py measures in the window. Medians over the rounds;
the settings Hearth uses on the CPU are marked ``hearth``. One JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from inference.hardware import CpuFacts  # noqa: E402
from inference.sliding_window import attention_options  # noqa: E402
from model_store.builtin_model import ensure_builtin_model, packaged_gemma_chunks  # noqa: E402
from model_store.paths import AppPaths  # noqa: E402
from model_store.registry import ModelRegistry  # noqa: E402

SETTINGS = [(flash, full) for flash in (True, False) for full in (True, False)]

PROBE = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[5])
import llama_cpp
from inference.cpu_backends import load_cpu_backend
model, flash, full, threads = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", int(sys.argv[4])
load_cpu_backend()
llm = llama_cpp.Llama(model_path=model, n_ctx=4096, n_threads=threads, n_threads_batch=threads, n_batch=512,
                      flash_attn=flash, swa_full=full, verbose=False)
vocab = llm.n_vocab()
tokens = [(i * 7919) % (vocab - 1000) + 500 for i in range(2100)]  # arbitrary text-like ids, never special

def start_over():
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm._ctx.ctx), True)
    llm.reset()

def prefill_ms(depth, count, repeats=3):
    times = []
    for _ in range(repeats):
        start_over()
        if depth:
            llm.eval(tokens[:depth])
        start = time.perf_counter()
        llm.eval(tokens[depth:depth + count])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000

def decode_tok_s(depth, count=24):
    start_over()
    llm.eval(tokens[:depth])
    start = time.perf_counter()
    for token in tokens[depth:depth + count]:
        llm.eval([token])
    return count / (time.perf_counter() - start)

prefill_ms(0, 64, 1)  # warm-up
print(json.dumps({
    "follow_up_ms@150": prefill_ms(150, 30), "follow_up_ms@1750": prefill_ms(1750, 30),
    "decode_tok_s@150": decode_tok_s(150), "decode_tok_s@1750": decode_tok_s(1750),
    "prefill_ms": prefill_ms(0, 512, 2), "prefill_ms@1500": prefill_ms(1500, 512, 2),
}))
"""


def measure(model: Path, flash: bool, full: bool, threads: int) -> dict:
    """One process's figures for one setting."""
    result = subprocess.run([sys.executable, "-c", PROBE, str(model), str(int(flash)), str(int(full)), str(threads),
                             str(REPO)], capture_output=True, text=True, check=True, timeout=900)
    return json.loads(result.stdout.strip().splitlines()[-1])


def setting_name(flash: bool, full: bool) -> str:
    return f"flash_attn={'on' if flash else 'off'},swa_full={'on' if full else 'off'}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, action="append", help="a GGUF to measure (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cpu = CpuFacts.probe()
    threads = cpu.physical_cores
    hearth = attention_options(on_gpu=False)
    figures: dict = {"cpu": cpu.describe(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        models = args.model
        if not models:
            paths = AppPaths.under(Path(tmp))
            paths.create()
            models = [ensure_builtin_model(ModelRegistry(paths.registry_file), paths.models_dir,
                                           packaged_gemma_chunks()).path]
        for model in models:
            runs: dict[str, list[dict]] = {setting_name(*setting): [] for setting in SETTINGS}
            for _ in range(args.rounds):
                for flash, full in SETTINGS:
                    runs[setting_name(flash, full)].append(measure(model, flash, full, threads))
            table = {}
            for (flash, full), (name, results) in zip(SETTINGS, runs.items()):
                row = {key: round(statistics.median(r[key] for r in results), 1) for key in results[0]}
                row["depth_ratio"] = round(row["follow_up_ms@1750"] / row["follow_up_ms@150"], 2)
                row["hearth"] = (flash, full) == (hearth.flash_attn, hearth.swa_full)
                table[name] = row
            figures["models"][model.name] = table
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
