"""The list of installed models and which one is the default, kept in a JSON file.

Nothing that can run code when opened (a pickle, a PyTorch checkpoint) is
ever listed: :meth:`ModelRegistry.add` refuses it, and a list that names one
(edited by hand, or from an older Hearth) leaves it out when read.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from model_store.atomic import write_text_atomically
from model_store.errors import ModelNotInstalledError
from model_store.model_files import code_carrying_reason, refuse_code_carrying

log = logging.getLogger(__name__)

REGISTRY_VERSION = 1


@dataclass(frozen=True)
class InstalledModel:
    """A model file Hearth has verified and can load.

    ``size_bytes`` and ``mtime_ns`` record the file as it was when its sha256
    was checked, so a later start can tell cheaply whether it changed.
    """

    id: str
    display_name: str
    path: Path
    sha256: str
    size_bytes: int
    mtime_ns: int
    is_demo: bool = False

    def files(self) -> list[Path]:
        """The model's files on disk: all parts of a split model (``-00001-of-00003.gguf``…), else the one file."""
        split = re.match(r"(?P<stem>.+)-00001-of-(?P<count>\d{5})\.gguf$", self.path.name)
        if split:
            return sorted(self.path.parent.glob(f"{glob.escape(split['stem'])}-*-of-{split['count']}.gguf"))
        return [self.path] if self.path.exists() else []

    @property
    def disk_bytes(self) -> int:
        """Bytes the model's files take on disk."""
        return sum(path.stat().st_size for path in self.files())

    def file_unchanged(self) -> bool:
        """True when the file still has the size and mtime it had when verified."""
        try:
            stat = self.path.stat()
        except OSError:
            return False
        return stat.st_size == self.size_bytes and stat.st_mtime_ns == self.mtime_ns


class ModelRegistry:
    """Installed models, persisted to ``registry_file`` after every change.

    Safe to share between threads (the window and background downloads): each
    change and its save happen under one lock, so the file always holds every
    change, in order.
    """

    def __init__(self, registry_file: Path) -> None:
        self._file = registry_file
        self._lock = threading.RLock()
        self._models: dict[str, InstalledModel] = {}
        self._default_id: str | None = None
        self._load()

    def get(self, model_id: str) -> InstalledModel | None:
        """The model with this id, or None."""
        with self._lock:
            return self._models.get(model_id)

    def all(self) -> list[InstalledModel]:
        """Every installed model, in the order they were added."""
        with self._lock:
            return list(self._models.values())

    def add(self, model: InstalledModel, *, make_default: bool = False) -> None:
        """Add or replace a model; it becomes the default if asked or if there is none.

        Raises:
            CodeCarryingFileError: the file is a pickle or PyTorch file (by its name or first bytes).
        """
        refuse_code_carrying(model.path)
        with self._lock:
            self._models[model.id] = model
            if make_default or self._default_id not in self._models:
                self._default_id = model.id
            self._save()

    def remove(self, model_id: str) -> InstalledModel | None:
        """Forget a model (its files are the caller's to delete); returns it, or None if unknown."""
        with self._lock:
            model = self._models.pop(model_id, None)
            if model is not None:
                if self._default_id == model_id:
                    self._default_id = next(iter(self._models), None)
                self._save()
            return model

    def default(self) -> InstalledModel:
        """The model Hearth loads when the user has not picked one.

        Raises:
            ModelNotInstalledError: no model is installed.
        """
        with self._lock:
            if self._default_id in self._models:
                return self._models[self._default_id]
        raise ModelNotInstalledError("No model is installed yet.")

    def _load(self) -> None:
        if not self._file.exists():
            return
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
            models = [
                InstalledModel(**{**entry, "path": Path(entry["path"])}) for entry in data["models"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # The list can be rebuilt (the built-in model re-registers itself);
            # keep the damaged file for inspection instead of deleting it.
            aside = self._file.with_suffix(".corrupt.json")
            log.warning("Model list %s is unreadable (%s); moved it to %s", self._file, exc, aside)
            os.replace(self._file, aside)
            return
        left_out = set()
        for model in models:
            reason = code_carrying_reason(model.path.name)
            if reason:
                log.warning("Leaving %s out of the model list: %s", model.path, reason)
                left_out.add(model.id)
            else:
                self._models[model.id] = model
        self._default_id = data.get("default")
        if self._default_id in left_out:  # the next one takes its place, as in remove()
            self._default_id = next(iter(self._models), None)

    def _save(self) -> None:
        entries = [asdict(replace(model, path=str(model.path))) for model in self._models.values()]
        payload = {"version": REGISTRY_VERSION, "default": self._default_id, "models": entries}
        write_text_atomically(self._file, json.dumps(payload, indent=2))
