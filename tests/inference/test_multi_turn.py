"""Multi-turn speed on the real Gemma 3 model (sliding-window attention): measured, not assumed."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from inference.engine import EngineOptions, SamplingParams
from inference.gguf_info import read_gguf_info
from inference.process_engine import ProcessEngine
from tests.inference.conftest import cpu_plan

pytestmark = pytest.mark.slow

SHORT = SamplingParams(temperature=0.7, seed=1, max_tokens=24)
QUESTIONS = ["What is the sea?", "Why is it blue?", "Name a fish.", "Where do whales live?", "Is salt water heavy?"]


def chat_turns(engine: ProcessEngine, messages: list[dict], questions: list[str]) -> list:
    """Ask each question in turn, keeping the replies; return each turn's stats."""
    stats = []
    for question in questions:
        messages.append({"role": "user", "content": question})
        stream = engine.stream_chat(messages, params=SHORT, cancel=threading.Event())
        messages.append({"role": "assistant", "content": "".join(stream).strip()})
        stats.append(stream.stats)
    return stats


def test_later_turns_evaluate_only_their_new_tokens(engine_process: ProcessEngine) -> None:
    stats = chat_turns(engine_process, [], QUESTIONS)
    assert stats[0].prompt_tokens_evaluated == stats[0].prompt_tokens
    for turn in stats[1:]:
        assert turn.prompt_tokens_evaluated < 0.5 * turn.prompt_tokens, turn
    reevaluated = sum(turn.prompt_tokens_evaluated for turn in stats[1:])
    assert reevaluated / sum(turn.prompt_tokens for turn in stats[1:]) < 0.25


def test_switching_back_to_a_conversation_restores_its_state(engine_process: ProcessEngine) -> None:
    first: list[dict] = [{"role": "system", "content": "You talk about the sea."}]
    second: list[dict] = [{"role": "system", "content": "You talk about mountains, always, at length."}]
    chat_turns(engine_process, first, QUESTIONS[:3])
    chat_turns(engine_process, second, ["What is the highest mountain?", "Is it cold there?"])
    back = chat_turns(engine_process, first, ["And what about octopuses?"])[0]
    assert back.prompt_tokens_evaluated < 0.3 * back.prompt_tokens, back


def test_without_the_state_cache_switching_back_reprocesses_everything(builtin_model_path: Path) -> None:
    engine = ProcessEngine(cpu_plan(), options=EngineOptions(state_cache_bytes=0))
    engine.load(read_gguf_info(builtin_model_path))
    try:
        first: list[dict] = []
        chat_turns(engine, first, QUESTIONS[:3])
        chat_turns(engine, [{"role": "system", "content": "Mountains."}], ["Hi"])
        back = chat_turns(engine, first, ["And octopuses?"])[0]
        assert back.prompt_tokens_evaluated > 0.9 * back.prompt_tokens
    finally:
        engine.close()


def test_an_overflowing_conversation_drops_its_oldest_turns_but_keeps_the_system_prompt(
    builtin_model_path: Path,
) -> None:
    engine = ProcessEngine(cpu_plan(n_ctx=512), options=EngineOptions(state_cache_bytes=0))
    engine.load(read_gguf_info(builtin_model_path))
    try:
        messages = [{"role": "system", "content": "SYSTEM RULE: answer briefly."}]
        for index in range(12):
            messages += [
                {"role": "user", "content": f"Question {index}: " + "tell me about rivers and lakes " * 4},
                {"role": "assistant", "content": "Rivers flow into lakes and seas. " * 3},
            ]
        messages.append({"role": "user", "content": "Last question?"})
        stream = engine.stream_chat(messages, params=SHORT, cancel=threading.Event())
        list(stream)
        assert stream.stats.dropped_messages > 0
        assert stream.stats.prompt_tokens + SHORT.max_tokens <= 512
        assert stream.stats.context_window == 512
    finally:
        engine.close()
