"""The torch engine on small random GGUFs (on the CPU here, graphs off; the same decode step runs on a GPU)."""

from __future__ import annotations

import threading
from itertools import islice
from pathlib import Path

import pytest
import torch

from inference import torch_decoder
from inference.engine import ExecutionPlan, SamplingParams
from inference.errors import GenerationError, ModelLoadError
from inference.gguf_info import read_gguf_info
from inference.llama_cpp_engine import LlamaCppEngine
from inference.token_loop import generate_tokens
from inference.torch_engine import TorchEngine, sample_token
from tests.gguf_factory import write_random_gemma3, write_random_llama

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(temperature=0.0, max_tokens=12, repeat_penalty=1.0)


def torch_plan(n_ctx: int = 1024) -> ExecutionPlan:
    return ExecutionPlan(engine="torch", device="CPU", n_threads=2, n_ctx=n_ctx, n_gpu_layers=0, reason="test",
                         dtype="float32", torch_device="cpu")


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> Path:
    return write_random_gemma3(tmp_path_factory.mktemp("torch") / "random-gemma3-it.gguf")


@pytest.fixture
def engine(random_model: Path, tmp_path: Path):
    engine = TorchEngine(torch_plan(), cache_dir=tmp_path / "cache")
    engine.load(read_gguf_info(random_model))
    yield engine
    engine.close()


def test_converted_weights_are_cached_for_the_next_load(random_model: Path, tmp_path: Path, engine) -> None:
    cached = list((tmp_path / "cache" / "torch").glob("*/config.json"))
    assert len(cached) == 1
    again = TorchEngine(torch_plan(), cache_dir=tmp_path / "cache")
    again.load(read_gguf_info(random_model))
    try:
        messages = [{"role": "user", "content": "what is the sea?"}]
        first = "".join(engine.stream_chat(messages, params=GREEDY, cancel=threading.Event()))
        second = "".join(again.stream_chat(messages, params=GREEDY, cancel=threading.Event()))
        assert first == second
    finally:
        again.close()


def test_a_reply_streams_with_stats(engine: TorchEngine) -> None:
    assert engine.chat_format_name == "Gemma turns"  # an "it" model without a template
    stream = engine.stream_chat([{"role": "user", "content": "hello"}], params=GREEDY, cancel=threading.Event())
    list(stream)
    assert stream.stats.completion_tokens > 0
    assert stream.stats.prompt_tokens_evaluated == stream.stats.prompt_tokens
    assert stream.stats.context_window == 1024


def test_reusing_the_kv_cache_gives_the_same_logits_as_recomputing(engine: TorchEngine) -> None:
    long_prompt = engine._tokenize([{"role": "user", "content": "the sea is blue and the whale is in the water " * 4}])
    assert len(long_prompt) > 40  # crosses the 16-token sliding window
    decoder = engine._decoder
    decoder.prefill(decoder.reuse(long_prompt[:-5]))
    remaining = decoder.reuse(long_prompt)
    assert len(remaining) == 5
    reused = decoder.prefill(remaining)
    with torch.no_grad():
        fresh = engine._model(input_ids=torch.tensor([long_prompt])).logits[0, -1]  # no cache at all
    torch.testing.assert_close(reused, fresh, atol=1e-4, rtol=1e-4)


def test_decoding_after_a_cut_back_ignores_the_stale_cache_entries(engine: TorchEngine) -> None:
    first = engine._tokenize([{"role": "user", "content": "the sea is blue and the whale is in the water"}])
    list(islice(engine._generate(first, GREEDY), 20))  # the cache now runs well past the shared prefix
    second = first[:-6] + engine._tokenize([{"role": "user", "content": "why?"}])[1:]
    evaluated = engine.evaluated_tokens
    picked = list(islice(engine._generate(second, GREEDY), 10))
    assert engine.evaluated_tokens - evaluated < len(second)  # the shared prefix came from the cache
    expected, ids = [], list(second)
    with torch.no_grad():
        for _ in range(10):  # greedy decoding by recomputing everything, without a cache
            expected.append(int(engine._model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
            ids.append(expected[-1])
    assert picked == expected


def test_later_turns_only_compute_new_tokens(engine: TorchEngine) -> None:
    messages: list[dict] = []
    stats = []
    for question in ["hello", "what is the sea?", "why is it blue?"]:
        messages.append({"role": "user", "content": question})
        stream = engine.stream_chat(messages, params=GREEDY, cancel=threading.Event())
        messages.append({"role": "assistant", "content": "".join(stream).strip() or "ok"})
        stats.append(stream.stats)
    for turn in stats[1:]:
        assert turn.prompt_tokens_evaluated < turn.prompt_tokens


def test_cancel_stops_between_tokens(engine: TorchEngine) -> None:
    cancel = threading.Event()
    cancel.set()
    stream = engine.stream_chat([{"role": "user", "content": "hello"}], params=GREEDY, cancel=cancel)
    assert list(stream) == []
    assert stream.stats.finish_reason == "cancelled" and stream.stats.completion_tokens == 0


def test_sampling_on_the_device_follows_the_settings(engine: TorchEngine) -> None:
    messages = [{"role": "user", "content": "what is the sea?"}]

    def reply(params: SamplingParams) -> str:
        return "".join(engine.stream_chat(messages, params=params, cancel=threading.Event()))

    seeded = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=7, max_tokens=16)
    assert reply(seeded) == reply(seeded)
    # top_k=1 leaves only the best token, whatever the temperature: greedy's reply.
    assert reply(SamplingParams(temperature=1.5, top_k=1, seed=1, max_tokens=12, repeat_penalty=1.0)) == reply(GREEDY)


def test_without_cuda_graphs_the_step_runs_eagerly(random_model: Path, tmp_path: Path) -> None:
    engine = TorchEngine(torch_plan(), cache_dir=tmp_path / "cache", use_graphs=True)  # no CUDA here: capture fails
    engine.load(read_gguf_info(random_model))
    try:
        assert engine.decode_mode == "eager"
        stream = engine.stream_chat([{"role": "user", "content": "hello"}], params=GREEDY, cancel=threading.Event())
        assert list(stream) and stream.stats.completion_tokens > 0
    finally:
        engine.close()


def test_out_of_memory_at_load_is_a_load_error(random_model: Path, monkeypatch) -> None:
    def no_room(self, info, dtype):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(TorchEngine, "_load_weights", no_room)
    engine = TorchEngine(torch_plan())
    with pytest.raises(ModelLoadError, match="does not fit in the free memory"):
        engine.load(read_gguf_info(random_model))


def test_a_device_error_while_generating_is_a_generation_error_and_resets_the_cache(engine: TorchEngine,
                                                                                    monkeypatch) -> None:
    messages = [{"role": "user", "content": "hello"}]
    list(engine.stream_chat(messages, params=GREEDY, cancel=threading.Event()))

    def failing_step(greedy: bool) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(engine._decoder, "_step", failing_step)
    with pytest.raises(GenerationError, match="illegal memory access"):
        list(engine.stream_chat(messages, params=GREEDY, cancel=threading.Event()))
    monkeypatch.undo()
    stream = engine.stream_chat(messages, params=GREEDY, cancel=threading.Event())
    list(stream)
    assert stream.stats.prompt_tokens_evaluated == stream.stats.prompt_tokens  # nothing stale was reused


@pytest.mark.parametrize("architecture", ["llama", "gemma3"])
def test_greedy_tokens_match_llama_cpp(architecture: str, tmp_path: Path, monkeypatch) -> None:
    # llama: F32 weights, so both engines compute in f32. Gemma 3: its writer's F16 weights, head_dim 256 (with
    # smaller heads transformers and llama.cpp scale attention differently), a prompt past the sliding window.
    if architecture == "llama":
        path = write_random_llama(tmp_path / "random-llama.gguf", weights="F32")
    else:
        path = write_random_gemma3(tmp_path / "random-gemma3-it.gguf", head_dim=256)
    monkeypatch.setattr(torch_decoder, "PREFILL_CHUNK", 16)  # the prompt goes in several chunks
    info = read_gguf_info(path)
    params = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=16, ignore_eos=True)
    messages = [{"role": "user", "content": "the sea is blue and the whale is in the water"}]
    torch_engine = TorchEngine(torch_plan(), use_graphs=False)
    llama_engine = LlamaCppEngine(ExecutionPlan(engine="llama.cpp", device="CPU", n_threads=2, n_ctx=1024,
                                                n_gpu_layers=0, reason="test"))
    torch_engine.load(info)
    llama_engine.load(info)
    try:
        prompt = torch_engine._tokenize(messages)
        assert prompt == llama_engine._tokenize(messages) and len(prompt) > 16
        picked = list(islice(torch_engine._generate(prompt, params), 16))
        reference = generate_tokens(llama_engine._llama, prompt, llama_engine._pick_for(params),
                                    on_evaluated=lambda _count: None)
        assert picked == list(islice(reference, 16))
    finally:
        torch_engine.close()
        llama_engine.close()


def test_sampling_rules() -> None:
    logits = torch.tensor([1.0, 3.0, 2.0, -1.0])
    generator = torch.Generator().manual_seed(0)
    assert sample_token(logits.clone(), SamplingParams(temperature=0.0, repeat_penalty=1.0), generator, []) == 1
    # Penalising the favourite token makes the runner-up win.
    assert sample_token(logits.clone(), SamplingParams(temperature=0.0, repeat_penalty=2.0), generator, [1]) == 2
    # top_k=1 is greedy whatever the temperature.
    for _ in range(20):
        assert sample_token(logits.clone(), SamplingParams(temperature=1.5, top_k=1), generator, []) == 1
    # min_p keeps only tokens at least that fraction as likely as the best.
    picks = {sample_token(logits.clone(), SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.5,
                                                          repeat_penalty=1.0), generator, []) for _ in range(50)}
    assert picks == {1}

