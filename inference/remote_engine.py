"""Replies from a remote OpenAI-compatible server (vLLM, llama-server, Ollama, LM Studio, TGI, hosted APIs).

Everything goes through the official ``openai`` client: no HTTP or SSE
parsing of our own. Each failure becomes a :class:`~inference.errors.RemoteError`
subclass whose message names the provider and says what to do; the API key
never appears in a message or a log line.

``openai`` is imported on first use, not at import time: it takes a good part
of a second and most starts of Hearth never talk to a provider.
"""

from __future__ import annotations

import email.utils
import errno
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from inference.chat_format import Message
from inference.engine import ReplySink, ReplyStats, SamplingParams
from inference.errors import (
    RemoteAuthError,
    RemoteConnectionRefusedError,
    RemoteError,
    RemoteModelNotFoundError,
    RemoteProtocolError,
    RemoteRateLimitError,
    RemoteServerError,
    RemoteStreamBrokenError,
    RemoteTlsError,
    RemoteUnreachableError,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
# Between two pieces of a streamed reply: a server loading its model on the first request can be slow.
READ_TIMEOUT_S = 300.0
NO_KEY = "not-needed"  # the client insists on some key; servers without authentication ignore it
_SERVER_DETAIL_CHARS = 200  # how much of a server's own error message a sentence quotes


CONTEXT_FIELDS = ("max_model_len", "context_length")  # how servers' /models entries name the context window
ASSUMED_CONTEXT = 4096  # a window every served chat model has (Ollama's and llama-server's usual -c)


@dataclass(frozen=True)
class RemoteTarget:
    """A model on a remote OpenAI-compatible server: where it is, which model, and the key (never shown)."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    name: str = ""

    @property
    def label(self) -> str:
        """What sentences call the server: its name, else its host."""
        return self.name or host_of(self.base_url)


def host_of(base_url: str) -> str:
    """The host (and port, when given) of ``base_url``, or the URL itself when it has none."""
    return urlsplit(base_url.strip()).netloc.rpartition("@")[2] or base_url.strip()


def list_remote_models(base_url: str, api_key: str | None, *, timeout_s: float = 10, name: str = "") -> list[str]:
    """The ids of the models the server at ``base_url`` serves (``GET /models``), sorted.

    Raises:
        RemoteError: a subclass saying why the list could not be read, naming ``name`` or the host.
    """
    return sorted(remote_models(base_url, api_key, timeout_s=timeout_s, name=name))


def remote_models(base_url: str, api_key: str | None, *, timeout_s: float = 10, name: str = "") -> dict[str, int]:
    """Each model the server serves (``GET /models``), with its context window in tokens (0: not said).

    vLLM says ``max_model_len``, OpenRouter and others ``context_length``; llama.cpp's server and Ollama
    say nothing of the window they run with.

    Raises:
        RemoteError: a subclass saying why the list could not be read, naming ``name`` or the host.
    """
    target = RemoteTarget(base_url=base_url, model="", api_key=api_key, name=name)
    try:
        with _client(target, connect_s=timeout_s, read_s=timeout_s) as client:
            models = {model.id: served_context(model) for model in client.models.list() if getattr(model, "id", None)}
    except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence
        error = remote_error(exc, target, during="models")
        log.info("Listing the models of %s failed: %s", target.label, type(exc).__name__)
        raise error from None
    return models


def served_context(model: object) -> int:
    """The context window a ``/models`` entry reports (vLLM's ``max_model_len``, ``context_length``), or 0."""
    extra = getattr(model, "model_extra", None) or {}
    for key in CONTEXT_FIELDS:
        value = extra.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def stream_remote_reply(
    target: RemoteTarget,
    messages: Sequence[Message],
    params: SamplingParams,
    cancel: threading.Event,
    sink: ReplySink,
    *,
    chunk_interval_s: float = 0.016,
) -> None:
    """Stream the reply of ``target``'s model to ``messages`` into ``sink``, on the caller's thread.

    Text reaches ``sink.chunk`` at most every ``chunk_interval_s`` (the first
    piece at once). ``cancel`` is checked between chunks; once set, the stream
    is closed and ``sink.finished`` gets ``finish_reason="cancelled"``. A
    failure is reported with ``sink.failed(error)`` (a :class:`RemoteError`)
    after the text already received has been delivered. Never raises for the
    server's failures.
    """
    started = time.monotonic()
    reply = _Reply(sink, chunk_interval_s, started)
    try:
        with _client(target) as client:
            stream = _open_stream(client, target, messages, params)
            with stream:
                for event in stream:
                    if cancel.is_set():
                        break
                    reply.take(event)
                    if cancel.is_set():
                        break
    except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence
        reply.flush()
        error = remote_error(exc, target, during="reply", started=reply.started_text)
        log.info("The reply from %s failed: %s (%s)", target.label, type(error).__name__, type(exc).__name__)
        sink.failed(error)
        return
    reply.flush()
    if cancel.is_set():
        sink.finished(reply.stats("cancelled"))
    elif reply.events == 0:
        sink.failed(RemoteProtocolError(
            f"{target.label} answered, but not with a streamed OpenAI-compatible reply. "
            "Check that the base URL points to the server's OpenAI-compatible API (it usually ends in /v1)."))
    elif reply.finish_reason is None:
        sink.failed(RemoteStreamBrokenError(
            f"{target.label} ended the reply without finishing it (the connection closed early). "
            "The partial reply is kept; try again, and check the server's log if it keeps happening."))
    else:
        sink.finished(reply.stats("length" if reply.finish_reason == "length" else "stop"))


class _Reply:
    """What has arrived of one streamed reply: text waiting to be delivered, timings, usage."""

    def __init__(self, sink: ReplySink, interval_s: float, started: float) -> None:
        self._sink = sink
        self._interval_s = interval_s
        self._started = started
        self._pending: list[str] = []
        self._last_flush = float("-inf")
        self._ttft: float | None = None
        self._content_chunks = 0
        self._thinking = ""  # "" before any reasoning, "open" while it streams, "closed" once the answer came
        self._usage = None
        self.finish_reason: str | None = None
        self.events = 0

    @property
    def started_text(self) -> bool:
        return self._ttft is not None

    def take(self, event) -> None:
        """Take one ``ChatCompletionChunk``: its text (first choice), finish reason and usage."""
        self.events += 1
        if getattr(event, "usage", None) is not None:
            self._usage = event.usage
        for choice in getattr(event, "choices", None) or []:
            if getattr(choice, "index", 0) != 0:
                continue
            delta = choice.delta
            content = getattr(delta, "content", None) if delta is not None else None
            # A reasoning model's thinking (llama-server and vLLM send delta.reasoning_content, newer vLLM
            # delta.reasoning) is framed as <think>…</think> before the answer, for the window's splitter
            # (inference.thinking). Reasoning that comes after the answer started is left out.
            reasoning = None
            if delta is not None and self._thinking != "closed":
                reasoning = getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)
            text = ""
            if isinstance(reasoning, str) and reasoning:
                if not self._thinking:
                    text, self._thinking = "<think>", "open"
                text += reasoning
            if content:
                if self._thinking == "open":
                    text += "</think>"
                self._thinking = "closed"
                text += content
            if text:
                now = time.monotonic()
                if self._ttft is None:
                    self._ttft = now - self._started
                self._content_chunks += 1
                self._pending.append(text)
                if now - self._last_flush >= self._interval_s:
                    self.flush()
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

    def flush(self) -> None:
        """Deliver the text waiting, if any."""
        if self._pending:
            text, self._pending = "".join(self._pending), []
            self._last_flush = time.monotonic()
            self._sink.chunk(text)

    def stats(self, finish_reason: str) -> ReplyStats:
        total = time.monotonic() - self._started
        usage = self._usage
        completion = getattr(usage, "completion_tokens", None) if usage is not None else None
        prompt = getattr(usage, "prompt_tokens", None) if usage is not None else None
        return ReplyStats(
            finish_reason=finish_reason,
            prompt_tokens=prompt or 0,
            completion_tokens=completion if completion is not None else self._content_chunks,
            ttft_s=self._ttft if self._ttft is not None else total,
            total_s=total,
        )


def _client(target: RemoteTarget, *, connect_s: float = CONNECT_TIMEOUT_S, read_s: float = READ_TIMEOUT_S):
    from openai import OpenAI, Timeout

    return OpenAI(
        base_url=target.base_url.strip(),
        api_key=target.api_key or NO_KEY,
        max_retries=0,  # Hearth says what happened instead of waiting through silent retries
        timeout=Timeout(read_s, connect=connect_s, write=connect_s, pool=connect_s),
    )


def _open_stream(client, target: RemoteTarget, messages: Sequence[Message], params: SamplingParams):
    """Start the streamed completion; once more without ``stream_options`` if the server rejects it."""
    import openai

    request = {
        "model": target.model,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "stream": True,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
    }
    if params.seed is not None:
        request["seed"] = params.seed
    if params.stop:
        request["stop"] = list(params.stop)
    try:
        return client.chat.completions.create(**request, stream_options={"include_usage": True})
    except openai.BadRequestError:
        # Some servers refuse fields they do not know (stream_options among them) with a 400.
        log.info("%s refused the request with stream_options; asking again without it", target.label)
        return client.chat.completions.create(**request)


def remote_error(exc: BaseException, target: RemoteTarget, *, during: str = "reply", started: bool = False) -> RemoteError:
    """The :class:`RemoteError` (a sentence naming the provider) for ``exc``, raised by the openai client.

    ``during`` is ``"reply"`` or ``"models"`` (listing the models);
    ``started``: text of the reply had already arrived.
    """
    error = _classify(exc, target, during, started)
    if target.api_key and target.api_key in str(error):
        # A server may echo what it was sent; the key must never reach the window or the log.
        error = type(error)(str(error).replace(target.api_key, "…"), *_extra_args(error))
    return error


def _extra_args(error: RemoteError) -> tuple:
    return (error.retry_after_s,) if isinstance(error, RemoteRateLimitError) else ()


def _classify(exc: BaseException, target: RemoteTarget, during: str, started: bool) -> RemoteError:
    import openai
    import pydantic

    who = target.label
    if isinstance(exc, RemoteError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc, target, during)
    if isinstance(exc, openai.APITimeoutError):
        if started or _in_chain(exc, ("ReadTimeout",)):
            return RemoteStreamBrokenError(
                f"{who} stopped answering (nothing arrived for {READ_TIMEOUT_S:.0f} seconds). "
                "Check that the server is still running, then try again.")
        return RemoteUnreachableError(
            f"Could not reach {who}: connecting timed out. Check the address and your network, "
            "and that the server is running.")
    if isinstance(exc, openai.APIConnectionError):
        return _connection_error(exc, target, started)
    if isinstance(exc, (openai.APIResponseValidationError, json.JSONDecodeError, pydantic.ValidationError,
                        UnicodeDecodeError)):
        return RemoteProtocolError(
            f"{who} sent an answer that is not an OpenAI-compatible reply (malformed JSON). "
            "Check that the base URL points to the server's OpenAI-compatible API (it usually ends in /v1).")
    if isinstance(exc, openai.APIError):
        # An error event inside the stream (vLLM and others report failures mid-reply this way).
        return RemoteServerError(f"{who} reported an error while replying: {_detail(exc)}. Try again, "
                                 "or check the server's log.")
    return RemoteProtocolError(
        f"The answer from {who} could not be understood ({type(exc).__name__}). "
        "Check that the base URL points to an OpenAI-compatible API.")


def _status_error(exc, target: RemoteTarget, during: str) -> RemoteError:
    status = exc.status_code
    who = target.label
    if status in (401, 403):
        what = "refused the API key" if target.api_key else "needs an API key"
        return RemoteAuthError(
            f"{who} {what} (HTTP {status}): the key is wrong or missing. "
            f"Enter the right key for {who} in File › Providers….")
    if status == 404:
        if during == "models":
            return RemoteModelNotFoundError(
                f"{who} has no model list at this address (HTTP 404). "
                "Check the base URL: for most servers it ends in /v1.")
        return RemoteModelNotFoundError(
            f"{who} does not serve the model “{target.model}” (HTTP 404). "
            f"Choose one of its models again in File › Providers…, and check the base URL.")
    if status == 429:
        retry_after = _retry_after_s(exc.response.headers)
        when = f"in {retry_after:.0f} seconds" if retry_after is not None else "in a little while"
        return RemoteRateLimitError(
            f"{who} is receiving too many requests (HTTP 429). Try again {when}.", retry_after)
    if status >= 500:
        return RemoteServerError(
            f"{who} failed with a server error (HTTP {status}{_detail_suffix(exc)}). "
            "Try again later, or check the server's log.")
    return RemoteServerError(
        f"{who} refused the request (HTTP {status}{_detail_suffix(exc)}). "
        "Check the provider's settings in File › Providers….")


def _connection_error(exc: BaseException, target: RemoteTarget, started: bool) -> RemoteError:
    who = target.label
    if _in_chain(exc, (ssl.SSLCertVerificationError,)) or _in_chain(exc, ("CERTIFICATE_VERIFY_FAILED",)):
        return RemoteTlsError(
            f"The certificate of {who} could not be verified, so Hearth did not connect. "
            "If the server uses a self-signed certificate, install it in your system's trusted certificates, "
            "or check the address.")
    if _in_chain(exc, (ssl.SSLError,)):
        return RemoteTlsError(
            f"A secure (TLS) connection to {who} could not be set up, so its certificate could not be verified. "
            "Check that the address uses the right scheme (http:// or https://) and port.")
    if started or (_in_chain(exc, ("RemoteProtocolError", "ReadError")) and not _refused(exc)):
        return RemoteStreamBrokenError(
            f"The connection to {who} dropped in the middle of the reply. "
            "The partial reply is kept; try again, and check that the server is still running.")
    if _refused(exc):
        return RemoteConnectionRefusedError(
            f"{who} refused the connection: nothing is listening at {host_of(target.base_url)}. "
            "Start the server, or check the address and port.")
    if _in_chain(exc, (socket.gaierror,)):
        return RemoteUnreachableError(
            f"Could not find {who}: the name {urlsplit(target.base_url).hostname or who} does not resolve. "
            "Check the address and your network connection.")
    return RemoteUnreachableError(
        f"Could not reach {who}. Check the address and your network connection, and that the server is running.")


def _refused(exc: BaseException) -> bool:
    return any(isinstance(e, ConnectionRefusedError) or (isinstance(e, OSError) and e.errno == errno.ECONNREFUSED)
               for e in _chain(exc)) or _in_chain(exc, ("Connection refused",))


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _in_chain(exc: BaseException, marks: tuple) -> bool:
    """Whether an exception in ``exc``'s chain is one of the classes in ``marks``, or names or says a string of it."""
    for link in _chain(exc):
        for mark in marks:
            if isinstance(mark, type):
                if isinstance(link, mark):
                    return True
            elif mark == type(link).__name__ or mark in str(link):
                return True
    return False


def _retry_after_s(headers) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date), or None."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(exc) -> str:
    """The server's own short message, cleaned for a sentence."""
    body = getattr(exc, "body", None)
    message = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message", "") if isinstance(inner, dict) else str(inner)
    message = str(message or getattr(exc, "message", "") or "").strip().rstrip(".")
    message = " ".join(message.split())
    return message[:_SERVER_DETAIL_CHARS]


def _detail_suffix(exc) -> str:
    detail = _detail(exc)
    # openai's generic "Error code: 500 - {...}" repeats the body; only a server's own words are worth quoting.
    if not detail or detail.startswith("Error code:"):
        return ""
    return f": {detail}"
