"""The torch engine on a small random Gemma 3 GGUF (on the CPU here; the same code runs on a GPU)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from inference.engine import ExecutionPlan, SamplingParams
from inference.gguf_info import read_gguf_info
from inference.torch_engine import TorchEngine, sample_token
from tests.gguf_factory import write_random_gemma3

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0.0, max_tokens=12, repeat_penalty=1.0)


def torch_plan(n_ctx: int = 1024) -> ExecutionPlan:
    return ExecutionPlan(engine="torch", device="CPU", n_threads=2, n_ctx=n_ctx, n_gpu_layers=0, reason="test",
                         dtype="float32", torch_device="cpu")


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> Path:
    return write_random_gemma3(tmp_path_factory.mktemp("torch") / "random-gemma3-it.gguf")


@pytest.fixture
def engine(random_model: Path, tmp_path: Path):
    engine = TorchEngine(torch_plan(), cache_dir=tmp_path / "cache")
    engine.load(read_gguf_info(random_model))
    yield engine
    engine.close()


def test_converted_weights_are_cached_for_the_next_load(random_model: Path, tmp_path: Path, engine) -> None:
    cached = list((tmp_path / "cache" / "torch").glob("*/config.json"))
    assert len(cached) == 1
    again = TorchEngine(torch_plan(), cache_dir=tmp_path / "cache")
    again.load(read_gguf_info(random_model))
    try:
        messages = [{"role": "user", "content": "what is the sea?"}]
        first = "".join(engine.stream_chat(messages, params=GREEDY, cancel=threading.Event()))
        second = "".join(again.stream_chat(messages, params=GREEDY, cancel=threading.Event()))
        assert first == second
    finally:
        again.close()


def test_a_reply_streams_with_stats(engine: TorchEngine) -> None:
    assert engine.chat_format_name == "Gemma turns"  # an "it" model without a template
    stream = engine.stream_chat([{"role": "user", "content": "hello"}], params=GREEDY, cancel=threading.Event())
    list(stream)
    assert stream.stats.completion_tokens > 0
    assert stream.stats.prompt_tokens_evaluated == stream.stats.prompt_tokens
    assert stream.stats.context_window == 1024


def test_reusing_the_kv_cache_gives_the_same_logits_as_recomputing(engine: TorchEngine) -> None:
    long_prompt = engine._tokenize([{"role": "user", "content": "the sea is blue and the whale is in the water " * 4}])
    assert len(long_prompt) > 40  # crosses the 16-token sliding window
    with torch.inference_mode():
        engine._decode(engine._reuse_cache_for(long_prompt[:-5]))
        remaining = engine._reuse_cache_for(long_prompt)
        assert len(remaining) == 5
        reused = engine._decode(remaining)
        engine._kv = None
        fresh = engine._decode(engine._reuse_cache_for(long_prompt))
    torch.testing.assert_close(reused, fresh, atol=1e-4, rtol=1e-4)


def test_later_turns_only_compute_new_tokens(engine: TorchEngine) -> None:
    messages: list[dict] = []
    stats = []
    for question in ["hello", "what is the sea?", "why is it blue?"]:
        messages.append({"role": "user", "content": question})
        stream = engine.stream_chat(messages, params=GREEDY, cancel=threading.Event())
        messages.append({"role": "assistant", "content": "".join(stream).strip() or "ok"})
        stats.append(stream.stats)
    for turn in stats[1:]:
        assert turn.prompt_tokens_evaluated < turn.prompt_tokens


def test_cancel_stops_between_tokens(engine: TorchEngine) -> None:
    cancel = threading.Event()
    cancel.set()
    stream = engine.stream_chat([{"role": "user", "content": "hello"}], params=GREEDY, cancel=cancel)
    assert list(stream) == []
    assert stream.stats.finish_reason == "cancelled" and stream.stats.completion_tokens == 0


def test_sampling_rules() -> None:
    logits = torch.tensor([1.0, 3.0, 2.0, -1.0])
    generator = torch.Generator().manual_seed(0)
    assert sample_token(logits.clone(), SamplingParams(temperature=0.0, repeat_penalty=1.0), generator, []) == 1
    # Penalising the favourite token makes the runner-up win.
    assert sample_token(logits.clone(), SamplingParams(temperature=0.0, repeat_penalty=2.0), generator, [1]) == 2
    # top_k=1 is greedy whatever the temperature.
    for _ in range(20):
        assert sample_token(logits.clone(), SamplingParams(temperature=1.5, top_k=1), generator, []) == 1
    # min_p keeps only tokens at least that fraction as likely as the best.
    picks = {sample_token(logits.clone(), SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.5,
                                                          repeat_penalty=1.0), generator, []) for _ in range(50)}
    assert picks == {1}

