"""Remote OpenAI-compatible engines: every failure a provider can have becomes its error class and a sentence.

Against a real local HTTP server (tests/openai_error_server.py), a port with
nothing listening, a name that does not resolve and a TLS server with a
self-signed certificate.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from inference.engine import ReplyStats, SamplingParams
from inference.errors import (
    InferenceError,
    RemoteAuthError,
    RemoteConnectionRefusedError,
    RemoteError,
    RemoteModelNotFoundError,
    RemoteProtocolError,
    RemoteRateLimitError,
    RemoteServerError,
    RemoteStreamBrokenError,
    RemoteTlsError,
    RemoteUnreachableError,
)
from inference.remote_engine import RemoteTarget, list_remote_models, remote_models, stream_remote_reply
from tests.openai_error_server import MODELS, OK_CHUNKS, RETRY_AFTER_S, USAGE, OpenAIErrorServer, free_port

KEY = "sk-test-Very-Secret-Key-0042"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


class RecordingSink:
    """A ReplySink that records what it is given, in order."""

    def __init__(self, on_chunk=None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.chunk_times: list[float] = []
        self._on_chunk = on_chunk

    def chunk(self, text: str) -> None:
        self.calls.append(("chunk", text))
        self.chunk_times.append(time.monotonic())
        if self._on_chunk:
            self._on_chunk(self)

    def finished(self, stats: ReplyStats) -> None:
        self.calls.append(("finished", stats))

    def failed(self, error: Exception) -> None:
        self.calls.append(("failed", error))

    @property
    def text(self) -> str:
        return "".join(value for kind, value in self.calls if kind == "chunk")

    @property
    def outcome(self) -> tuple[str, object]:
        ends = [call for call in self.calls if call[0] in ("finished", "failed")]
        assert len(ends) == 1 and self.calls[-1] == ends[0], self.calls  # exactly one ending, and last
        return ends[0]


@pytest.fixture
def server():
    with OpenAIErrorServer() as running:
        yield running


def reply(base_url: str, *, name: str = "Lab box", key: str | None = KEY, params=None, cancel=None,
          sink=None, **kwargs) -> RecordingSink:
    sink = sink or RecordingSink()
    target = RemoteTarget(base_url=base_url, model="alpha-1b", api_key=key, name=name)
    stream_remote_reply(target, MESSAGES, params or SamplingParams(), cancel or threading.Event(), sink, **kwargs)
    return sink


def failure(sink: RecordingSink, error_class: type[RemoteError]) -> str:
    kind, error = sink.outcome
    assert kind == "failed", sink.calls
    assert type(error) is error_class, repr(error)
    assert isinstance(error, InferenceError)
    message = str(error)
    assert KEY not in message and KEY[-8:] not in message
    return message


def test_the_key_is_never_in_the_target_repr() -> None:
    target = RemoteTarget(base_url="http://h/v1", model="m", api_key=KEY, name="n")
    assert KEY not in repr(target) and "api_key" not in repr(target)
    assert RemoteTarget("http://gpu-box:8000/v1", "m").label == "gpu-box:8000"


def test_a_good_stream_is_coalesced_and_its_stats_filled(server) -> None:
    server.chunk_delay_s = 0.02
    params = SamplingParams(temperature=0.3, top_p=0.8, seed=42, max_tokens=64, stop=("\n\n",))
    sink = reply(server.base_url("ok"), params=params, chunk_interval_s=0.05)
    kind, stats = sink.outcome
    assert kind == "finished" and sink.text == "".join(OK_CHUNKS)
    chunks = [value for k, value in sink.calls if k == "chunk"]
    assert chunks[0] == OK_CHUNKS[0]  # the first piece goes out at once
    assert len(chunks) < len(OK_CHUNKS)  # the rest waited for the interval
    gaps = [b - a for a, b in zip(sink.chunk_times, sink.chunk_times[1:-1])]
    assert all(gap >= 0.045 for gap in gaps), gaps  # never more often than the interval (the last is the final flush)
    assert stats.finish_reason == "stop"
    assert stats.completion_tokens == USAGE["completion_tokens"] and stats.prompt_tokens == USAGE["prompt_tokens"]
    assert 0 < stats.ttft_s <= stats.total_s and stats.tokens_per_s > 0
    body = server.requests[-1]["body"]
    assert body["model"] == "alpha-1b" and body["messages"] == MESSAGES and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["top_p"], body["seed"], body["max_tokens"], body["stop"]) == \
        (0.3, 0.8, 42, 64, ["\n\n"])
    assert server.requests[-1]["authorization"] == f"Bearer {KEY}"


def test_without_a_key_no_seed_and_no_stop_those_fields_are_left_out(server) -> None:
    sink = reply(server.base_url("ok"), key=None)
    assert sink.outcome[0] == "finished"
    body = server.requests[-1]["body"]
    assert "seed" not in body and "stop" not in body
    assert KEY not in (server.requests[-1]["authorization"] or "")


def test_the_servers_length_finish_is_kept(server) -> None:
    _, stats = reply(server.base_url("ok"), params=SamplingParams(max_tokens=3)).outcome
    assert stats.finish_reason == "length"


def test_a_server_that_rejects_stream_options_is_asked_again_without(server) -> None:
    sink = reply(server.base_url("nousage"))
    kind, stats = sink.outcome
    assert kind == "finished" and sink.text == "".join(OK_CHUNKS)
    asked = [r["body"] for r in server.requests if r["scenario"] == "nousage"]
    assert len(asked) == 2 and "stream_options" in asked[0] and "stream_options" not in asked[1]
    # No usage: the content chunks are counted instead, and the prompt is unknown.
    assert stats.completion_tokens == len(OK_CHUNKS) and stats.prompt_tokens == 0


@pytest.mark.parametrize(("scenario", "error_class", "phrases"), [
    ("status401", RemoteAuthError, ["Lab box", "HTTP 401", "key is wrong or missing", "File › Providers"]),
    ("status403", RemoteAuthError, ["Lab box", "HTTP 403", "key is wrong or missing"]),
    ("status404", RemoteModelNotFoundError, ["Lab box", "alpha-1b", "HTTP 404"]),
    ("status429", RemoteRateLimitError, ["Lab box", "too many requests", f"in {RETRY_AFTER_S} seconds"]),
    ("status500", RemoteServerError, ["Lab box", "HTTP 500", "Try again later"]),
    ("status503", RemoteServerError, ["Lab box", "HTTP 503", "overloaded"]),
    ("malformed", RemoteProtocolError, ["Lab box", "OpenAI-compatible", "/v1"]),
    ("badline", RemoteProtocolError, ["Lab box", "malformed JSON"]),
    ("nofinish", RemoteStreamBrokenError, ["Lab box", "without finishing", "partial reply is kept"]),
])
def test_each_http_failure_has_its_class_and_sentence(server, scenario, error_class, phrases) -> None:
    message = failure(reply(server.base_url(scenario)), error_class)
    for phrase in phrases:
        assert phrase in message


def test_the_key_a_server_echoes_is_never_repeated(server) -> None:
    sink = reply(server.base_url("status401"))
    assert "refused the API key" in failure(sink, RemoteAuthError)
    without_key = failure(reply(server.base_url("status401"), key=None), RemoteAuthError)
    assert "needs an API key" in without_key


def test_a_servers_own_words_are_quoted_but_never_the_key(server) -> None:
    message = failure(reply(server.base_url("status422")), RemoteServerError)
    assert "HTTP 422" in message and "Invalid request from key" in message


def test_rate_limit_carries_retry_after(server) -> None:
    _, error = reply(server.base_url("status429")).outcome
    assert error.retry_after_s == RETRY_AFTER_S


def test_chunks_already_received_come_before_the_failure(server) -> None:
    sink = reply(server.base_url("drop"), chunk_interval_s=0)
    message = failure(sink, RemoteStreamBrokenError)
    assert sink.text == "one two three " and [k for k, _ in sink.calls] == ["chunk"] * 3 + ["failed"]
    assert "dropped in the middle of the reply" in message and "Lab box" in message
    bad = reply(server.base_url("badline"))
    assert bad.text == "fine " and bad.calls[-1][0] == "failed"


def test_cancel_closes_the_stream_promptly(server) -> None:
    cancel = threading.Event()

    def cancel_after_a_few(sink: RecordingSink) -> None:
        if len(sink.calls) == 3:
            cancel.set()

    started = time.monotonic()
    sink = reply(server.base_url("endless"), cancel=cancel, sink=RecordingSink(cancel_after_a_few), chunk_interval_s=0)
    took = time.monotonic() - started
    kind, stats = sink.outcome
    assert kind == "finished" and stats.finish_reason == "cancelled", sink.calls
    assert took < 2.0 and sink.text.startswith("more more more")
    assert server.closed.wait(2), "the server never saw the client close the stream"
    assert stats.completion_tokens >= 3 and stats.ttft_s > 0


def test_a_port_with_nothing_listening_is_refused() -> None:
    port = free_port()
    message = failure(reply(f"http://127.0.0.1:{port}/v1", name=""), RemoteConnectionRefusedError)
    assert f"127.0.0.1:{port}" in message and "Start the server" in message


def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    message = failure(reply("http://nonexistent.invalid/v1", name="Cloud"), RemoteUnreachableError)
    assert "Cloud" in message and "nonexistent.invalid" in message and "does not resolve" in message


def test_a_self_signed_certificate_is_a_tls_error() -> None:
    try:
        tls_server = OpenAIErrorServer(tls=True)
    except RuntimeError as exc:
        pytest.skip(f"no way to make a certificate here: {exc}")
    with tls_server:
        message = failure(reply(tls_server.base_url("ok")), RemoteTlsError)
    assert "certificate" in message and "could not be verified" in message and "Lab box" in message


def test_models_are_listed_sorted(server) -> None:
    assert list_remote_models(server.base_url("ok"), KEY) == sorted(MODELS)
    assert remote_models(server.base_url("ok"), KEY) == {"zeta-7b": 0, "alpha-1b": 0, "mid-3b": 32768}
    assert server.requests[-1]["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(("scenario", "error_class", "phrase"), [
    ("status401", RemoteAuthError, "key is wrong or missing"),
    ("status404", RemoteModelNotFoundError, "ends in /v1"),
    ("status429", RemoteRateLimitError, f"in {RETRY_AFTER_S} seconds"),
    ("status500", RemoteServerError, "HTTP 500"),
    ("malformed", RemoteProtocolError, "OpenAI-compatible"),
])
def test_listing_models_raises_the_same_classes(server, scenario, error_class, phrase) -> None:
    with pytest.raises(error_class) as caught:
        list_remote_models(server.base_url(scenario), KEY, name="Lab box")
    assert phrase in str(caught.value) and "Lab box" in str(caught.value) and KEY not in str(caught.value)


def test_listing_models_where_nothing_listens_is_refused() -> None:
    with pytest.raises(RemoteConnectionRefusedError):
        list_remote_models(f"http://127.0.0.1:{free_port()}/v1", None, timeout_s=2)


def test_the_key_never_reaches_the_log(server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for scenario in ("ok", "status401", "drop", "nousage"):
        reply(server.base_url(scenario))
    with pytest.raises(RemoteAuthError):
        list_remote_models(server.base_url("status401"), KEY)
    assert caplog.records and KEY not in caplog.text


def test_reasoning_content_is_framed_as_think_tags_before_the_answer() -> None:
    from openai.types.chat import ChatCompletionChunk

    from inference.remote_engine import _Reply
    from inference.thinking import split_thinking

    def chunk(**delta) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate({
            "id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})

    sink = RecordingSink()
    reply = _Reply(sink, 0.0, time.monotonic())
    for event in (chunk(role="assistant", reasoning_content="Two and "), chunk(reasoning_content="two."),
                  chunk(content="Four"), chunk(content="."), chunk(reasoning_content="late")):
        reply.take(event)
    reply.flush()
    assert sink.text == "<think>Two and two.</think>Four."
    assert split_thinking(sink.text, "think-tags") == ("Two and two.", "Four.")
    plain = RecordingSink()
    reply = _Reply(plain, 0.0, time.monotonic())
    reply.take(chunk(content="Just <this>."))
    reply.flush()
    assert plain.text == "Just <this>."
