"""The API server driven by the official ``openai`` client, on the real built-in model through a real ModelOwner."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.api.conftest import TOKEN

pytestmark = pytest.mark.slow  # one load of the built-in model for the module

COUNTING = [{"role": "user", "content": "Count: 1, 2, 3, 4, 5,"}]


@pytest.fixture
def client(api):
    server, _ = api
    with openai.OpenAI(base_url=server.url, api_key=TOKEN, max_retries=0, timeout=60) as client:
        yield client


@pytest.fixture
def model_id(api) -> str:
    return api[1].ready.model_id


def test_models_lists_the_loaded_model(client: openai.OpenAI, model_id: str) -> None:
    models = client.models.list()
    assert [model.id for model in models.data] == [model_id]
    assert client.models.retrieve(model_id).owned_by == "hearth"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_a_whole_reply_has_text_usage_and_a_finish_reason(client: openai.OpenAI, model_id: str, api) -> None:
    reply = client.chat.completions.create(model=model_id, messages=COUNTING, max_tokens=24, temperature=0)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.model == model_id and reply.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    stats = api[1].last().stats
    assert reply.usage.prompt_tokens == stats.prompt_tokens > 0
    assert reply.usage.completion_tokens == stats.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    request, options = api[1].requests[-1]
    assert options["source"] == "api"  # the window's requests go first
    assert request.params.drop_oldest is False and request.params.max_tokens == 24


def test_streaming_sends_role_text_finish_then_usage_and_matches_the_whole_reply(
    client: openai.OpenAI, model_id: str
) -> None:
    whole = client.chat.completions.create(model=model_id, messages=COUNTING, max_tokens=24, temperature=0)
    chunks = list(client.chat.completions.create(model=model_id, messages=COUNTING, max_tokens=24, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(chunk.usage is None for chunk in chunks[:-1])
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks[:-1])
    assert text == whole.choices[0].message.content
    assert len({chunk.id for chunk in chunks}) == 1


def test_streaming_without_usage_ends_with_the_finish_chunk(client: openai.OpenAI, model_id: str) -> None:
    chunks = list(client.chat.completions.create(model=model_id, messages=COUNTING, max_tokens=8, temperature=0,
                                                 stream=True))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length") and chunks[-1].usage is None


def test_max_tokens_ends_the_reply_with_length(client: openai.OpenAI, model_id: str) -> None:
    long = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
    reply = client.chat.completions.create(model=model_id, messages=long, max_tokens=5, temperature=0)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 5
    reply = client.chat.completions.create(model=model_id, messages=long, max_completion_tokens=3, temperature=0)
    assert reply.usage.completion_tokens == 3


def test_stop_strings_end_the_reply_before_them(client: openai.OpenAI, model_id: str) -> None:
    free = client.chat.completions.create(model=model_id, messages=COUNTING, max_tokens=24, temperature=0)
    text = free.choices[0].message.content
    stop = text.strip()[len(text.strip()) // 2:][:2]
    assert stop.strip(), text
    before = text[: text.index(stop)]
    for stops in (stop, [stop, "never-appears"]):
        reply = client.chat.completions.create(model=model_id, messages=COUNTING, max_tokens=24, temperature=0,
                                               stop=stops)
        assert reply.choices[0].message.content == before
        assert reply.choices[0].finish_reason == "stop"


def test_the_same_seed_gives_the_same_reply_at_temperature_above_zero(client: openai.OpenAI, model_id: str) -> None:
    story = [{"role": "user", "content": "Once upon a time"}]

    def reply(seed: int) -> str:
        return client.chat.completions.create(model=model_id, messages=story, max_tokens=20, temperature=1.2,
                                              seed=seed).choices[0].message.content

    first = reply(1234)
    assert reply(1234) == first
    assert len({first, reply(1), reply(2), reply(3)}) > 1  # the seed matters: the sampling is random


def test_the_client_reports_the_servers_errors(client: openai.OpenAI, model_id: str, api) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=COUNTING)
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "word " * 9000}])
    assert too_long.value.code == "context_length_exceeded"
    with openai.OpenAI(base_url=api[0].url, api_key="wrong", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()


def test_a_client_that_leaves_mid_stream_cancels_the_reply_within_a_token(api, model_id: str) -> None:
    server, recording = api
    body = {"model": model_id, "messages": [{"role": "user", "content": "Count from 1 to 1000: 1, 2, 3, 4,"}],
            "stream": True, "max_tokens": 2000, "temperature": 0}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
        with http.stream("POST", "/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            events: list[str] = []
            for line in lines:
                if line.startswith("data: "):
                    events.append(line)
                if len(events) >= 4:
                    break
    recorded = recording.last()
    assert recorded.ended.wait(10), "the reply went on after the client left"
    assert recorded.stats.finish_reason == "cancelled"
    assert recorded.stats.completion_tokens < 100  # of 2,000 asked for


def test_a_conversation_over_the_window_is_refused_not_cut(client: openai.OpenAI, model_id: str, api) -> None:
    n_ctx = api[1].ready.plan.n_ctx
    turn = "word " * (n_ctx // 3)
    history = []
    for _ in range(4):  # each turn fits; all of them do not
        history += [{"role": "user", "content": turn}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=model_id, messages=[*history, {"role": "user", "content": "hi"}],
                                       max_tokens=4)
    assert refused.value.code == "context_length_exceeded" and refused.value.param == "messages"
