"""The API's endpoints: ``GET /v1/models`` and ``POST /v1/chat/completions``, in OpenAI's shapes.

Replies come from the model owner, which calls the reply's sink on its own
thread; :class:`_QueueSink` hands each call to the event loop
(``call_soon_threadsafe`` into an ``asyncio.Queue``). A client that goes away
sets the reply's cancel event, so the generation stops within a token:
when the streaming generator is cancelled or closed, or when
``request.is_disconnected()`` says so while a reply is awaited.

There is no ``/v1/completions``: the engine only writes chat replies, and a
raw prompt is not faked as one (404, like any other unknown URL). No endpoint
downloads, writes or deletes anything.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator
from typing import Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from inference.api.config import ServerConfig
from inference.api.errors import ApiError, from_inference_error
from inference.api.guards import BearerAuth, BodyLimit, HostGuard, OriginGuard
from inference.api.schemas import ChatCompletionRequest, parse_chat_request
from inference.engine import ReplySink, ReplyStats
from inference.model_owner import API, ModelReady, ReplyRequest
from inference.thinking import ThinkingSplitter

log = logging.getLogger(__name__)

DISCONNECT_POLL_S = 0.2  # how often a client is checked for having gone while its reply is awaited


class Owner(Protocol):
    """What the API needs of :class:`inference.model_owner.ModelOwner`."""

    @property
    def ready(self) -> ModelReady | None: ...

    def submit(self, request: ReplyRequest, sink: ReplySink, *, source: str = ...,
               chunk_interval_s: float = ...) -> None: ...


def build_app(owner: Owner, config: ServerConfig) -> Starlette:
    """The ASGI application: the guards (Host, Origin, token, body size), then the endpoints.

    Args:
        owner: the model owner that writes the replies.
        config: the token, the address the server listens on, and the limits.
    """
    endpoints = _Endpoints(owner, config)
    app = Starlette(
        routes=[
            Route("/v1/models", endpoints.models, methods=["GET"]),
            Route("/v1/models/{model:path}", endpoints.model, methods=["GET"]),
            Route("/v1/chat/completions", endpoints.chat_completions, methods=["POST"]),
        ],
        middleware=[
            Middleware(HostGuard, bind_host=config.host),
            Middleware(OriginGuard),
            Middleware(BearerAuth, token=config.token),
            Middleware(BodyLimit, max_bytes=config.max_body_bytes),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error},
    )
    app.state.cancel_replies = endpoints.active.cancel_all  # the server calls it as it stops
    return app


def error_response(error: ApiError) -> JSONResponse:
    """``error`` as an OpenAI-format JSON response with its status."""
    return JSONResponse(error.body, status_code=error.status)


async def _api_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    if exc.status_code == 404:
        return error_response(ApiError(
            f"Unknown URL ({request.method} {request.url.path}). Hearth serves GET /v1/models and "
            "POST /v1/chat/completions.", status=404, code="unknown_url"))
    if exc.status_code == 405:
        return error_response(ApiError(f"{request.method} is not allowed on {request.url.path}.", status=405,
                                       code="method_not_allowed"))
    return error_response(ApiError(str(exc.detail), status=exc.status_code))


async def _server_error(request: Request, exc: Exception) -> Response:
    return error_response(ApiError(f"The server failed unexpectedly ({type(exc).__name__}).", status=500,
                                   type="server_error"))


class _QueueSink:
    """A reply sink the owner calls on its thread; each call becomes an ``(kind, value)`` item on the loop's queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._loop = loop

    def _put(self, item: tuple[str, object]) -> None:
        try:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server stopped and nobody waits for this reply
            pass

    def chunk(self, text: str) -> None:
        self._put(("chunk", text))

    def finished(self, stats: ReplyStats) -> None:
        self._put(("finished", stats))

    def failed(self, error: Exception) -> None:
        self._put(("failed", error))


class _ActiveReplies:
    """The cancel events of the replies being written, so that a stopping server can cancel them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: set[threading.Event] = set()

    def new_cancel(self) -> threading.Event:
        """A cancel event for a new reply, listed until it is set (every reply ends with it set)."""
        return _TrackedCancel(self)

    def add(self, event: threading.Event) -> None:
        with self._lock:
            self._events.add(event)

    def discard(self, event: threading.Event) -> None:
        with self._lock:
            self._events.discard(event)

    def cancel_all(self) -> None:
        """Cancel every reply in progress; callable from any thread."""
        with self._lock:
            events = list(self._events)
        for event in events:
            event.set()


class _TrackedCancel(threading.Event):
    def __init__(self, active: _ActiveReplies) -> None:
        super().__init__()
        self._active = active
        active.add(self)

    def set(self) -> None:
        super().set()
        self._active.discard(self)


class _ClientGone(Exception):
    """The client disconnected while its reply was awaited (caught in the endpoint, never escapes)."""


class _Reply:
    """One reply being written: its queue of events and its cancel event."""

    def __init__(self, sink: _QueueSink, cancel: threading.Event, request: Request) -> None:
        self._sink = sink
        self.cancel = cancel
        self._request = request
        self._checked_at = time.monotonic()

    async def next(self, *, watch_client: bool) -> tuple[str, object]:
        """The next event: ``("chunk", str)``, ``("finished", ReplyStats)`` or ``("failed", Exception)``.

        With ``watch_client``, a client that has gone sets ``cancel`` and raises :class:`_ClientGone`
        (a streaming response has Starlette watching for that instead).
        """
        while True:
            if watch_client and time.monotonic() - self._checked_at >= DISCONNECT_POLL_S:
                self._checked_at = time.monotonic()
                if await self._request.is_disconnected():
                    self.cancel.set()
                    raise _ClientGone
            try:
                return await asyncio.wait_for(self._sink.queue.get(), DISCONNECT_POLL_S if watch_client else None)
            except TimeoutError:
                continue


class _Endpoints:
    def __init__(self, owner: Owner, config: ServerConfig) -> None:
        self._owner = owner
        self._config = config
        self._ids = itertools.count(1)
        self._created = int(time.time())
        self.active = _ActiveReplies()

    def _ready(self) -> ModelReady:
        ready = self._owner.ready
        if ready is None:
            raise ApiError("No model is loaded yet: wait until Hearth has loaded one, then try again.",
                           status=503, type="server_error", code="model_not_loaded")
        return ready

    def _model_object(self, ready: ModelReady) -> dict:
        return {"id": ready.model_id, "object": "model", "created": self._created, "owned_by": "hearth"}

    async def models(self, request: Request) -> Response:
        """The loaded model, as OpenAI's model list (empty while none is loaded)."""
        ready = self._owner.ready
        return JSONResponse({"object": "list", "data": [self._model_object(ready)] if ready else []})

    async def model(self, request: Request) -> Response:
        """One model by its id: the loaded one, or 404."""
        ready = self._owner.ready
        if ready is None or request.path_params["model"] != ready.model_id:
            raise _unknown_model(request.path_params["model"], ready)
        return JSONResponse(self._model_object(ready))

    async def chat_completions(self, request: Request) -> Response:
        """A chat reply, streamed as server-sent events or whole."""
        try:
            data = json.loads(await request.body())
        except ValueError:
            raise ApiError("The request body is not valid JSON.", status=400, code="invalid_json") from None
        chat = parse_chat_request(data)
        ready = self._ready()
        if chat.model != ready.model_id:
            raise _unknown_model(chat.model, ready)
        sink = _QueueSink(asyncio.get_running_loop())
        cancel = self.active.new_cancel()
        self._owner.submit(
            ReplyRequest(request_id=next(self._ids), messages=chat.engine_messages(),
                         params=chat.sampling(self._config.sampling, max_tokens_cap=self._config.max_tokens_cap),
                         cancel=cancel),
            sink, source=API,
        )
        reply = _Reply(sink, cancel, request)
        header = {"id": f"chatcmpl-{secrets.token_hex(12)}", "created": int(time.time()), "model": ready.model_id}
        streaming = False
        try:
            if chat.stream:
                # The first event comes before the response starts, so that a prompt too long is still a 400.
                first = await reply.next(watch_client=True)
                if first[0] == "failed":
                    raise from_inference_error(first[1])
                streaming = True  # from here the response cancels the reply when it ends
                return _ReplyStream(cancel, _stream(reply, first, chat, header, ready=ready))
            whole = await _whole(reply, header, ready=ready)
        except _ClientGone:
            return Response(status_code=499)  # nobody reads it
        finally:
            if not streaming:
                cancel.set()  # ended, failed, or the server stopping: the generation ends within a token
        return JSONResponse(whole)


class _ReplyStream(StreamingResponse):
    """The server-sent events of one reply; however the response ends, the reply is cancelled with it.

    (Starlette may cancel a response whose client left before the generator's first step, when
    the generator's own ``finally`` never runs.)
    """

    def __init__(self, cancel: threading.Event, events: AsyncIterator[str]) -> None:
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._cancel = cancel

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._cancel.set()


def _unknown_model(name: str, ready: ModelReady | None) -> ApiError:
    loaded = f" The loaded model is '{ready.model_id}'." if ready else ""
    return ApiError(f"The model '{name}' does not exist here.{loaded}", status=404, code="model_not_found",
                    param="model")


def _cancelled_error() -> ApiError:
    return ApiError("The reply was stopped before it ended (Hearth is stopping or the model changed).",
                    status=503, type="server_error", code="reply_cancelled")


def _usage(stats: ReplyStats) -> dict:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens}


async def _whole(reply: _Reply, header: dict, *, ready: ModelReady) -> dict:
    """The reply as one ``chat.completion`` object; a reasoning model's thinking as ``reasoning_content``.

    The split follows the model's thinking format (``ModelReady.thinking``), as llama-server and vLLM split it.
    """
    splitter = _splitter_for(ready)
    while True:
        kind, value = await reply.next(watch_client=True)
        if kind == "chunk":
            splitter.feed(value)
        elif kind == "failed":
            raise from_inference_error(value)
        elif value.finish_reason == "cancelled":
            raise _cancelled_error()
        else:
            splitter.finish()
            message = {"role": "assistant", "content": splitter.answer}
            if splitter.thinking:
                message["reasoning_content"] = splitter.thinking
            return {
                **header, "object": "chat.completion",
                "choices": [{"index": 0, "message": message,
                             "logprobs": None, "finish_reason": value.finish_reason}],
                "usage": _usage(value),
            }


def _splitter_for(ready: ModelReady) -> ThinkingSplitter:
    return ThinkingSplitter(ready.thinking, starts_thinking=ready.thinking_opens)


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


async def _stream(reply: _Reply, first: tuple[str, object], chat: ChatCompletionRequest,
                  header: dict, *, ready: ModelReady) -> AsyncIterator[str]:
    """The reply as server-sent ``chat.completion.chunk`` events, then ``[DONE]``.

    A reasoning model's thinking goes out as ``delta.reasoning_content``,
    its answer as ``delta.content``. (A lone ``</think>`` cannot take back content already sent.)

    A failure after the first event is sent as an ``error`` event (the status is already 200).
    Leaving the generator early (the client went: Starlette cancels it, or closes it) cancels the reply.
    """
    usage = {"usage": None} if chat.include_usage else {}

    def chunk(delta: dict, finish_reason: str | None = None) -> str:
        return _sse({**header, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
                     **usage})

    splitter = _splitter_for(ready)

    def deltas(thought: str, answer: str) -> list[str]:
        return ([chunk({"reasoning_content": thought})] if thought else []) + \
            ([chunk({"content": answer})] if answer else [])

    try:
        yield chunk({"role": "assistant", "content": ""})
        event = first
        while True:
            kind, value = event
            if kind == "chunk":
                for line in deltas(*splitter.feed(value)):
                    yield line
            elif kind == "failed":
                yield _sse(from_inference_error(value).body)
                break
            elif value.finish_reason == "cancelled":
                yield _sse(_cancelled_error().body)
                break
            else:
                for line in deltas(*splitter.finish()):
                    yield line
                yield chunk({}, value.finish_reason)
                if chat.include_usage:
                    yield _sse({**header, "object": "chat.completion.chunk", "choices": [], "usage": _usage(value)})
                break
            event = await reply.next(watch_client=False)
        yield _sse("[DONE]")
    finally:
        reply.cancel.set()  # harmless once the reply has ended; within a token when the client left early
