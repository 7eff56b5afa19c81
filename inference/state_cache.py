"""A least-recently-used cache of engine states, keyed by the tokens they hold, capped in bytes.

When the user switches to another conversation, the engine's KV cache is
about to be overwritten. Saving it here first means switching back restores
it instead of re-processing the whole history.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists (binary search on C-speed slice compares)."""
    a, b = list(a), list(b)
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


@dataclass(frozen=True)
class CachedState:
    """An engine state and the tokens it holds."""

    tokens: tuple[int, ...]
    state: Any
    size_bytes: int


class PrefixStateCache:
    """States ordered by last use; the oldest are dropped once ``capacity_bytes`` is exceeded."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._entries: OrderedDict[tuple[int, ...], CachedState] = OrderedDict()

    @property
    def size_bytes(self) -> int:
        """Bytes held by all cached states."""
        return sum(entry.size_bytes for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, tokens: Sequence[int], state: Any, size_bytes: int) -> None:
        """Store a state; it becomes the most recent. A state bigger than the cap is not kept."""
        key = tuple(tokens)
        self._entries.pop(key, None)
        if size_bytes > self.capacity_bytes:
            return
        # A state that extends another one makes the shorter one redundant.
        for other in [k for k in self._entries if len(k) <= len(key) and key[: len(k)] == k]:
            del self._entries[other]
        self._entries[key] = CachedState(key, state, size_bytes)
        while self.size_bytes > self.capacity_bytes:
            self._entries.popitem(last=False)

    def best_match(self, tokens: Sequence[int]) -> tuple[int, CachedState] | None:
        """The state sharing the longest prefix with ``tokens`` (marked as used), or None."""
        best: tuple[int, CachedState] | None = None
        for entry in self._entries.values():
            shared = common_prefix_length(entry.tokens, tokens)
            if shared and (best is None or shared > best[0]):
                best = (shared, entry)
        if best is not None:
            self._entries.move_to_end(best[1].tokens)
        return best
