"""The outside references: llama.cpp's own ``llama-bench`` and ``llama-server``, built natively from the same source.

The source is the ``vendor/llama.cpp`` of the llama-cpp-python sdist Hearth
builds (so both run the same kernels' code), compiled for this very CPU
(``GGML_NATIVE``, AMX left out: its kernels crash on Sapphire Rapids) in a
scratch folder under the user cache, once per CPU. Used by the figures
scripts; not part of the app.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))
from bootstrap import LLAMA_CPP_VERSION, cpu_features, wheel_cache_dir  # noqa: E402

SCRATCH = wheel_cache_dir().parent / "native-llama"


def build_llama_bench(python: Path = Path(sys.executable)) -> Path:
    """``llama-bench`` built with native flags minus AMX; built once per CPU, then reused."""
    return build_native_tool("llama-bench", python)


def build_llama_server(python: Path = Path(sys.executable)) -> Path:
    """llama.cpp's own OpenAI-compatible ``llama-server``, built as :func:`build_llama_bench` is."""
    return build_native_tool("llama-server", python)


def build_native_tool(target: str, python: Path = Path(sys.executable)) -> Path:
    """One of llama.cpp's programs (``llama-bench``, ``llama-server``, ``llama-embedding``) built natively minus
    AMX, once per CPU."""
    flags = cpu_features()
    key = hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:10]
    build = SCRATCH / f"build-{LLAMA_CPP_VERSION}-{key}"
    binary = build / "bin" / target
    if binary.exists():
        return binary
    source = vendored_source(python)
    no_amx = " ".join(f"-mno-{name.replace('_', '-')}" for name in ("amx_tile", "amx_int8", "amx_bf16")
                      if name in flags)
    configure = [
        "cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
        "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF", "-DLLAMA_CURL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=ON", "-DLLAMA_BUILD_SERVER=ON",  # llama-embedding
        f"-DCMAKE_C_FLAGS={no_amx}", f"-DCMAKE_CXX_FLAGS={no_amx}",
    ]
    for command in (configure, ["cmake", "--build", str(build), "--target", target, "-j", str(os.cpu_count() or 2)]):
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            raise RuntimeError(f"Building {target} failed:\n{done.stderr[-4000:]}")
    return binary


def llama_bench_decode(binary: Path, model: Path, *, threads: int, tokens: int = 128, repetitions: int = 3,
                       flash_attn: str = "1") -> dict:
    """Decode tokens/s of ``tokens`` generated tokens (llama-bench's tg test), averaged over ``repetitions``."""
    result = subprocess.run(
        [str(binary), "-m", str(model), "-p", "0", "-n", str(tokens), "-t", str(threads), "-r", str(repetitions),
         "-fa", flash_attn, "-o", "json"],
        check=True, capture_output=True, text=True,
    )
    row = json.loads(result.stdout)[0]
    return {"tokens_per_s": row["avg_ts"], "stddev": row["stddev_ts"], "cpu_info": row.get("cpu_info", ""),
            "flash_attn": flash_attn}


def llama_bench_prefill(binary: Path, model: Path, *, threads: int, tokens: int = 512, repetitions: int = 3) -> float:
    """Prompt tokens/s for a ``tokens``-token prompt (llama-bench's pp test)."""
    result = subprocess.run(
        [str(binary), "-m", str(model), "-p", str(tokens), "-n", "0", "-t", str(threads), "-r", str(repetitions),
         "-fa", "1", "-o", "json"],
        check=True, capture_output=True, text=True,
    )
    return json.loads(result.stdout)[0]["avg_ts"]


def vendored_source(python: Path) -> Path:
    """llama.cpp's source from the llama-cpp-python sdist (downloaded from PyPI once)."""
    unpacked = SCRATCH / f"llama_cpp_python-{LLAMA_CPP_VERSION}"
    if (unpacked / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        return unpacked / "vendor" / "llama.cpp"
    SCRATCH.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(python), "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d",
                    str(SCRATCH), f"llama-cpp-python=={LLAMA_CPP_VERSION}"], check=True)
    archive = next(SCRATCH.glob(f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz"))
    with tarfile.open(archive) as tar:
        skipped = tuple(f"/vendor/llama.cpp/{folder}/" for folder in ("models", "docs", "media"))  # vocab files
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name and not any(s in m.name for s in skipped)]
        tar.extractall(SCRATCH, members=members, filter="data")
    return unpacked / "vendor" / "llama.cpp"
