"""How llama.cpp computes attention on the CPU, and checkpoints for models with a sliding window.

Two settings, chosen from measurements (tests/benchmarks/attention_grid.py):

- **Flash attention is off on the CPU.** llama.cpp's CPU flash-attention
  kernel takes its fast tiled path only for batches of 64 tokens or more.
  A follow-up question (20 to 60 new tokens after a long history) goes
  through its one-row-at-a-time path instead, which on a Llama-3.2-1B shape
  at a 1,750-token history took 682 ms against 264 ms without it, and
  decoding there ran at 22 against 27 tokens/s (it is ahead by 5 to 15 %
  only for 512-token prefills and decoding near the start). On a GPU it
  stays on.
- **The sliding-window layers keep only their window** (``swa_full`` off,
  as llama.cpp's own server runs): on Gemma 3 five layers in six attend to
  the last 512 tokens only, so their cache holds 1,024 positions however
  long the context (the built-in model's cache at 4,096 tokens: 27 MiB
  instead of 72), and a long history costs them no more than their
  window. Such a cache cannot be cut back further
  than its window reaches: regenerating a long reply, or editing an earlier
  message, would have to re-read the whole conversation. ``WindowCheckpoints``
  keeps the window's state at the end of each recent prompt (a few MB on
  small models), so the cut goes back to the nearest checkpoint instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inference.state_cache import CachedState, common_prefix_length


@dataclass(frozen=True)
class AttentionOptions:
    """llama.cpp context settings for attention."""

    flash_attn: bool
    swa_full: bool  # sliding-window layers keep every position (True) or only their window


def attention_options(*, on_gpu: bool) -> AttentionOptions:
    """Flash attention and the sliding-window cache size for a model run on the GPU or on the CPU alone."""
    if on_gpu:
        # llama.cpp's own default there ("auto"); a full window cache, as before (not measured here without a GPU).
        return AttentionOptions(flash_attn=True, swa_full=True)
    return AttentionOptions(flash_attn=False, swa_full=False)


def window_reaches(oldest_position: int, keep: int, window: int) -> bool:
    """Whether a window cache whose oldest position is ``oldest_position`` can continue after ``keep`` tokens.

    The next token, at position ``keep``, attends to the ``window`` positions up to
    itself, so from ``keep - window + 1`` on (llama.cpp's chunked and symmetric
    windows need no more); ``oldest_position`` is -1 when the cache is empty
    (which only a cut to nothing can use).
    """
    if oldest_position < 0:
        return keep == 0
    return oldest_position <= max(0, keep - window + 1)


class WindowCheckpoints:
    """The most recent checkpoints, at most ``limit`` of them and ``capacity_bytes`` in all."""

    def __init__(self, *, limit: int, capacity_bytes: int) -> None:
        self.limit = limit
        self.capacity_bytes = capacity_bytes
        self._entries: list[CachedState] = []

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, tokens: Sequence[int], state: Any, size_bytes: int) -> None:
        """Keep a checkpoint, dropping the oldest beyond the limits (one bigger than the cap is not kept)."""
        key = tuple(tokens)
        self._entries = [entry for entry in self._entries if entry.tokens != key]
        if size_bytes > self.capacity_bytes or self.limit <= 0:
            return
        self._entries.append(CachedState(key, state, size_bytes))
        while len(self._entries) > self.limit or sum(e.size_bytes for e in self._entries) > self.capacity_bytes:
            self._entries.pop(0)

    def best_for(self, prompt: Sequence[int], shared: int) -> CachedState | None:
        """The longest checkpoint (the window layers' cache after its tokens) that ``prompt`` starts with, of at most ``shared`` tokens, or None.

        ``shared``: how many tokens the cache holds in common with ``prompt`` (a checkpoint
        of more would not match the rest of the cache).
        """
        best = None
        for entry in self._entries:
            length = len(entry.tokens)
            if length <= shared and (best is None or length > len(best.tokens)):
                if common_prefix_length(entry.tokens, prompt) == length:
                    best = entry
        return best

    def clear(self) -> None:
        """Forget every checkpoint (the model is gone)."""
        self._entries.clear()
