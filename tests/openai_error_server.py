"""A real local HTTP server that speaks enough of the OpenAI API to fail in every way a provider can.

Each way is its own base URL: ``server.base_url("status429")`` is
``http://127.0.0.1:PORT/status429/v1``, and both ``GET …/models`` and
``POST …/chat/completions`` under it behave that way:

- ``ok``: a model list and a short good stream (``OK_CHUNKS``, then usage, then ``[DONE]``);
- ``nousage``: a 400 when the request has ``stream_options``; without it, the good stream with no usage;
- ``status401`` (its message echoes the key, as some servers do), ``status403``, ``status404``,
  ``status429`` (``Retry-After: 7``), ``status500``, ``status503``; any other ``statusNNN`` answers
  NNN with a message that echoes the key;
- ``malformed``: a 200 whose JSON body is cut off;
- ``drop``: 3 chunks, then the connection closes in the middle of the chunked body;
- ``nofinish``: 3 chunks, then the body ends cleanly without a finish reason;
- ``badline``: one chunk, then a ``data:`` line that is not JSON;
- ``endless``: a chunk every ``ENDLESS_INTERVAL_S`` until the client goes away (``closed`` is set then).

Requests are recorded in ``requests`` (scenario, method, path, JSON body, Authorization header).
With ``tls=True`` it speaks HTTPS with a fresh self-signed certificate (:func:`self_signed_tls`).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODELS = ["zeta-7b", "alpha-1b", "mid-3b"]
MODEL_WINDOWS = {"mid-3b": 32768}  # said as vLLM says it (max_model_len); the others say nothing
OK_CHUNKS = ["Hel", "lo", ", ", "wor", "ld", "!"]
USAGE = {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
ENDLESS_INTERVAL_S = 0.02
ENDLESS_LIMIT_S = 30.0  # an endless stream still ends, in case a client never lets go
RETRY_AFTER_S = 7


class OpenAIErrorServer:
    """Runs on 127.0.0.1 in a background thread. Use as a context manager."""

    def __init__(self, *, tls: bool = False, chunk_delay_s: float = 0.0, models_delay_s: float = 0.0) -> None:
        self.requests: list[dict] = []
        self.chunk_delay_s = chunk_delay_s  # before each event of a stream
        self.models_delay_s = models_delay_s  # before answering GET …/models (a slow server)
        self.closed = threading.Event()  # the client closed the endless stream
        self.closed_at: float | None = None
        self._stop = threading.Event()
        self.connections: dict[threading.Thread, socket.socket] = {}
        self.connections_lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._scheme = "http"
        self._tls_folder = None
        if tls:
            self._tls_folder = tempfile.TemporaryDirectory(prefix="hearth-tls-")
            context = self_signed_tls(Path(self._tls_folder.name))
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self._scheme = "https"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-error-server", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def base_url(self, scenario: str = "ok") -> str:
        """The OpenAI-style base URL (ending in /v1) that behaves as ``scenario``."""
        return f"{self._scheme}://127.0.0.1:{self.port}/{scenario}/v1"

    def __enter__(self) -> OpenAIErrorServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._thread.join(5)
        for _ in range(3):
            with self.connections_lock:
                open_connections = dict(self.connections)
            if not open_connections:
                break
            for connection in open_connections.values():
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            for thread in open_connections:
                thread.join(5)
        self._httpd.server_close()
        if self._tls_folder is not None:
            self._tls_folder.cleanup()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed_tls(folder: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1 (cryptography, else openssl).

    Raises:
        RuntimeError: neither the ``cryptography`` package nor the ``openssl`` command is available.
    """
    cert_file, key_file = folder / "server.pem", folder / "server.key"
    try:
        _write_with_cryptography(cert_file, key_file)
    except ImportError:
        if not shutil.which("openssl"):
            raise RuntimeError("needs the cryptography package or the openssl command") from None
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key_file), "-out", str(cert_file)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def _write_with_cryptography(cert_file: Path, key_file: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):  # a client that went away is no news
            super().handle_error(request, client_address)


def _chunk(content: str | None = None, finish_reason: str | None = None, *, model: str = "alpha-1b") -> dict:
    delta = {"content": content} if content is not None else {}
    return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def _make_handler(server: OpenAIErrorServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            with server.connections_lock:
                server.connections[threading.current_thread()] = self.connection

        def finish(self) -> None:
            with server.connections_lock:
                server.connections.pop(threading.current_thread(), None)
            try:
                super().finish()
            except OSError:
                pass

        def do_GET(self) -> None:  # noqa: N802
            self._route(None)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
            self._route(body)

        def _route(self, body) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            scenario, rest = (parts[0], "/".join(parts[1:])) if parts else ("", "")
            server.requests.append({"scenario": scenario, "method": self.command, "path": rest, "body": body,
                                    "authorization": self.headers.get("Authorization")})
            if rest not in ("v1/models", "v1/chat/completions"):
                return self._json(404, {"error": {"message": f"No route {self.path}", "type": "not_found"}})
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if rest == "v1/models" and server.models_delay_s:
                time.sleep(server.models_delay_s)
            if scenario.startswith("status"):
                return self._status(int(scenario.removeprefix("status")), key, body)
            if scenario == "malformed":
                return self._raw(200, b'{"object": "list", "data": [{"id": "cut-off"', "application/json")
            if rest == "v1/models":
                return self._json(200, {"object": "list",
                                        "data": [{"id": m, "object": "model", "created": 0, "owned_by": "test",
                                                  **({"max_model_len": MODEL_WINDOWS[m]} if m in MODEL_WINDOWS
                                                     else {})}
                                                 for m in MODELS]})
            wants_usage = bool(body and body.get("stream_options"))
            if scenario == "nousage" and wants_usage:
                return self._json(400, {"error": {"message": "Unrecognized request argument: stream_options",
                                                  "type": "invalid_request_error"}})
            if scenario in ("ok", "nousage"):
                events = [_chunk(text) for text in OK_CHUNKS] + [_chunk(finish_reason=_finish(body))]
                if wants_usage:
                    events.append({**_chunk(), "choices": [], "usage": USAGE})
                return self._sse(events, done=True)
            if scenario == "drop":
                return self._sse([_chunk(t) for t in ("one ", "two ", "three ")], done=False, cut=True)
            if scenario == "nofinish":
                return self._sse([_chunk(t) for t in ("one ", "two ", "three ")], done=False)
            if scenario == "badline":
                return self._sse([_chunk("fine "), '{"choices": [{"delta": {"content": "bro'], done=False)
            if scenario == "endless":
                return self._endless()
            return self._json(404, {"error": {"message": f"Unknown scenario {scenario}", "type": "not_found"}})

        def _status(self, status: int, key: str, body) -> None:
            messages = {
                401: f"Incorrect API key provided: {key or '(none)'}.",
                403: "You are not allowed to use this model.",
                404: f"The model '{(body or {}).get('model', '?')}' does not exist.",
                429: "Rate limit reached for requests.",
                500: "The server had an error while processing your request.",
                503: "The engine is currently overloaded, please try again later.",
            }
            headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else {}
            message = messages.get(status, f"Invalid request from key {key}")  # some servers echo what they got
            self._json(status, {"error": {"message": message, "type": "error",
                                          "code": None, "param": None}}, headers)

        def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
            self._raw(status, json.dumps(payload).encode(), "application/json", headers)

        def _raw(self, status: int, data: bytes, content_type: str, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _start_sse(self, *, chunked: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")  # the body ends when the connection does
                self.close_connection = True
            self.end_headers()

        def _send_event(self, event, *, chunked: bool) -> None:
            data = event if isinstance(event, str) else json.dumps(event)
            payload = f"data: {data}\n\n".encode()
            if chunked:
                payload = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
            self.wfile.write(payload)
            self.wfile.flush()

        def _sse(self, events: list, *, done: bool, cut: bool = False) -> None:
            chunked = done or cut
            self._start_sse(chunked=chunked)
            for event in events:
                if server.chunk_delay_s:
                    time.sleep(server.chunk_delay_s)
                self._send_event(event, chunked=chunked)
            if done:
                self._send_event("[DONE]", chunked=True)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            elif cut:
                # Close in the middle of the chunked body: the client sees the connection drop.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        def _endless(self) -> None:
            self._start_sse(chunked=True)
            deadline = time.monotonic() + ENDLESS_LIMIT_S
            try:
                while not server._stop.is_set() and time.monotonic() < deadline:
                    self._send_event(_chunk("more "), chunked=True)
                    time.sleep(ENDLESS_INTERVAL_S)
            except OSError:
                server.closed_at = time.monotonic()
                server.closed.set()
                self.close_connection = True

    return Handler


def _finish(body) -> str:
    """``length`` when the client asked for fewer tokens than the good reply has, like a real server."""
    max_tokens = (body or {}).get("max_tokens")
    return "length" if isinstance(max_tokens, int) and max_tokens < len(OK_CHUNKS) else "stop"
