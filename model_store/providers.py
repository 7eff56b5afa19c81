"""Saved providers: remote OpenAI-compatible servers Hearth can answer with, kept in a JSON file.

A provider is a name, a base URL and a model; its API key lives only in the
system keyring (one entry per provider, ``provider-key:<id>`` under the
``Hearth`` service), never in the file, the settings or a log line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from inference.remote_engine import ASSUMED_CONTEXT, RemoteTarget
from model_store.atomic import write_text_atomically
from model_store.credentials import TokenStore
from model_store.errors import ProviderNotFoundError

log = logging.getLogger(__name__)

PROVIDERS_VERSION = 1


@dataclass(frozen=True)
class Provider:
    """A saved remote server: ``id`` is Hearth's own, stable across renames."""

    id: str
    name: str
    base_url: str
    model: str
    context_window: int = 0  # tokens the server gives the model, 0 when not known

    @property
    def usable_context(self) -> int:
        """Tokens a prompt and its reply may take: the known window, else ``ASSUMED_CONTEXT``."""
        return self.context_window or ASSUMED_CONTEXT


def new_provider_id() -> str:
    """A fresh id for a provider not saved yet."""
    return uuid.uuid4().hex[:12]


def key_account(provider_id: str) -> str:
    """The keyring entry (account under the ``Hearth`` service) holding a provider's API key."""
    return f"provider-key:{provider_id}"


def keyring_keys(provider_id: str) -> TokenStore:
    """The default key store of a provider: the system keyring, else memory until Hearth quits."""
    return TokenStore(account=key_account(provider_id))


def normalize_base_url(url: str) -> str:
    """``url`` stripped of spaces and a trailing slash (``http://h:8000/v1/`` → ``http://h:8000/v1``)."""
    return url.strip().rstrip("/")


def base_url_problem(url: str) -> str:
    """Why ``url`` cannot be a provider's base URL, as a sentence, or "" when it can."""
    url = normalize_base_url(url)
    if not url:
        return "Enter the server's base URL, for example http://localhost:8000/v1."
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "The base URL must start with http:// or https://, for example http://localhost:8000/v1."
    if not parts.hostname:
        return "The base URL needs a host name, for example http://localhost:8000/v1."
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return "The port in the base URL must be a number, for example http://localhost:8000/v1."
    return ""


class ProviderStore:
    """The saved providers, persisted to ``providers_file`` after every change; keys in the keyring.

    Safe to share between threads: changes and their saves happen under one lock.

    Args:
        providers_file: the JSON file (written atomically; never holds a key).
        keys: makes the key store for a provider id (default: :func:`keyring_keys`).
    """

    def __init__(self, providers_file: Path, *, keys: Callable[[str], TokenStore] = keyring_keys) -> None:
        self._file = providers_file
        self._make_keys = keys
        self._key_stores: dict[str, TokenStore] = {}  # one per provider, so a memory-only key is kept
        self._lock = threading.RLock()
        self._providers: dict[str, Provider] = {}
        self._load()

    def list(self) -> list[Provider]:
        """The saved providers, in the order they were added."""
        with self._lock:
            return list(self._providers.values())

    def get(self, provider_id: str) -> Provider | None:
        """The provider with this id, or None."""
        with self._lock:
            return self._providers.get(provider_id)

    def save(self, provider: Provider, api_key: str | None) -> None:
        """Add ``provider`` or replace the one with its id, and set its key.

        ``api_key``: None keeps the saved key (or none), "" forgets it, anything else replaces it.
        The key goes to the keyring only.

        Raises:
            DiskFullError: the list could not be written; nothing changed.
        """
        provider = Provider(id=provider.id, name=provider.name.strip(), base_url=normalize_base_url(provider.base_url),
                            model=provider.model.strip(), context_window=max(0, int(provider.context_window)))
        with self._lock:
            before = dict(self._providers)
            self._providers[provider.id] = provider
            try:
                self._save()
            except Exception:
                self._providers = before
                raise
            if api_key is not None:
                self._keys(provider.id).set(api_key)  # "" (after strip) clears it
        log.info("Saved provider %s (%s)", provider.name or provider.id, provider.base_url)

    def remove(self, provider_id: str) -> Provider | None:
        """Forget the provider and its key; returns what was removed, or None when there was none."""
        with self._lock:
            removed = self._providers.pop(provider_id, None)
            if removed is not None:
                self._save()
            self._keys(provider_id).clear()
            self._key_stores.pop(provider_id, None)
        return removed

    def api_key(self, provider_id: str) -> str | None:
        """The provider's saved API key, or None."""
        return self._keys(provider_id).get()

    def key_problem(self, provider_id: str) -> str:
        """Why the provider's key is kept in memory only (no usable keyring), or "" when it is in the keyring."""
        return self._keys(provider_id).problem

    def target(self, provider_id: str) -> RemoteTarget:
        """What :func:`inference.remote_engine.stream_remote_reply` needs to answer with this provider.

        Raises:
            ProviderNotFoundError: no provider has this id.
        """
        provider = self.get(provider_id)
        if provider is None:
            raise ProviderNotFoundError("That provider is no longer saved. Choose another model or provider.")
        return RemoteTarget(base_url=provider.base_url, model=provider.model, api_key=self.api_key(provider_id),
                            name=provider.name)

    def _keys(self, provider_id: str) -> TokenStore:
        with self._lock:
            store = self._key_stores.get(provider_id)
            if store is None:
                store = self._key_stores[provider_id] = self._make_keys(provider_id)
            return store

    def _load(self) -> None:
        if not self._file.exists():
            return
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
            providers = [Provider(id=str(e["id"]), name=str(e["name"]), base_url=str(e["base_url"]),
                                  model=str(e["model"]), context_window=_context_window(e.get("context_window")))
                         for e in data["providers"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Keep the damaged file for inspection instead of deleting it; the keys stay in the keyring.
            aside = self._file.with_suffix(".corrupt.json")
            log.warning("Provider list %s is unreadable (%s); moved it to %s", self._file, type(exc).__name__, aside)
            os.replace(self._file, aside)
            return
        self._providers = {provider.id: provider for provider in providers}

    def _save(self) -> None:
        payload = {"version": PROVIDERS_VERSION, "providers": [asdict(p) for p in self._providers.values()]}
        write_text_atomically(self._file, json.dumps(payload, indent=2))


def _context_window(value: object) -> int:
    """A stored context window: a positive whole number of tokens, else 0 (not known)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
