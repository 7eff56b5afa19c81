"""Running the API: uvicorn on a socket Hearth binds itself, in a daemon thread or in the caller's."""

from __future__ import annotations

import errno
import logging
import socket
import sys
import threading

import uvicorn

from inference.api.app import Owner, build_app
from inference.api.config import ServerConfig
from inference.api.errors import ServerStartError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
GRACEFUL_SHUTDOWN_S = 2.0  # replies still streaming when the server stops are cancelled after this


class ApiServer:
    """The local OpenAI-compatible API server for ``owner``'s model.

    Use :meth:`start` / :meth:`stop` from an application (the server runs in a
    daemon thread), or :meth:`serve_forever` headless (it runs in the calling
    thread until Ctrl+C).

    Args:
        owner: the model owner that writes the replies.
        config: the token, where to listen and the limits.
    """

    def __init__(self, owner: Owner, config: ServerConfig) -> None:
        self._config = config
        self._app = build_app(owner, config)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._config.host

    @property
    def port(self) -> int:
        """The port it listens on: the real one once listening (also when the config said 0)."""
        return self._socket.getsockname()[1] if self._socket is not None else self._config.port

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:8765/v1``."""
        host = self._config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        """True while the server thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Listen, then serve in a daemon thread; returns once requests are answered.

        Raises:
            ServerStartError: the port is taken, the address is not this computer's, or uvicorn failed to start.
        """
        if self.running:
            return
        server = self._prepare()
        self._thread = threading.Thread(target=self._run, args=(server,), name="api-server", daemon=True)
        self._thread.start()
        deadline_reached = not _wait_until(lambda: server.started or not self._thread.is_alive(), START_TIMEOUT_S)
        if not server.started:
            self.stop()
            reason = f" ({type(self._failure).__name__})" if self._failure is not None else ""
            raise ServerStartError(
                f"The API server did not start{' in time' if deadline_reached else ''}{reason}.")
        log.info("API server listening on %s", self.url)

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl+C or SIGTERM), listening from the start.

        Raises:
            ServerStartError: as :meth:`start`.
        """
        server = self._prepare()
        try:
            server.run(sockets=[self._socket])
        finally:
            self._close_socket()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving: replies in progress are cancelled; returns once the thread has ended (or after ``timeout_s``)."""
        cancel_replies = getattr(self._app.state, "cancel_replies", None)
        if cancel_replies is not None and self._thread is not None:
            cancel_replies()  # each ends within a token, so the connections close at once
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("The API server did not stop within %.0f s", timeout_s)
                if self._server is not None:
                    self._server.force_exit = True
                self._thread.join(1.0)
            self._thread = None
        self._close_socket()
        self._server = None

    def listen(self) -> None:
        """Bind the socket now, so that :attr:`port` and :attr:`url` are known (:meth:`start` calls it too).

        Raises:
            ServerStartError: the port is taken or the address cannot be used here.
        """
        if self._socket is None:
            self._socket = _bind(self._config.host, self._config.port)

    def _prepare(self) -> uvicorn.Server:
        self.listen()
        config = uvicorn.Config(
            self._app,
            log_config=None,  # Hearth's own logging; uvicorn's loggers propagate to it
            access_log=False,  # requests are not logged one by one
            lifespan="off",
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self._server = uvicorn.Server(config)
        self._failure = None
        return self._server

    def _run(self, server: uvicorn.Server) -> None:
        try:
            server.run(sockets=[self._socket])
        except BaseException as exc:  # noqa: BLE001 - uvicorn exits with SystemExit when its startup fails
            self._failure = exc
            log.error("The API server stopped: %s", type(exc).__name__)

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a :class:`ServerStartError` that says why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                               flags=socket.AI_PASSIVE)[0]
    except socket.gaierror:
        raise ServerStartError(f"The API server cannot listen on '{host}': no such address here.") from None
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform == "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # no other program may share it
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", None)):
            raise ServerStartError(
                f"Port {port} on {host} is already in use by another program: choose another port.") from None
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
            raise ServerStartError(f"The API server cannot listen on {host}:{port} ({exc.strerror}).") from None
        raise ServerStartError(f"The API server cannot listen on {host}:{port} ({exc}).") from None
    sock.setblocking(False)
    return sock


def _wait_until(condition, timeout_s: float) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout_s`` passes (False)."""
    event = threading.Event()
    waited = 0.0
    while not condition():
        if waited >= timeout_s:
            return False
        event.wait(0.01)
        waited += 0.01
    return True
