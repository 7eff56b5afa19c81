"""Turn a list of chat messages into the prompt text a model expects.

When the last message is the assistant's, the prompt ends inside it, so the
model continues that reply (used to resume an interrupted one).

Order of preference: the model's own Jinja template (``tokenizer.chat_template``,
rendered by :mod:`inference.template_sandbox` because a model file is untrusted
input); otherwise the known turn format of its architecture; otherwise a
plain-text transcript, which base models continue sensibly. A template that
is too big, runs past its limits or reaches outside its sandbox is set aside
for Hearth's own format, and the format's name says why.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from inference.template_sandbox import (
    ChatTemplateError,
    RenderLimits,
    SandboxedTemplate,
    TemplateEscapeError,
    TemplateLimitError,
    end_process_on_hang,
)

log = logging.getLogger(__name__)

Message = dict[str, str]

__all__ = [
    "ChatFormat", "ChatTemplateError", "GemmaTurnFormat", "JinjaChatFormat", "Message", "SpecialTokens",
    "TemplateEscapeError", "TemplateLimitError", "TranscriptFormat", "chat_format_for", "continues_reply",
    "hearths_format", "thinking_context",
]

# Rendered once when a model loads: a template that runs away or reaches out on a plain exchange is set aside then.
SAMPLE_CONVERSATION: tuple[Message, ...] = (
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hello! How can I help you today?"},
    {"role": "user", "content": "What is the capital of France?"},
)


class ChatFormat(Protocol):
    """Renders messages into a prompt and knows where the model's turn ends."""

    name: str
    stop_strings: tuple[str, ...]

    def render(self, messages: Sequence[Message], *, thinking: str | None = None) -> str:
        """The prompt for ``messages``, ending where the assistant's reply starts (or continues).

        ``thinking`` (see ``SamplingParams.thinking``) reaches a model's own template as
        ``enable_thinking`` / ``reasoning_effort``; other formats ignore it.
        """
        ...


@dataclass(frozen=True)
class SpecialTokens:
    """Texts of the special tokens a template may refer to."""

    bos: str = ""
    eos: str = ""


class JinjaChatFormat:
    """The model's own chat template, rendered within limits by :class:`SandboxedTemplate`.

    Without ``fallback``, every failure raises. With one (``chat_format_for``
    gives Hearth's own format), the template is tried on a sample conversation
    here, and a template that is too big, runs past its limits or reaches
    outside its sandbox, now or on any later conversation, is set aside for
    good: ``fallback`` renders instead, and ``name`` and ``set_aside_reason`` say why.

    Args:
        template: the template's source (untrusted).
        tokens: the texts of the model's special tokens.
        fallback: the format to use when the template cannot be.
        limits: how much compiling and each render may take.
        on_hang: called when a render stays stuck long past its time (see :class:`SandboxedTemplate`).

    Raises:
        ChatTemplateError: (only without ``fallback``) the template is broken or too big.
    """

    def __init__(
        self,
        template: str,
        tokens: SpecialTokens,
        *,
        fallback: ChatFormat | None = None,
        limits: RenderLimits | None = None,
        on_hang: Callable[[], None] | None = None,
    ) -> None:
        self._tokens = tokens
        self._fallback = fallback
        self._template: SandboxedTemplate | None = None
        self.set_aside_reason = ""  # why the template is not used, as a clause; "" while it is
        try:
            self._template = SandboxedTemplate(template, limits=limits, on_hang=on_hang)
        except ChatTemplateError as exc:
            if fallback is None:
                raise
            self._set_aside(exc)
            return
        if fallback is not None:
            try:
                self._render_template(SAMPLE_CONVERSATION)
            except (TemplateLimitError, TemplateEscapeError) as exc:
                self._set_aside(exc)
            except ChatTemplateError as exc:  # it may refuse this exchange yet work on others
                log.info("The chat template failed on the sample conversation: %s", exc)

    @property
    def name(self) -> str:
        """How prompts are formatted, with the reason when the model's template was set aside."""
        if not self.set_aside_reason:
            return "the model's chat template"
        return f"{self._fallback.name}, Hearth's own format (the model's chat template {self.set_aside_reason})"

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Where the model's turn ends: its end-of-sequence token, or the fallback's markers."""
        if self.set_aside_reason:
            return self._fallback.stop_strings
        return (self._tokens.eos,) if self._tokens.eos else ()

    def render(self, messages: Sequence[Message], *, thinking: str | None = None) -> str:
        if self.set_aside_reason:
            return self._fallback.render(messages)
        try:
            return self._render_template(messages, thinking=thinking)
        except (TemplateLimitError, TemplateEscapeError) as exc:
            if self._fallback is None:
                raise
            self._set_aside(exc)
            return self._fallback.render(messages)

    def _render_template(self, messages: Sequence[Message], *, thinking: str | None = None) -> str:
        continuing = continues_reply(messages)
        text = self._template.render(
            # Copies: the template sees data, never our objects (with ``reasoning_content`` where the caller put it).
            messages=[dict(message) for message in messages],
            add_generation_prompt=not continuing,
            bos_token=self._tokens.bos,
            eos_token=self._tokens.eos,
            **thinking_context(thinking),
        )
        if continuing:
            # Cut the closing markers after the reply's text, as transformers' continue_final_message does.
            content = messages[-1]["content"]
            end = text.rfind(content) if content else -1
            if end >= 0:
                return text[: end + len(content)]
        return text

    def _set_aside(self, exc: ChatTemplateError) -> None:
        self.set_aside_reason = f"was set aside: it {exc.reason}" if exc.reason else f"was set aside: {exc}"
        self._template = None
        log.warning("Using %s instead of the model's chat template: %s", self._fallback.name, exc)


class GemmaTurnFormat:
    """Gemma's turn format. Gemma has no system role: the system prompt opens the first user turn."""

    name = "Gemma turns"
    stop_strings = ("<end_of_turn>",)

    def render(self, messages: Sequence[Message], *, thinking: str | None = None) -> str:
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

    def render(self, messages: Sequence[Message], *, thinking: str | None = None) -> str:
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
    trained on turn markers and answers them with nothing. A model whose
    template cannot be used safely gets what it would without one.
    """
    own = hearths_format(architecture=architecture, is_base_model=is_base_model)
    if not chat_template:
        return own
    # In the engine's own process a render stuck inside one C call ends the process: its parent
    # reports it and starts a fresh one. Anywhere else (tests, tools) it is only logged.
    in_engine_process = multiprocessing.parent_process() is not None
    return JinjaChatFormat(chat_template, tokens, fallback=own,
                           on_hang=end_process_on_hang if in_engine_process else None)


def hearths_format(*, architecture: str, is_base_model: bool) -> ChatFormat:
    """Hearth's own format for a model: its architecture's turns if known and chat-tuned, else a transcript."""
    if not is_base_model and architecture in _ARCHITECTURE_FORMATS:
        return _ARCHITECTURE_FORMATS[architecture]()
    return TranscriptFormat()


def thinking_context(thinking: str | None) -> dict[str, object]:
    """Template variables for ``SamplingParams.thinking``: Qwen3's ``enable_thinking``, gpt-oss's ``reasoning_effort``.

    None (the model's default) sets neither, so the template's own default holds.
    """
    if thinking is None:
        return {}
    if thinking == "off":
        return {"enable_thinking": False}
    if thinking == "on":
        return {"enable_thinking": True}
    if thinking in ("low", "medium", "high"):
        return {"enable_thinking": True, "reasoning_effort": thinking}
    raise ValueError(f"unknown thinking setting {thinking!r}")


def continues_reply(messages: Sequence[Message]) -> bool:
    """True when the conversation ends with the assistant's (unfinished) reply, to be continued."""
    return bool(messages) and messages[-1]["role"] == "assistant"


def _split_system(messages: Sequence[Message]) -> tuple[str, list[Message]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return system, [m for m in messages if m["role"] != "system"]
