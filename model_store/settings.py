"""The user's settings: typed, versioned, stored as JSON. Secrets never go here."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from model_store.atomic import write_text_atomically

log = logging.getLogger(__name__)

SETTINGS_VERSION = 1


@dataclass
class Settings:
    """Everything the user can set. Unknown keys in the file are ignored.

    ``None`` means "let Hearth choose". ``measured_threads`` maps a CPU
    signature to the thread count measured fastest on it.
    """

    version: int = SETTINGS_VERSION
    demo_notice_dismissed: bool = False
    # Where and how models run.
    device: str = "auto"  # "auto", "cpu" or "gpu"
    n_threads: int | None = None
    context_length: int | None = None
    state_cache_mb: int = 1024
    measured_threads: dict[str, int] = field(default_factory=dict)
    # How replies are sampled.
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    max_tokens: int = 1024


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
        if not isinstance(data, dict):
            log.warning("Settings file %s holds no settings; using defaults", self._file)
            return Settings()
        defaults = Settings()
        values = {}
        for item in fields(Settings):
            value = data.get(item.name, getattr(defaults, item.name))
            default = getattr(defaults, item.name)
            # A value of the wrong type (a hand-edited or damaged file) falls back to the default.
            if default is not None and value is not None and not isinstance(value, type(default)):
                if not (isinstance(default, float) and isinstance(value, int)):
                    log.warning("Setting %s has an invalid value; using the default", item.name)
                    value = default
            values[item.name] = value
        return Settings(**values)

    def save(self, settings: Settings) -> None:
        """Write the settings atomically."""
        write_text_atomically(self._file, json.dumps(asdict(settings), indent=2))
