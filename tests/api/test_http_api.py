"""The server's errors and safety rules over raw HTTP (httpx), on the real built-in model."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from tests.api.conftest import TOKEN

pytestmark = pytest.mark.slow  # one load of the built-in model for the module

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def http(api):
    with httpx.Client(base_url=api[0].url, timeout=60) as client:
        yield client


@pytest.fixture
def chat(api) -> dict:
    """A valid small request body."""
    return {"model": api[1].ready.model_id, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2,
            "temperature": 0}


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def no_cors(response: httpx.Response) -> bool:
    return not any(name.lower().startswith("access-control-") for name in response.headers)


def test_every_request_needs_the_token(http: httpx.Client, chat: dict, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {TOKEN}"}):
        for response in (http.get("/models", headers=headers), http.post("/chat/completions", json=chat,
                                                                          headers=headers)):
            assert error_of(response, 401)["code"] == "invalid_api_key"
            assert response.headers["www-authenticate"] == "Bearer"
            assert "not-the-token" not in response.text and TOKEN not in response.text
    assert http.get("/models", headers=AUTH).status_code == 200
    assert TOKEN not in caplog.text and "not-the-token" not in caplog.text


def test_a_foreign_host_is_refused_before_the_token_is_looked_at(http: httpx.Client, api) -> None:
    port = api[0].port
    for host in ("evil.example", f"evil.example:{port}", f"localhost.evil.example:{port}"):
        assert error_of(http.get("/models", headers={**AUTH, "Host": host}), 421)["code"] == "misdirected_request"
        assert http.get("/models", headers={"Host": host}).status_code == 421  # not 401: Host comes first
    for host in ("localhost", f"localhost:{port}", "127.0.0.1", f"[::1]:{port}"):
        assert http.get("/models", headers={**AUTH, "Host": host}).status_code == 200


def test_web_pages_elsewhere_are_refused_and_no_cors_is_ever_allowed(http: httpx.Client, chat: dict) -> None:
    for origin in ("https://evil.example", "null"):
        response = http.post("/chat/completions", json=chat, headers={**AUTH, "Origin": origin})
        assert error_of(response, 403)["code"] == "origin_not_allowed" and no_cors(response)
        preflight = http.options("/chat/completions", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 403 and no_cors(preflight)
    local = http.options("/chat/completions", headers={"Origin": "http://localhost:3000",
                                                       "Access-Control-Request-Method": "POST"})
    assert local.status_code == 401 and no_cors(local)  # a preflight carries no token: never allowed
    response = http.get("/models", headers={**AUTH, "Origin": "http://localhost:3000"})
    assert response.status_code == 200 and no_cors(response)


def test_a_body_over_the_limit_is_refused_declared_or_chunked(http: httpx.Client, chat: dict, api) -> None:
    limit = 1 << 20
    padded = json.dumps({**chat, "padding": "x" * limit}).encode()
    assert error_of(http.post("/chat/completions", content=padded, headers=AUTH), 413)["code"] == "request_too_large"

    def chunks():
        for start in range(0, len(padded), 64 << 10):
            yield padded[start:start + (64 << 10)]

    response = http.post("/chat/completions", content=chunks(), headers=AUTH)
    assert "content-length" not in {name.lower() for name in response.request.headers}
    assert error_of(response, 413)["code"] == "request_too_large"
    # The server still answers afterwards.
    assert http.post("/chat/completions", json=chat, headers=AUTH).status_code == 200


def test_bad_json_and_wrong_types_are_400_naming_the_field(http: httpx.Client, chat: dict) -> None:
    assert error_of(http.post("/chat/completions", content=b"{not json", headers=AUTH), 400)["code"] == "invalid_json"
    assert error_of(http.post("/chat/completions", json=[1, 2], headers=AUTH), 400)["param"] is None
    cases = {
        "model": {k: v for k, v in chat.items() if k != "model"},
        "messages": {**chat, "messages": "Hello"},
        "messages[0].role": {**chat, "messages": [{"role": "robot", "content": "Hi"}]},
        "messages[0].content": {**chat, "messages": [{"role": "user", "content": 5}]},
        "temperature": {**chat, "temperature": "hot"},
        "top_p": {**chat, "top_p": 3},
        "max_tokens": {**chat, "max_tokens": "10"},
        "seed": {**chat, "seed": 1.5},
        "stop": {**chat, "stop": 7},
        "stream": {**chat, "stream": "yes"},
        "n": {**chat, "n": 2},
    }
    for param, body in cases.items():
        error = error_of(http.post("/chat/completions", json=body, headers=AUTH), 400)
        assert error["param"] == param, (param, error)
        assert error["type"] == "invalid_request_error"


def test_unknown_fields_are_ignored(http: httpx.Client, chat: dict) -> None:
    body = {**chat, "frequency_penalty": 0.5, "logprobs": False, "user": "someone", "n": 1, "top_k": 20}
    response = http.post("/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["role"] == "assistant"


def test_an_unknown_model_is_404(http: httpx.Client, chat: dict) -> None:
    error = error_of(http.post("/chat/completions", json={**chat, "model": "gpt-4o"}, headers=AUTH), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"


def test_a_prompt_over_the_window_is_400_streaming_or_not(http: httpx.Client, chat: dict, api) -> None:
    long = {**chat, "messages": [{"role": "user", "content": "word " * (2 * api[1].ready.plan.n_ctx)}]}
    for body in (long, {**long, "stream": True}):
        error = error_of(http.post("/chat/completions", json=body, headers=AUTH), 400)
        assert error["code"] == "context_length_exceeded" and "context window" in error["message"]


def test_raw_completions_and_other_urls_are_404_in_openai_format(http: httpx.Client) -> None:
    assert error_of(http.post("/completions", json={"model": "x", "prompt": "Hi"}, headers=AUTH), 404)["code"] == \
        "unknown_url"
    assert error_of(http.delete("/models/anything", headers=AUTH), 405)["code"] == "method_not_allowed"
    assert error_of(http.get("/chat/completions", headers=AUTH), 405)["code"] == "method_not_allowed"


def test_a_stream_is_server_sent_events_ending_with_done(http: httpx.Client, chat: dict) -> None:
    with http.stream("POST", "/chat/completions", json={**chat, "stream": True, "max_tokens": 3},
                     headers=AUTH) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        assert no_cors(response)
        raw = response.read().decode()
    events = [event for event in raw.split("\n\n") if event]
    assert all(event.startswith("data: ") for event in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(event[len("data: "):]) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
