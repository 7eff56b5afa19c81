"""What a chat completion request may hold, validated with pydantic; what it becomes for the engine.

Fields OpenAI defines that Hearth does not use (``tools``, ``logprobs``,
``frequency_penalty``…) are ignored, as OpenAI-compatible servers do; a
field Hearth uses with a value of the wrong type is refused (400, naming the
field). Types are strict: ``"0.5"`` is not a temperature, ``true`` is not a number.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inference.api.errors import ApiError
from inference.engine import SamplingParams

MAX_STOP_STRINGS = 4  # as OpenAI


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Strict):
    """A part of a message's content; only text parts are understood."""

    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    """One message of the conversation. ``developer`` is OpenAI's newer name for ``system``."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def as_engine_message(self) -> dict[str, str]:
        """``{"role", "content"}`` as the engine takes it."""
        if isinstance(self.content, list):
            text = "".join(part.text for part in self.content)
        else:
            text = self.content or ""
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(_Strict):
    """``stream_options``: with ``include_usage``, a last chunk carries the token counts."""

    include_usage: bool = False


class ChatCompletionRequest(_Strict):
    """The body of ``POST /v1/chat/completions``.

    ``top_k``, ``min_p``, ``repeat_penalty`` and ``ignore_eos`` (write ``max_tokens`` tokens whatever the
    model's end, for measurements) are llama.cpp's and vLLM's servers' extensions, accepted here too.
    """

    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Annotated[float, Field(ge=0, le=1)] | None = None
    repeat_penalty: Annotated[float, Field(gt=0)] | None = None
    seed: int | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_STRINGS)] | None = None
    ignore_eos: bool = False

    @property
    def include_usage(self) -> bool:
        """True when the stream ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage

    def engine_messages(self) -> list[dict[str, str]]:
        """The messages as the engine takes them."""
        return [message.as_engine_message() for message in self.messages]

    def sampling(self, defaults: SamplingParams, *, max_tokens_cap: int) -> SamplingParams:
        """The engine's sampling parameters: the request's, else ``defaults``; never dropping old turns.

        ``max_tokens`` (or ``max_completion_tokens``) is capped at ``max_tokens_cap``, its default.
        """
        asked = self.max_completion_tokens or self.max_tokens or max_tokens_cap
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        chosen = {
            name: getattr(self, name)
            for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed")
            if getattr(self, name) is not None
        }
        return replace(defaults, **chosen, max_tokens=min(asked, max_tokens_cap),
                       stop=tuple(text for text in stop if text), drop_oldest=False, ignore_eos=self.ignore_eos)


def parse_chat_request(data: object) -> ChatCompletionRequest:
    """The validated request.

    Raises:
        ApiError: 400 naming the first field at fault in ``param`` (``messages[0].role``), or for ``n`` over 1.
    """
    if not isinstance(data, dict):
        raise ApiError("The request body must be a JSON object.", status=400)
    try:
        request = ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = _param(error["loc"])
        if error["type"] == "missing":
            raise ApiError(f"Missing required parameter: '{param}'.", status=400,
                           code="missing_required_parameter", param=param) from None
        raise ApiError(f"Invalid value for '{param}': {error['msg']}.", status=400, code="invalid_value",
                       param=param) from None
    if request.n not in (None, 1):
        raise ApiError("Only n=1 is supported: Hearth writes one reply at a time.", status=400,
                       code="invalid_value", param="n")
    return request


def _param(location: tuple) -> str:
    """``("messages", 0, "role")`` → ``messages[0].role``; pydantic's union branch names are left out."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("str", "list[TextPart]", "list[str]", "TextPart") or "[" in str(part) or "-" in str(part):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text
