"""GPU figures: the torch engine's CUDA-graph decoding against eager transformers, and llama.cpp's CUDA build.

    python3 tests/benchmarks/gpu.py --prepare build/gpu-bench    # here, once: what the GPU machine needs
    python3 tests/benchmarks/gpu.py --prepared build/gpu-bench   # on the GPU machine (carry build/gpu-bench)
    python3 tests/benchmarks/gpu.py --cpu                        # a tiny model on the CPU, graphs off: seconds

The GPU machine gets only a small part of the tree, so models are built
there with random weights of real shapes: Llama-3.2-1B (bf16, tied
embeddings) and a Llama-3-8B-class model, straight on the device; for
llama.cpp, a GGUF of the 1B shape with random Q4_K_M blocks. ``--prepare``
writes into a folder: ``llama.cpp-src.tar.gz`` (the llama-cpp-python sdist's
``vendor/llama.cpp`` without models, docs, media and tests) and ``site/``
(pure-Python or ABI-stable packages the GPU machine's Python may lack:
llama_cpp for the vocabulary, gguf, psutil, diskcache). ``--prepared``
uses that folder: llama.cpp is built there for the GPU's own architecture
(``-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=<sm>``), niced, while the torch
figures are measured.

Figures per model: ``torch_graph_tok_s`` (inference/torch_decoder.py,
greedy), ``torch_eager_tok_s`` (transformers' ``generate()`` on the same
model in the same run), ``torch_vs_eager``, ``roofline_fraction`` (decode
tokens/s x bytes of weights and KV read per token / the device-to-device
copy bandwidth measured in this run, counted as bytes read plus written),
``ttft_ms_1000`` (a 1,000-token prompt), ``capture_s``; and
``llamacpp_gpu_tok_s`` / ``llamacpp_gpu_vs_cpu`` (llama-bench, tg128), the
selector's plan and sentence for the GGUF here. Each section records its own
error instead of stopping the run. Progress goes to stderr; stdout's last
line is one JSON object. The same functions run in ``--cpu`` mode (device
cpu, graphs off), which the test suite runs so this script cannot rot.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from inference.engine import ExecutionPlan, SamplingParams  # noqa: E402

SOURCE_TAR = "llama.cpp-src.tar.gz"
SITE_PACKAGES = ("llama_cpp", "gguf", "psutil", "diskcache")
SKIPPED_SOURCE_FOLDERS = ("models", "docs", "media", "tests", ".github", ".devops", "benches")
N_CTX = 2048
GREEDY = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=1 << 20, ignore_eos=True)
SAMPLED = SamplingParams(seed=1, max_tokens=1 << 20, ignore_eos=True)  # the app's default chain
TARGETS = {"torch_vs_eager": 5.0, "roofline_fraction": {"llama_1b": 0.3, "llama_8b": 0.5}}


@dataclass(frozen=True)
class Shape:
    """A Llama-architecture model's dimensions."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ff: int
    vocab: int
    tied: bool
    rope_theta: float = 500000.0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


LLAMA_1B = Shape(hidden=2048, layers=16, heads=32, kv_heads=8, ff=8192, vocab=128256, tied=True)
LLAMA_8B = Shape(hidden=4096, layers=32, heads=32, kv_heads=8, ff=14336, vocab=128256, tied=False)
TINY = Shape(hidden=256, layers=2, heads=4, kv_heads=2, ff=512, vocab=512, tied=True, rope_theta=10000.0)


@dataclass(frozen=True)
class Budget:
    """How much each measurement decodes."""

    graph_tokens: int
    eager_tokens: int
    prompt_tokens: int = 1000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def section(results: dict, name: str, function, *args, **kwargs):
    """Run one section; store its result, or its error and the end of its traceback. Returns the result or None."""
    started = time.perf_counter()
    try:
        results[name] = function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one failing section must not lose the others
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
    log(f"[{time.perf_counter() - started:6.1f} s] {name}: {json.dumps(results[name], default=str)[:600]}")
    value = results[name]
    return None if isinstance(value, dict) and "error" in value else value


# ------------------------------------------------------------------ preparing the GPU machine's folder


def prepare(folder: Path) -> dict:
    """Write the trimmed llama.cpp source and the extra packages into ``folder`` (run where the .venv is)."""
    sys.path.insert(0, str(REPO / "tests" / "benchmarks"))
    from native_llama import vendored_source

    folder.mkdir(parents=True, exist_ok=True)
    source = vendored_source(Path(sys.executable))

    def keep(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(member.name).parts
        return None if len(parts) > 1 and parts[1] in SKIPPED_SOURCE_FOLDERS else member

    with tarfile.open(folder / SOURCE_TAR, "w:gz") as tar:
        tar.add(source, arcname="llama.cpp", filter=keep)
    site = folder / "site"
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir()
    for name in SITE_PACKAGES:
        module = __import__(name)
        shutil.copytree(Path(module.__file__).parent, site / name, symlinks=False,
                        ignore=shutil.ignore_patterns("__pycache__"))
    sizes = {path.name: path.stat().st_size for path in folder.iterdir() if path.is_file()}
    total = sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())
    return {"folder": str(folder), "files": sizes, "total_mib": round(total / (1 << 20), 1)}


def unpack_source(source: Path, work: Path) -> Path:
    """llama.cpp's source folder from a trimmed tar (or a folder that already is one)."""
    if source.is_dir():
        return source
    with tarfile.open(source) as tar:
        tar.extractall(work, filter="data")
    return work / "llama.cpp"


# ------------------------------------------------------------------ measurements


def environment(device: str) -> dict:
    """Versions and the device, as this run sees them."""
    import torch
    import transformers

    facts = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
             "cuda": torch.version.cuda, "device": device, "cpu_count": os.cpu_count()}
    if device.startswith("cuda"):
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        facts["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / (1 << 30), 1)
    for name in ("llama_cpp", "gguf", "psutil"):
        try:
            facts[name] = str(Path(__import__(name).__file__).parent)
        except ImportError as exc:
            facts[name] = f"missing ({exc})"
    return facts


def copy_bandwidth(device: str, nbytes: int, repeats: int) -> dict:
    """Device-to-device copy bandwidth: bytes read plus bytes written, per second."""
    import torch

    source = torch.empty(nbytes, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        target.copy_(source)
    _synchronize(device)
    elapsed = time.perf_counter() - started
    del source, target
    return {"bytes_per_s": 2 * nbytes * repeats / elapsed, "buffer_mib": nbytes >> 20, "repeats": repeats}


def build_model(shape: Shape, dtype, device: str):
    """A Llama model of ``shape`` with random weights, created on ``device`` (no CPU copy, no disk)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        hidden_size=shape.hidden, intermediate_size=shape.ff, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim,
        vocab_size=shape.vocab, tie_word_embeddings=shape.tied, max_position_embeddings=8192, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": shape.rope_theta},
        bos_token_id=2, eos_token_id=1, pad_token_id=0,
    )
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def measure_torch(shape: Shape, *, device: str, dtype, use_graphs: bool, budget: Budget, bandwidth: float | None,
                  keep_model: list | None = None) -> dict:
    """Static-cache decoding (graphs or eager) against transformers' ``generate()`` on one random model."""
    import torch

    from inference.torch_decoder import StaticDecoder

    started = time.perf_counter()
    model = build_model(shape, dtype, device)
    _synchronize(device)
    result: dict = {"build_s": round(time.perf_counter() - started, 2)}
    weights = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())
    decoder = StaticDecoder(model, n_ctx=N_CTX, device=device)
    decoder.allocate()
    if use_graphs:
        decoder.capture()
    result.update(decode_mode=decoder.mode, capture_s=round(decoder.capture_s, 3), weights_gib=weights / (1 << 30))
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, shape.vocab, (16,), generator=generator).tolist()

    greedy, _, graph_tok_s = timed_decode(decoder, prompt, GREEDY, budget.graph_tokens)
    result["torch_graph_tok_s"] = round(graph_tok_s, 1)
    sampled, _, sampled_tok_s = timed_decode(decoder, prompt, SAMPLED, budget.graph_tokens)
    result["torch_graph_sampled_tok_s"] = round(sampled_tok_s, 1)
    graphs, decoder._graphs = decoder._graphs, {}  # the same steps, run eagerly: what the graphs save
    checked = min(budget.eager_tokens, 32)
    eager_step, _, eager_step_tok_s = timed_decode(decoder, prompt, GREEDY, checked)
    eager_sampled, _, _ = timed_decode(decoder, prompt, SAMPLED, checked)
    decoder._graphs = graphs
    result["static_eager_tok_s"] = round(eager_step_tok_s, 1)
    result["graph_equals_eager_step"] = greedy[: len(eager_step)] == eager_step
    result["sampled_graph_equals_eager_step"] = sampled[: len(eager_sampled)] == eager_sampled  # same seed

    long_prompt = torch.randint(3, shape.vocab, (budget.prompt_tokens,), generator=generator).tolist()
    ttfts = []
    for _ in range(2):  # the first also warms up the prefill kernels
        decoder.reset()
        _, ttft, _ = timed_decode(decoder, long_prompt, GREEDY, 0)
        ttfts.append(ttft)
    result["ttft_ms_1000"] = round(ttfts[-1] * 1000, 1)
    result["ttft_ms_1000_cold"] = round(ttfts[0] * 1000, 1)

    eager_tok_s, reference = generate_tok_s(model, prompt, budget.eager_tokens, device)
    result["torch_eager_tok_s"] = round(eager_tok_s, 1)
    result["torch_vs_eager"] = _significant(graph_tok_s / eager_tok_s) if eager_tok_s else None
    result["tokens_agreeing_with_generate"] = _agreeing(greedy, reference)

    kv_per_position = shape.layers * shape.kv_heads * shape.head_dim * 2 * torch.tensor([], dtype=dtype).element_size()
    read_per_token = weights + kv_per_position * (len(prompt) + budget.graph_tokens // 2)
    result["bytes_read_per_token_gib"] = round(read_per_token / (1 << 30), 3)
    if bandwidth:
        result["roofline_fraction"] = _significant(graph_tok_s * read_per_token / bandwidth)
    if keep_model is not None:
        keep_model.append(model)
    del decoder, model
    _free(device)
    return result


def timed_decode(decoder, prompt: list[int], params: SamplingParams, tokens: int) -> tuple[list[int], float, float]:
    """Token ids, seconds to the first token, and tokens/s over ``tokens`` more tokens."""
    stream = decoder.generate(prompt, params)
    started = time.perf_counter()
    ids = [next(stream)]
    first_at = time.perf_counter()
    ids.extend(islice(stream, tokens))
    elapsed = time.perf_counter() - first_at
    stream.close()
    return ids, first_at - started, (tokens / elapsed if tokens and elapsed > 0 else 0.0)


def generate_tok_s(model, prompt: list[int], tokens: int, device: str) -> tuple[float, list[int]]:
    """transformers' own eager ``generate()`` (dynamic cache, greedy): decode tokens/s and the ids it chose."""
    import torch

    ids = torch.tensor([prompt], device=device)

    def run(new_tokens: int):
        _synchronize(device)
        started = time.perf_counter()
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        _synchronize(device)
        return time.perf_counter() - started, out[0, len(prompt):].tolist()

    run(2)  # warm-up
    first, _ = run(1)
    total, chosen = run(1 + tokens)
    return tokens / max(total - first, 1e-9), chosen


def measure_engine(model, shape: Shape, gguf_path: Path, *, device: str, dtype_name: str, use_graphs: bool,
                   work: Path, tokens: int) -> dict:
    """The app's torch engine on ``model``, written into its converted-weights cache for ``gguf_path``."""
    import threading

    import torch
    from safetensors.torch import save_model

    from inference.gguf_info import read_gguf_info
    from inference.torch_engine import TorchEngine, converted_weights_dir

    cache = work / "cache"
    folder = converted_weights_dir(cache, gguf_path, getattr(torch, dtype_name))
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(str(folder))
    save_model(model, str(folder / "model.safetensors"))
    result: dict = {"write_s": round(time.perf_counter() - started, 2)}
    plan = ExecutionPlan(engine="torch", device="CPU" if device == "cpu" else "CUDA", n_threads=os.cpu_count() or 1,
                         n_ctx=N_CTX, n_gpu_layers=0, reason="benchmark", dtype=dtype_name, torch_device=device)
    engine = TorchEngine(plan, cache_dir=cache, use_graphs=use_graphs)
    started = time.perf_counter()
    engine.load(read_gguf_info(gguf_path))
    result.update(load_s=round(time.perf_counter() - started, 2), decode_mode=engine.decode_mode,
                  capture_s=round(engine.capture_s, 3))
    try:
        params = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=tokens, ignore_eos=True)
        messages: list[dict] = []
        turns = []
        for question in ("what is the sea?", "why is it blue?"):
            messages.append({"role": "user", "content": question})
            stream = engine.stream_chat(messages, params=params, cancel=threading.Event())
            messages.append({"role": "assistant", "content": "".join(stream).strip() or "ok"})
            stats = stream.stats
            turns.append({"prompt": stats.prompt_tokens, "evaluated": stats.prompt_tokens_evaluated,
                          "tokens": stats.completion_tokens, "ttft_ms": round(stats.ttft_s * 1000, 1),
                          "tok_s": round(stats.tokens_per_s, 1)})
        result["turns"] = turns
        result["reuse_works"] = turns[1]["evaluated"] < turns[1]["prompt"]
        cancel = threading.Event()
        stream = engine.stream_chat([{"role": "user", "content": "a long story"}],
                                    params=SamplingParams(seed=2, max_tokens=tokens, ignore_eos=True), cancel=cancel)
        seen = 0
        for _chunk in stream:
            seen += 1
            if seen == 5:
                cancel.set()
        result["stop"] = {"finish": stream.stats.finish_reason, "tokens": stream.stats.completion_tokens}
    finally:
        engine.close()
        _free(device)
    return result


def plan_here(gguf_path: Path) -> dict:
    """What Hearth's selector chooses for the GGUF on this machine, and its sentence."""
    from inference.gguf_info import read_gguf_info
    from inference.hardware import probe_hardware
    from inference.selector import Preferences, select_plan

    hardware = probe_hardware()
    plan = select_plan(hardware, read_gguf_info(gguf_path), Preferences())
    return {"engine": plan.engine, "device": plan.device, "torch_device": plan.torch_device,
            "n_gpu_layers": plan.n_gpu_layers, "summary": plan.summary(), "reason": plan.reason,
            "gpus": [gpu.name for gpu in hardware.gpus], "llama_gpu_offload": hardware.llama_gpu_offload}


def write_gguf(shape: Shape, path: Path) -> dict:
    """The Q4_K_M GGUF of ``shape`` for llama.cpp (random blocks); also the torch engine's vocabulary."""
    from tests.gguf_factory import write_random_llama

    started = time.perf_counter()
    write_random_llama(path, hidden=shape.hidden, layers=shape.layers, heads=shape.heads, kv_heads=shape.kv_heads,
                       ff=shape.ff, vocab_size=shape.vocab, context_length=131072, rope_theta=shape.rope_theta,
                       tied_embeddings=shape.tied, weights="Q4_K_M")
    return {"path": str(path), "mib": round(path.stat().st_size / (1 << 20), 1),
            "write_s": round(time.perf_counter() - started, 2)}


# ------------------------------------------------------------------ llama.cpp


def start_llama_build(source: Path, build: Path, capability: tuple[int, int]) -> tuple[subprocess.Popen, dict]:
    """Configure and build llama-bench with CUDA for this GPU's architecture only, niced, in the background.

    Returns the build's process and what it was configured with.
    """
    from inference.hardware import cpu_features

    flags = cpu_features()
    amx = ("amx_tile", "amx_int8", "amx_bf16")  # llama.cpp's AMX kernels crash (NOTES.md)
    no_amx = " ".join(f"-mno-{name.replace('_', '-')}" for name in amx if name in flags)
    cuda_flags, include, library_dir = cuda_library_flags()
    jobs = max(2, (os.cpu_count() or 4) - 2)  # two cores stay with the torch measurements
    configure = [
        "cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DGGML_CUDA=ON",
        f"-DCMAKE_CUDA_ARCHITECTURES={capability[0]}{capability[1]}", "-DGGML_NATIVE=ON", "-DGGML_AMX_TILE=OFF",
        "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_OPENSSL=OFF", f"-DCMAKE_C_FLAGS={no_amx}",
        f"-DCMAKE_CXX_FLAGS={no_amx} {include}".strip(), *cuda_flags,
    ]
    if shutil.which("ninja"):
        configure[1:1] = ["-G", "Ninja"]
    compile_ = ["cmake", "--build", str(build), "--target", "llama-bench", "-j", str(jobs)]
    script = " ".join(map(_quote, configure)) + " && " + " ".join(map(_quote, compile_))
    build.mkdir(parents=True, exist_ok=True)
    output = open(build / "build.log", "wb")  # noqa: SIM115 - closed with the process by the OS
    process = subprocess.Popen(["nice", "-n", "10", "sh", "-c", script], stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)
    return process, {"configure": configure[4:], "jobs": jobs, "library_dir": library_dir}


def cuda_library_flags() -> tuple[list[str], str, str]:
    """CMake flags for a CUDA toolkit that may lack cuBLAS (pip's NVIDIA wheels then have it) or libcuda.so.

    Returns the flags, an ``-I`` option for cuBLAS's headers ('' when the
    toolkit has them) and the folder llama-bench must load cuBLAS from ('').
    """
    flags = ["-DGGML_CUDA_NO_VMM=ON"]  # no link against the driver's libcuda.so, which driver-only installs lack
    toolkit = Path(os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda")
    if list(toolkit.glob("lib*/libcublas.so*")) or list(toolkit.glob("targets/*/lib/libcublas.so*")):
        return flags, "", ""
    import site

    for folder in [*site.getsitepackages(), site.getusersitepackages(), *sys.path]:
        nvidia = Path(folder) / "nvidia"
        if not nvidia.is_dir():
            continue
        cublas = sorted(nvidia.glob("**/libcublas.so*"))
        cublas_lt = sorted(nvidia.glob("**/libcublasLt.so*"))
        headers = sorted(nvidia.glob("**/cublas_v2.h"))
        if cublas and cublas_lt and headers:
            include = f"-I{headers[0].parent}"
            flags += [f"-DCUDA_cublas_LIBRARY={cublas[0]}", f"-DCUDA_cublasLt_LIBRARY={cublas_lt[0]}",
                      f"-DCMAKE_CUDA_FLAGS={include}"]
            return flags, include, str(cublas[0].parent)
    return flags, "", ""


def finish_llama_build(process: subprocess.Popen, build: Path, deadline: float) -> Path:
    """Wait for the build until ``deadline`` (perf_counter); the llama-bench binary, or RuntimeError."""
    try:
        code = process.wait(timeout=max(1.0, deadline - time.perf_counter()))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        raise RuntimeError("the llama.cpp build ran out of time") from None
    if code != 0:
        tail = (build / "build.log").read_text(errors="replace")[-1200:]
        raise RuntimeError(f"the llama.cpp build failed ({code}): {tail}")
    return build / "bin" / "llama-bench"


def llama_bench(binary: Path, model: Path, *, gpu_layers: int, threads: int, tokens: int = 128,
                repetitions: int = 2, hide_gpus: bool = False, library_dir: str = "") -> float:
    """Decode tokens/s of llama-bench's tg test."""
    env = dict(os.environ)
    if hide_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    if library_dir:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [library_dir, env.get("LD_LIBRARY_PATH")]))
    result = subprocess.run(
        [str(binary), "-m", str(model), "-p", "0", "-n", str(tokens), "-ngl", str(gpu_layers), "-t", str(threads),
         "-r", str(repetitions), "-fa", "1", "-o", "json"],
        check=True, capture_output=True, text=True, env=env, timeout=300,
    )
    return json.loads(result.stdout)[0]["avg_ts"]


def llamacpp_gpu(binary: Path, model: Path, library_dir: str = "") -> dict:
    """llama.cpp on the GPU (all layers) and on the CPU alone, same binary and file."""
    threads = _physical_cores()
    gpu = llama_bench(binary, model, gpu_layers=99, threads=threads, library_dir=library_dir)
    cpu = llama_bench(binary, model, gpu_layers=0, threads=threads, tokens=64, hide_gpus=True,
                      library_dir=library_dir)
    return {"llamacpp_gpu_tok_s": round(gpu, 1), "llamacpp_cpu_tok_s": round(cpu, 1), "cpu_threads": threads,
            "llamacpp_gpu_vs_cpu": round(gpu / cpu, 2)}


def llamacpp_cpu_engine(model: Path, tokens: int) -> dict:
    """The app's llama.cpp engine (llama-cpp-python) on the CPU, for --cpu runs: the GGUF loads and decodes."""
    import threading

    from inference.gguf_info import read_gguf_info
    from inference.llama_cpp_engine import LlamaCppEngine

    plan = ExecutionPlan(engine="llama.cpp", device="CPU", n_threads=_physical_cores(), n_ctx=N_CTX, n_gpu_layers=0,
                         reason="benchmark")
    engine = LlamaCppEngine(plan)
    engine.load(read_gguf_info(model))
    try:
        params = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=tokens, ignore_eos=True)
        stream = engine.stream_chat([{"role": "user", "content": "hello"}], params=params, cancel=threading.Event())
        list(stream)
        return {"llamacpp_gpu_tok_s": None, "llamacpp_cpu_tok_s": round(stream.stats.tokens_per_s, 1),
                "llamacpp_gpu_vs_cpu": None, "skipped_gpu": "--cpu"}
    finally:
        engine.close()


# ------------------------------------------------------------------ the run


def run(args: argparse.Namespace) -> dict:
    """Every section in turn; returns the results."""
    cpu_mode = args.cpu
    device = "cpu" if cpu_mode else "cuda:0"
    work = Path(tempfile.mkdtemp(prefix="hearth-gpu-bench-"))
    results: dict = {"mode": "cpu" if cpu_mode else "gpu", "n_ctx": N_CTX}
    prepared = args.prepared
    if prepared is not None and (prepared / "site").is_dir():
        sys.path.insert(0, str(prepared / "site"))
    section(results, "environment", environment, device)

    source = None
    if not cpu_mode and prepared is not None:
        source = section(results, "llama_source", lambda: str(unpack_source(prepared / SOURCE_TAR, work)))
    if source is not None:
        try:
            import gguf  # noqa: F401
        except ImportError:  # llama.cpp's own copy of the gguf package
            sys.path.insert(0, str(Path(source) / "gguf-py"))

    import torch

    build, built_with = None, {}
    if source is not None and torch.cuda.is_available():  # first: the build takes longest
        started_build = time.perf_counter()
        try:
            build, built_with = start_llama_build(Path(source), work / "llama-build",
                                                  torch.cuda.get_device_capability(device))
        except (OSError, RuntimeError) as exc:
            results["llamacpp"] = {"error": f"could not start the build: {exc}"}
        results["llamacpp_build"] = built_with

    dtype_name = "float32" if cpu_mode else "bfloat16"
    dtype = getattr(torch, dtype_name)
    budget = Budget(graph_tokens=32, eager_tokens=16) if cpu_mode else Budget(graph_tokens=256, eager_tokens=64)
    copy = section(results, "bandwidth", copy_bandwidth, device, (64 << 20) if cpu_mode else (1 << 30),
                   5 if cpu_mode else 50)
    bandwidth = copy["bytes_per_s"] if copy else None

    small = TINY if cpu_mode else LLAMA_1B
    gguf_path = work / ("random-llama-tiny-q4_k_m.gguf" if cpu_mode else "random-llama-3.2-1b-q4_k_m.gguf")
    have_gguf = section(results, "gguf", write_gguf, small, gguf_path) is not None

    if have_gguf:
        section(results, "plan", plan_here, gguf_path)

    use_graphs = not cpu_mode
    kept: list = []
    building = build is not None and build.poll() is None  # the compiler shares the CPU: eager figures suffer most
    section(results, "llama_1b" if not cpu_mode else "tiny", measure_torch, small, device=device, dtype=dtype,
            use_graphs=use_graphs, budget=budget, bandwidth=bandwidth, keep_model=kept)
    results["llama_1b" if not cpu_mode else "tiny"]["llama_build_running"] = building
    if kept and have_gguf:
        section(results, "engine", measure_engine, kept[0], small, gguf_path, device=device, dtype_name=dtype_name,
                use_graphs=use_graphs, work=work, tokens=budget.graph_tokens)
    else:
        results["engine"] = {"skipped": "no model or no GGUF (see the sections above)"}
    kept.clear()
    _free(device)
    if not cpu_mode and not args.skip_8b:
        building = build is not None and build.poll() is None
        section(results, "llama_8b", measure_torch, LLAMA_8B, device=device, dtype=dtype, use_graphs=True,
                budget=Budget(graph_tokens=128, eager_tokens=32), bandwidth=bandwidth)
        results["llama_8b"]["llama_build_running"] = building

    if cpu_mode and have_gguf:
        section(results, "llamacpp", llamacpp_cpu_engine, gguf_path, budget.graph_tokens)
    elif build is not None and have_gguf:
        deadline = started_build + args.build_timeout

        def llamacpp():
            binary = finish_llama_build(build, work / "llama-build", deadline)
            return llamacpp_gpu(binary, gguf_path, built_with.get("library_dir", ""))

        section(results, "llamacpp", llamacpp)
        results["llamacpp"]["build_s"] = round(time.perf_counter() - started_build, 1)
    elif "llamacpp" not in results:
        results["llamacpp"] = {"skipped": "no llama.cpp source (--prepared) or no CUDA device"}
    results["summary"] = summary(results)
    shutil.rmtree(work, ignore_errors=True)
    return results


def summary(results: dict) -> dict:
    """The headline figures and whether they meet their targets."""
    rows = {}
    for name in ("llama_1b", "llama_8b", "tiny"):
        measured = results.get(name)
        if not isinstance(measured, dict) or "error" in measured:
            continue
        row = {key: measured.get(key) for key in ("torch_graph_tok_s", "torch_eager_tok_s", "torch_vs_eager",
                                                  "roofline_fraction", "ttft_ms_1000", "capture_s", "decode_mode")}
        if name in TARGETS["roofline_fraction"]:
            row["meets_targets"] = bool((row["torch_vs_eager"] or 0) >= TARGETS["torch_vs_eager"]
                                        and (row["roofline_fraction"] or 0) >= TARGETS["roofline_fraction"][name])
        rows[name] = row
    llamacpp = results.get("llamacpp") or {}
    rows["llamacpp_gpu_tok_s"] = llamacpp.get("llamacpp_gpu_tok_s")
    rows["llamacpp_gpu_vs_cpu"] = llamacpp.get("llamacpp_gpu_vs_cpu")
    plan = results.get("plan") or {}
    rows["plan"] = plan.get("summary")
    rows["plan_reason"] = plan.get("reason")
    rows["errors"] = sorted(name for name, value in results.items() if isinstance(value, dict) and "error" in value)
    return rows


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _agreeing(first: list[int], second: list[int]) -> int:
    """How many leading tokens two greedy runs share (bf16 kernels differ between cache layouts)."""
    count = 0
    for a, b in zip(first, second):
        if a != b:
            break
        count += 1
    return count


def _significant(value: float) -> float:
    """Three significant digits (a slow CI machine's fractions must not round to zero)."""
    return float(f"{value:.3g}")


def _physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="a tiny model on the CPU with graphs off (seconds)")
    parser.add_argument("--prepare", type=Path, metavar="DIR", help="write the GPU machine's folder and stop")
    parser.add_argument("--prepared", type=Path, metavar="DIR", help="the folder --prepare wrote (carried here)")
    parser.add_argument("--skip-8b", action="store_true", help="leave out the 8B-class model")
    parser.add_argument("--build-timeout", type=float, default=330.0, help="seconds the llama.cpp build may take")
    parser.add_argument("--out", type=Path, help="also write the results here, indented")
    args = parser.parse_args()
    if args.prepare is not None:
        print(json.dumps(prepare(args.prepare)))
        return
    results = run(args)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
