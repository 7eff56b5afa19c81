"""tests/benchmarks/startup.py compares like with like: its baseline does the self-test's work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inference.gguf_info import read_gguf_info
from inference.llama_cpp_engine import LlamaCppEngine
from inference.self_test import SELF_TEST_PROMPT
from model_store.paths import AppPaths
from tests.benchmarks import startup

pytestmark = pytest.mark.slow


def test_the_baseline_runs_the_self_tests_plan_prompt_and_token_count(tmp_path: Path, builtin_model_path: Path) -> None:
    home = tmp_path / "home"
    paths = AppPaths.under(home)
    paths.create()
    model = paths.models_dir / "builtin" / builtin_model_path.name
    model.parent.mkdir(parents=True)
    shutil.copyfile(builtin_model_path, model)
    report = startup.self_test(home, tokens=8)  # the built-in model as Hearth runs it
    assert report["ok"] and report["tokens"] == 8
    plan = startup.hearth_plan(home, model, report)
    baseline = startup.raw_decode(model, plan, report["cpu_variant"], tokens=8)
    assert (baseline["n_ctx"], baseline["n_threads"], baseline["tokens"]) == (plan.n_ctx, plan.n_threads, 8)
    assert baseline["tokens_per_s"] > 0
    # The prompt Hearth's own engine makes of the self-test's message, token for token.
    engine = LlamaCppEngine(plan, state_cache_bytes=0)
    try:
        engine.load(read_gguf_info(model))
        assert baseline["prompt"] == engine._tokenize([{"role": "user", "content": SELF_TEST_PROMPT}])
    finally:
        engine.close()
