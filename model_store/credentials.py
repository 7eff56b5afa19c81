"""The Hugging Face access token, kept only in the OS keyring (Keychain, Credential Manager, Secret Service).

Never in a file, a log, the settings or the database, and never through
``huggingface_hub.login()`` (which writes it to a plain-text file): callers
pass it explicitly to each request. Without a usable keyring (a headless
Linux with no Secret Service) the token lives in memory until Hearth quits,
and ``problem`` says so.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

SERVICE = "Hearth"
ACCOUNT = "huggingface-token"


class TokenStore:
    """Reads and writes the token through a keyring backend, falling back to memory.

    Importing keyring and finding this system's backend takes ~0.3 s, so it
    happens on first use (or on a thread, through :meth:`preload`), not on
    Hearth's start-up path.

    Args:
        backend: a ``keyring`` backend (default: the one keyring picks for this system).
        account: the keyring entry's name under the ``Hearth`` service (default: the Hugging Face token's).
    """

    def __init__(self, backend=None, *, account: str = ACCOUNT) -> None:
        self._backend = backend
        self._account = account
        self._checked = False
        self._lock = threading.Lock()
        self._memory: str | None = None
        self._problem = ""

    def preload(self) -> None:
        """Find the keyring backend on a background thread now, so the first use does not wait for it."""
        threading.Thread(target=self._keyring, name="keyring", daemon=True).start()

    @property
    def problem(self) -> str:
        """Why the token is kept in memory only, or "" when the keyring works."""
        self._keyring()
        return self._problem

    @property
    def persistent(self) -> bool:
        """True when the token is kept in the OS keyring (it survives a restart)."""
        return not self.problem

    def get(self) -> str | None:
        """The saved token, or None."""
        backend = self._keyring()
        if self._problem:
            return self._memory
        try:
            return backend.get_password(SERVICE, self._account)
        except Exception as exc:  # noqa: BLE001 - any keyring failure: keep working from memory
            self._use_memory(f"The system keyring failed ({type(exc).__name__})")
            return self._memory

    def set(self, token: str) -> None:
        """Save ``token`` (stripped); an empty one clears it."""
        token = token.strip()
        if not token:
            self.clear()
            return
        backend = self._keyring()
        if not self._problem:
            try:
                backend.set_password(SERVICE, self._account, token)
                return
            except Exception as exc:  # noqa: BLE001
                self._use_memory(f"The system keyring refused the token ({type(exc).__name__})")
        self._memory = token

    def clear(self) -> None:
        """Forget the token."""
        self._memory = None
        backend = self._keyring()
        if not self._problem:
            try:
                backend.delete_password(SERVICE, self._account)
            except Exception as exc:  # noqa: BLE001 - nothing stored is fine
                log.info("No token to delete from the keyring (%s)", type(exc).__name__)

    def _keyring(self):
        """The backend, found once (thread-safe); a missing keyring switches to memory."""
        with self._lock:
            if not self._checked:
                import keyring
                from keyring.backends import fail

                if self._backend is None:
                    self._backend = keyring.get_keyring()
                if isinstance(self._backend, fail.Keyring):
                    self._use_memory("No system keyring is available")
                self._checked = True
            return self._backend

    def _use_memory(self, why: str) -> None:
        log.warning("%s; the access token is kept in memory only", why)
        self._problem = f"{why}: your access token is kept only until Hearth quits."
