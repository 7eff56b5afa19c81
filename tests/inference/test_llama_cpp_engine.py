"""The engine on the real built-in model, opened as the app opens it: replies, streaming, stopping, limits."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from inference.engine import SamplingParams
from inference.errors import ContextOverflowError
from inference.hardware import CpuFacts, probe_hardware
from inference.selector import Preferences
from inference.session import LoadedModel, ModelChoice, open_model

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0.0, seed=0, max_tokens=48)


@pytest.fixture(scope="module")
def loaded(builtin_model_path: Path):
    model = open_model(ModelChoice(path=builtin_model_path, display_name="Demo", is_demo=True), probe_hardware(),
                       Preferences())
    yield model
    model.engine.close()


def test_builtin_model_gives_a_non_empty_reply(loaded: LoadedModel) -> None:
    stream = loaded.engine.stream_chat(
        [{"role": "user", "content": "What is the capital of Japan?"}], params=GREEDY, cancel=threading.Event()
    )
    chunks = list(stream)
    reply = "".join(chunks)
    assert reply.strip()
    assert reply == reply.lstrip()
    assert "User:" not in reply and "<end_of_turn>" not in reply
    assert stream.stats.finish_reason in ("stop", "length")
    assert 0 < stream.stats.completion_tokens <= GREEDY.max_tokens
    assert 0 < stream.stats.ttft_s <= stream.stats.total_s


def test_plan_and_format_for_the_builtin_model(loaded: LoadedModel) -> None:
    assert (loaded.plan.engine, loaded.plan.device, loaded.plan.n_gpu_layers) == ("llama.cpp", "CPU", 0)
    assert loaded.plan.n_threads == CpuFacts.probe().physical_cores
    assert "CPU" in loaded.plan.reason
    assert loaded.engine.chat_format_name == "plain transcript"  # a base model gets the transcript


def test_greedy_replies_are_reproducible(loaded: LoadedModel) -> None:
    messages = [{"role": "user", "content": "Name a fruit."}]
    first = "".join(loaded.engine.stream_chat(messages, params=GREEDY, cancel=threading.Event()))
    second = "".join(loaded.engine.stream_chat(messages, params=GREEDY, cancel=threading.Event()))
    assert first == second


def test_cancel_stops_within_one_token(loaded: LoadedModel) -> None:
    cancel = threading.Event()
    params = SamplingParams(temperature=0.8, seed=3, max_tokens=400)
    stream = loaded.engine.stream_chat([{"role": "user", "content": "Tell me a long story."}], params=params, cancel=cancel)
    tokens_seen = 0
    for _ in stream:
        tokens_seen += 1
        if tokens_seen == 3:
            cancel.set()
    assert stream.stats.finish_reason == "cancelled"
    assert stream.stats.completion_tokens <= 4


def test_max_tokens_is_respected(loaded: LoadedModel) -> None:
    params = SamplingParams(temperature=0.8, seed=1, max_tokens=5)
    stream = loaded.engine.stream_chat([{"role": "user", "content": "Count to one hundred."}], params=params, cancel=threading.Event())
    list(stream)
    assert stream.stats.completion_tokens <= 5


def test_a_prompt_longer_than_the_context_is_refused(loaded: LoadedModel) -> None:
    huge = "word " * (loaded.plan.n_ctx + 100)
    with pytest.raises(ContextOverflowError, match="context window"):
        list(loaded.engine.stream_chat([{"role": "user", "content": huge}], params=GREEDY, cancel=threading.Event()))
    # The engine is still usable afterwards.
    assert "".join(loaded.engine.stream_chat([{"role": "user", "content": "Hi"}], params=GREEDY, cancel=threading.Event()))
