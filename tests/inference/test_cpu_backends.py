"""llama.cpp's CPU variants: found, scored by their own code, the unsafe ones never chosen, each one runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inference.cpu_backends import (
    UNSAFE_VARIANTS,
    CpuVariant,
    best_variant,
    llama_library_dir,
    score_variants,
    variant_files,
)
from inference.hardware import cpu_features

REPO = Path(__file__).resolve().parents[2]
INSTALLED = variant_files(llama_library_dir())
needs_variants = pytest.mark.skipif(not INSTALLED, reason="this llama.cpp build has its CPU backend built in")


def test_variant_files_are_named_by_their_kernels(tmp_path: Path) -> None:
    for name in ("libggml-cpu-haswell.so", "libggml-cpu-x64.so", "ggml-cpu-zen4.dll", "libggml-base.so",
                 "libggml-cpu-haswell.so.0", "libllama.so", "libggml-cpu-armv8.2_1.so"):
        (tmp_path / name).write_bytes(b"")
    assert [v.name for v in variant_files(tmp_path)] == ["armv8.2_1", "haswell", "x64", "zen4"]


def test_an_unsafe_variant_is_never_the_best_even_with_the_top_score() -> None:
    variants = [CpuVariant("haswell", Path("a"), 100), CpuVariant("sapphirerapids", Path("b"), 4000),
                CpuVariant("icelake", Path("c"), 900), CpuVariant("zen4", Path("d"), 0)]
    assert best_variant(variants).name == "icelake"
    assert best_variant([CpuVariant("x64", Path("a"), 0)]) is None
    assert "sapphirerapids" in UNSAFE_VARIANTS


@needs_variants
def test_scores_match_what_the_processor_has() -> None:
    """Each variant's own score (CPUID) agrees with the CPU's flags: AVX2 kernels only where AVX2 is."""
    scores = {v.name: v.score for v in score_variants(INSTALLED)}
    flags = cpu_features()
    assert scores["x64"] > 0 and scores["sse42"] > 0
    assert (scores["haswell"] > 0) == ({"avx2", "fma", "f16c", "bmi2"} <= flags)
    assert (scores["skylakex"] > 0) == ({"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags)
    assert scores.get("sapphirerapids", 0) == 0
    assert scores["x64"] < scores["sse42"]


def self_test(tmp_path: Path, *args: str) -> dict:
    result = subprocess.run([sys.executable, str(REPO / "main.py"), "--self-test", "--home", str(tmp_path), *args],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@needs_variants
def test_the_engine_runs_on_the_best_variant_and_names_it(tmp_path: Path) -> None:
    report = self_test(tmp_path)
    expected = best_variant(score_variants(INSTALLED)).name
    assert report["ok"] is True and report["tokens"] > 0
    assert report["cpu_variant"] == expected not in UNSAFE_VARIANTS


@pytest.mark.slow
@needs_variants
@pytest.mark.parametrize("variant", ["x64", "sse42", "haswell"])
def test_the_portable_variants_generate_too(tmp_path: Path, variant: str) -> None:
    """The kernels an older CPU gets (down to plain x86-64) load the real model and generate."""
    if not {v.name: v.score for v in score_variants(INSTALLED)}.get(variant):
        pytest.skip(f"this CPU cannot run the {variant} kernels")
    report = self_test(tmp_path, "--cpu-variant", variant, "--tokens", "8")
    assert report["ok"] is True, report
    assert (report["cpu_variant"], report["tokens"]) == (variant, 8)


@pytest.mark.slow
@needs_variants
def test_a_variant_this_cpu_cannot_run_is_refused_with_a_sentence(tmp_path: Path) -> None:
    report = self_test(tmp_path, "--cpu-variant", "sapphirerapids")
    assert report["ok"] is False
    assert "cannot run on this processor" in report["error"]
