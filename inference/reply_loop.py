"""From sampled token ids to text chunks and stats: the loop every engine shares.

It stops on an end-of-generation token, a stop string, the token limit or
the user's cancel flag (checked between tokens), strips the reply's leading
whitespace (unless it continues an earlier reply), and measures time to first token and decode speed.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import llama_cpp

from inference.engine import ReplyStats
from inference.llama_vocab import is_end_of_generation, token_bytes
from inference.text_stream import ReplyTextAssembler


@dataclass(frozen=True)
class ReplyLimits:
    """What ends a reply, besides the model itself."""

    stop_strings: tuple[str, ...]
    max_tokens: int
    cancel: threading.Event
    continuing: bool = False  # the reply goes on from text already shown: keep its leading space
    ignore_eos: bool = False  # neither end-of-generation tokens nor stop strings end the reply


def stream_reply(
    token_ids: Iterator[int],
    *,
    vocab: llama_cpp.llama_vocab_p,
    limits: ReplyLimits,
    prompt_tokens: int,
    evaluated_tokens: Callable[[], int],
    context_window: int,
    dropped_messages: int,
    on_stats: Callable[[ReplyStats], None],
) -> Iterator[str]:
    """Yield the reply's text as tokens arrive; call ``on_stats`` once it ends.

    ``evaluated_tokens`` returns the engine's running count of decoded
    tokens, so the prompt tokens actually computed (not served from the KV
    cache) can be reported.
    """
    assembler = ReplyTextAssembler(() if limits.ignore_eos else limits.stop_strings)
    buffer = ctypes.create_string_buffer(64)
    started = time.perf_counter()
    evaluated_before = evaluated_tokens()
    prompt_evaluated = 0
    first_token_at = None
    count = 0
    finish = "length"
    at_start = not limits.continuing
    for token in token_ids:
        if first_token_at is None:
            first_token_at = time.perf_counter()
            prompt_evaluated = evaluated_tokens() - evaluated_before
        if limits.cancel.is_set():
            finish = "cancelled"
            break
        if is_end_of_generation(vocab, token) and not limits.ignore_eos:
            finish = "stop"
            break
        count += 1
        text = assembler.feed(token_bytes(vocab, token, buffer))
        if at_start and text:
            text = text.lstrip()
            at_start = not text
        if text:
            yield text
        if assembler.stopped:
            finish = "stop"
            break
        if count >= limits.max_tokens:
            break
    tail = assembler.finish()
    if at_start:
        tail = tail.lstrip()
    if tail:
        yield tail
    ended = time.perf_counter()
    on_stats(
        ReplyStats(
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=count,
            ttft_s=(first_token_at or ended) - started,
            total_s=ended - started,
            prompt_tokens_evaluated=prompt_evaluated,
            dropped_messages=dropped_messages,
            context_window=context_window,
        )
    )
