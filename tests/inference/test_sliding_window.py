"""The sliding window's small cache: cuts are checked, checkpoints restore it, and the logits stay right.

The real Gemma 3 model: five layers in six see only the last 512 positions, and on the CPU their
cache keeps only those (inference/sliding_window.py).
"""

from __future__ import annotations

import threading
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from inference.engine import SamplingParams
from inference.gguf_info import read_gguf_info
from inference.llama_cpp_engine import LlamaCppEngine
from inference.sliding_window import AttentionOptions, WindowCheckpoints, attention_options, window_reaches
from tests.inference.conftest import cpu_plan

# Greedy replies: a long one pushes the window past the prompt's start, then one token to read the logits.
LONG_REPLY = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=600, ignore_eos=True)
ONE_TOKEN = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=1)
STORY = [{"role": "user", "content": "Tell me a long story about the sea and its ships. " * 50}]
# Evaluating the last token alone rather than in the prompt's batch moves a logit by 0.1 to 0.9, depending on
# the CPU: a checkpoint (which evaluates it alone) is compared with a fresh engine that does the same.
SAME_LOGITS = 0.05


def test_on_the_cpu_flash_attention_is_off_and_the_window_cache_small() -> None:
    assert attention_options(on_gpu=False) == AttentionOptions(flash_attn=False, swa_full=False)
    assert attention_options(on_gpu=True) == AttentionOptions(flash_attn=True, swa_full=True)


def test_a_window_reaches_back_as_far_as_the_next_token_attends() -> None:
    assert window_reaches(176, 687, 512)  # the token at 687 attends to 176..687
    assert not window_reaches(177, 687, 512)
    assert window_reaches(0, 100, 512)
    assert not window_reaches(5, 100, 512)
    assert window_reaches(-1, 0, 512) and not window_reaches(-1, 3, 512)


def test_checkpoints_match_a_prefix_of_the_prompt_within_what_the_cache_shares() -> None:
    checkpoints = WindowCheckpoints(limit=2, capacity_bytes=100)
    checkpoints.add([1, 2, 3], "a", 10)
    checkpoints.add([1, 2, 3, 4, 5], "b", 10)
    assert checkpoints.best_for([1, 2, 3, 4, 5, 6], shared=6).state == "b"
    assert checkpoints.best_for([1, 2, 3, 4, 5, 6], shared=4).state == "a"
    assert checkpoints.best_for([1, 2, 9], shared=3) is None
    checkpoints.add([7], "c", 10)
    assert len(checkpoints) == 2 and checkpoints.best_for([1, 2, 3], shared=3) is None  # the oldest went
    checkpoints.add([8], "too big", 101)
    assert len(checkpoints) == 2
    checkpoints.add([9], "d", 95)
    assert len(checkpoints) == 1  # the cap in bytes


def prompt_end_logits(engine: LlamaCppEngine, messages: list[dict]) -> tuple[np.ndarray, object]:
    """The logits after the prompt of ``messages`` (a one-token reply leaves them in the context), and its stats."""
    stream = engine.stream_chat(messages, params=ONE_TOKEN, cancel=threading.Event())
    list(stream)
    return last_logits(engine._llama), stream.stats


def last_logits(llama: llama_cpp.Llama) -> np.ndarray:
    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llama._ctx.ctx, -1), shape=(llama.n_vocab(),)).copy()


@pytest.fixture(scope="module")
def fresh_logits(builtin_model_path: Path) -> dict[str, np.ndarray]:
    """A fresh engine's logits after STORY's prompt: evaluated in one batch, and with its last token alone."""
    engine = LlamaCppEngine(cpu_plan(), state_cache_bytes=0)
    engine.load(read_gguf_info(builtin_model_path))
    try:
        batch = prompt_end_logits(engine, STORY)[0]
        llama, length = engine._llama, engine._llama.n_tokens
        last = int(llama.input_ids[length - 1])
        llama._ctx.kv_cache_seq_rm(0, length - 1, -1)
        llama.n_tokens = length - 1
        llama.eval([last])
        return {"batch": batch, "last_alone": last_logits(llama)}
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.parametrize("state_cache_bytes", [256 << 20, 0], ids=["checkpoint", "no-checkpoint"])
def test_regenerating_a_long_reply_gives_the_logits_of_a_fresh_engine(
    builtin_model_path: Path, fresh_logits: dict[str, np.ndarray], state_cache_bytes: int,
) -> None:
    engine = LlamaCppEngine(cpu_plan(), state_cache_bytes=state_cache_bytes)
    engine.load(read_gguf_info(builtin_model_path))
    try:
        assert engine._window == 512
        first = engine.stream_chat(STORY, params=LONG_REPLY, cancel=threading.Event())
        list(first)
        memory = llama_cpp.llama_get_memory(engine._llama._ctx.ctx)
        # The reply pushed the window's cache past where the prompt's last token needs it.
        assert not window_reaches(llama_cpp.llama_memory_seq_pos_min(memory, 0), first.stats.prompt_tokens - 1, 512)

        logits, stats = prompt_end_logits(engine, STORY)  # the same prompt again: Regenerate

        if state_cache_bytes:
            assert stats.prompt_tokens_evaluated == 1  # from the checkpoint at the prompt's end
            expected = fresh_logits["last_alone"]
        else:
            assert stats.prompt_tokens_evaluated == stats.prompt_tokens  # no checkpoint: read again, not guessed
            expected = fresh_logits["batch"]
        assert float(np.abs(logits - expected).max()) < SAME_LOGITS
    finally:
        engine.close()


@pytest.mark.slow
def test_editing_the_last_question_goes_back_to_the_previous_turns_checkpoint(builtin_model_path: Path) -> None:
    engine = LlamaCppEngine(cpu_plan(), state_cache_bytes=256 << 20)
    engine.load(read_gguf_info(builtin_model_path))
    try:
        first = engine.stream_chat(STORY, params=LONG_REPLY, cancel=threading.Event())
        reply = "".join(first)
        history = STORY + [{"role": "assistant", "content": reply}]
        second = engine.stream_chat(history + [{"role": "user", "content": "And then?"}], params=LONG_REPLY,
                                    cancel=threading.Event())
        list(second)
        assert second.stats.prompt_tokens_evaluated < 20  # the next turn reuses the whole history

        edited = history + [{"role": "user", "content": "What happened to the ships?"}]
        _logits, stats = prompt_end_logits(engine, edited)

        # Back to the first prompt's end, not to nothing: the first reply and the new question are read again.
        assert stats.prompt_tokens - stats.prompt_tokens_evaluated == first.stats.prompt_tokens
    finally:
        engine.close()
