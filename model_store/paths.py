"""Where Hearth keeps its files: per-user data, config, logs and cache folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "Hearth"


@dataclass(frozen=True)
class AppPaths:
    """The folders Hearth writes to.

    Models and conversations live in ``data_dir`` (never a cache folder: a
    cache may be wiped by the OS or a cleaning tool).
    """

    data_dir: Path
    config_dir: Path
    log_dir: Path
    cache_dir: Path

    @classmethod
    def for_current_user(cls) -> AppPaths:
        """The platform's standard per-user folders (XDG, ~/Library, %APPDATA%)."""
        return cls(
            data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            log_dir=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
            cache_dir=Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
        )

    @classmethod
    def under(cls, root: Path) -> AppPaths:
        """All folders below one root: for tests and portable installs."""
        root = Path(root)
        return cls(
            data_dir=root / "data",
            config_dir=root / "config",
            log_dir=root / "logs",
            cache_dir=root / "cache",
        )

    @property
    def models_dir(self) -> Path:
        """Folder holding installed model files."""
        return self.data_dir / "models"

    @property
    def registry_file(self) -> Path:
        """JSON file listing installed models."""
        return self.data_dir / "models.json"

    @property
    def conversations_file(self) -> Path:
        """SQLite database holding every conversation."""
        return self.data_dir / "conversations.db"

    @property
    def settings_file(self) -> Path:
        """JSON file with the user's settings."""
        return self.config_dir / "settings.json"

    @property
    def providers_file(self) -> Path:
        """JSON file listing the saved providers (remote servers); their keys are in the keyring."""
        return self.config_dir / "providers.json"

    def create(self) -> None:
        """Create every folder that does not exist yet."""
        for folder in (self.data_dir, self.config_dir, self.log_dir, self.cache_dir, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)
