"""The engine in its own process: a crash, an abort or the OOM killer never takes the caller down."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from inference.engine import SamplingParams
from inference.errors import ContextOverflowError, EngineCrashedError
from inference.gguf_info import read_gguf_info
from inference.process_engine import ProcessEngine, exit_reason

pytestmark = pytest.mark.slow

LONG = SamplingParams(temperature=0.9, seed=5, max_tokens=400)
HELLO = [{"role": "user", "content": "Hello!"}]
STORY = [{"role": "user", "content": "Tell me a long story about a lighthouse."}]


def kill_mid_reply(engine: ProcessEngine, sig: int) -> tuple[str, str]:
    """Start a long reply, send ``sig`` to the engine after a few chunks; return (text, error)."""
    received = []
    with pytest.raises(EngineCrashedError) as crashed:
        for text in engine.stream_chat(STORY, params=LONG, cancel=threading.Event()):
            received.append(text)
            if len(received) == 3:
                os.kill(engine.pid, sig)
    return "".join(received), str(crashed.value)


def test_sigkill_mid_reply_is_reported_and_the_engine_reloads(engine_process: ProcessEngine,
                                                               builtin_model_path: Path) -> None:
    partial, error = kill_mid_reply(engine_process, signal.SIGKILL)
    assert partial
    assert error.startswith("The engine stopped: it was killed (SIGKILL)")
    assert "out of memory" in error
    assert engine_process.pid is None

    engine_process.load(read_gguf_info(builtin_model_path))
    reply = "".join(engine_process.stream_chat(HELLO, params=LONG, cancel=threading.Event()))
    assert reply.strip()


def test_an_abort_inside_the_engine_is_explained(engine_process: ProcessEngine) -> None:
    _, error = kill_mid_reply(engine_process, signal.SIGABRT)
    assert "aborted (SIGABRT)" in error


def test_cancel_stops_the_reply_within_a_token(engine_process: ProcessEngine) -> None:
    cancel = threading.Event()
    stream = engine_process.stream_chat(STORY, params=LONG, cancel=cancel)
    chunks = 0
    for _ in stream:
        chunks += 1
        if chunks == 5:
            cancel.set()
    assert stream.stats.finish_reason == "cancelled"
    # The engine may have one token in flight when the flag reaches it.
    assert stream.stats.completion_tokens <= 7
    # The next request starts clean.
    assert "".join(engine_process.stream_chat(HELLO, params=LONG, cancel=threading.Event())).strip()


def test_errors_cross_the_process_boundary_with_their_type(engine_process: ProcessEngine) -> None:
    huge = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(ContextOverflowError, match="too long for the model's context window"):
        list(engine_process.stream_chat(huge, params=LONG, cancel=threading.Event()))


def test_an_abandoned_reply_does_not_leak_into_the_next(engine_process: ProcessEngine) -> None:
    stream = iter(engine_process.stream_chat(STORY, params=LONG, cancel=threading.Event()))
    next(stream)
    stream.close()  # the caller walks away mid-reply
    stream = engine_process.stream_chat(HELLO, params=SamplingParams(temperature=0.0, max_tokens=16),
                                        cancel=threading.Event())
    list(stream)
    assert stream.stats.prompt_tokens > 0 and stream.stats.finish_reason in ("stop", "length")


def test_close_ends_the_process(engine_process: ProcessEngine) -> None:
    pid = engine_process.pid
    engine_process.close()
    assert engine_process.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize(
    ("code", "words"),
    [(-9, "killed (SIGKILL)"), (-6, "aborted (SIGABRT)"), (-11, "crashed (SIGSEGV)"), (3, "exited with code 3")],
)
def test_exit_reasons(code: int, words: str) -> None:
    assert words in exit_reason(code)


def test_cancel_reaches_the_engine_while_chunks_stream_in_fast(tmp_path: Path) -> None:
    """A tiny model streams thousands of tokens a second: the pipe is never idle, cancel must still get through."""
    from tests.gguf_factory import write_random_gemma3
    from tests.inference.conftest import cpu_plan

    model = write_random_gemma3(tmp_path / "fast-gemma3-it.gguf")
    engine = ProcessEngine(cpu_plan())
    engine.load(read_gguf_info(model))
    try:
        cancel = threading.Event()
        stream = engine.stream_chat(STORY, params=SamplingParams(temperature=0.8, seed=1, max_tokens=3000),
                                    cancel=cancel)
        for _ in stream:
            cancel.set()
        assert stream.stats.finish_reason == "cancelled"
        assert stream.stats.completion_tokens < 100
    finally:
        engine.close()


def test_thread_tuning_measures_each_count_then_runs_with_the_chosen_one(tmp_path: Path) -> None:
    from tests.gguf_factory import write_random_gemma3
    from tests.inference.conftest import cpu_plan

    model = write_random_gemma3(tmp_path / "tune-gemma3-it.gguf")
    engine = ProcessEngine(cpu_plan())
    engine.load(read_gguf_info(model))
    loaded_with = engine.plan.n_threads
    try:
        speeds = engine.tune_threads([1, 2])
        assert set(speeds) == {1, 2} and all(speed > 0 for speed in speeds.values())
        assert engine.plan.n_threads == loaded_with  # measuring alone changes nothing; the caller decides
        assert engine.tune_threads([], then_use=1) == {} and engine.plan.n_threads == 1
        # A reply waiting stops the measurement: what was cut short is left out.
        waiting = threading.Event()
        waiting.set()
        assert engine.tune_threads([2], cancel=waiting) == {}
        # The engine still answers after tuning.
        stream = engine.stream_chat(HELLO, params=SamplingParams(max_tokens=8), cancel=threading.Event())
        list(stream)
        assert stream.stats.completion_tokens > 0
    finally:
        engine.close()


def test_a_failed_request_is_logged_to_the_app_s_file_not_printed(builtin_model_path: Path, tmp_path: Path,
                                                                   capfd) -> None:
    import logging

    import shutil

    from inference.engine import EngineOptions
    from inference.errors import ModelNotFoundError
    from tests.inference.conftest import cpu_plan

    copy = tmp_path / "gone.gguf"
    shutil.copyfile(builtin_model_path, copy)
    info = read_gguf_info(copy)
    copy.unlink()  # the engine process reads the file again, and fails
    log_file = tmp_path / "hearth.log"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    logging.getLogger().addHandler(handler)
    engine = ProcessEngine(cpu_plan(), options=EngineOptions(state_cache_bytes=0))
    try:
        with pytest.raises(ModelNotFoundError, match="does not exist"):
            engine.load(info)
    finally:
        engine.close()
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert "Traceback" not in capfd.readouterr().err  # the engine process printed nothing to the terminal
    assert "Engine request failed" in log_file.read_text(encoding="utf-8")
    assert "Traceback" in log_file.read_text(encoding="utf-8")
