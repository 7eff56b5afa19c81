"""The server without a model: its lifecycle, how owner failures become errors, and request validation."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from inference.api import ApiServer, ServerConfig, build_app, is_loopback_host
from inference.api.errors import ServerStartError
from inference.api.schemas import parse_chat_request
from inference.engine import ExecutionPlan, ReplyStats, SamplingParams
from inference.errors import GenerationError
from inference.hardware import probe_hardware
from inference.model_owner import ModelOwner, ModelReady
from inference.session import ModelChoice

TOKEN = "server-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
READY = ModelReady(display_name="Scripted", is_demo=False, chat_format="none", load_s=0.0, model_id="scripted",
                   plan=ExecutionPlan(engine="script", device="CPU", n_threads=1, n_ctx=512, n_gpu_layers=0,
                                      reason="a test"))
BODY = {"model": "scripted", "messages": [{"role": "user", "content": "Hi"}]}


class ScriptedOwner:
    """An owner that answers each request on its own thread: ``words`` chunks, then ``end`` (or a failure)."""

    ready = READY

    def __init__(self, *, words: int = 3, end: str = "stop", fail_after: int | None = None) -> None:
        self.words, self.end, self.fail_after = words, end, fail_after
        self.threads: list[threading.Thread] = []
        self.requests = []
        self.cancelled = threading.Event()

    def submit(self, request, sink, *, source="window", chunk_interval_s=0.0) -> None:
        self.requests.append(request)
        def run() -> None:
            for number in range(self.words):
                if self.fail_after is not None and number == self.fail_after:
                    sink.failed(GenerationError("The engine failed while writing the reply."))
                    return
                if request.cancel.wait(0.01):
                    self.cancelled.set()
                    sink.finished(ReplyStats("cancelled", 1, number, 0.0, 0.0))
                    return
                sink.chunk(f"w{number} ")
            sink.finished(ReplyStats(self.end, 1, self.words, 0.0, 0.0))

        thread = threading.Thread(target=run, name="scripted-owner")
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def serving():
    """Start a server on ``owner`` (port 0); everything is stopped after the test."""
    started: list[tuple[ApiServer, object]] = []

    def start(owner) -> tuple[ApiServer, httpx.Client]:
        server = ApiServer(owner, ServerConfig(token=TOKEN, port=0))
        server.start()
        started.append((server, owner))
        return server, httpx.Client(base_url=server.url, headers=AUTH, timeout=20)

    yield start
    for server, owner in started:
        server.stop()
        if isinstance(owner, ScriptedOwner):
            owner.join()


def test_port_zero_reports_the_real_port_and_stop_ends_the_thread(serving) -> None:
    server, http = serving(ScriptedOwner())
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/v1"
    assert http.get("/models").json() == {"object": "list", "data": [
        {"id": "scripted", "object": "model", "created": http.get("/models").json()["data"][0]["created"],
         "owned_by": "hearth"}]}
    server.stop()
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        http.get("/models")


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = ApiServer(ScriptedOwner(), ServerConfig(token=TOKEN, port=port))
        with pytest.raises(ServerStartError, match=f"Port {port} .* already in use"):
            server.start()
        assert not server.running


def test_an_address_not_of_this_computer_is_a_clear_error() -> None:
    with pytest.raises(ServerStartError, match="cannot listen"):
        ApiServer(ScriptedOwner(), ServerConfig(token=TOKEN, host="203.0.113.7", port=0)).start()


def test_no_model_loaded_is_503(serving) -> None:
    owner = ModelOwner(lambda: ModelChoice(path=None), probe_hardware)  # never started: nothing is loaded
    _, http = serving(owner)
    response = http.post("/chat/completions", json=BODY)
    assert response.status_code == 503 and response.json()["error"]["code"] == "model_not_loaded"
    assert http.get("/models").json() == {"object": "list", "data": []}


def test_an_engine_failure_is_500_or_an_error_event_once_streaming(serving) -> None:
    _, http = serving(ScriptedOwner(words=5, fail_after=0))
    response = http.post("/chat/completions", json=BODY)
    assert response.status_code == 500 and response.json()["error"]["type"] == "server_error"
    assert http.post("/chat/completions", json={**BODY, "stream": True}).status_code == 500  # before any text
    _, http = serving(ScriptedOwner(words=5, fail_after=2))
    text = http.post("/chat/completions", json={**BODY, "stream": True}).text
    assert '"error"' in text and "The engine failed" in text and text.endswith("data: [DONE]\n\n")


def test_stopping_the_server_cancels_a_reply_in_progress(serving) -> None:
    owner = ScriptedOwner(words=100_000)
    server, http = serving(owner)
    with http.stream("POST", "/chat/completions", json={**BODY, "stream": True}) as response:
        lines = response.iter_lines()
        next(lines)
        server.stop()
    assert owner.cancelled.wait(5)


def test_the_config_needs_a_token_and_never_shows_it() -> None:
    with pytest.raises(ValueError):
        ServerConfig(token="")
    assert TOKEN not in repr(ServerConfig(token=TOKEN))
    with pytest.raises(ValueError):
        ServerConfig(token=TOKEN, port=70000)


def test_build_app_is_a_starlette_app() -> None:
    from starlette.applications import Starlette

    assert isinstance(build_app(ScriptedOwner(), ServerConfig(token=TOKEN)), Starlette)


def test_loopback_hosts() -> None:
    assert all(map(is_loopback_host, ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"]))
    assert not any(map(is_loopback_host, ["0.0.0.0", "::", "192.168.1.2", "example.com", ""]))


def test_a_request_becomes_the_engines_messages_and_sampling() -> None:
    request = parse_chat_request({
        "model": "m", "stop": "###", "temperature": 1, "seed": 7,
        "messages": [{"role": "developer", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                     {"role": "assistant", "content": None}],
    })
    assert request.engine_messages() == [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Hi there"},
                                         {"role": "assistant", "content": ""}]
    defaults = SamplingParams(top_p=0.8)
    params = request.sampling(defaults, max_tokens_cap=256)
    assert (params.temperature, params.seed, params.top_p, params.stop) == (1.0, 7, 0.8, ("###",))
    assert params.max_tokens == 256 and params.drop_oldest is False  # the cap is the default
    assert parse_chat_request({**BODY, "max_tokens": 10**6}).sampling(defaults, max_tokens_cap=256).max_tokens == 256
    assert parse_chat_request({**BODY, "max_completion_tokens": 9, "max_tokens": 99}).sampling(
        defaults, max_tokens_cap=256).max_tokens == 9


def test_every_reply_ends_with_its_cancel_event_set(serving) -> None:
    # Set means done with: the server no longer lists the reply among those to cancel when it stops.
    owner = ScriptedOwner(words=2)
    _, http = serving(owner)
    assert http.post("/chat/completions", json=BODY).status_code == 200
    assert http.post("/chat/completions", json={**BODY, "stream": True}).status_code == 200
    owner.words, owner.fail_after = 3, 0
    assert http.post("/chat/completions", json={**BODY, "stream": True}).status_code == 500
    owner.join()
    assert len(owner.requests) == 3 and all(request.cancel.is_set() for request in owner.requests)


def test_a_client_that_gives_up_on_a_whole_reply_cancels_it(serving) -> None:
    owner = ScriptedOwner(words=100_000)
    server, _ = serving(owner)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=0.5) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post("/chat/completions", json=BODY)
    assert owner.cancelled.wait(5)


class ThinkingOwner(ScriptedOwner):
    """Writes ``<think>`` thinking then an answer, in pieces that split the tags."""

    ready = ModelReady(**{**READY.__dict__, "thinking": "think-tags"})
    PIECES = ("<thi", "nk>Two and", " two.</th", "ink>\n\nFour", ".")

    def submit(self, request, sink, *, source="window", chunk_interval_s=0.0) -> None:
        self.requests.append(request)
        for piece in self.PIECES:
            sink.chunk(piece)
        sink.finished(ReplyStats("stop", 1, len(self.PIECES), 0.0, 0.0))


def test_thinking_comes_back_as_reasoning_content(serving) -> None:
    import json

    _, http = serving(ThinkingOwner())
    message = http.post("/chat/completions", json=BODY).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Four.", "reasoning_content": "Two and two."}
    with http.stream("POST", "/chat/completions", json={**BODY, "stream": True}) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: {")]
    deltas = [event["choices"][0]["delta"] for event in events if event["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Two and two."
    assert "".join(d.get("content", "") for d in deltas) == "Four."
