"""Split a document's text into passages for the index.

Passages are contiguous and do not overlap, so joining them gives the text
back (a whole attachment is read that way). Each ends at the best boundary
before the target length: a blank line, then a line end, then a sentence
end, then a space; only a run with none of them is cut mid-word.
"""

from __future__ import annotations

import re

TARGET_CHARS = 1000  # about 250 tokens: a paragraph or two, small enough to cite
MIN_CHARS = 400  # a boundary earlier than this is not worth taking

_BOUNDARIES = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"[.!?。][\"')\]]?\s"), re.compile(r"\s"))


def chunk_spans(text: str, *, target: int = TARGET_CHARS, minimum: int = MIN_CHARS) -> list[tuple[int, int]]:
    """(start, end) offsets into ``text`` of its passages, in order, covering all of it.

    Passages that hold only whitespace are left out.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(text):
        end = len(text) if len(text) - start <= target else _cut(text, start, target, minimum)
        if text[start:end].strip():
            spans.append((start, end))
        start = end
    return spans


def _cut(text: str, start: int, target: int, minimum: int) -> int:
    window = text[start:start + target]
    for boundary in _BOUNDARIES:
        ends = [m.end() for m in boundary.finditer(window) if m.end() >= minimum]
        if ends:
            return start + ends[-1]
    return start + target
