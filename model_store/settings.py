"""The user's settings: typed, versioned, stored as JSON. Secrets never go here."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from model_store.atomic import write_text_atomically

log = logging.getLogger(__name__)

SETTINGS_VERSION = 1


@dataclass
class Settings:
    """Everything the user can set. Unknown keys in the file are ignored."""

    version: int = SETTINGS_VERSION
    demo_notice_dismissed: bool = False


class SettingsStore:
    """Loads and saves :class:`Settings` in one JSON file."""

    def __init__(self, settings_file: Path) -> None:
        self._file = settings_file

    def load(self) -> Settings:
        """The saved settings, or the defaults when the file is missing or unreadable."""
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Settings()
        except (OSError, ValueError) as exc:
            log.warning("Settings file %s is unreadable (%s); using defaults", self._file, exc)
            return Settings()
        known = {field.name for field in fields(Settings)}
        return Settings(**{key: value for key, value in data.items() if key in known})

    def save(self, settings: Settings) -> None:
        """Write the settings atomically."""
        write_text_atomically(self._file, json.dumps(asdict(settings), indent=2))
