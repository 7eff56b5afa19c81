"""Hearth's local API server and its remote providers, measured against the in-process engine and llama.cpp's own
``llama-server``, in one run, on the built-in model.

    .venv/bin/python tests/benchmarks/api.py [--rounds 5] [--tokens 128] [--turns 10] [--cancels 20]

- ``api_decode_ratio``: decode tokens/s streamed through Hearth's server to the official ``openai`` client
  ÷ the same engine asked in-process (the model owner, no HTTP), rounds interleaved.
- ``api_ttft_turn10_over_turn2``: a ``--turns``-turn conversation sent as the whole history every turn (what
  chat clients do); time to first token at the last turn ÷ at turn 2 (per-turn medians over the rounds).
- ``api_vs_llama_server``: decode tokens/s and last-turn time to first token through Hearth's server ÷ through
  ``llama-server`` (built natively from the same vendored llama.cpp source, tests/benchmarks/native_llama.py),
  same model, same thread count, same client, same workload.
- ``remote_overhead``: tokens/s of a reply in Hearth through a provider (``inference.remote_engine``, the window's
  path) ÷ that server's tokens/s measured directly with the ``openai`` client; the provider is ``llama-server``.
- ``cancel_on_disconnect_ms``: a client closes a stream after a few chunks; time until the engine's reply has
  ended (p50 and p95 over ``--cancels`` tries).
Prints the figures as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from openai import OpenAI  # noqa: E402

from inference.api.config import ServerConfig  # noqa: E402
from inference.api.server import ApiServer  # noqa: E402
from inference.engine import ReplyStats, SamplingParams  # noqa: E402
from inference.hardware import probe_hardware  # noqa: E402
from inference.model_owner import LoadRequest, ModelOwner, ReplyRequest  # noqa: E402
from inference.remote_engine import RemoteTarget, stream_remote_reply  # noqa: E402
from inference.selector import Preferences  # noqa: E402
from inference.session import ModelChoice  # noqa: E402
from inference.sliding_window import attention_options  # noqa: E402
from model_store.builtin_model import ensure_builtin_model, packaged_gemma_chunks  # noqa: E402
from model_store.paths import AppPaths  # noqa: E402
from model_store.registry import ModelRegistry  # noqa: E402
from tests.benchmarks.native_llama import build_llama_server  # noqa: E402

TOKEN = "benchmark-token"
PROMPT = "Tell me a long story about a lighthouse keeper and the sea."
QUESTIONS = ["Tell me about the sea.", "What lives in it?", "And in the deepest parts?", "How deep is that?",
             "Who went there first?", "What did they find?", "Was it dangerous?", "What came next?",
             "Where is it now?", "What would you ask them?", "Thank you. One more thing?", "Goodbye."]
CONTEXT = 4096


def builtin_model(home: Path) -> Path:
    paths = AppPaths.under(home)
    paths.create()
    return ensure_builtin_model(ModelRegistry(paths.registry_file), paths.models_dir, packaged_gemma_chunks()).path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ----------------------------------------------------------------- clients


def stream_with_openai(client: OpenAI, model: str, messages: list[dict], tokens: int, *, ignore_eos: bool) -> dict:
    """One streamed reply through ``client``: time to first token, decode tokens/s, the text."""
    started = time.perf_counter()
    first = last = None
    text, usage = [], None
    stream = client.chat.completions.create(
        model=model, messages=messages, stream=True, max_tokens=tokens, temperature=0.0, seed=1,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True} if ignore_eos else None,
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                now = time.perf_counter()
                first = first or now
                last = now
                text.append(choice.delta.content)
    completion = usage.completion_tokens if usage is not None else len(text)
    decode_s = (last or started) - (first or started)
    return {"ttft_s": (first or started) - started, "completion_tokens": completion,
            "tokens_per_s": (completion - 1) / decode_s if completion > 1 and decode_s > 0 else 0.0,
            "text": "".join(text)}


class Sink:
    """Collects one reply from the model owner or the remote engine."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.stats: ReplyStats | None = None
        self.error: Exception | None = None
        self.ended_at = 0.0
        self.done = threading.Event()

    def chunk(self, text: str) -> None:
        self.text.append(text)

    def finished(self, stats: ReplyStats) -> None:
        self.stats, self.ended_at = stats, time.perf_counter()
        self.done.set()

    def failed(self, error: Exception) -> None:
        self.error, self.ended_at = error, time.perf_counter()
        self.done.set()


def in_process_decode(owner: ModelOwner, tokens: int) -> float:
    """Decode tokens/s of the same reply asked of the model owner directly (no HTTP)."""
    sink = Sink()
    params = SamplingParams(temperature=0.0, seed=1, max_tokens=tokens, ignore_eos=True)
    owner.submit(ReplyRequest(0, [{"role": "user", "content": PROMPT}], params, threading.Event()), sink)
    sink.done.wait(600)
    if sink.error is not None:
        raise sink.error
    return sink.stats.tokens_per_s


def conversation_ttfts(client: OpenAI, model: str, turns: int, reply_tokens: int) -> list[float]:
    """Time to first token at each turn of a conversation resent whole each turn."""
    history: list[dict] = []
    ttfts = []
    for turn in range(turns):
        history.append({"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]})
        result = stream_with_openai(client, model, history, reply_tokens, ignore_eos=False)
        ttfts.append(result["ttft_s"])
        history.append({"role": "assistant", "content": result["text"]})
    return ttfts


class CountingOwner:
    """The model owner as the server sees it, noting when each reply's end reached the server."""

    def __init__(self, owner: ModelOwner) -> None:
        self._owner = owner
        self.ended: list[tuple[float, str]] = []

    def __getattr__(self, name: str):
        return getattr(self._owner, name)

    def submit(self, request, sink, **options) -> None:
        outer = self

        class Noting:
            def chunk(self, text: str) -> None:
                sink.chunk(text)

            def finished(self, stats: ReplyStats) -> None:
                outer.ended.append((time.perf_counter(), stats.finish_reason))
                sink.finished(stats)

            def failed(self, error: Exception) -> None:
                outer.ended.append((time.perf_counter(), "failed"))
                sink.failed(error)

        self._owner.submit(request, Noting(), **options)


def cancel_on_disconnect(url: str, model: str, counting: CountingOwner, tries: int) -> list[float]:
    """Milliseconds from a client closing its stream to the engine's reply ending."""
    delays = []
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "max_tokens": 2000, "temperature": 0.8}
    with httpx.Client(timeout=60) as client:
        for _ in range(tries):
            before = len(counting.ended)
            with client.stream("POST", f"{url}/chat/completions", json=body,
                               headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                lines = 0
                for line in response.iter_lines():
                    lines += line.startswith("data:")
                    if lines >= 5:
                        break
                closed_at = time.perf_counter()
            deadline = time.monotonic() + 30
            while len(counting.ended) == before and time.monotonic() < deadline:
                time.sleep(0.001)
            ended_at, reason = counting.ended[-1]
            if reason != "cancelled":
                raise RuntimeError(f"the reply ended {reason!r}, not cancelled")
            delays.append((ended_at - closed_at) * 1000)
    return delays


# ------------------------------------------------------------ llama-server


def start_llama_server(binary: Path, model: Path, threads: int, context: int = CONTEXT) -> tuple[subprocess.Popen, str]:
    """``llama-server`` on ``model`` with one slot, and attention set as Hearth's engine sets it on the CPU.

    Returns the process and its /v1 URL.
    """
    attention = attention_options(on_gpu=False)
    port = free_port()
    process = subprocess.Popen(
        [str(binary), "-m", str(model), "-t", str(threads), "-tb", str(threads), "-c", str(context), "-np", "1",
         "-fa", "on" if attention.flash_attn else "off", *(["--swa-full"] if attention.swa_full else []),
         "--host", "127.0.0.1", "--port", str(port), "--no-webui"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200:
                    return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("llama-server did not start")


def remote_decode(url: str, model: str, tokens: int) -> float:
    """Decode tokens/s of a reply through Hearth's remote engine (the window's path to a provider)."""
    sink = Sink()
    params = SamplingParams(temperature=0.0, seed=1, max_tokens=tokens)
    stream_remote_reply(RemoteTarget(base_url=url, model=model, name="llama-server"),
                        [{"role": "user", "content": PROMPT}], params, threading.Event(), sink, chunk_interval_s=0.0)
    if sink.error is not None:
        raise sink.error
    return sink.stats.tokens_per_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--reply-tokens", type=int, default=48, help="tokens per reply in the conversation")
    parser.add_argument("--cancels", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="hearth-api-bench-"))
    model = builtin_model(home)
    native = build_llama_server()
    owner = ModelOwner(lambda: ModelChoice(path=model), probe_hardware)
    owner.start()
    owner.load(LoadRequest(None, Preferences(n_threads=args.threads, context_length=CONTEXT)))
    ready = owner.wait_for_model(120)
    counting = CountingOwner(owner)
    server = ApiServer(counting, ServerConfig(token=TOKEN, port=0))
    server.start()
    hearth = OpenAI(base_url=server.url, api_key=TOKEN, max_retries=0)
    llama_server, llama_url = start_llama_server(native, model, args.threads)
    theirs = OpenAI(base_url=llama_url, api_key="none", max_retries=0)
    figures: dict = {"threads": args.threads, "tokens": args.tokens, "model": model.name,
                     "cpu_variant": ready.plan.cpu_variant}
    try:
        in_process, through_api, through_llama, via_remote, direct = [], [], [], [], []
        messages = [{"role": "user", "content": PROMPT}]
        for _ in range(args.rounds):
            in_process.append(in_process_decode(owner, args.tokens))
            through_api.append(stream_with_openai(hearth, ready.model_id, messages, args.tokens,
                                                  ignore_eos=True)["tokens_per_s"])
            through_llama.append(stream_with_openai(theirs, "model", messages, args.tokens,
                                                    ignore_eos=True)["tokens_per_s"])
            direct.append(stream_with_openai(theirs, "model", messages, args.tokens, ignore_eos=False)["tokens_per_s"])
            via_remote.append(remote_decode(llama_url, "model", args.tokens))
        # Per-turn medians over the rounds: one turn's first token takes ~50 ms here, within scheduler noise.
        ours_rounds, their_rounds = [], []
        for _ in range(args.rounds):
            ours_rounds.append(conversation_ttfts(hearth, ready.model_id, args.turns, args.reply_tokens))
            their_rounds.append(conversation_ttfts(theirs, "model", args.turns, args.reply_tokens))
        ours_ttft = [statistics.median(turn) for turn in zip(*ours_rounds)]
        their_ttft = [statistics.median(turn) for turn in zip(*their_rounds)]
        delays = sorted(cancel_on_disconnect(server.url, ready.model_id, counting, args.cancels))
        median = statistics.median
        figures.update({
            "in_process_tokens_per_s": round(median(in_process), 2),
            "api_tokens_per_s": round(median(through_api), 2),
            "llama_server_tokens_per_s": round(median(through_llama), 2),
            "api_decode_ratio": round(median(through_api) / median(in_process), 3),
            "api_ttft_s_by_turn": [round(t, 3) for t in ours_ttft],
            "llama_server_ttft_s_by_turn": [round(t, 3) for t in their_ttft],
            "api_ttft_turn10_over_turn2": round(ours_ttft[-1] / ours_ttft[1], 3),
            "api_vs_llama_server": {
                "decode": round(median(through_api) / median(through_llama), 3),
                "ttft_last_turn": round(ours_ttft[-1] / their_ttft[-1], 3),
            },
            "remote_tokens_per_s": round(median(via_remote), 2),
            "direct_tokens_per_s": round(median(direct), 2),
            "remote_overhead": round(median(via_remote) / median(direct), 3),
            "cancel_on_disconnect_ms": {"p50": round(median(delays), 1),
                                        "p95": round(delays[min(len(delays) - 1, int(0.95 * len(delays)))], 1),
                                        "tries": len(delays)},
        })
    finally:
        llama_server.terminate()
        llama_server.wait(10)
        server.stop()
        owner.stop()
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
