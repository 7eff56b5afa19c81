"""A small real HTTP proxy for tests: forwards plain-HTTP requests and tunnels HTTPS with CONNECT.

``routes`` maps the host names clients ask for to the local addresses that
answer them, so a test can use an endpoint such as ``https://hub.invalid``
that only the proxy can reach (the name resolves nowhere). Other hosts get
``502 Bad Gateway``, as from a proxy that cannot reach them. Every request is
recorded in ``requests`` as ``(method, target)``. Use as a context manager;
leaving it closes the connections still open and joins its threads.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade"}


class HttpProxy:
    """Runs the proxy on 127.0.0.1; ``url`` is what ``HTTP_PROXY`` / ``HTTPS_PROXY`` take."""

    def __init__(self, routes: dict[str, tuple[str, int]]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str]] = []
        self._sockets: dict[threading.Thread, list[socket.socket]] = {}
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HttpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._thread.join(5)
        for _ in range(3):
            with self._lock:
                open_sockets = dict(self._sockets)
            if not open_sockets:
                break
            for sockets in open_sockets.values():
                for sock in sockets:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            for thread in open_sockets:
                thread.join(5)
        self._httpd.server_close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.setdefault(threading.current_thread(), []).append(sock)

    def _untrack(self) -> None:
        with self._lock:
            self._sockets.pop(threading.current_thread(), None)

    def _upstream(self, host: str) -> tuple[str, int] | None:
        return self.routes.get(host.lower())


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _make_handler(proxy: HttpProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            proxy._track(self.connection)

        def finish(self) -> None:
            proxy._untrack()
            try:
                super().finish()
            except OSError:
                pass

        def do_CONNECT(self) -> None:  # noqa: N802
            proxy.requests.append(("CONNECT", self.path))
            host, _, port = self.path.rpartition(":")
            upstream = proxy._upstream(host)
            if upstream is None:
                return self._refuse(host)
            try:
                remote = socket.create_connection(upstream, timeout=5)
            except OSError:
                return self._refuse(host)
            proxy._track(remote)
            self.send_response(200, "Connection established")
            self.end_headers()
            self.close_connection = True
            self._relay(self.connection, remote)

        def do_GET(self) -> None:  # noqa: N802
            self._forward()

        def do_HEAD(self) -> None:  # noqa: N802
            self._forward()

        def do_POST(self) -> None:  # noqa: N802
            self._forward()

        def _forward(self) -> None:
            proxy.requests.append((self.command, self.path))
            target = urlsplit(self.path)
            upstream = proxy._upstream(target.hostname or "")
            if target.scheme != "http" or upstream is None:
                return self._refuse(target.hostname or self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
            connection = http.client.HTTPConnection(*upstream, timeout=30)
            try:
                path = target.path or "/"
                connection.request(self.command, path + (f"?{target.query}" if target.query else ""), body, headers)
                answer = connection.getresponse()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                if self.command != "HEAD":
                    while block := answer.read(64 * 1024):
                        self.wfile.write(block)
            except OSError:
                self.close_connection = True
            finally:
                connection.close()

        def _refuse(self, host: str) -> None:
            body = f"The proxy cannot reach {host}.".encode()
            self.send_response(502, "Bad Gateway")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def _relay(self, client: socket.socket, remote: socket.socket) -> None:
            try:
                while True:
                    ready, _, _ = select.select([client, remote], [], [], 30)
                    if not ready:
                        return
                    for source in ready:
                        data = source.recv(64 * 1024)
                        if not data:
                            return
                        (remote if source is client else client).sendall(data)
            except OSError:
                return
            finally:
                remote.close()

    return Handler
