"""Split a reasoning model's reply into its thinking and its answer, as the text streams.

Two formats are known:

- ``"think-tags"``: ``<think>…</think>`` before the answer (DeepSeek-R1, Qwen3, QwQ). A reply may
  start inside the thinking because the chat template already opened ``<think>`` in the prompt
  (DeepSeek-R1 distills): pass ``starts_thinking=True`` when that is known; otherwise a lone
  ``</think>`` turns everything before it into thinking (:attr:`ThinkingSplitter.answer` is then
  shorter than the answer deltas returned so far, and :attr:`ThinkingSplitter.rewound` says so).
- ``"harmony"``: gpt-oss's channels, ``<|channel|>analysis<|message|>…<|end|>`` then
  ``<|start|>assistant<|channel|>final<|message|>…``. llama.cpp renders these special tokens as
  text even when it hides control tokens (its vocabulary marks ``<|channel|>``, ``<|message|>``,
  ``<|start|>``, ``<|constrain|>`` and, for this tokenizer, ``<|end|>`` as user-defined), so
  Hearth's detokenizer (``llama_vocab.token_bytes``) passes them through. Every channel but
  ``final`` is thinking; headers are dropped.

``""`` (no format) passes everything through as answer. A possible partial tag at the end of a
chunk is held back until the next chunk (or :meth:`ThinkingSplitter.finish`) decides it, so a
tag split across chunks at any position is found, and a lone ``<`` in plain text still comes out.
Remote providers that send ``reasoning_content`` are re-framed as ``<think>…</think>`` text by
``inference.remote_engine`` and split the same way.
"""

from __future__ import annotations

import re

__all__ = ["FORMATS", "ThinkingSplitter", "split_thinking", "template_opens_thinking", "template_reads_reasoning",
           "thinking_format_for"]

FORMATS = ("", "think-tags", "harmony")

_OPEN, _CLOSE = "<think>", "</think>"
_HARMONY_TOKENS = ("<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>",
                   "<|constrain|>")
_HARMONY_BODY_ENDS = ("<|end|>", "<|return|>", "<|call|>", "<|start|>")


def thinking_format_for(chat_template: str | None) -> str:
    """The thinking format a model's chat template declares: "harmony", "think-tags" or ""."""
    if not chat_template:
        return ""
    if "<|channel|>" in chat_template and "<|message|>" in chat_template:
        return "harmony"
    if any(mark in chat_template for mark in ("<think>", "</think>", "reasoning_content", "enable_thinking")):
        return "think-tags"
    return ""


def template_reads_reasoning(chat_template: str | None) -> bool:
    """Whether the template reads ``reasoning_content`` (or gpt-oss's ``thinking``) from messages.

    Such a template wants the earlier thinking passed back with each assistant message.
    """
    if not chat_template:
        return False
    return bool(re.search(r"message\s*(\.\s*|\[\s*['\"])(reasoning_content|thinking)\b", chat_template))


def template_opens_thinking(chat_template: str | None) -> bool:
    """Whether the template's generation prompt opens ``<think>`` itself (QwQ, newer DeepSeek-R1 distills).

    The reply then starts inside the thinking, with no opening tag of its own. Read from the template's
    text: the first string after its last ``add_generation_prompt`` that holds ``<think>`` and no ``</think>``
    (Qwen3's ``'<think>\n\n</think>'``, written when thinking is off, holds both).
    """
    if not chat_template or "add_generation_prompt" not in chat_template:
        return False
    tail = chat_template[chat_template.rindex("add_generation_prompt"):][:400]
    for literal in re.findall(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", tail):
        text = literal[0] or literal[1]
        if "<think>" in text:
            return "</think>" not in text
    return False


def _held(text: str, tags: tuple[str, ...]) -> int:
    """Where a suffix of ``text`` that could be the start of one of ``tags`` begins (len(text): none)."""
    start = text.rfind("<", max(0, len(text) - max(len(tag) for tag in tags)))
    while start != -1:
        tail = text[start:]
        if any(tag.startswith(tail) for tag in tags):
            return start
        start = text.find("<", start + 1)
    return len(text)


def _first(text: str, tags: tuple[str, ...]) -> tuple[int, str]:
    """The earliest complete tag in ``text``: (index, tag), or (-1, "")."""
    best = (-1, "")
    for tag in tags:
        index = text.find(tag)
        if index != -1 and (best[0] == -1 or index < best[0]):
            best = (index, tag)
    return best


class ThinkingSplitter:
    """Streams a reply's text into (thinking, answer) deltas.

    Args:
        format: "think-tags", "harmony" or "" (everything is answer).
        starts_thinking: the reply starts inside ``<think>`` (the prompt opened it).

    Attributes:
        thinking, answer: everything split so far (the answer without the leading whitespace).
        rewound: set by the call that moved earlier answer text into the thinking (a lone ``</think>``).
    """

    def __init__(self, format: str, *, starts_thinking: bool = False) -> None:  # noqa: A002 (the issue's name)
        if format not in FORMATS:
            raise ValueError(f"unknown thinking format {format!r}")
        self.format = format
        self.thinking = ""
        self.answer = ""
        self.rewound = False
        self._buffer = ""
        self._seen_tag = starts_thinking
        # think-tags: "start" → "thinking" | "open" (answer, a lone </think> still possible) → "answer"
        # harmony: "start" → "header" ⇄ "body"; "answer" once the text shows no harmony markup
        self._state = "thinking" if starts_thinking and format == "think-tags" else "start"
        if not format:
            self._state = "answer"
        self._channel = ""
        self._header = ""

    def feed(self, text: str) -> tuple[str, str]:
        """Split more of the reply; returns (thinking delta, answer delta)."""
        self.rewound = False
        self._buffer += text
        return self._run(final=False)

    def finish(self) -> tuple[str, str]:
        """The reply ended: whatever was held back comes out; returns the last (thinking, answer) deltas."""
        self.rewound = False
        return self._run(final=True)

    # ---------------------------------------------------------------- internals

    def _emit(self, out: list[str], thinking: str = "", answer: str = "") -> None:
        if thinking:
            if not self.thinking:
                thinking = thinking.lstrip()
            self.thinking += thinking
            out[0] += thinking
        if answer:
            if not self.answer:
                answer = answer.lstrip()
            self.answer += answer
            out[1] += answer

    def _run(self, *, final: bool) -> tuple[str, str]:
        out = ["", ""]
        step = self._step_tags if self.format == "think-tags" else self._step_harmony
        while self._buffer and step(out, final):
            pass
        if final and self._buffer:  # a held partial tag that never completed is plain text
            if self._state in ("thinking",) or (self._state == "body" and self._channel != "final"):
                self._emit(out, thinking=self._buffer)
            elif self._state != "header":
                self._emit(out, answer=self._buffer)
            self._buffer = ""
        return out[0], out[1]

    def _step_tags(self, out: list[str], final: bool) -> bool:
        """One step of the think-tags machine; False when it needs more text."""
        buffer = self._buffer
        if self._state == "answer":
            self._emit(out, answer=buffer)
            self._buffer = ""
            return False
        if self._state == "start":
            stripped = buffer.lstrip()
            if stripped.startswith(_OPEN):
                self._seen_tag = True
                self._state = "thinking"
                self._buffer = stripped[len(_OPEN):]
                return True
            if (not stripped or _OPEN.startswith(stripped)) and not final:
                return False
            self._state = "open"
            return True
        if self._state == "thinking":
            index = buffer.find(_CLOSE)
            if index != -1:
                self._emit(out, thinking=buffer[:index])
                self._buffer = buffer[index + len(_CLOSE):]
                self._state = "answer"
                return True
            cut = len(buffer) if final else _held(buffer, (_CLOSE,))
            self._emit(out, thinking=buffer[:cut])
            self._buffer = buffer[cut:]
            return False
        # "open": answer text, but a lone </think> would make all of it thinking
        index = buffer.find(_CLOSE)
        if index != -1:
            earlier = self.answer + buffer[:index]
            self.answer = ""
            out[1] = ""
            self._emit(out, thinking=earlier)
            self.rewound = True
            self._buffer = buffer[index + len(_CLOSE):]
            self._state = "answer"
            return True
        cut = len(buffer) if final else _held(buffer, (_CLOSE,))
        self._emit(out, answer=buffer[:cut])
        self._buffer = buffer[cut:]
        return False

    def _step_harmony(self, out: list[str], final: bool) -> bool:
        """One step of the harmony machine; False when it needs more text."""
        buffer = self._buffer
        if self._state == "answer":
            self._emit(out, answer=buffer)
            self._buffer = ""
            return False
        if self._state == "start":
            stripped = buffer.lstrip()
            if stripped.startswith("<|"):
                self._state = "header"
                self._buffer = stripped
                return True
            if (not stripped or stripped == "<") and not final:
                return False
            self._state = "answer"  # no harmony markup: a plain reply
            return True
        if self._state == "header":
            index = buffer.find("<|message|>")
            if index == -1:
                return False
            self._header = buffer[:index]
            channel = self._header.split("<|channel|>", 1)[1] if "<|channel|>" in self._header else "final"
            self._channel = channel.split("<|", 1)[0].split()[0] if channel.strip() else "final"
            self._buffer = buffer[index + len("<|message|>"):]
            self._state = "body"
            return True
        # "body"
        index, tag = _first(buffer, _HARMONY_BODY_ENDS)
        cut = index if index != -1 else (len(buffer) if final else _held(buffer, _HARMONY_TOKENS))
        if self._channel == "final":
            self._emit(out, answer=buffer[:cut])
        else:
            self._emit(out, thinking=buffer[:cut])
        if index == -1:
            self._buffer = buffer[cut:]
            return False
        self._buffer = buffer[index:] if tag == "<|start|>" else buffer[index + len(tag):]
        self._state = "header"
        return True


def split_thinking(text: str, format: str) -> tuple[str, str]:  # noqa: A002
    """A whole reply's (thinking, answer), e.g. a non-streaming API reply."""
    splitter = ThinkingSplitter(format)
    splitter.feed(text)
    splitter.finish()
    return splitter.thinking, splitter.answer
