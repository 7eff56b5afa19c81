"""One real model owner with the built-in model and one API server in front of it, shared by a test module."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from inference.api.config import ServerConfig
from inference.api.server import ApiServer
from inference.engine import ReplyStats
from inference.hardware import probe_hardware
from inference.model_owner import LoadRequest, ModelOwner
from inference.selector import Preferences
from inference.session import ModelChoice

TOKEN = "test-api-token-not-a-secret-0123456789"


@dataclass
class Recorded:
    """What the owner told the server's sink about one reply."""

    text: list[str] = field(default_factory=list)
    stats: ReplyStats | None = None
    error: Exception | None = None
    ended: threading.Event = field(default_factory=threading.Event)


class RecordingOwner:
    """The real owner, with every reply's sink calls also recorded (by request id) for the tests to inspect."""

    def __init__(self, owner) -> None:
        self.owner = owner
        self.replies: dict[int, Recorded] = {}
        self.requests = []

    @property
    def ready(self):
        return self.owner.ready

    def submit(self, request, sink, **kwargs) -> None:
        recorded = self.replies.setdefault(request.request_id, Recorded())
        self.requests.append((request, kwargs))
        owner_sink = sink

        class Tee:
            def chunk(self, text: str) -> None:
                recorded.text.append(text)
                owner_sink.chunk(text)

            def finished(self, stats: ReplyStats) -> None:
                recorded.stats = stats
                owner_sink.finished(stats)
                recorded.ended.set()

            def failed(self, error: Exception) -> None:
                recorded.error = error
                owner_sink.failed(error)
                recorded.ended.set()

        self.owner.submit(request, Tee(), **kwargs)

    def last(self) -> Recorded:
        return self.replies[max(self.replies)]


@pytest.fixture(scope="module")
def model_owner(builtin_model_path):
    """A started owner with the built-in model loaded (one load per test module)."""
    owner = ModelOwner(lambda: ModelChoice(path=builtin_model_path), probe_hardware)
    owner.start()
    owner.load(LoadRequest(ModelChoice(path=builtin_model_path), Preferences()))
    try:
        owner.wait_for_model(timeout_s=120)
        yield owner
    finally:
        owner.stop()


@pytest.fixture(scope="module")
def api(model_owner):
    """The API server (port 0) in front of the recording owner; yields ``(server, recording_owner)``."""
    recording = RecordingOwner(model_owner)
    server = ApiServer(recording, ServerConfig(token=TOKEN, port=0))
    server.start()
    try:
        yield server, recording
    finally:
        server.stop()
