"""The Qt-free owner of the model, with the real built-in model: how requests from the window and the API
queue, cancel while queued, shutting down with requests waiting, and load failures reported to waiters."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from inference.engine import ReplyStats, SamplingParams
from inference.errors import GenerationError, ModelNotFoundError
from inference.hardware import probe_hardware
from inference.model_owner import LoadRequest, ModelOwner, ReplyRequest
from inference.selector import Preferences
from inference.session import ModelChoice

pytestmark = pytest.mark.slow

STORY = [{"role": "user", "content": "Tell me a story about a fox."}]


class Recorder:
    """A reply sink that records what reached it, in order, across every request it is given for."""

    def __init__(self, log: list, name: str) -> None:
        self._log, self.name = log, name
        self.text = ""
        self.stats: ReplyStats | None = None
        self.error: Exception | None = None
        self.done = threading.Event()
        self.started = threading.Event()

    def chunk(self, text: str) -> None:
        if not self.text:
            self._log.append(("started", self.name))
            self.started.set()
        self.text += text

    def finished(self, stats: ReplyStats) -> None:
        self.stats = stats
        self._log.append(("ended", self.name))
        self.done.set()

    def failed(self, error: Exception) -> None:
        self.error = error
        self._log.append(("failed", self.name))
        self.done.set()


def request(number: int, max_tokens: int, cancel: threading.Event | None = None) -> ReplyRequest:
    return ReplyRequest(number, STORY, SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True),
                        cancel or threading.Event())


@pytest.fixture
def owner(builtin_model_path: Path):
    owner = ModelOwner(lambda: ModelChoice(path=builtin_model_path), probe_hardware)
    owner.start()
    owner.load(LoadRequest(None, Preferences(n_threads=2)))  # set threads: no background measuring here
    yield owner
    owner.stop()


def test_the_window_s_requests_go_before_the_api_s_queue(owner: ModelOwner, builtin_model_path: Path) -> None:
    assert owner.wait_for_model(60).model_id == builtin_model_path.stem  # what API clients call it
    log: list = []
    first_api, second_api, window = Recorder(log, "api-1"), Recorder(log, "api-2"), Recorder(log, "window")
    owner.submit(request(1, 48), first_api, source="api")
    assert first_api.started.wait(60)
    owner.submit(request(2, 8), second_api, source="api")
    owner.submit(request(3, 8), window, source="window")
    for sink in (first_api, second_api, window):
        assert sink.done.wait(60)
    ended = [name for kind, name in log if kind == "ended"]
    # The API reply already running finishes; the window's goes next, ahead of the API's queue.
    assert ended == ["api-1", "window", "api-2"]
    assert window.stats.completion_tokens == 8 and second_api.stats.completion_tokens == 8


def test_a_request_cancelled_while_it_waits_ends_without_running(owner: ModelOwner) -> None:
    owner.wait_for_model(60)
    log: list = []
    running, waiting = Recorder(log, "running"), Recorder(log, "waiting")
    cancel = threading.Event()
    owner.submit(request(1, 32), running, source="api")
    owner.submit(request(2, 32, cancel), waiting, source="api")
    cancel.set()
    assert running.done.wait(60) and waiting.done.wait(60)
    assert waiting.stats.finish_reason == "cancelled" and waiting.stats.completion_tokens == 0
    assert waiting.text == ""
    assert running.stats.completion_tokens == 32


def test_stopping_ends_queued_requests_with_a_sentence(builtin_model_path: Path) -> None:
    owner = ModelOwner(lambda: ModelChoice(path=builtin_model_path), probe_hardware)
    owner.start()
    owner.load(LoadRequest(None, Preferences(n_threads=2)))
    log: list = []
    running_cancel = threading.Event()
    running, queued = Recorder(log, "running"), Recorder(log, "queued")
    owner.submit(request(1, 500, running_cancel), running, source="api")
    owner.submit(request(2, 8), queued, source="api")
    owner.wait_for_model(60)
    running_cancel.set()  # what the front ends do before stopping
    assert owner.stop()
    assert queued.done.is_set() and isinstance(queued.error, GenerationError)
    assert "shutting down" in str(queued.error)
    after = Recorder(log, "after")
    owner.submit(request(3, 8), after, source="window")
    assert isinstance(after.error, GenerationError)


def test_a_failed_load_reaches_whoever_waits_for_the_model(tmp_path: Path) -> None:
    owner = ModelOwner(lambda: ModelChoice(path=tmp_path / "missing.gguf"), probe_hardware)
    owner.start()
    try:
        owner.load(LoadRequest(None, Preferences()))
        with pytest.raises(ModelNotFoundError):
            owner.wait_for_model(30)
        assert owner.ready is None
        sink = Recorder([], "reply")
        owner.submit(request(1, 8), sink, source="api")
        assert sink.done.wait(10) and "No model is loaded" in str(sink.error)
    finally:
        owner.stop()
