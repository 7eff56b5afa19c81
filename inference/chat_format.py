"""Turn a list of chat messages into the prompt text a model expects.

When the last message is the assistant's, the prompt ends inside it, so the
model continues that reply (used to resume an interrupted one).

Order of preference: the model's own Jinja template (``tokenizer.chat_template``,
rendered in Jinja's immutable sandbox because a model file is untrusted
input); otherwise the known turn format of its architecture; otherwise a
plain-text transcript, which base models continue sensibly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from inference.errors import InferenceError

Message = dict[str, str]


class ChatFormat(Protocol):
    """Renders messages into a prompt and knows where the model's turn ends."""

    name: str
    stop_strings: tuple[str, ...]

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt for ``messages``, ending where the assistant's reply starts (or continues)."""
        ...


class ChatTemplateError(InferenceError, ValueError):
    """The model's chat template cannot be used."""


@dataclass(frozen=True)
class SpecialTokens:
    """Texts of the special tokens a template may refer to."""

    bos: str = ""
    eos: str = ""


class JinjaChatFormat:
    """The model's own chat template, rendered in Jinja's immutable sandbox."""

    name = "the model's chat template"

    def __init__(self, template: str, tokens: SpecialTokens) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loader=jinja2.BaseLoader())
        env.globals["raise_exception"] = _raise_template_error
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(template)
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"The model's chat template is broken ({exc}).") from exc
        self._tokens = tokens
        self.stop_strings = (tokens.eos,) if tokens.eos else ()

    def render(self, messages: Sequence[Message]) -> str:
        continuing = continues_reply(messages)
        try:
            text = self._template.render(
                messages=list(messages),
                add_generation_prompt=not continuing,
                bos_token=self._tokens.bos,
                eos_token=self._tokens.eos,
            )
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"The model's chat template failed on this conversation ({exc}).") from exc
        if continuing:
            # Cut the closing markers after the reply's text, as transformers' continue_final_message does.
            content = messages[-1]["content"]
            end = text.rfind(content) if content else -1
            if end >= 0:
                return text[: end + len(content)]
        return text


class GemmaTurnFormat:
    """Gemma's turn format. Gemma has no system role: the system prompt opens the first user turn."""

    name = "Gemma turns"
    stop_strings = ("<end_of_turn>",)

    def render(self, messages: Sequence[Message]) -> str:
        system, turns = _split_system(messages)
        parts = []
        for index, message in enumerate(turns):
            role = "model" if message["role"] == "assistant" else "user"
            content = message["content"]
            if index == 0 and system:
                content = f"{system}\n\n{content}"
            parts.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
        if continues_reply(messages):
            parts[-1] = parts[-1].removesuffix("<end_of_turn>\n")
        else:
            parts.append("<start_of_turn>model\n")
        return "".join(parts)


class TranscriptFormat:
    """A plain 'User:' / 'Assistant:' transcript that a base (not chat-tuned) model can continue.

    A short example exchange shows the model the shape of a helpful answer.
    """

    name = "plain transcript"
    stop_strings = ("\nUser:", "\nAssistant:", "<end_of_turn>")
    _preamble = (
        "A conversation between a user and a friendly, helpful AI assistant that runs on "
        "the user's own computer. The assistant answers in a few clear sentences.\n\n"
        "User: Hi! Who are you?\n"
        "Assistant: Hello! I am a small AI assistant running on your computer. How can I help?\n"
        "User: What is the capital of France?\n"
        "Assistant: The capital of France is Paris.\n"
    )

    def render(self, messages: Sequence[Message]) -> str:
        system, turns = _split_system(messages)
        parts = [f"{system}\n\n" if system else "", self._preamble]
        for message in turns:
            speaker = "Assistant" if message["role"] == "assistant" else "User"
            parts.append(f"{speaker}: {message['content'].strip()}\n")
        if continues_reply(messages):
            parts[-1] = parts[-1].removesuffix("\n")
        else:
            parts.append("Assistant:")
        return "".join(parts)


_ARCHITECTURE_FORMATS = {"gemma": GemmaTurnFormat, "gemma2": GemmaTurnFormat, "gemma3": GemmaTurnFormat}


def chat_format_for(
    *, architecture: str, chat_template: str | None, tokens: SpecialTokens, is_base_model: bool
) -> ChatFormat:
    """Pick how to prompt a model: its own template, its architecture's format, or a transcript.

    A base model with no template of its own gets the transcript: it was never
    trained on turn markers and answers them with nothing.
    """
    if chat_template:
        return JinjaChatFormat(chat_template, tokens)
    if not is_base_model and architecture in _ARCHITECTURE_FORMATS:
        return _ARCHITECTURE_FORMATS[architecture]()
    return TranscriptFormat()


def continues_reply(messages: Sequence[Message]) -> bool:
    """True when the conversation ends with the assistant's (unfinished) reply, to be continued."""
    return bool(messages) and messages[-1]["role"] == "assistant"


def _split_system(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return system, [m for m in messages if m["role"] != "system"]


def _raise_template_error(message: str) -> None:
    raise ChatTemplateError(f"The model's chat template refused this conversation: {message}")
