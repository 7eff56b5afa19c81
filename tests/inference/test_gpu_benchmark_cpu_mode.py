"""tests/benchmarks/gpu.py in its CPU mode: the same measurements on a tiny model, so the GPU script cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def figures() -> dict:
    result = subprocess.run([sys.executable, str(SCRIPT), "--cpu"], capture_output=True, text=True, timeout=300,
                            cwd=SCRIPT.parents[2])
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_section_ran_without_an_error(figures: dict) -> None:
    assert figures["mode"] == "cpu"
    assert figures["summary"]["errors"] == [], {name: figures[name] for name in figures["summary"]["errors"]}
    for name in ("environment", "bandwidth", "gguf", "plan", "tiny", "engine", "llamacpp", "summary"):
        assert name in figures


def test_torch_figures_are_sane(figures: dict) -> None:
    tiny = figures["tiny"]
    assert tiny["decode_mode"] == "eager" and tiny["capture_s"] == 0.0  # graphs are off on the CPU
    for key in ("torch_graph_tok_s", "torch_graph_sampled_tok_s", "static_eager_tok_s", "torch_eager_tok_s"):
        assert 1 < tiny[key] < 1e6, key
    assert tiny["torch_vs_eager"] == pytest.approx(tiny["torch_graph_tok_s"] / tiny["torch_eager_tok_s"], abs=0.02)
    assert 0 < tiny["ttft_ms_1000"] < 60_000
    assert 0 < tiny["roofline_fraction"] < 1.5
    assert tiny["graph_equals_eager_step"] is True and tiny["sampled_graph_equals_eager_step"] is True
    # In f32 the static cache decodes what transformers' generate() does (17 tokens compared).
    assert tiny["tokens_agreeing_with_generate"] >= 12  # of 17; a near-tie could flip a late one elsewhere
    assert figures["bandwidth"]["bytes_per_s"] > 1e8


def test_the_engine_and_llama_cpp_use_the_written_files(figures: dict) -> None:
    engine = figures["engine"]
    assert engine["decode_mode"] == "eager"
    assert [turn["tokens"] for turn in engine["turns"]] == [32, 32]
    assert engine["reuse_works"] is True
    assert engine["stop"]["finish"] == "cancelled"
    llamacpp = figures["llamacpp"]
    assert llamacpp["llamacpp_cpu_tok_s"] > 1  # the random Q4_K_M GGUF loads and decodes in llama.cpp
    assert llamacpp["llamacpp_gpu_tok_s"] is None and llamacpp["llamacpp_gpu_vs_cpu"] is None
    assert figures["plan"]["engine"] == "llama.cpp" and figures["plan"]["reason"]


def test_the_summary_names_the_headline_figures(figures: dict) -> None:
    row = figures["summary"]["tiny"]
    assert set(row) >= {"torch_graph_tok_s", "torch_eager_tok_s", "torch_vs_eager", "roofline_fraction",
                        "ttft_ms_1000", "capture_s"}
    assert {"llamacpp_gpu_tok_s", "llamacpp_gpu_vs_cpu", "plan", "plan_reason"} <= set(figures["summary"])
