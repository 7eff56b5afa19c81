"""A local HTTP server that speaks enough of the Hugging Face Hub's API for Hearth and huggingface_hub.

Point a client at it with ``HF_ENDPOINT`` (or ``endpoint=``). It serves real
files from disk and can misbehave on purpose:

- ``ignore_range``: answer every GET with 200 and the whole file;
- ``flip_byte_in``: file names whose content is served with one byte changed;
- ``truncate_after``: close the connection after this many bytes of a body;
- ``gated``: repositories that answer 401 unless ``Authorization: Bearer <token>`` matches;
- ``throttle_bytes_per_s``: slow transfers down (to stop a download part-way).
Requests are counted in ``log`` (method, path, Range header), with the
``time.monotonic()`` each arrived in ``request_times``.

A file is stored in Git LFS unless ``HubFile(lfs=False)``: then, like the
Hub, the API publishes no sha256 for it, only ``blobId`` (its git blob sha1).
Leaving the context closes the connections clients keep open and joins
every thread the server started.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CHUNK = 64 * 1024


@dataclass
class HubFile:
    """One file in a repository, served from ``source``."""

    name: str
    source: Path
    sha256: str = ""
    lfs: bool = True

    def __post_init__(self) -> None:
        if not self.sha256:
            digest = hashlib.sha256()
            with self.source.open("rb") as file:
                while block := file.read(1 << 20):
                    digest.update(block)
            self.sha256 = digest.hexdigest()

    @property
    def size(self) -> int:
        return self.source.stat().st_size

    @property
    def blob_id(self) -> str:
        """The git blob sha1 the Hub publishes as ``blobId``: of the content, or of the LFS pointer file."""
        if self.lfs:
            return git_blob_sha1(self.lfs_pointer().encode())
        return git_blob_sha1(self.source.read_bytes())

    def lfs_pointer(self) -> str:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n"


def git_blob_sha1(content: bytes) -> str:
    """What ``git hash-object`` prints for a file with this content."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class HubRepo:
    """A model repository: files, popularity, and Hub metadata."""

    id: str
    files: list[HubFile]
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2026-01-01T00:00:00.000Z"
    gguf: dict | None = None
    tags: list[str] = field(default_factory=lambda: ["gguf"])


@dataclass
class HubBehaviour:
    """How the server misbehaves (see the module docstring)."""

    ignore_range: bool = False
    flip_byte_in: set[str] = field(default_factory=set)
    truncate_after: int | None = None
    gated: dict[str, str] = field(default_factory=dict)  # repo id -> token that opens it
    throttle_bytes_per_s: float | None = None


class HubServer:
    """Runs the fake Hub on 127.0.0.1 in a background thread. Use as a context manager.

    With ``tls`` (a server-side ``ssl.SSLContext``) it speaks HTTPS.
    """

    def __init__(self, repos: list[HubRepo], behaviour: HubBehaviour | None = None, *, tls=None) -> None:
        self.repos = {repo.id: repo for repo in repos}
        self.behaviour = behaviour or HubBehaviour()
        self.log: list[tuple[str, str, str | None]] = []
        self.request_times: list[float] = []
        self.bytes_sent = 0
        self.connections: dict[threading.Thread, socket.socket] = {}  # open ones, by the thread serving each
        self.connections_lock = threading.Lock()
        handler = _make_handler(self)
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._scheme = "http"
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
            self._scheme = "https"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{self._scheme}://{host}:{port}"

    @property
    def address(self) -> tuple[str, int]:
        return self._httpd.server_address[:2]

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._thread.join(5)
        # Clients keep connections open (huggingface_hub's shared session pools them): close them so
        # that the threads serving them end, instead of waiting for the next request for ever.
        for _ in range(3):  # again, for a connection accepted just before the shutdown
            with self.connections_lock:
                open_connections = dict(self.connections)
            if not open_connections:
                break
            for connection in open_connections.values():
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by the client
            for thread in open_connections:
                thread.join(5)
        self._httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):  # a client that went away is no news
            super().handle_error(request, client_address)


def _sibling(hub_file: HubFile) -> dict:
    """A file as ``/api/models/{repo}`` lists it: LFS files with their sha256, others with their blob id only."""
    sibling = {"rfilename": hub_file.name, "size": hub_file.size, "blobId": hub_file.blob_id}
    if hub_file.lfs:
        pointer_size = len(hub_file.lfs_pointer().encode())
        sibling["lfs"] = {"sha256": hub_file.sha256, "size": hub_file.size, "pointerSize": pointer_size}
    return sibling


def _make_handler(server: HubServer):
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

        def do_HEAD(self) -> None:  # noqa: N802
            self._serve(head=True)

        def do_GET(self) -> None:  # noqa: N802
            self._serve(head=False)

        def _serve(self, *, head: bool) -> None:
            url = urlparse(self.path)
            path = unquote(url.path)
            server.log.append((self.command, path, self.headers.get("Range")))
            server.request_times.append(time.monotonic())
            if path == "/api/models":
                return self._json(self._search(parse_qs(url.query)))
            if path.startswith("/api/models/"):
                repo_id = path[len("/api/models/"):].split("/revision/")[0]
                return self._model_info(repo_id)
            if "/resolve/" in path:
                repo_id, _, rest = path.lstrip("/").partition("/resolve/")
                _, _, name = rest.partition("/")
                return self._file(repo_id, name, head=head)
            self._error(404, "Not Found")

        def _search(self, query: dict) -> list:
            text = (query.get("search") or [""])[0].lower()
            sort = (query.get("sort") or ["downloads"])[0]
            limit = int((query.get("limit") or ["50"])[0])
            repos = [r for r in server.repos.values() if text in r.id.lower()]
            key = {"downloads": lambda r: r.downloads, "likes": lambda r: r.likes,
                   "lastModified": lambda r: r.last_modified}.get(sort, lambda r: r.downloads)
            repos.sort(key=key, reverse=True)
            return [{"id": r.id, "modelId": r.id, "downloads": r.downloads, "likes": r.likes,
                     "lastModified": r.last_modified, "tags": r.tags, "private": False,
                     "gated": r.id in server.behaviour.gated} for r in repos[:limit]]

        def _model_info(self, repo_id: str) -> None:
            repo = server.repos.get(repo_id)
            if repo is None:
                return self._error(404, "Repository not found", error_code="RepoNotFound")
            if not self._allowed(repo_id):
                return
            info = {
                "id": repo.id, "modelId": repo.id, "sha": COMMIT, "downloads": repo.downloads, "likes": repo.likes,
                "lastModified": repo.last_modified, "tags": repo.tags, "private": False,
                "gated": "manual" if repo.id in server.behaviour.gated else False,
                "siblings": [_sibling(f) for f in repo.files],
            }
            if repo.gguf:
                info["gguf"] = repo.gguf
            self._json(info)

        def _file(self, repo_id: str, name: str, *, head: bool) -> None:
            repo = server.repos.get(repo_id)
            if repo is None:
                return self._error(404, "Repository not found", error_code="RepoNotFound")
            if not self._allowed(repo_id):
                return
            hub_file = next((f for f in repo.files if f.name == name), None)
            if hub_file is None:
                return self._error(404, "Entry not found", error_code="EntryNotFound")
            size = hub_file.size
            start = 0
            ranged = self.headers.get("Range")
            if ranged and not server.behaviour.ignore_range and ranged.startswith("bytes="):
                start = int(ranged[6:].split("-")[0])
            if start >= size and ranged and not server.behaviour.ignore_range:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            partial = bool(ranged) and not server.behaviour.ignore_range
            self.send_response(206 if partial else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size - start))
            self.send_header("X-Repo-Commit", COMMIT)
            if hub_file.lfs:
                self.send_header("ETag", f'"{hub_file.sha256}"')
                self.send_header("X-Linked-Etag", f'"{hub_file.sha256}"')
                self.send_header("X-Linked-Size", str(size))
            else:  # the Hub's ETag of a file kept in git is its blob id
                self.send_header("ETag", f'"{hub_file.blob_id}"')
            self.send_header("Accept-Ranges", "bytes")
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            if not head:
                self._send_body(hub_file, start)

        def _send_body(self, hub_file: HubFile, start: int) -> None:
            behaviour = server.behaviour
            flip_at = hub_file.size // 2 if hub_file.name in behaviour.flip_byte_in else -1
            sent = 0
            began = time.monotonic()
            with hub_file.source.open("rb") as source:
                source.seek(start)
                position = start
                while block := source.read(CHUNK):
                    if flip_at >= 0 and position <= flip_at < position + len(block):
                        data = bytearray(block)
                        data[flip_at - position] ^= 0xFF
                        block = bytes(data)
                    if behaviour.truncate_after is not None and sent + len(block) > behaviour.truncate_after:
                        block = block[: behaviour.truncate_after - sent]
                        self._write(block)
                        self.close_connection = True
                        return
                    if not self._write(block):
                        return
                    sent += len(block)
                    position += len(block)
                    if behaviour.throttle_bytes_per_s:
                        ahead = sent / behaviour.throttle_bytes_per_s - (time.monotonic() - began)
                        if ahead > 0:
                            time.sleep(ahead)

        def _write(self, block: bytes) -> bool:
            try:
                self.wfile.write(block)
            except (BrokenPipeError, ConnectionResetError):
                return False
            server.bytes_sent += len(block)
            return True

        def _allowed(self, repo_id: str) -> bool:
            token = server.behaviour.gated.get(repo_id)
            if token is None or self.headers.get("Authorization") == f"Bearer {token}":
                return True
            message = (f"Access to model {repo_id} is restricted. You must have access to it and be "
                       "authenticated to access it. Please log in.")
            self._error(401, message, error_code="GatedRepo")
            return False

        def _json(self, data) -> None:
            body = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, message: str, *, error_code: str | None = None) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if error_code:
                self.send_header("X-Error-Code", error_code)
            self.send_header("X-Error-Message", message)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler
