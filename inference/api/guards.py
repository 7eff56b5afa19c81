"""The checks every request passes before an endpoint sees it, each a small pure ASGI middleware.

In the order :func:`inference.api.app.build_app` stacks them (outermost first):

- :class:`HostGuard`: the ``Host`` header must name this computer (or the address the
  server listens on), which blocks DNS rebinding: a web page whose name resolves to
  127.0.0.1 still sends its own name as the Host.
- :class:`OriginGuard`: a browser request from a page that is not on this computer is
  refused. No CORS header is ever sent, so no browser page may read an answer either.
- :class:`BearerAuth`: ``Authorization: Bearer <token>``, compared in constant time.
- :class:`BodyLimit`: a body over the limit is refused, by its ``Content-Length`` before
  anything is read, or as it is read when it comes in chunks.

Every refusal is an OpenAI-format error (:class:`~inference.api.errors.ApiError`). None of
them logs or echoes a header's value.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from inference.api.config import LOOPBACK_NAMES, is_loopback_host, is_wildcard_host
from inference.api.errors import ApiError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(send: Send, error: ApiError, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Answer with ``error`` as an OpenAI-format JSON body and its status."""
    body = json.dumps(error.body).encode("utf-8")
    await send({
        "type": "http.response.start",
        "status": error.status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *headers],
    })
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the request header ``name`` (lower case), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def host_name(value: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8765`` → ``::1``), lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    name, colon, port = value.rpartition(":")
    return name if colon and port.isdigit() else value


class HostGuard:
    """Refuses (421) a request whose ``Host`` is not ``localhost``, ``127.0.0.1``, ``[::1]`` or ``bind_host``.

    With any port or none. A server listening on every interface (``0.0.0.0``, ``::``) also
    accepts an IP address as the Host: DNS rebinding needs a name, so a bare address is safe.
    """

    def __init__(self, app: ASGIApp, *, bind_host: str) -> None:
        self.app = app
        bind = bind_host.strip().strip("[]").lower()
        self._names = LOOPBACK_NAMES | ({bind} if bind else set())
        self._any_address = is_wildcard_host(bind_host)

    def allowed(self, value: str | None) -> bool:
        """True when ``value`` (a Host header, or None when missing) names this server."""
        if not value:
            return False
        name = host_name(value)
        if name in self._names:
            return True
        if self._any_address:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return False
            return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allowed(header(scope, b"host")):
            await self.app(scope, receive, send)
            return
        await send_error(send, ApiError(
            "This server answers only requests addressed to this computer (localhost or 127.0.0.1) "
            "or to the address it listens on.", status=421, code="misdirected_request"))


def is_loopback_origin(origin: str) -> bool:
    """True for a web origin on this computer: ``http(s)://localhost``, ``127.0.0.1`` or ``[::1]``, any port."""
    try:
        parts = urlsplit(origin.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and not parts.username and not parts.password
            and parts.hostname is not None and is_loopback_host(parts.hostname))


class OriginGuard:
    """Refuses (403) a request that carries an ``Origin`` not on this computer (``null`` included).

    Programs other than browsers send no Origin and pass; preflights (``OPTIONS``) get no
    CORS allowance from anything here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = header(scope, b"origin")
        if scope["type"] != "http" or origin is None or is_loopback_origin(origin):
            await self.app(scope, receive, send)
            return
        await send_error(send, ApiError(
            "Requests from web pages are not accepted: Hearth's API is for programs on this computer.",
            status=403, type="permission_error", code="origin_not_allowed"))


class BearerAuth:
    """Refuses (401, ``WWW-Authenticate: Bearer``) a request without ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        if not token:
            raise ValueError("BearerAuth needs a token.")
        self.app = app
        self._token = token.encode("utf-8")

    def authorized(self, value: str | None) -> bool:
        """True when the Authorization header ``value`` carries the token (compared in constant time)."""
        if value is None:
            return False
        scheme, _, given = value.strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("latin-1"), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = header(scope, b"authorization")
        if self.authorized(value):
            await self.app(scope, receive, send)
            return
        message = ("Incorrect API key provided." if value else
                   "No API key provided: send the header 'Authorization: Bearer <token>'.")
        await send_error(send, ApiError(
            message + " Hearth's token is in Settings › Local API server (or HEARTH_API_TOKEN for `hearth serve`).",
            status=401, type="authentication_error", code="invalid_api_key"),
            headers=((b"www-authenticate", b"Bearer"),))


class _BodyTooLarge(Exception):
    """A chunked body passed the limit while it was read (caught by :class:`BodyLimit`, never escapes)."""


class BodyLimit:
    """Refuses (413) a request body over ``max_bytes``: by ``Content-Length`` unread, or counted as it is read."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> ApiError:
        return ApiError(f"The request body is larger than this server accepts ({self.max_bytes:,} bytes).",
                        status=413, code="request_too_large")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await send_error(send, ApiError("The Content-Length header is not a number.", status=400))
                return
            if int(length) > self.max_bytes:
                await send_error(send, self._too_large())
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _BodyTooLarge:
            if not started:
                await send_error(send, self._too_large())
