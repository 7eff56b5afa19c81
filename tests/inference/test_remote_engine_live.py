"""The happy path against a real OpenAI-compatible server: Hearth's own ``main.py serve`` on the built-in model."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from inference.engine import SamplingParams
from inference.errors import RemoteAuthError
from inference.remote_engine import RemoteTarget, list_remote_models, stream_remote_reply
from tests.inference.test_remote_engine import RecordingSink
from tests.serve_process import hearth_serve

TOKEN = "live-remote-test-token-31337"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hearth_server(builtin_model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """``main.py serve`` on a free port with the built-in model; yields its base URL (…/v1)."""
    with hearth_serve(builtin_model_path, TOKEN, tmp_path_factory.mktemp("serve-home")) as (url, _process):
        yield url


def test_a_real_server_lists_its_model_and_streams_a_reply(hearth_server: str, builtin_model_path: Path) -> None:
    model = builtin_model_path.stem
    assert list_remote_models(hearth_server, TOKEN) == [model]
    target = RemoteTarget(base_url=hearth_server, model=model, api_key=TOKEN, name="Hearth serve")
    sink = RecordingSink()
    stream_remote_reply(target, [{"role": "user", "content": "The capital of France is"}],
                        SamplingParams(temperature=0, max_tokens=12, seed=1), threading.Event(), sink)
    kind, stats = sink.outcome
    assert kind == "finished", sink.calls
    assert stats.finish_reason in ("stop", "length")
    assert stats.prompt_tokens > 0 and stats.total_s >= stats.ttft_s > 0
    assert 0 < stats.completion_tokens <= 12, (sink.text, stats)


def test_a_real_server_cancelled_mid_reply(hearth_server: str, builtin_model_path: Path) -> None:
    cancel = threading.Event()
    sink = RecordingSink(on_chunk=lambda _sink: cancel.set())
    target = RemoteTarget(base_url=hearth_server, model=builtin_model_path.stem, api_key=TOKEN)
    started = time.monotonic()
    stream_remote_reply(target, [{"role": "user", "content": "Count from one to one hundred:"}],
                        SamplingParams(temperature=0, max_tokens=400), cancel, sink, chunk_interval_s=0)
    kind, stats = sink.outcome
    assert kind == "finished" and time.monotonic() - started < 30
    assert sink.text, sink.calls  # the first piece of text set cancel: the rest was never written
    assert stats.finish_reason == "cancelled" and stats.completion_tokens < 400


def test_a_real_server_refuses_a_wrong_key(hearth_server: str) -> None:
    with pytest.raises(RemoteAuthError) as caught:
        list_remote_models(hearth_server, "wrong-token", name="Hearth serve")
    assert "Hearth serve" in str(caught.value) and "wrong-token" not in str(caught.value)
