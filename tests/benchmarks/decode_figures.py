"""Where decode speed goes: Hearth's engine against llama.cpp's own llama-bench, step by step, in one run.

    .venv/bin/python tests/benchmarks/decode_figures.py [--rounds 3] [--tokens 256] [--app /opt/hearth/hearth]

Each round measures, interleaved, ``--tokens`` tokens of the built-in model
on the same thread count:
- ``native``: llama-bench (its tg test) built natively from the same vendored
  llama.cpp source (tests/benchmarks/native_llama.py), flash attention on
  (its default, "auto") and off;
- ``loop``: a bare decode loop on the installed wheel at Hearth's 4,096-token
  context: llama-cpp-python's own (``Llama.generate``, flash attention on and
  off) and Hearth's (``inference/token_loop.py`` with its picks), greedy with
  the repeat penalty (what ``--self-test`` runs) and with Hearth's default
  sampling (temperature 0.7, top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1);
- ``engine``: ``main.py --self-test --tokens N`` of this checkout (the
  engine process, the pipe, the reply loop);
- ``app``: the same self-test of an installed or bundled Hearth, if given.
Prints the medians and ratios as one JSON object on the last line.
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
from tests.benchmarks.native_llama import build_llama_bench, llama_bench_decode  # noqa: E402

LOOP = r"""
import json, sys, time
import llama_cpp
from inference.cpu_backends import load_cpu_backend
from inference.sampler_chain import SamplerSettings, make_pick
from inference.token_loop import generate_tokens
model, threads, flash, sampling, loop, tokens = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5], int(sys.argv[6])
variant = load_cpu_backend().variant
llama = llama_cpp.Llama(model_path=model, n_ctx=4096, n_threads=threads, n_threads_batch=threads, n_batch=512,
                        flash_attn=flash, verbose=False, seed=1)
options = dict(temp=0.0, repeat_penalty=1.1) if sampling == "greedy" else dict(
    temp=0.7, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1)
prompt = llama.tokenize(b"User: Tell me a long story about the sea.\nAssistant:", add_bos=True)
if loop == "stock":
    generated = llama.generate(prompt, **options)
else:
    settings = SamplerSettings(temperature=options["temp"], top_k=40, top_p=0.95, min_p=0.05, typical_p=1.0,
                               repeat_penalty=1.1, frequency_penalty=0.0, presence_penalty=0.0,
                               penalty_last_n=llama.last_n_tokens_size, seed=1)
    pick = make_pick(settings, llama._ctx.ctx, llama.n_vocab())
    generated = generate_tokens(llama, prompt, pick, on_evaluated=lambda n: None)
count, started = 0, None
for token in generated:
    if started is None:
        started = time.perf_counter()
        continue
    count += 1
    if count == tokens - 1:
        break
print(json.dumps({"tokens_per_s": count / (time.perf_counter() - started), "cpu_variant": variant}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: one per physical core")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--app", type=Path, help="an installed or bundled Hearth executable to measure too")
    args = parser.parse_args()

    from inference.hardware import CpuFacts
    from model_store.builtin_model import ensure_builtin_model, packaged_gemma_chunks
    from model_store.paths import AppPaths
    from model_store.registry import ModelRegistry

    threads = args.threads or CpuFacts.probe().physical_cores
    work = Path(tempfile.mkdtemp(prefix="hearth-decode-"))
    paths = AppPaths.under(work / "models")
    paths.create()
    model = ensure_builtin_model(ModelRegistry(paths.registry_file), paths.models_dir, packaged_gemma_chunks()).path
    bench = build_llama_bench()

    runs: dict[str, list[float]] = {}
    facts: dict[str, str] = {}

    def record(name: str, value: float) -> None:
        runs.setdefault(name, []).append(value)
        print(f"  {name}: {value:.2f} tokens/s", file=sys.stderr, flush=True)

    for number in range(1, args.rounds + 1):
        print(f"round {number}", file=sys.stderr, flush=True)
        native = llama_bench_decode(bench, model, threads=threads, tokens=args.tokens, flash_attn="1")
        facts["native_cpu"] = native["cpu_info"]
        record("native_fa", native["tokens_per_s"])
        record("native_no_fa", llama_bench_decode(bench, model, threads=threads, tokens=args.tokens,
                                                  flash_attn="0")["tokens_per_s"])
        for name, flash, sampling, loop in (("stock_loop_fa", "1", "greedy", "stock"),
                                            ("stock_loop_no_fa", "0", "greedy", "stock"),
                                            ("hearth_loop", "1", "greedy", "hearth"),
                                            ("stock_loop_defaults", "1", "defaults", "stock"),
                                            ("hearth_loop_defaults", "1", "defaults", "hearth")):
            result = _json_line([sys.executable, "-c", LOOP, str(model), str(threads), flash, sampling, loop,
                                 str(args.tokens)])
            facts["loop_cpu_variant"] = result["cpu_variant"]
            record(name, result["tokens_per_s"])
        engine = _self_test([sys.executable, str(REPO / "main.py")], model, work / "engine-home", threads, args.tokens)
        facts["engine_cpu_variant"] = engine["cpu_variant"]
        record("engine", engine["tokens_per_s"])
        if args.app:
            app = _self_test([str(args.app)], model, work / "app-home", threads, args.tokens)
            facts["app_cpu_variant"] = app["cpu_variant"]
            record("app", app["tokens_per_s"])

    median = {name: round(statistics.median(values), 2) for name, values in runs.items()}
    figures = {
        "threads": threads,
        "tokens": args.tokens,
        **facts,
        "median_tokens_per_s": median,
        "all_tokens_per_s": {name: [round(v, 2) for v in values] for name, values in runs.items()},
        "engine_vs_native": round(median["engine"] / median["native_fa"], 3),
        "stock_loop_vs_native": round(median["stock_loop_fa"] / median["native_fa"], 3),
        "hearth_loop_vs_native": round(median["hearth_loop"] / median["native_fa"], 3),
        "engine_vs_hearth_loop": round(median["engine"] / median["hearth_loop"], 3),
        "flash_attention_gain": round(median["stock_loop_fa"] / median["stock_loop_no_fa"], 3),
        "hearth_vs_stock_loop_greedy": round(median["hearth_loop"] / median["stock_loop_fa"], 3),
        "hearth_vs_stock_loop_defaults": round(median["hearth_loop_defaults"] / median["stock_loop_defaults"], 3),
    }
    if args.app:
        figures["decode_vs_best_native"] = round(median["app"] / median["native_fa"], 3)
        figures["decode_vs_source"] = round(median["app"] / median["engine"], 3)
    print(json.dumps(figures))
    return 0


def _self_test(command: list[str], model: Path, home: Path, threads: int, tokens: int) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "config" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"n_threads": threads}), encoding="utf-8")
    report = _json_line([*command, "--self-test", "--tokens", str(tokens), "--model", str(model),
                         "--home", str(home)])
    if not report.get("ok"):
        raise SystemExit(f"self-test failed: {report}")
    return report


def _json_line(command: list[str]) -> dict:
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    if result.returncode != 0 and not result.stdout.strip():
        raise SystemExit(f"{command[0]} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
