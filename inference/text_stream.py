"""Turn a stream of token bytes into text, linear in the length of the reply.

Each token's bytes go through an incremental UTF-8 decoder (a character split
across tokens is held until complete; invalid bytes become U+FFFD), then
through a stop-string matcher that only ever looks at a bounded tail.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable


class StopStringMatcher:
    """Finds the first stop string in streamed text, holding back only what could start one.

    ``feed`` returns the text that is safe to show. Work per call is bounded by
    the chunk length plus the longest stop string, never by the whole reply.
    """

    def __init__(self, stop_strings: Iterable[str]) -> None:
        self._stops = tuple(stop for stop in stop_strings if stop)
        self._longest = max((len(stop) for stop in self._stops), default=0)
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add text; return what can be shown now. Sets ``stopped`` when a stop string appears."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        window = self._pending + text
        cut = min((index for stop in self._stops if (index := window.find(stop)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            return window[:cut]
        keep = self._held_back_length(window)
        self._pending = window[len(window) - keep:] if keep else ""
        return window[: len(window) - keep]

    def flush(self) -> str:
        """At the end of the stream: return the held-back text (it did not become a stop string)."""
        pending, self._pending = self._pending, ""
        return "" if self.stopped else pending

    def _held_back_length(self, window: str) -> int:
        """Length of the longest suffix of ``window`` that is a proper prefix of a stop string."""
        for length in range(min(self._longest - 1, len(window)), 0, -1):
            suffix = window[-length:]
            if any(stop.startswith(suffix) for stop in self._stops):
                return length
        return 0


class ReplyTextAssembler:
    """Token bytes in, displayable text out: UTF-8 decoding, then stop strings."""

    def __init__(self, stop_strings: Iterable[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = StopStringMatcher(stop_strings)

    @property
    def stopped(self) -> bool:
        """True once a stop string has been seen; no more text will come out."""
        return self._stops.stopped

    def feed(self, token_bytes: bytes) -> str:
        """Add one token's bytes; return the text that can be shown now (maybe empty)."""
        return self._stops.feed(self._decoder.decode(token_bytes))

    def finish(self) -> str:
        """End of the reply: return whatever was held back."""
        return self._stops.feed(self._decoder.decode(b"", final=True)) + self._stops.flush()
