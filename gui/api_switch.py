"""The app's switch for the local API server (Settings › Local API server): starts and stops it, off the GUI thread.

The server shares the window's model owner, so both answer with the one
loaded model; the window's requests go first. ``inference.api`` (Starlette
and uvicorn) is imported only when the switch is first turned on, and the
token is read from the keyring there too: neither may hold up the window.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, Signal

from gui.messages import describe_error
from gui.preferences import sampling_params
from inference.engine import SamplingParams
from inference.model_owner import ModelOwner
from model_store.api_token import ApiTokenStore, api_token_from_env_or
from model_store.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Wanted:
    enabled: bool
    host: str
    port: int
    generation: int  # a new token counts as a change: the server restarts with it
    sampling: SamplingParams | None = None  # the user's reply settings: for requests that set none


class ApiSwitch(QObject):
    """Keeps the API server in the state the settings ask for.

    Signals:
        status_changed(str, str): a short line for the status bar ("" when off) and a longer tooltip.
    """

    status_changed = Signal(str, str)

    def __init__(self, owner: ModelOwner, tokens: ApiTokenStore) -> None:
        super().__init__()
        self._owner = owner
        self._tokens = tokens
        self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="api-switch")
        self._server = None  # the running inference.api.ApiServer, touched only on the jobs thread
        self._running: _Wanted | None = None
        self._wanted = _Wanted(False, "", 0, 0)
        self._closed = False

    def apply(self, settings: Settings) -> None:
        """Start, restart or stop the server as ``settings`` say (returns at once)."""
        self._want(_Wanted(settings.api_server_enabled, settings.api_host, settings.api_port,
                           self._wanted.generation, sampling_params(settings)))

    def token(self) -> str:
        """The token clients must send (made and saved the first time). Reads the keyring: call it when asked to."""
        return api_token_from_env_or(self._tokens)

    def regenerate_token(self) -> str:
        """A new token; a running server restarts with it, and clients with the old one are refused."""
        token = self._tokens.regenerate()
        self._want(replace(self._wanted, generation=self._wanted.generation + 1))
        return token

    def close(self) -> None:
        """Stop the server and wait for it (at quit, before the model owner stops)."""
        if self._closed:
            return
        self._closed = True
        self._jobs.submit(self._stop_server)
        self._jobs.shutdown(wait=True)

    def _want(self, wanted: _Wanted) -> None:
        if self._closed or wanted == self._wanted:
            return
        self._wanted = wanted
        self._jobs.submit(self._reach, wanted)

    # -------------------------------------------------------- the jobs thread

    def _reach(self, wanted: _Wanted) -> None:
        if wanted != self._wanted or wanted == self._running:
            return  # a newer wish is queued, or nothing changed
        self._stop_server()
        if not wanted.enabled:
            self.status_changed.emit("", "")
            return
        try:
            from inference.api.config import ServerConfig, is_loopback_host
            from inference.api.errors import ServerStartError
            from inference.api.server import ApiServer

            config = ServerConfig(token=api_token_from_env_or(self._tokens), host=wanted.host, port=wanted.port,
                                  sampling=wanted.sampling)
            server = ApiServer(self._owner, config)
            server.start()
        except Exception as exc:  # noqa: BLE001 - a port in use, a bad address, a keyring refusal: said, not fatal
            log.warning("The API server did not start: %s", exc)
            said = str(exc) if isinstance(exc, ServerStartError) else describe_error(exc)  # its own is a sentence
            self.status_changed.emit("API off", f"The local API server could not start: {said}")
            return
        self._server, self._running = server, wanted
        where = "this computer only" if is_loopback_host(wanted.host) else \
            f"the network too ({wanted.host}): anyone who has the token can use the model"
        self.status_changed.emit("API on", f"Local API server at {server.url}, for {where}. "
                                           "Programs need the token shown in Settings.")

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server, self._running = None, None
