"""GPU check: does Hearth pick the GPU, load there, stream, reuse its cache, stop and survive a crash?

    python tests/benchmarks/gpu_check.py [--small] [--out FILE]

Builds a random-weight Gemma 3 GGUF with the real 270M model's shapes (262,144
tokens, 18 layers) on the spot, then goes through the app's own path:
hardware probe -> selector -> engine process -> the GPU. A model this small
is planned onto the CPU by default (MIN_TORCH_GPU_PARAMETERS), so the GPU
sections ask for the GPU as Settings would (``Preferences(device="gpu")``)
and check that they got it: the plan's device is not the CPU and its engine
is the one this machine offers for the GPU (llama.cpp when it was built with
a GPU backend, else torch); otherwise the section records an error.
Compares decode speed with llama.cpp on this machine's CPU on the same file.
Each section records its own error instead of stopping the run. The last
line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from inference.engine import EngineOptions, ExecutionPlan, SamplingParams  # noqa: E402
from inference.errors import EngineCrashedError  # noqa: E402
from inference.gguf_info import read_gguf_info  # noqa: E402
from inference.hardware import CpuFacts, GpuDevice, probe_hardware  # noqa: E402
from inference.selector import Preferences, select_plan  # noqa: E402
from inference.session import ModelChoice, open_model  # noqa: E402
from tests.gguf_factory import write_random_gemma3  # noqa: E402

SAMPLING = SamplingParams(temperature=0.8, seed=3, max_tokens=128, repeat_penalty=1.0)
ON_GPU = Preferences(device="gpu")  # what this check measures, whatever the selector would choose by itself
QUESTIONS = ["what is the sea?", "why is it blue?", "what fish live in it?", "and whales?", "is it salty?"]


def section(results: dict, name: str):
    """Decorator-like helper: run a section, store its result or its error."""

    def run(function):
        started = time.perf_counter()
        try:
            results[name] = function()
        except Exception as exc:  # noqa: BLE001 - one failing section must not lose the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
        print(f"[{time.perf_counter() - started:6.1f} s] {name}: {json.dumps(results[name], default=str)[:600]}",
              flush=True)
        return results[name]

    return run


def chat(engine, turns: list[str], params: SamplingParams = SAMPLING) -> list[dict]:
    messages: list[dict] = []
    rows = []
    for question in turns:
        messages.append({"role": "user", "content": question})
        stream = engine.stream_chat(messages, params=params, cancel=threading.Event())
        reply = "".join(stream)
        messages.append({"role": "assistant", "content": reply.strip() or "ok"})
        stats = stream.stats
        rows.append({"prompt": stats.prompt_tokens, "evaluated": stats.prompt_tokens_evaluated,
                     "tokens": stats.completion_tokens, "ttft_s": round(stats.ttft_s, 4),
                     "tok_s": round(stats.tokens_per_s, 1), "finish": stats.finish_reason})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="a tiny model, for a dry run on a CPU machine")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU baseline and the fallback check")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hearth-gpu-"))
    results: dict = {}

    shape = (dict(hidden=64, layers=2, heads=2, head_dim=32, ff=128, vocab_size=0) if args.small else
             dict(hidden=640, layers=18, heads=4, kv_heads=1, head_dim=256, ff=2048, sliding_window=512,
                  vocab_size=262144))
    model_path = work / "random-gemma-3-270m-it.gguf"
    section(results, "model")(lambda: {"bytes": write_random_gemma3(model_path, **shape).stat().st_size,
                                       "parameters": read_gguf_info(model_path).parameter_count})

    hardware = probe_hardware()
    results["hardware"] = {"gpus": [asdict(gpu) for gpu in hardware.gpus], "torch_backends": hardware.torch_gpu_backends,
                           "llama_gpu_offload": hardware.llama_gpu_offload, "cpu": hardware.cpu.describe(),
                           "notes": hardware.notes}
    print("hardware:", json.dumps(results["hardware"]), flush=True)
    info = read_gguf_info(model_path)
    default_plan = select_plan(hardware, info, Preferences())
    wanted_engine = "llama.cpp" if (getattr(hardware, "llama_gpus", ()) or hardware.llama_gpu_offload) else "torch"

    def gpu_plan():
        plan = select_plan(hardware, info, ON_GPU)
        row = {"engine": plan.engine, "device": plan.device, "torch_device": plan.torch_device, "dtype": plan.dtype,
               "n_ctx": plan.n_ctx, "reason": plan.reason, "wanted_engine": wanted_engine,
               "default_plan": {"engine": default_plan.engine, "device": default_plan.device,
                                "reason": default_plan.reason}}
        _check_on_gpu(plan, wanted_engine, "the selector")
        return row

    section(results, "plan")(gpu_plan)
    options = EngineOptions(cache_dir=work / "cache")
    choice = ModelChoice(path=model_path, display_name="random gemma3")

    def gpu_session():
        first = open_model(choice, hardware, ON_GPU, options=options)
        first_load = first.load_s
        first.engine.close()
        _check_on_gpu(first.plan, wanted_engine, "the first load")
        loaded = open_model(choice, hardware, ON_GPU, options=options)
        try:
            _check_on_gpu(loaded.plan, wanted_engine, "the cached load")
            turns = chat(loaded.engine, QUESTIONS)
            cancel = threading.Event()
            stream = loaded.engine.stream_chat([{"role": "user", "content": "tell me a long story"}],
                                               params=replace(SAMPLING, max_tokens=2000), cancel=cancel)
            first_at, stop_at = 0.0, 0.0
            for _ in stream:
                now = time.perf_counter()
                first_at = first_at or now
                if not cancel.is_set() and now - first_at > 0.05:
                    stop_at = now
                    cancel.set()
            cancel_ms = (time.perf_counter() - stop_at) * 1000 if stop_at else None
            pid = loaded.engine.pid
            crashed = ""
            try:
                first_at = 0.0
                for _ in loaded.engine.stream_chat([{"role": "user", "content": "another long story"}],
                                                   params=replace(SAMPLING, max_tokens=2000),
                                                   cancel=threading.Event()):
                    first_at = first_at or time.perf_counter()
                    if time.perf_counter() - first_at > 0.05 and loaded.engine.pid == pid:
                        os.kill(pid, signal.SIGKILL)
            except EngineCrashedError as exc:
                crashed = str(exc)
            loaded.engine.load(info)
            after_crash = chat(loaded.engine, QUESTIONS[:1])
            _check_on_gpu(loaded.engine.plan, wanted_engine, "the reload after the crash")
            return {"plan": loaded.plan.summary(), "decode_mode": loaded.engine.decode_mode,
                    "first_load_s": round(first_load, 2),
                    "cached_load_s": round(loaded.load_s, 2), "turns": turns,
                    "cancel_ms": round(cancel_ms, 1) if cancel_ms else None, "cancel_finish": stream.stats.finish_reason,
                    "crash": crashed, "after_crash": after_crash}
        finally:
            loaded.engine.close()

    section(results, "gpu_session")(gpu_session)

    def cpu_baseline():
        cpu_plan = ExecutionPlan(engine="llama.cpp", device="CPU", n_threads=min(16, CpuFacts.probe().physical_cores),
                                 n_ctx=default_plan.n_ctx, n_gpu_layers=0, reason="baseline")
        from inference.process_engine import ProcessEngine

        engine = ProcessEngine(cpu_plan)
        engine.load(info)
        try:
            return {"threads": cpu_plan.n_threads, "turns": chat(engine, QUESTIONS[:2])}
        finally:
            engine.close()

    if not args.gpu_only:
        section(results, "cpu_llama_cpp")(cpu_baseline)

    def fallback():
        if not hardware.gpus:
            return {"skipped": "no GPU"}
        missing = GpuDevice(backend="cuda", index=97, name="GPU that is not there", total_bytes=80 << 30,
                            free_bytes=80 << 30)
        # torch only, on a device that is not there: the GPU load must fail and the CPU take over.
        absent = replace(hardware, gpus=(missing,), llama_gpu_offload=False)
        if hasattr(absent, "llama_gpus"):
            absent = replace(absent, llama_gpus=())
        planned = select_plan(absent, info, ON_GPU)
        _check_on_gpu(planned, "torch", "the plan for the missing GPU")
        plans = []
        loaded = open_model(choice, absent, ON_GPU, options=options, on_plan=plans.append)
        try:
            if loaded.plan.device != "CPU":
                raise AssertionError(f"the missing GPU did not fall back to the CPU: {loaded.plan.summary()}")
            return {"plans_tried": [tried.summary() for tried in plans], "device": loaded.plan.device,
                    "reason": loaded.plan.reason}
        finally:
            loaded.engine.close()

    if not args.gpu_only:
        section(results, "fallback_to_cpu")(fallback)

    text = json.dumps(results, default=str)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    print(text)


def _check_on_gpu(plan: ExecutionPlan, engine: str, what: str) -> None:
    """Raise (the section records it) unless ``plan`` runs on a GPU with ``engine``."""
    if plan.device == "CPU" or plan.engine != engine:
        raise AssertionError(f"{what} planned {plan.engine} on the {plan.device}, not {engine} on a GPU: "
                             f"{plan.reason}")


if __name__ == "__main__":
    main()
