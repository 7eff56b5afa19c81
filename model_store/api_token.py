"""The local API server's bearer token: made once, kept in the OS keyring, never in settings, files or logs.

``HEARTH_API_TOKEN`` in the environment overrides it (a headless ``hearth serve``
on a computer without a keyring, or a token shared with a script).
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Mapping

from model_store.credentials import TokenStore

ACCOUNT = "api-token"
TOKEN_ENV = "HEARTH_API_TOKEN"


class ApiTokenStore:
    """Gives the API token, making and saving one the first time it is asked for.

    Args:
        store: where the token is kept (default: the keyring entry ``Hearth`` / ``api-token``).
    """

    def __init__(self, store: TokenStore | None = None) -> None:
        self._store = store if store is not None else TokenStore(account=ACCOUNT)
        self._lock = threading.Lock()

    @property
    def persistent(self) -> bool:
        """True when the token survives a restart (the keyring works); otherwise a new one is made at each start."""
        return self._store.persistent

    @property
    def problem(self) -> str:
        """Why the token is kept in memory only, or "" when the keyring works."""
        return self._store.problem

    def token(self) -> str:
        """The token: the saved one, or a new random one (saved now)."""
        with self._lock:
            token = self._store.get()
            if not token:
                token = secrets.token_urlsafe(32)
                self._store.set(token)
            return token

    def regenerate(self) -> str:
        """Replace the token with a new random one and return it; clients using the old one are refused from now on."""
        with self._lock:
            token = secrets.token_urlsafe(32)
            self._store.set(token)
            return token


def api_token_from_env_or(store: ApiTokenStore, environ: Mapping[str, str] | None = None) -> str:
    """``HEARTH_API_TOKEN`` when it is set (and not blank), else the store's token."""
    return token_from_env(environ) or store.token()


def token_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``HEARTH_API_TOKEN`` when it is set (and not blank), else None."""
    value = (os.environ if environ is None else environ).get(TOKEN_ENV, "").strip()
    return value or None
